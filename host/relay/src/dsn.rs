//! Delivery status notifications (RFC 3464) to the sender of a message:
//! failures, delays, and (when asked for) successes.
//!
//! RFC 3464 §2: a DSN is a `multipart/report` (RFC 6522) with
//! `report-type=delivery-status` and three parts: a human-readable
//! explanation, a `message/delivery-status` part (per-message fields, then
//! one block of per-recipient fields for each recipient reported), and the
//! original message or only its headers (`text/rfc822-headers`).
//!
//! RFC 5321 §4.5.5 and §6.1: a DSN is sent with the null reverse-path
//! `<>`, and no DSN is ever sent about a message whose reverse-path was
//! null, so two servers can never bounce mail back and forth.
//!
//! # Which reports (RFC 3461 §4.1, §5.2, §6)
//! Each recipient's `NOTIFY` decides, so recipients of one message may get
//! different treatment; each report covers the recipients of one message
//! that reached the same event in the same attempt:
//!
//! | event | action | sent when NOTIFY |
//! |---|---|---|
//! | failed for good | `failed` | absent, or holds `FAILURE` |
//! | still retried after `[queue] delay_warning` | `delayed` | absent, or holds `DELAY` |
//! | accepted by a next hop that does not offer DSN | `relayed` | holds `SUCCESS` |
//! | accepted by a next hop that offers DSN | — (the hop reports) | — |
//! | stored in a local mailbox | `delivered` | holds `SUCCESS` |
//!
//! `NOTIFY=NEVER` gets none of them.
//!
//! # What is returned (RFC 3461 §4.3)
//! `RET=FULL` returns the whole message in a `failed` report; every other
//! report, and a failure without `RET` or with `RET=HDRS`, returns the
//! headers only (as Postfix does).
//!
//! RFC 6533 (internationalised DSNs): about a message that needed SMTPUTF8,
//! the report is `message/global-delivery-status`, and the returned
//! original `message/global` (whole) or `message/global-headers` (headers
//! only), since their content may hold UTF-8 that the classic types do
//! not allow; a UTF-8 address is given with the `utf-8` address type
//! (§3), and the DSN itself is sent with SMTPUTF8.

pub mod params;

use std::sync::Arc;

use mailgate_store::queue::{
    DeliveryReports, FailedRecipient, NewQueued, NewQueuedRecipient, QueueEntry, QueuedRecipient,
};

pub use params::Notify;

/// What the DSN reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnKind {
    /// Recipients that failed for good (`Action: failed`).
    Failure,
    /// Recipients still being retried (`Action: delayed`), with the time
    /// the queue gives up.
    Delay {
        /// When the message expires, seconds since the epoch.
        retry_until: i64,
    },
    /// Recipients accepted by a next hop that does not offer DSN
    /// (`Action: relayed`, RFC 3461 §5.2.2): no further report will come
    /// from there.
    Relayed,
    /// Recipients whose mailbox here holds the message
    /// (`Action: delivered`).
    Delivered,
}

impl DsnKind {
    /// The `Action:` word (RFC 3464 §2.3.3).
    pub fn action(self) -> &'static str {
        match self {
            DsnKind::Failure => "failed",
            DsnKind::Delay { .. } => "delayed",
            DsnKind::Relayed => "relayed",
            DsnKind::Delivered => "delivered",
        }
    }

    /// Whether a recipient with this `NOTIFY` wants this report.
    pub fn wanted_by(self, notify: Notify) -> bool {
        match self {
            DsnKind::Failure => notify.failure,
            DsnKind::Delay { .. } => notify.delay,
            DsnKind::Relayed | DsnKind::Delivered => notify.success,
        }
    }
}

/// Whether a recipient's stored NOTIFY asks for this kind of report
/// (`None`: the default, failures and delays; an invalid value counts as
/// `None`).
pub fn wants(notify: Option<&str>, kind: DsnKind) -> bool {
    kind.wanted_by(Notify::of(notify))
}

