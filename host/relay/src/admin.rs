//! What `mailgate queue list|show|flush|delete|hold|release` do (and
//! their `--json` documents), as
//! functions over the store, so the CLI only parses arguments and prints.

use std::fmt::Write;

use mailgate_log::escape::escape;
use mailgate_store::queue::{QueueEntry, QueueId, QueueStore, RecipientStatus};
use mailgate_store::{StoreError, StoreResult};

fn date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// `mailq`-style listing: one block per message, then a total line.
pub fn format_list(entries: &[QueueEntry]) -> String {
    let mut out = String::new();
    if entries.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let _ = writeln!(
        out,
        "{:<10} {:>9} {:<19}  Sender/Recipients",
        "ID", "Size", "Arrival"
    );
    for e in entries {
        let mark = if e.held { "!" } else { "" };
        let sender = if e.sender.is_empty() {
            "<>".to_string()
        } else {
            e.sender.clone()
        };
        // The queue id of the log and of the `250`, when it differs from
        // the number (messages queued by older versions have none).
        let queue_id = if e.msg_id == e.id.to_string() {
            String::new()
        } else {
            format!("  queue_id={}", e.msg_id)
        };
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:<19}  {}{queue_id}",
            format!("{}{mark}", e.id),
            e.size,
            date(e.created),
            sender
        );
        for r in e.pending() {
            if let Some(reply) = &r.last_reply {
                let _ = writeln!(out, "{:>43}({reply})", "");
            }
            match &r.next_hop {
                Some(hop) => {
                    let _ = writeln!(out, "{:>43}{} via {hop}", "", r.address);
                }
                None => {
                    let _ = writeln!(out, "{:>43}{}", "", r.address);
                }
            }
        }
    }
    let total: u64 = entries.iter().map(|e| e.size).sum();
    let _ = writeln!(
        out,
        "-- {} Kbytes in {} Request{}.",
        total.div_ceil(1024),
        entries.len(),
        if entries.len() == 1 { "" } else { "s" }
    );
    out
}

/// Every detail of one message (`queue show ID`).
pub fn format_entry(e: &QueueEntry) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "id: {}", e.id);
    let _ = writeln!(out, "queue id: {}", e.msg_id);
    let _ = writeln!(out, "sender: <{}>", e.sender);
    let _ = writeln!(out, "size: {}", e.size);
    let _ = writeln!(out, "arrived: {}", date(e.created));
    let _ = writeln!(out, "attempts: {}", e.attempts);
    let _ = writeln!(out, "next attempt: {}", date(e.next_attempt));
    let _ = writeln!(out, "held: {}", if e.held { "yes" } else { "no" });
    // The DSN parameters the client gave (RFC 3461), as stored.
    let mut dsn = Vec::new();
    if let Some(ret) = e.ret_full {
        dsn.push(format!("RET={}", if ret { "FULL" } else { "HDRS" }));
    }
    if let Some(envid) = &e.envid {
        dsn.push(format!("ENVID={}", escape(envid)));
    }
    if !dsn.is_empty() {
        let _ = writeln!(out, "dsn: {}", dsn.join(" "));
    }
    for r in &e.recipients {
        let status = match r.status {
            RecipientStatus::Pending => "pending",
            RecipientStatus::Delivered => "delivered",
            RecipientStatus::Failed => "failed",
        };
        let _ = write!(out, "recipient: <{}> {status}", r.address);
        if let Some(reply) = &r.last_reply {
            let _ = write!(out, " ({reply})");
        }
        if let Some(host) = &r.remote_host {
            let _ = write!(out, " [{host}]");
        }
        out.push('\n');
        if let Some(hop) = &r.next_hop {
            let _ = writeln!(out, "  next hop: {hop}");
        }
        let mut dsn = Vec::new();
        if let Some(n) = &r.notify {
            dsn.push(format!("NOTIFY={}", escape(n)));
        }
        if let Some(o) = &r.orcpt {
            dsn.push(format!("ORCPT={}", escape(o)));
        }
        if !dsn.is_empty() {
            let _ = writeln!(out, "  dsn: {}", dsn.join(" "));
        }
    }
    out
}

/// Parses a queue id given on the command line.
pub fn parse_id(s: &str) -> StoreResult<QueueId> {
    s.trim()
        .parse()
        .map_err(|_| StoreError::Invalid(format!("{s:?} is not a queue id")))
}

