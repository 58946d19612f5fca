//! STORE (RFC 9051 §6.4.6, with RFC 7162 §3.1.3 UNCHANGEDSINCE).

use mailgate_imap_proto::{format_set, SequenceSet, StoreMode};
use mailgate_store::{FlagChange, Uid};

use super::flag_list;
use crate::session::{CmdError, CmdResult, Done, Session};

/// `store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags`.
/// Untagged FETCH FLAGS for each message unless `.SILENT` (RFC 9051
/// §6.4.6). With UNCHANGEDSINCE, messages changed after that MODSEQ are
/// left alone and listed in `[MODIFIED]`; the store checks and changes
/// in one transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn store(
    s: &mut Session,
    uid: bool,
    set: &SequenceSet,
    unchanged_since: Option<u64>,
    mode: StoreMode,
    silent: bool,
    flags: &[String],
    out: &mut Vec<u8>,
) -> CmdResult {
    if unchanged_since.is_some() {
        s.condstore = true;
    }
    if flags.iter().any(|f| f.eq_ignore_ascii_case("\\Recent")) {
        return Err(CmdError::Bad("\\Recent cannot be stored".into()));
    }
    let condstore = s.condstore;
    let store = std::sync::Arc::clone(&s.ctx.store);
    let sel = s
        .selected
        .as_mut()
        .ok_or_else(|| CmdError::Server("no selected mailbox".into()))?;
    if sel.read_only {
        return Err(CmdError::no("READ-ONLY", "Mailbox is read-only"));
    }
    let indexes = sel.resolve(set, uid)?;
    let targets: Vec<Uid> = indexes.iter().map(|&i| sel.msgs.at(i).uid).collect();
    let flags = flags.to_vec();
    let change = match mode {
        StoreMode::Replace => FlagChange::Set(flags),
        StoreMode::Add => FlagChange::Add(flags),
        StoreMode::Remove => FlagChange::Remove(flags),
    };
    // With UNCHANGEDSINCE the MODSEQ check is made by the store in the
    // transaction that changes the flags (RFC 7162 §3.1.3), against the
    // current MODSEQ, not the one this session last saw.
    let (updated, failed) = match (targets.is_empty(), unchanged_since) {
        (true, _) => (Vec::new(), Vec::new()),
        (false, None) => (
            store.store_flags(sel.id, &targets, change).await?,
            Vec::new(),
        ),
        (false, Some(limit)) => {
            store
                .store_flags_unchanged_since(sel.id, &targets, change, limit)
                .await?
        }
    };
    let modified: Vec<u32> = failed
        .iter()
        .filter_map(|&u| {
            if uid {
                Some(u.get())
            } else {
                sel.index_of(u).map(|i| i as u32 + 1)
            }
        })
        .collect();
    // The client learns these entries now: its version takes them.
    sel.note_own(&updated);
    // RFC 9051 §7.3.5: a new keyword is announced before it is used.
    sel.announce_keywords(out);
    for meta in updated {
        let Some(i) = sel.index_of(meta.uid) else {
            continue;
        };
        if !silent {
            let mut line = format!("* {} FETCH (FLAGS ({})", i + 1, flag_list(&meta.flags));
            if uid {
                line.push_str(&format!(" UID {}", meta.uid));
            }
            if condstore {
                line.push_str(&format!(" MODSEQ ({})", meta.modseq));
            }
            line.push_str(")\r\n");
            out.extend_from_slice(line.as_bytes());
        }
    }
    if modified.is_empty() {
        Ok(Done::ok("STORE completed"))
    } else {
        Ok(Done::with_code(
            format!("MODIFIED {}", format_set(modified)),
            "Some messages were modified meanwhile",
        ))
    }
}