/// The enhanced status code in a reply text (`550 5.1.1 ...` gives
/// `5.1.1`), or one derived from its class.
pub fn status_of(reply: &str, permanent: bool) -> String {
    status_in(reply).unwrap_or_else(|| if permanent { "5.0.0" } else { "4.0.0" }.into())
}

/// The enhanced status code of a reply, if it has one of its own class.
fn status_in(reply: &str) -> Option<String> {
    let mut words = reply.split_ascii_whitespace();
    let code = words.next()?;
    let candidate = words.next()?;
    let parts: Vec<&str> = candidate.split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        && code.starts_with(parts[0]);
    ok.then(|| candidate.to_string())
}

/// The status code for a recipient in a report of `kind`: the one in the
/// reply (a recipient that expired after `4.4.1` replies keeps `4.4.1`,
/// as with Postfix), else one of the report's class.
fn status_for(kind: DsnKind, reply: &str) -> String {
    let class_default = match kind {
        DsnKind::Failure => "5.0.0",
        DsnKind::Delay { .. } => "4.0.0",
        DsnKind::Relayed => "2.0.0",
        DsnKind::Delivered => return "2.0.0".into(),
    };
    status_in(reply).unwrap_or_else(|| class_default.into())
}

/// The header part of a message: everything before the first empty line.
pub fn header_section(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(message.len());
    &message[..end]
}

fn rfc5322_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc2822()
}

/// Text for one line of a report: control characters (a line break in a
/// remote reply, say) become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The message a report is about, as [`delivered`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct Original<'a> {
    /// The envelope sender (empty for `<>`: then no report is made).
    pub sender: &'a str,
    /// The DSN `ENVID` as received (xtext).
    pub envid: Option<&'a str>,
    /// The DSN `RET`: `Some(true)` for `FULL`.
    pub ret_full: Option<bool>,
    /// The message needed SMTPUTF8.
    pub smtputf8: bool,
    /// The body holds 8-bit data.
    pub eight_bit: bool,
    /// When it was received, seconds since the Unix epoch
    /// (`Arrival-Date`).
    pub arrival: i64,
    /// The message as received (its headers are returned).
    pub raw: &'a [u8],
}

/// One recipient's block in a report.
struct Line<'a> {
    address: &'a str,
    orcpt: Option<&'a str>,
    reply: Option<&'a str>,
    remote_host: Option<&'a str>,
    updated: Option<i64>,
}

/// Builds the `delivered` DSN (RFC 3464 `Action: delivered`,
/// `Status: 2.0.0`; see also [`delivered_for`] and the
/// [`DeliveryReports`] implementation of [`crate::Relay`]) for recipients of `original` whose mailboxes here now
/// hold it: the report local delivery owes a sender who asked for
/// `NOTIFY=SUCCESS`.
///
/// Only the recipients whose `NOTIFY` holds `SUCCESS` are reported; each
/// block carries `Original-Recipient` from its `ORCPT`, and the report
/// `Original-Envelope-Id` from `ENVID`. The original's headers are
/// returned (never the whole message, whatever `RET` says). The result is
/// a [`NewQueued`] from `<>` to the original sender, created `now`, for
/// the caller to enqueue (a local sender gets it through the queue's
/// local delivery, a remote one by relay).
///
/// Returns `None` when no report is owed: the sender is `<>` (RFC 5321
/// §6.1: never a report about a report), or no recipient asked for
/// success notices.
///
/// `reporting_mta` is this server's host name (`Reporting-MTA: dns; ...`
/// and the `From: MAILER-DAEMON@...` domain).
pub fn delivered(
    reporting_mta: &str,
    original: &Original<'_>,
    recipients: &[NewQueuedRecipient],
    now: i64,
) -> Option<NewQueued> {
    let lines: Vec<Line<'_>> = recipients
        .iter()
        .filter(|r| wants(r.notify.as_deref(), DsnKind::Delivered))
        .map(|r| Line {
            address: &r.address,
            orcpt: r.orcpt.as_deref(),
            reply: None,
            remote_host: None,
            updated: Some(now),
        })
        .collect();
    let token = format!("{:016x}", rand::random::<u64>());
    render(
        reporting_mta,
        original,
        &token,
        &lines,
        DsnKind::Delivered,
        now,
    )
}