/// The queue entry meant by `s` on the command line: its queue id
/// (`queue_id=` in the log, the id of the `250`, `0663A0B1C2D3E40001`),
/// or its number (`queue list`'s first column). `NotFound` when no queued
/// message has that queue id.
pub async fn resolve_id(store: &dyn QueueStore, s: &str) -> StoreResult<QueueId> {
    let s = s.trim();
    let upper = s.to_ascii_uppercase();
    if mailgate_store::queue::is_message_id(&upper) {
        return store
            .queue_find(&upper)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("queued message {upper}")));
    }
    parse_id(s)
}

/// `queue show ID`: the entry and its body, or `NotFound`.
pub async fn show(store: &dyn QueueStore, id: QueueId) -> StoreResult<(QueueEntry, Vec<u8>)> {
    let entry = store
        .queue_entry(id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("queue entry {id}")))?;
    let body = store.queue_body(id).await?.unwrap_or_default();
    Ok((entry, body))
}

/// `queue hold ID` / `queue release ID`.
pub async fn set_held(store: &dyn QueueStore, id: QueueId, held: bool) -> StoreResult<()> {
    if store.queue_set_held(id, held).await? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("queue entry {id}")))
    }
}

/// `queue delete ID` (no bounce is sent).
pub async fn delete(store: &dyn QueueStore, id: QueueId) -> StoreResult<()> {
    if store.queue_delete(id).await? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("queue entry {id}")))
    }
}

/// `queue flush [ID]`: due now; the running server picks them up at its
/// next poll (or at once through [`crate::Relay::wake`] in-process).
pub async fn flush(store: &dyn QueueStore, id: Option<QueueId>, now: i64) -> StoreResult<usize> {
    store.queue_flush(id, now).await
}

/// Which messages `queue delete` removes besides a single id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every message, held or not (`postsuper -d ALL`).
    All,
    /// The messages matching every criterion given.
    Matching {
        /// The envelope sender, compared without regard to case; `<>` (or
        /// an empty string) selects bounces.
        from: Option<String>,
        /// A recipient domain (no subdomains), without regard to case: a
        /// message matches when every recipient still pending is in it.
        to_domain: Option<String>,
    },
}

/// What [`Selector::check`] says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    /// Delete it.
    Yes,
    /// Not selected.
    No,
    /// The sender matches and some pending recipients are in the domain,
    /// but others are not: left alone (deleting it would drop those).
    Mixed,
}

fn normal_domain(d: &str) -> String {
    d.trim()
        .trim_start_matches('@')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

impl Selector {
    /// Whether `e` is selected.
    pub fn check(&self, e: &QueueEntry) -> Selected {
        let Selector::Matching { from, to_domain } = self else {
            return Selected::Yes;
        };
        if let Some(from) = from {
            let want = from.trim();
            let want = if want == "<>" { "" } else { want };
            let want = want
                .strip_prefix('<')
                .and_then(|w| w.strip_suffix('>'))
                .unwrap_or(want);
            if !e.sender.eq_ignore_ascii_case(want) {
                return Selected::No;
            }
        }
        if let Some(domain) = to_domain {
            let domain = normal_domain(domain);
            let (mut inside, mut outside) = (0, 0);
            for r in e.pending() {
                if normal_domain(&r.domain) == domain {
                    inside += 1;
                } else {
                    outside += 1;
                }
            }
            return match (inside, outside) {
                (0, _) => Selected::No,
                (_, 0) => Selected::Yes,
                _ => Selected::Mixed,
            };
        }
        Selected::Yes
    }
}

/// What `queue delete --all|--from|--to-domain` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteReport {
    /// The messages removed.
    pub deleted: Vec<QueueId>,
    /// Selected by sender but with pending recipients outside the domain
    /// as well: not removed.
    pub mixed: Vec<QueueId>,
}

/// Deletes every message in the queue when called that `selector` picks,
/// without any bounce. A message that finished meanwhile is not counted.
pub async fn delete_matching(
    store: &dyn QueueStore,
    selector: &Selector,
) -> StoreResult<DeleteReport> {
    let mut report = DeleteReport::default();
    for e in store.queue_list().await? {
        match selector.check(&e) {
            Selected::Yes => {
                if store.queue_delete(e.id).await? {
                    report.deleted.push(e.id);
                }
            }
            Selected::Mixed => report.mixed.push(e.id),
            Selected::No => {}
        }
    }
    Ok(report)
}

