//! What `mailgate queue list|show|flush|delete|hold|release` do, as
//! functions over the store, so the CLI only parses arguments and prints.

use std::fmt::Write;

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
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:<19}  {}",
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
    let _ = writeln!(out, "sender: <{}>", e.sender);
    let _ = writeln!(out, "size: {}", e.size);
    let _ = writeln!(out, "arrived: {}", date(e.created));
    let _ = writeln!(out, "attempts: {}", e.attempts);
    let _ = writeln!(out, "next attempt: {}", date(e.next_attempt));
    let _ = writeln!(out, "held: {}", if e.held { "yes" } else { "no" });
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
    }
    out
}

/// Parses a queue id given on the command line.
pub fn parse_id(s: &str) -> StoreResult<QueueId> {
    s.trim()
        .parse()
        .map_err(|_| StoreError::Invalid(format!("{s:?} is not a queue id")))
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

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_store::queue::QueuedRecipient;

    #[test]
    fn listing_looks_like_mailq() {
        assert_eq!(format_list(&[]), "Mail queue is empty\n");
        let e = QueueEntry {
            id: 12,
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
            }],
        };
        let out = format_list(std::slice::from_ref(&e));
        assert!(out.contains("12!"), "held mark: {out}");
        assert!(out.contains("<>"));
        assert!(out.contains("(451 4.4.1 mx.b.test: connection refused)"));
        assert!(out.ends_with("-- 2 Kbytes in 1 Request.\n"));
        let show = format_entry(&e);
        assert!(show.contains("recipient: <bob@b.test> pending (451"));
        assert!(show.contains("\n  next hop: [127.0.0.3]:2525\n"), "{show}");
        assert!(out.contains("bob@b.test via [127.0.0.3]:2525"), "{out}");
        assert_eq!(parse_id(" 12 ").unwrap(), 12);
        assert!(parse_id("x").is_err());
    }
}