/// [`delivered`] for a message in its queue form (what the delivery side
/// has at hand): `message`'s sender, ENVID, RET, flags, arrival
/// (`created`) and body; its recipient list is not read.
pub fn delivered_for(
    reporting_mta: &str,
    message: &NewQueued,
    recipients: &[NewQueuedRecipient],
    now: i64,
) -> Option<NewQueued> {
    let original = Original {
        sender: &message.sender,
        envid: message.envid.as_deref(),
        ret_full: message.ret_full,
        smtputf8: message.smtputf8,
        eight_bit: message.eight_bit,
        arrival: message.created,
        raw: &message.raw,
    };
    delivered(reporting_mta, &original, recipients, now)
}

/// The relay writes the local `delivered` reports too, under its
/// `hostname` (`Reporting-MTA`), so that every report looks the same.
impl DeliveryReports for crate::Relay {
    fn delivered(
        &self,
        message: &NewQueued,
        recipients: &[NewQueuedRecipient],
        now: i64,
    ) -> Option<NewQueued> {
        delivered_for(&self.config().hostname, message, recipients, now)
    }

    fn failed(
        &self,
        message: &NewQueued,
        recipients: &[FailedRecipient],
        now: i64,
    ) -> Option<NewQueued> {
        failed_for(&self.config().hostname, message, recipients, now)
    }
}

/// The `failed` DSN (`Action: failed`) about copies of `message` lost on
/// the way to a local mailbox while the message itself was accepted (an
/// alias target that no longer exists): the delivery side's counterpart
/// of the queue's failure reports, built from the message in its queue
/// form as [`delivered_for`] is. Each recipient's reply gives the
/// `Status:` and `Diagnostic-Code:`; only those whose `NOTIFY` asks for
/// failures are reported. The original's headers are returned.
pub fn failed_for(
    reporting_mta: &str,
    message: &NewQueued,
    recipients: &[FailedRecipient],
    now: i64,
) -> Option<NewQueued> {
    let original = Original {
        sender: &message.sender,
        envid: message.envid.as_deref(),
        ret_full: None,
        smtputf8: message.smtputf8,
        eight_bit: message.eight_bit,
        arrival: message.created,
        raw: &message.raw,
    };
    let lines: Vec<Line<'_>> = recipients
        .iter()
        .filter(|f| wants(f.recipient.notify.as_deref(), DsnKind::Failure))
        .map(|f| Line {
            address: &f.recipient.address,
            orcpt: f.recipient.orcpt.as_deref(),
            reply: Some(&f.reply),
            remote_host: None,
            updated: Some(now),
        })
        .collect();
    let token = format!("{:016x}", rand::random::<u64>());
    render(
        reporting_mta,
        &original,
        &token,
        &lines,
        DsnKind::Failure,
        now,
    )
}

/// Builds the DSN for `entry` about `recipients` (those that reached the
/// event `kind` reports; the caller picks them), or `None` when none is
/// owed: a null sender, or no recipient whose NOTIFY asks for it.
pub fn build(
    reporting_mta: &str,
    entry: &QueueEntry,
    original: &[u8],
    recipients: &[&QueuedRecipient],
    kind: DsnKind,
    now: i64,
) -> Option<NewQueued> {
    let lines: Vec<Line<'_>> = recipients
        .iter()
        .filter(|r| wants(r.notify.as_deref(), kind))
        .map(|r| Line {
            address: &r.address,
            orcpt: r.orcpt.as_deref(),
            reply: r.last_reply.as_deref(),
            remote_host: r.remote_host.as_deref(),
            updated: r.updated,
        })
        .collect();
    let message = Original {
        sender: &entry.sender,
        envid: entry.envid.as_deref(),
        ret_full: entry.ret_full,
        smtputf8: entry.smtputf8,
        eight_bit: entry.eight_bit,
        arrival: entry.created,
        raw: original,
    };
    render(
        reporting_mta,
        &message,
        &entry.id.to_string(),
        &lines,
        kind,
        now,
    )
}

