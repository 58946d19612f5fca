//! Delivery status notifications (RFC 3464) to the sender of a message
//! that failed, or is delayed.
//!
//! RFC 3464 §2: a DSN is a `multipart/report` (RFC 6522) with
//! `report-type=delivery-status` and three parts: a human-readable
//! explanation, a `message/delivery-status` part (per-message fields, then
//! one block of per-recipient fields for each recipient reported), and the
//! original message or only its headers (`text/rfc822-headers`).
//!
//! RFC 5321 §4.5.5 and §6.1: a DSN is sent with the null reverse-path
//! `<>`, and no DSN is ever sent about a message whose reverse-path was
//! null, so two servers can never bounce mail back and forth. RFC 3461
//! §4.1: `NOTIFY=NEVER` wants nothing, otherwise only the listed kinds;
//! without NOTIFY, failures and delays are reported. RFC 3461 §4.3:
//! `RET=FULL` asks for the whole message; the default here is the headers.
//!
//! RFC 6533 (internationalised DSNs): about a message that needed SMTPUTF8,
//! the report is `message/global-delivery-status`, and the returned
//! original `message/global` (whole) or `message/global-headers` (headers
//! only), since their content may hold UTF-8 that the classic types do
//! not allow; a UTF-8 address is given with the `utf-8` address type
//! (§3), and the DSN itself is sent with SMTPUTF8.

use std::sync::Arc;

use mailgate_store::queue::{NewQueued, NewQueuedRecipient, QueueEntry, QueuedRecipient};

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
}

/// Whether a recipient's NOTIFY asks for this kind of report.
pub fn wants(notify: Option<&str>, kind: DsnKind) -> bool {
    let Some(n) = notify else {
        return true;
    };
    let word = match kind {
        DsnKind::Failure => "FAILURE",
        DsnKind::Delay { .. } => "DELAY",
    };
    n.split(',').any(|w| w.trim().eq_ignore_ascii_case(word))
}

/// The enhanced status code in a reply text (`550 5.1.1 ...` gives
/// `5.1.1`), or one derived from its class.
pub fn status_of(reply: &str, permanent: bool) -> String {
    let mut words = reply.split_ascii_whitespace();
    let code = words.next().unwrap_or("");
    if let Some(candidate) = words.next() {
        let parts: Vec<&str> = candidate.split('.').collect();
        let ok = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
            && code.starts_with(parts[0]);
        if ok {
            return candidate.to_string();
        }
    }
    if permanent {
        "5.0.0".into()
    } else {
        "4.0.0".into()
    }
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

/// Builds the DSN for `entry` about `recipients` (already filtered by the
/// caller), or `None` when none is owed: a null sender, or no recipient
/// whose NOTIFY asks for it.
pub fn build(
    reporting_mta: &str,
    entry: &QueueEntry,
    original: &[u8],
    recipients: &[&QueuedRecipient],
    kind: DsnKind,
    now: i64,
) -> Option<NewQueued> {
    if entry.sender.is_empty() {
        return None;
    }
    let reported: Vec<&QueuedRecipient> = recipients
        .iter()
        .copied()
        .filter(|r| wants(r.notify.as_deref(), kind))
        .collect();
    if reported.is_empty() {
        return None;
    }
    let boundary = format!("{}/{}.{}", entry.id, now, reporting_mta);
    let global = entry.smtputf8;
    let addr_type = |a: &str| if a.is_ascii() { "rfc822" } else { "utf-8" };
    let (subject, intro, action) = match kind {
        DsnKind::Failure => (
            "Undelivered Mail Returned to Sender",
            "Your message could not be delivered to one or more recipients.\r\n\
             This is a permanent error; it will not be tried again.",
            "failed",
        ),
        DsnKind::Delay { .. } => (
            "Delayed Mail (still being retried)",
            "Your message has not been delivered to one or more recipients yet.\r\n\
             It will be tried again; you need not send it again.",
            "delayed",
        ),
    };
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n\
         To: <{sender}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <dsn.{id}.{now}@{reporting_mta}>\r\n\
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
        sender = entry.sender,
        date = rfc5322_date(now),
        id = entry.id,
    ));
    for r in &reported {
        m.push_str(&format!(
            "<{}>: {}\r\n",
            r.address,
            r.last_reply.as_deref().unwrap_or("no reason recorded")
        ));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\n\
         Content-Type: message/{}delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {reporting_mta}\r\n",
        if global { "global-" } else { "" }
    ));
    if let Some(envid) = &entry.envid {
        m.push_str(&format!("Original-Envelope-Id: {envid}\r\n"));
    }
    m.push_str(&format!(
        "Arrival-Date: {}\r\n",
        rfc5322_date(entry.created)
    ));
    for r in &reported {
        let reply = r.last_reply.as_deref().unwrap_or("");
        let status = status_of(reply, kind == DsnKind::Failure);
        m.push_str(&format!(
            "\r\nFinal-Recipient: {}; {}\r\n",
            addr_type(&r.address),
            r.address
        ));
        if let Some(orcpt) = &r.orcpt {
            // ORCPT is `addr-type;xtext`; the field wants `addr-type; addr`.
            let (t, a) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
            m.push_str(&format!("Original-Recipient: {t}; {a}\r\n"));
        }
        m.push_str(&format!("Action: {action}\r\nStatus: {status}\r\n"));
        if let Some(host) = &r.remote_host {
            m.push_str(&format!("Remote-MTA: dns; {host}\r\n"));
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
    let full = entry.ret_full == Some(true);
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
        raw.extend_from_slice(original);
    } else {
        raw.extend_from_slice(header_section(original));
    }
    if !raw.ends_with(b"\r\n") {
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let raw_is_ascii = raw.is_ascii();
    Some(NewQueued {
        sender: String::new(),
        recipients: vec![NewQueuedRecipient::new(entry.sender.clone())],
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
    fn delay_and_full_return() {
        let mut e = entry("a@a.test");
        e.ret_full = Some(true);
        e.recipients[0].last_reply = Some("451 4.4.1 no answer".into());
        let r = [&e.recipients[0]];
        let dsn = build("mx", &e, ORIGINAL, &r, DsnKind::Delay { retry_until: 5 }, 1).unwrap();
        let text = String::from_utf8(dsn.raw.to_vec()).unwrap();
        assert!(text.contains("Action: delayed\r\nStatus: 4.4.1\r\n"));
        assert!(text.contains("Will-Retry-Until: "));
        assert!(text.contains("Content-Type: message/rfc822\r\n\r\nFrom: a@a.test"));
        assert!(text.contains("secret body"));
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
    }
}
