//! SELECT and EXAMINE (RFC 9051 §6.3.2, §6.3.3, with RFC 7162 CONDSTORE
//! and QRESYNC), CLOSE (§6.4.1) and UNSELECT (§6.4.2, RFC 3691).

use mailgate_imap_proto::response::write_untagged;
use mailgate_imap_proto::{format_set, QresyncParams};
use mailgate_store::Uid;

use super::{find_mailbox_state, flag_list, mailbox_name, write_mailbox, SYSTEM_FLAGS};
use crate::session::{CmdError, CmdResult, Done, Selected, Session, StateKind};

/// `select = "SELECT" SP mailbox [select-params]`; `examine` likewise.
pub(crate) async fn select(
    s: &mut Session,
    raw: &[u8],
    read_only: bool,
    condstore: bool,
    qresync: Option<QresyncParams>,
    out: &mut Vec<u8>,
) -> CmdResult {
    // RFC 9051 §6.3.2: "If the client is permitted to modify the mailbox
    // [...] a failed attempt to select a mailbox leaves no mailbox
    // selected"; and RFC 7162 §3.2.11: the old one is announced CLOSED.
    if s.selected.take().is_some() {
        write_untagged(out, "OK [CLOSED] Previous mailbox closed");
    }
    s.state = StateKind::Authenticated;
    if qresync.is_some() && !s.qresync {
        return Err(CmdError::Bad("QRESYNC must be enabled first".into()));
    }
    if condstore {
        // RFC 7162 §3.1.8: the CONDSTORE parameter enables CONDSTORE.
        s.condstore = true;
    }
    let name = mailbox_name(s, raw)?;
    let info = find_mailbox_state(s, &name).await?;
    // The mailbox's shared view (read from the store only if no other
    // session has it selected): no copy of the list is made.
    let view = s.ctx.views.open(s.ctx.store.as_ref(), info.id).await?;
    let msgs = view.snapshot();
    let mut flags = SYSTEM_FLAGS.to_string();
    for k in msgs.keywords().iter() {
        flags.push(' ');
        flags.push_str(k);
    }
    write_untagged(out, &format!("{} EXISTS", msgs.len()));
    if !s.rev2 {
        write_untagged(out, "0 RECENT");
    }
    write_untagged(out, &format!("FLAGS ({flags})"));
    let permanent = if read_only {
        "PERMANENTFLAGS ()".to_string()
    } else {
        format!("PERMANENTFLAGS ({flags} \\*)")
    };
    write_untagged(out, &format!("OK [{permanent}] Flags permitted"));
    write_untagged(
        out,
        &format!("OK [UIDVALIDITY {}] UIDs valid", info.uid_validity),
    );
    write_untagged(
        out,
        &format!("OK [UIDNEXT {}] Predicted next UID", info.uid_next),
    );
    if !s.rev2 {
        if let Some(i) = msgs.iter().position(|m| !m.has_flag("\\Seen")) {
            write_untagged(out, &format!("OK [UNSEEN {}] First unseen", i + 1));
        }
    }
    if s.condstore {
        write_untagged(
            out,
            &format!("OK [HIGHESTMODSEQ {}] Highest", info.highest_modseq),
        );
    }
    if s.rev2 {
        // RFC 9051 §6.3.2: "The server MUST send a LIST response with the
        // mailbox name", so the client learns its canonical form.
        let mut line = b"* LIST () \"/\" ".to_vec();
        write_mailbox(&mut line, s, &info.name);
        line.extend_from_slice(b"\r\n");
        out.extend_from_slice(&line);
    }
    if let Some(q) = qresync.filter(|q| q.uid_validity == info.uid_validity) {
        // RFC 7162 §3.2.5.1: VANISHED (EARLIER) for what was expunged since
        // the client's MODSEQ, then FETCH for what changed.
        let known = |u: Uid| {
            q.known_uids
                .as_ref()
                .is_none_or(|k| k.contains(u.get(), u32::MAX))
        };
        let gone: Vec<u32> = s
            .ctx
            .store
            .expunged_since(info.id, q.modseq)
            .await?
            .into_iter()
            .filter(|&u| known(u))
            .map(Uid::get)
            .collect();
        if !gone.is_empty() {
            write_untagged(out, &format!("VANISHED (EARLIER) {}", format_set(gone)));
        }
        // What changed since the client's MODSEQ, read from the store's
        // MODSEQ index (the view holds no MODSEQ per message); the flags
        // are the view's, the MODSEQ at most the view's HIGHESTMODSEQ.
        let changed = s.ctx.store.changes_since(info.id, q.modseq).await?;
        let cap = msgs.highest_modseq();
        let mut lines: Vec<(usize, u64)> = changed
            .changed
            .iter()
            .filter(|m| known(m.uid))
            .filter_map(|m| Some((msgs.index_of(m.uid)?, m.modseq.min(cap).max(1))))
            .collect();
        lines.sort_unstable();
        for (i, modseq) in lines {
            let m = msgs.at(i);
            write_untagged(
                out,
                &format!(
                    "{} FETCH (UID {} FLAGS ({}) MODSEQ ({}))",
                    i + 1,
                    m.uid,
                    flag_list(m.flags),
                    modseq
                ),
            );
        }
    }
    s.selected = Some(Box::new(Selected::new(
        info.id,
        info.name,
        read_only,
        info.uid_validity,
        view,
        msgs,
    )));
    s.state = StateKind::Selected;
    Ok(if read_only {
        Done::with_code("READ-ONLY", "EXAMINE completed")
    } else {
        Done::with_code("READ-WRITE", "SELECT completed")
    })
}

/// RFC 9051 §6.4.1: CLOSE "permanently removes all messages that have the
/// \Deleted flag set [...] No untagged EXPUNGE responses are sent." Not
/// in a read-only mailbox.
pub(crate) async fn close(s: &mut Session) -> CmdResult {
    if let Some(sel) = s.selected.take() {
        if !sel.read_only {
            // The current flags (another session may have set \Deleted).
            let current = sel.view.refresh(s.ctx.store.as_ref(), true).await?;
            let uids: Vec<Uid> = current
                .iter()
                .filter(|m| m.has_flag("\\Deleted"))
                .map(|m| m.uid)
                .collect();
            if !uids.is_empty() {
                s.ctx.store.expunge(sel.id, &uids).await?;
            }
        }
    }
    s.state = StateKind::Authenticated;
    Ok(Done::ok("CLOSE completed"))
}

/// RFC 3691 §2: UNSELECT leaves the selected state "without expunging".
pub(crate) fn unselect(s: &mut Session) -> CmdResult {
    s.selected = None;
    s.state = StateKind::Authenticated;
    Ok(Done::ok("UNSELECT completed"))
}