/// The report itself; `token` makes its boundary and Message-ID unique.
fn render(
    reporting_mta: &str,
    entry: &Original<'_>,
    token: &str,
    reported: &[Line<'_>],
    kind: DsnKind,
    now: i64,
) -> Option<NewQueued> {
    if entry.sender.is_empty() || reported.is_empty() {
        return None;
    }
    let boundary = format!("{token}/{now}.{reporting_mta}");
    let global = entry.smtputf8;
    let addr_type = |a: &str| if a.is_ascii() { "rfc822" } else { "utf-8" };
    let (subject, intro) = match kind {
        DsnKind::Failure => (
            "Undelivered Mail Returned to Sender",
            "Your message could not be delivered to one or more recipients.\r\n\
             This is a permanent error; it will not be tried again.",
        ),
        DsnKind::Delay { .. } => (
            "Delayed Mail (still being retried)",
            "Your message has not been delivered to one or more recipients yet.\r\n\
             It will be tried again; you need not send it again.",
        ),
        DsnKind::Relayed => (
            "Successful Mail Delivery Report",
            "Your message was passed on to the next mail server for the\r\n\
             recipients below, as you asked. That server does not offer\r\n\
             delivery notifications: you will not hear from it when the\r\n\
             message reaches the mailbox, but may still hear of an error.",
        ),
        DsnKind::Delivered => (
            "Successful Mail Delivery Report",
            "Your message was delivered to the mailbox of the recipients\r\n\
             below, as you asked.",
        ),
    };
    let action = kind.action();
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n\
         To: <{sender}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <dsn.{token}.{now}@{reporting_mta}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         This is the mail system at {reporting_mta}.\r\n\
         \r\n\
         {intro}\r\n\
         \r\n",
        sender = one_line(entry.sender),
        date = rfc5322_date(now),
    ));
    for r in reported {
        let why = match (r.reply, kind) {
            (Some(reply), _) => one_line(reply),
            (None, DsnKind::Delivered) => "delivered to the mailbox".into(),
            (None, _) => "no reason recorded".into(),
        };
        m.push_str(&format!("<{}>: {why}\r\n", one_line(r.address)));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\n\
         Content-Type: message/{}delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {reporting_mta}\r\n",
        if global { "global-" } else { "" }
    ));
    if let Some(envid) = entry.envid {
        m.push_str(&format!(
            "Original-Envelope-Id: {}\r\n",
            params::field_text(envid)
        ));
    }
    m.push_str(&format!(
        "Arrival-Date: {}\r\n",
        rfc5322_date(entry.arrival)
    ));
    for r in reported {
        let reply = r.reply.map(one_line).unwrap_or_default();
        let status = status_for(kind, &reply);
        m.push_str(&format!(
            "\r\nFinal-Recipient: {}; {}\r\n",
            addr_type(r.address),
            one_line(r.address)
        ));
        if let Some(orig) = r.orcpt.and_then(|o| params::original_recipient(o, global)) {
            m.push_str(&format!("Original-Recipient: {orig}\r\n"));
        }
        m.push_str(&format!("Action: {action}\r\nStatus: {status}\r\n"));
        if let Some(host) = r.remote_host {
            m.push_str(&format!("Remote-MTA: dns; {}\r\n", one_line(host)));
        }
        if !reply.is_empty() {
            m.push_str(&format!("Diagnostic-Code: smtp; {reply}\r\n"));
        }
        if let Some(at) = r.updated {
            m.push_str(&format!("Last-Attempt-Date: {}\r\n", rfc5322_date(at)));
        }
        if let DsnKind::Delay { retry_until } = kind {
            m.push_str(&format!(
                "Will-Retry-Until: {}\r\n",
                rfc5322_date(retry_until)
            ));
        }
    }
    // RFC 3461 §4.3: RET=FULL asks for the message in a "failed" DSN.
    let full = kind == DsnKind::Failure && entry.ret_full == Some(true);
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: {}\r\n\r\n",
        match (full, global) {
            (true, false) => "message/rfc822",
            (false, false) => "text/rfc822-headers",
            (true, true) => "message/global",
            (false, true) => "message/global-headers",
        }
    ));
    let mut raw = m.into_bytes();
    if full {
        raw.extend_from_slice(entry.raw);
    } else {
        raw.extend_from_slice(header_section(entry.raw));
    }
    if !raw.ends_with(b"\r\n") {
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let raw_is_ascii = raw.is_ascii();
    Some(NewQueued {
        msg_id: Some(mailgate_store::queue::new_message_id()),
        sender: String::new(),
        recipients: vec![NewQueuedRecipient::new(entry.sender.to_string())],
        raw: Arc::new(raw),
        created: now,
        envid: None,
        ret_full: None,
        smtputf8: global || !entry.sender.is_ascii(),
        eight_bit: (full && entry.eight_bit) || !raw_is_ascii,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_store::queue::RecipientStatus;

    fn entry(sender: &str) -> QueueEntry {
        QueueEntry {
            id: 7,
            msg_id: "0663A0B1C2D3E40007".into(),
            sender: sender.into(),
            size: 10,
            created: 1_700_000_000,
            next_attempt: 0,
            attempts: 3,
            held: false,
            warned: false,
            envid: Some("ENV42".into()),
            ret_full: None,
            smtputf8: false,
            eight_bit: false,
            recipients: vec![rcpt(0, None), rcpt(1, Some("NEVER"))],
        }
    }

    fn rcpt(index: u32, notify: Option<&str>) -> QueuedRecipient {
        QueuedRecipient {
            index,
            address: format!("r{index}@b.test"),
            domain: "b.test".into(),
            orcpt: Some(format!("rfc822;r{index}@b.test")),
            notify: notify.map(String::from),
            status: RecipientStatus::Failed,
            last_reply: Some("550 5.1.1 No such user".into()),
            remote_host: Some("mx.b.test".into()),
            updated: Some(1_700_000_100),
            next_hop: None,
            local: None,
        }
    }

    const ORIGINAL: &[u8] = b"From: a@a.test\r\nSubject: hello\r\n\r\nsecret body\r\n";

    #[test]
    fn failure_report_has_the_rfc3464_parts() {
        let e = entry("a@a.test");
        let all: Vec<&QueuedRecipient> = e.recipients.iter().collect();
        let dsn = build(
            "mx.a.test",
            &e,
            ORIGINAL,
            &all,
            DsnKind::Failure,
            1_700_000_200,
        )
        .expect("a DSN is owed");
        assert_eq!(dsn.sender, "");
        assert_eq!(dsn.recipients[0].address, "a@a.test");
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains("Reporting-MTA: dns; mx.a.test\r\n"));
        assert!(text.contains("Original-Envelope-Id: ENV42\r\n"));
        assert!(text.contains("Final-Recipient: rfc822; r0@b.test\r\n"));
        assert!(text.contains("Original-Recipient: rfc822; r0@b.test\r\n"));
        assert!(text.contains("Action: failed\r\nStatus: 5.1.1\r\n"));
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 No such user\r\n"));
        assert!(text.contains("Remote-MTA: dns; mx.b.test\r\n"));
        assert!(text.contains(
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: a@a.test\r\nSubject: hello\r\n"
        ));
        assert!(!text.contains("secret body"), "headers only by default");
        assert!(!text.contains("r1@b.test"), "NOTIFY=NEVER is left out");
        assert!(text.ends_with("--\r\n"));
    }

    #[test]
    fn never_for_a_null_sender_or_unwanted() {
        let e = entry("");
        let all: Vec<&QueuedRecipient> = e.recipients.iter().collect();
        assert!(build("mx", &e, ORIGINAL, &all, DsnKind::Failure, 0).is_none());
        let e = entry("a@a.test");
        let never = [&e.recipients[1]];
        assert!(build("mx", &e, ORIGINAL, &never, DsnKind::Failure, 0).is_none());
    }

    #[test]
    fn full_return_only_in_a_failure_report() {
        let mut e = entry("a@a.test");
        e.ret_full = Some(true);
        e.recipients[0].last_reply = Some("451 4.4.1 no answer".into());
        let r = [&e.recipients[0]];
        let dsn = build("mx", &e, ORIGINAL, &r, DsnKind::Delay { retry_until: 5 }, 1).unwrap();
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(text.contains("Action: delayed\r\nStatus: 4.4.1\r\n"));
        assert!(text.contains("Will-Retry-Until: "));
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nFrom: a@a.test"));
        assert!(
            !text.contains("secret body"),
            "a delay report returns headers"
        );
        e.recipients[0].last_reply = Some("550 5.1.1 no such user".into());
        let r = [&e.recipients[0]];
        let dsn = build("mx", &e, ORIGINAL, &r, DsnKind::Failure, 1).unwrap();
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(text.contains("Content-Type: message/rfc822\r\n\r\nFrom: a@a.test"));
        assert!(text.contains("secret body"), "RET=FULL: the whole message");
        e.ret_full = Some(false);
        let dsn = build("mx", &e, ORIGINAL, &r, DsnKind::Failure, 1).unwrap();
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n"));
        assert!(!text.contains("secret body"), "RET=HDRS: headers only");
    }

    #[test]
    fn relayed_report_only_for_notify_success() {
        let mut e = entry("a@a.test");
        e.recipients[0].notify = Some("SUCCESS,FAILURE".into());
        e.recipients[0].last_reply = Some("250 2.0.0 Ok: queued as 12".into());
        e.recipients[1].notify = Some("FAILURE".into());
        let all: Vec<&QueuedRecipient> = e.recipients.iter().collect();
        let dsn = build("mx.a.test", &e, ORIGINAL, &all, DsnKind::Relayed, 9).unwrap();
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(text.contains("Subject: Successful Mail Delivery Report\r\n"));
        assert!(text.contains("Final-Recipient: rfc822; r0@b.test\r\n"));
        assert!(text.contains("Action: relayed\r\nStatus: 2.0.0\r\n"));
        assert!(text.contains("Remote-MTA: dns; mx.b.test\r\n"));
        assert!(!text.contains("r1@b.test"), "r1 did not ask for SUCCESS");
        // Without NOTIFY (the default), no success report.
        let plain = entry("a@a.test");
        let r = [&plain.recipients[0]];
        assert!(build("mx", &plain, ORIGINAL, &r, DsnKind::Relayed, 9).is_none());
        assert!(wants(None, DsnKind::Failure) && wants(None, DsnKind::Delay { retry_until: 0 }));
        assert!(!wants(None, DsnKind::Relayed) && !wants(Some("NEVER"), DsnKind::Failure));
    }

    #[test]
    fn delivered_report_for_local_recipients() {
        let original = Original {
            sender: "a@a.test",
            envid: Some("QQ314159+2B1"),
            ret_full: Some(true),
            smtputf8: false,
            eight_bit: false,
            arrival: 1_700_000_000,
            raw: ORIGINAL,
        };
        let mut wanted = NewQueuedRecipient::new("bob@b.test");
        wanted.notify = Some("SUCCESS".into());
        wanted.orcpt = Some("rfc822;Bob+2BBox@b.test".into());
        let mut default = NewQueuedRecipient::new("carol@b.test");
        default.notify = None;
        let mut never = NewQueuedRecipient::new("dave@b.test");
        never.notify = Some("NEVER".into());
        let dsn = delivered(
            "mx.b.test",
            &original,
            &[wanted.clone(), default.clone(), never],
            1_700_000_100,
        )
        .expect("bob asked for SUCCESS");
        assert_eq!(dsn.sender, "", "sent from <>");
        assert_eq!(dsn.recipients.len(), 1);
        assert_eq!(dsn.recipients[0].address, "a@a.test");
        assert_eq!(dsn.recipients[0].notify, None);
        assert_eq!(dsn.created, 1_700_000_100);
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(text.contains("To: <a@a.test>\r\n"));
        assert!(text.contains("Reporting-MTA: dns; mx.b.test\r\n"));
        assert!(
            text.contains("Original-Envelope-Id: QQ314159+1\r\n"),
            "decoded from xtext"
        );
        assert!(text.contains("Final-Recipient: rfc822; bob@b.test\r\n"));
        assert!(text.contains("Original-Recipient: rfc822; Bob+Box@b.test\r\n"));
        assert!(text.contains("Action: delivered\r\nStatus: 2.0.0\r\n"));
        assert!(!text.contains("carol@") && !text.contains("dave@"));
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nFrom: a@a.test"));
        assert!(
            !text.contains("secret body"),
            "a success report returns headers only"
        );
        // Nobody asked, or the sender is <>: nothing.
        assert!(delivered("mx", &original, &[default], 1).is_none());
        let null = Original {
            sender: "",
            ..original
        };
        assert!(delivered("mx", &null, &[wanted], 1).is_none());
    }

    #[test]
    fn failed_for_a_lost_alias_copy() {
        let mut rcpt = NewQueuedRecipient::new("gone@b.test");
        rcpt.orcpt = Some("rfc822;team@b.test".into());
        let failed = FailedRecipient {
            recipient: rcpt,
            reply: "550 5.1.1 <gone@b.test>: no such user here; alias <team@b.test> names it"
                .into(),
        };
        let message = NewQueued {
            msg_id: None,
            sender: "a@a.test".into(),
            recipients: Vec::new(),
            raw: Arc::new(ORIGINAL.to_vec()),
            created: 1_700_000_000,
            envid: None,
            ret_full: Some(true),
            smtputf8: false,
            eight_bit: false,
        };
        let dsn = failed_for("mx.b.test", &message, std::slice::from_ref(&failed), 5).unwrap();
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(text.contains("Final-Recipient: rfc822; gone@b.test\r\n"));
        assert!(text.contains("Original-Recipient: rfc822; team@b.test\r\n"));
        assert!(text.contains("Action: failed\r\nStatus: 5.1.1\r\n"));
        assert!(text.contains("alias <team@b.test> names it"));
        assert!(text.contains("text/rfc822-headers"), "headers only");
        assert_eq!(
            (dsn.sender.as_str(), dsn.recipients[0].address.as_str()),
            ("", "a@a.test")
        );
        // NOTIFY=NEVER, or a null sender: no report.
        let mut never = failed.clone();
        never.recipient.notify = Some("NEVER".into());
        assert!(failed_for("mx.b.test", &message, &[never], 5).is_none());
        let bounce = NewQueued {
            sender: String::new(),
            ..message
        };
        assert!(failed_for("mx.b.test", &bounce, &[failed], 5).is_none());
    }

    #[test]
    fn delivered_for_a_queued_message() {
        let mut rcpt = NewQueuedRecipient::new("bob@b.test");
        rcpt.notify = Some("SUCCESS".into());
        let message = NewQueued {
            msg_id: None,
            sender: "a@a.test".into(),
            recipients: vec![NewQueuedRecipient::new("ignored@b.test")],
            raw: Arc::new(ORIGINAL.to_vec()),
            created: 1_700_000_000,
            envid: Some("E+2B1".into()),
            ret_full: None,
            smtputf8: false,
            eight_bit: false,
        };
        let dsn = delivered_for("mx.b.test", &message, &[rcpt], 5).unwrap();
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(text.contains("Original-Envelope-Id: E+1\r\n"));
        assert!(text.contains("Final-Recipient: rfc822; bob@b.test\r\n"));
        assert!(!text.contains("ignored@"));
        assert_eq!(dsn.recipients[0].address, "a@a.test");
    }

    #[test]
    fn client_text_cannot_add_lines_to_a_report() {
        let mut e = entry("a@a.test");
        e.envid = Some("x\r\nX-Evil: 1".into());
        e.recipients[0].orcpt = Some("rfc822;a+0D+0AX-Evil:+202@b.test".into());
        e.recipients[0].last_reply = Some("550 5.1.1 no\r\nX-Evil: 3".into());
        let r = [&e.recipients[0]];
        let dsn = build("mx", &e, ORIGINAL, &r, DsnKind::Failure, 1).unwrap();
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(!text.contains("\nX-Evil"), "{text}");
    }

    #[test]
    fn smtputf8_messages_get_a_global_report() {
        let original = "From: jürgen@a.test\r\nSubject: Grüße\r\n\r\nHallo\r\n".as_bytes();
        let mut e = entry("jürgen@a.test");
        e.smtputf8 = true;
        e.recipients[0].address = "zoë@b.test".into();
        e.recipients[0].orcpt = Some("utf-8;zo\\x{EB}@b.test".into());
        let r = [&e.recipients[0]];
        let dsn = build("mx.a.test", &e, original, &r, DsnKind::Failure, 1).unwrap();
        assert!(dsn.smtputf8, "the DSN needs SMTPUTF8 too");
        assert!(dsn.eight_bit);
        assert_eq!(dsn.recipients[0].address, "jürgen@a.test");
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains(
            "Content-Type: message/global-delivery-status\r\n\r\nReporting-MTA: dns; mx.a.test\r\n"
        ));
        assert!(!text.contains("message/delivery-status"));
        assert!(
            text.contains("Final-Recipient: utf-8; zoë@b.test\r\n"),
            "{text}"
        );
        assert!(text.contains("Original-Recipient: utf-8; zo\\x{EB}@b.test\r\n"));
        assert!(text.contains(
            "Content-Type: message/global-headers\r\n\r\nFrom: jürgen@a.test\r\nSubject: Grüße\r\n"
        ));
        assert!(!text.contains("text/rfc822-headers") && !text.contains("Hallo"));
        // RET=FULL returns message/global; an ASCII recipient keeps rfc822.
        e.ret_full = Some(true);
        e.recipients[0].address = "zoe@b.test".into();
        let r = [&e.recipients[0]];
        let dsn = build("mx.a.test", &e, original, &r, DsnKind::Failure, 1).unwrap();
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(text.contains("Content-Type: message/global\r\n\r\nFrom: jürgen@a.test"));
        assert!(text.contains("Hallo"));
        assert!(text.contains("Final-Recipient: rfc822; zoe@b.test\r\n"));
        // Without SMTPUTF8 the classic types stay.
        let plain = entry("a@a.test");
        let r = [&plain.recipients[0]];
        let dsn = build("mx.a.test", &plain, ORIGINAL, &r, DsnKind::Failure, 1).unwrap();
        assert!(!dsn.smtputf8 && !dsn.eight_bit);
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(text.contains("Content-Type: message/delivery-status\r\n"));
        assert!(!text.contains("global"));
    }

    #[test]
    fn status_codes() {
        assert_eq!(status_of("550 5.7.1 denied", true), "5.7.1");
        assert_eq!(status_of("550 denied", true), "5.0.0");
        assert_eq!(status_of("451 5.7.1 odd", false), "4.0.0");
        assert_eq!(status_of("", false), "4.0.0");
        assert!(wants(Some("SUCCESS,FAILURE"), DsnKind::Failure));
        assert!(!wants(Some("SUCCESS"), DsnKind::Delay { retry_until: 0 }));
        // A recipient that expired keeps the status of its last reply.
        assert_eq!(
            status_for(DsnKind::Failure, "451 4.4.1 gone (gave up)"),
            "4.4.1"
        );
        assert_eq!(status_for(DsnKind::Failure, "connection refused"), "5.0.0");
        assert_eq!(status_for(DsnKind::Relayed, "250 2.6.0 queued"), "2.6.0");
        assert_eq!(status_for(DsnKind::Relayed, "250 Ok"), "2.0.0");
        assert_eq!(status_for(DsnKind::Delivered, ""), "2.0.0");
    }
}