/// A time as `queue list --json` gives it (UTC, what jq's `fromdate`
/// reads).
fn json_time(secs: i64) -> serde_json::Value {
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(d) => d.format("%Y-%m-%dT%H:%M:%SZ").to_string().into(),
        None => serde_json::Value::Null,
    }
}

/// One message as a JSON object (`queue list --json`, `queue show --json`);
/// the field names are documented in docs/operations.md and stable.
pub fn entry_json(e: &QueueEntry) -> serde_json::Value {
    let recipients: Vec<serde_json::Value> = e
        .recipients
        .iter()
        .map(|r| {
            serde_json::json!({
                "address": r.address,
                "domain": r.domain,
                "status": r.status.as_str(),
                "last_reply": r.last_reply,
                "remote_host": r.remote_host,
                "next_hop": r.next_hop,
                "updated": r.updated.map(json_time),
                "orcpt": r.orcpt,
                "notify": r.notify,
            })
        })
        .collect();
    serde_json::json!({
        "id": e.id,
        "queue_id": e.msg_id,
        "sender": e.sender,
        "size": e.size,
        "arrived": json_time(e.created),
        "next_attempt": json_time(e.next_attempt),
        "attempts": e.attempts,
        "held": e.held,
        "delay_warning_sent": e.warned,
        "envid": e.envid,
        "ret": e.ret_full.map(|full| if full { "FULL" } else { "HDRS" }),
        "smtputf8": e.smtputf8,
        "eight_bit": e.eight_bit,
        "recipients": recipients,
    })
}

/// `queue list --json`: one document, `{"count", "total_size", "messages"}`.
pub fn list_json(entries: &[QueueEntry]) -> serde_json::Value {
    serde_json::json!({
        "count": entries.len(),
        "total_size": entries.iter().map(|e| e.size).sum::<u64>(),
        "messages": entries.iter().map(entry_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_store::queue::QueuedRecipient;

    #[test]
    fn listing_looks_like_mailq() {
        assert_eq!(format_list(&[]), "Mail queue is empty\n");
        let e = QueueEntry {
            id: 12,
            msg_id: "12".into(),
            sender: String::new(),
            size: 2048,
            created: 0,
            next_attempt: 60,
            attempts: 1,
            held: true,
            warned: false,
            envid: None,
            ret_full: None,
            smtputf8: false,
            eight_bit: false,
            recipients: vec![QueuedRecipient {
                index: 0,
                address: "bob@b.test".into(),
                domain: "b.test".into(),
                orcpt: None,
                notify: None,
                status: RecipientStatus::Pending,
                last_reply: Some("451 4.4.1 mx.b.test: connection refused".into()),
                remote_host: None,
                updated: None,
                next_hop: Some("[127.0.0.3]:2525".into()),
                local: None,
            }],
        };
        let out = format_list(std::slice::from_ref(&e));
        assert!(out.contains("12!"), "held mark: {out}");
        assert!(!out.contains("queue_id="), "none for an old message: {out}");
        let new = QueueEntry {
            msg_id: "0663A0B1C2D3E40001".into(),
            ..e.clone()
        };
        let listed = format_list(std::slice::from_ref(&new));
        assert!(
            listed.contains("  <>  queue_id=0663A0B1C2D3E40001\n"),
            "{listed}"
        );
        assert!(format_entry(&new).contains("queue id: 0663A0B1C2D3E40001\n"));
        assert!(out.contains("<>"));
        assert!(out.contains("(451 4.4.1 mx.b.test: connection refused)"));
        assert!(out.ends_with("-- 2 Kbytes in 1 Request.\n"));
        let show = format_entry(&e);
        assert!(show.contains("recipient: <bob@b.test> pending (451"));
        assert!(show.contains("\n  next hop: [127.0.0.3]:2525\n"), "{show}");
        assert!(!show.contains("dsn:"), "no DSN parameters given: {show}");
        let mut with_dsn = e.clone();
        with_dsn.envid = Some("QQ+2B1\r\nx".into());
        with_dsn.ret_full = Some(true);
        with_dsn.recipients[0].notify = Some("SUCCESS,DELAY".into());
        with_dsn.recipients[0].orcpt = Some("rfc822;bob@b.test".into());
        let show = format_entry(&with_dsn);
        assert!(
            show.contains("\ndsn: RET=FULL ENVID=QQ+2B1\\x0d\\x0ax\n"),
            "{show}"
        );
        assert!(
            show.contains("\n  dsn: NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob@b.test\n"),
            "{show}"
        );
        assert!(out.contains("bob@b.test via [127.0.0.3]:2525"), "{out}");
        assert_eq!(parse_id(" 12 ").unwrap(), 12);
        assert!(parse_id("x").is_err());
    }

    fn entry(id: QueueId, sender: &str, rcpts: &[(&str, RecipientStatus)]) -> QueueEntry {
        QueueEntry {
            id,
            msg_id: id.to_string(),
            sender: sender.into(),
            size: 10,
            created: 0,
            next_attempt: 0,
            attempts: 0,
            held: false,
            warned: false,
            envid: None,
            ret_full: Some(false),
            smtputf8: false,
            eight_bit: false,
            recipients: rcpts
                .iter()
                .enumerate()
                .map(|(i, (a, status))| QueuedRecipient {
                    index: i as u32,
                    address: a.to_string(),
                    domain: a.rsplit('@').next().unwrap().to_ascii_lowercase(),
                    orcpt: None,
                    notify: None,
                    status: *status,
                    last_reply: None,
                    remote_host: None,
                    updated: None,
                    next_hop: None,
                    local: None,
                })
                .collect(),
        }
    }

    #[test]
    fn selectors_match_sender_and_domain() {
        use RecipientStatus::*;
        let to = |d: &str| Selector::Matching {
            from: None,
            to_domain: Some(d.into()),
        };
        let from = |f: &str| Selector::Matching {
            from: Some(f.into()),
            to_domain: None,
        };
        let one = entry(1, "Alice@A.test", &[("bob@B.test", Pending)]);
        let bounce = entry(2, "", &[("x@c.test", Pending)]);
        let mixed = entry(
            3,
            "alice@a.test",
            &[("bob@b.test", Pending), ("x@c.test", Pending)],
        );
        let done_elsewhere = entry(
            4,
            "z@a.test",
            &[("bob@b.test", Pending), ("x@c.test", Delivered)],
        );
        assert_eq!(Selector::All.check(&mixed), Selected::Yes);
        assert_eq!(to("b.test").check(&one), Selected::Yes);
        assert_eq!(to("@B.TEST.").check(&one), Selected::Yes);
        assert_eq!(to("test").check(&one), Selected::No);
        assert_eq!(to("sub.b.test").check(&one), Selected::No);
        assert_eq!(to("b.test").check(&mixed), Selected::Mixed);
        assert_eq!(to("b.test").check(&done_elsewhere), Selected::Yes);
        assert_eq!(to("c.test").check(&done_elsewhere), Selected::No);
        assert_eq!(from("alice@a.test").check(&one), Selected::Yes);
        assert_eq!(from("<alice@a.test>").check(&one), Selected::Yes);
        assert_eq!(from("alice@a.test").check(&bounce), Selected::No);
        assert_eq!(from("<>").check(&bounce), Selected::Yes);
        assert_eq!(from("").check(&bounce), Selected::Yes);
        assert_eq!(from("<>").check(&one), Selected::No);
        let both = Selector::Matching {
            from: Some("alice@a.test".into()),
            to_domain: Some("c.test".into()),
        };
        assert_eq!(both.check(&one), Selected::No);
        assert_eq!(both.check(&mixed), Selected::Mixed);
        assert_eq!(both.check(&bounce), Selected::No);
    }

    #[test]
    fn json_has_the_documented_fields() {
        let e = entry(7, "", &[("bob@b.test", RecipientStatus::Failed)]);
        let v = list_json(std::slice::from_ref(&e));
        assert_eq!(v["count"], 1);
        assert_eq!(v["total_size"], 10);
        let m = &v["messages"][0];
        assert_eq!(m["id"], 7);
        assert_eq!(m["sender"], "");
        assert_eq!(m["arrived"], "1970-01-01T00:00:00Z");
        assert_eq!(m["ret"], "HDRS");
        assert_eq!(m["held"], false);
        assert_eq!(m["recipients"][0]["status"], "failed");
        assert_eq!(m["recipients"][0]["last_reply"], serde_json::Value::Null);
    }
}
