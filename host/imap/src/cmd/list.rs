//! LIST (RFC 9051 §6.3.9 with RFC 5258 LIST-EXTENDED, RFC 5819
//! LIST-STATUS, RFC 6154 SPECIAL-USE) and LSUB (RFC 3501 §6.3.9).

use std::collections::{BTreeMap, BTreeSet};

use mailgate_imap_proto::ListArgs;
use mailgate_store::MailboxInfo;

use super::{account, mailbox_name, status::write_status, write_mailbox};
use crate::names::{self, SEPARATOR};
use crate::session::{CmdError, CmdResult, Done, Session};

fn has_children(all: &BTreeMap<&str, &MailboxInfo>, name: &str) -> bool {
    let prefix = format!("{name}{SEPARATOR}");
    all.range(prefix.as_str()..)
        .next()
        .is_some_and(|(n, _)| n.starts_with(&prefix))
}

/// The superiors of a name: `a` and `a/b` for `a/b/c`.
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(SEPARATOR).map(move |(i, _)| &name[..i])
}

fn decode_pattern(s: &Session, raw: &[u8]) -> Result<String, CmdError> {
    // Matching costs pattern length times name length per mailbox: a
    // pattern longer than any name could be is refused.
    if raw.len() > 2 * names::MAX_NAME {
        return Err(CmdError::Bad("Mailbox pattern too long".into()));
    }
    // A pattern is decoded like a name (wildcards are ASCII).
    mailbox_name(s, raw)
}

/// `list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat
/// [SP list-return-opts]`. Subscriptions are names that may outlive
/// their mailbox: `LIST (SUBSCRIBED)` shows such a name `\NonExistent`
/// (RFC 5258 §3.4), and `RECURSIVEMATCH` adds the superiors of
/// subscribed names that the pattern does not reach, with `CHILDINFO`
/// (§3.5). A superior that is no mailbox of an existing one is answered
/// (`\NonExistent \HasChildren`) where a pattern ends in `%`.
pub(crate) async fn list(s: &mut Session, args: ListArgs, out: &mut Vec<u8>) -> CmdResult {
    let reference = if args.reference.is_empty() {
        String::new()
    } else {
        decode_pattern(s, &args.reference)?
    };
    let patterns: Vec<String> = args
        .patterns
        .iter()
        .map(|p| {
            if p.is_empty() {
                Ok(String::new())
            } else {
                decode_pattern(s, p)
            }
        })
        .collect::<Result<_, _>>()?;
    // RFC 9051 §6.3.9: "An empty ("" string) mailbox name argument is a
    // special request to return the hierarchy delimiter and the root
    // name of the name given in the reference."
    if patterns.len() == 1 && patterns[0].is_empty() {
        out.extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
        return Ok(Done::ok("LIST completed"));
    }
    for opt in &args.select {
        if !matches!(
            opt.as_str(),
            "SUBSCRIBED" | "SPECIAL-USE" | "REMOTE" | "RECURSIVEMATCH"
        ) {
            return Err(CmdError::Bad(format!("Unknown selection option {opt}")));
        }
    }
    let selected = |o: &str| args.select.iter().any(|x| x == o);
    let only_subscribed = selected("SUBSCRIBED");
    let only_special = selected("SPECIAL-USE");
    let recursive = selected("RECURSIVEMATCH");
    // RFC 5258 §3.1: "RECURSIVEMATCH ... MUST NOT occur as the only
    // selection option (or only with REMOTE)".
    if recursive && !(only_subscribed || only_special) {
        return Err(CmdError::Bad(
            "RECURSIVEMATCH needs another selection option".into(),
        ));
    }
    let show_subscribed = only_subscribed || args.ret.iter().any(|o| o == "SUBSCRIBED");
    // A name that is no mailbox: `\NonExistent` (RFC 5258 §3.4, RFC 9051
    // §7.3.1) for clients that know it, `\Noselect` (RFC 3501) for others.
    let nonexistent = if args.extended || s.rev2 {
        "\\NonExistent"
    } else {
        "\\Noselect"
    };
    let full: Vec<String> = patterns
        .iter()
        .map(|p| names::full_pattern(&reference, p))
        .collect();
    let matches = |name: &str| full.iter().any(|p| names::matches(p, name));
    let account = account(s)?.id;
    let all = s.ctx.store.list_mailboxes(account).await?;
    let existing: BTreeMap<&str, &MailboxInfo> = all.iter().map(|m| (m.name.as_str(), m)).collect();
    let subs: BTreeSet<String> = if show_subscribed {
        s.ctx
            .store
            .subscriptions(account)
            .await?
            .into_iter()
            .collect()
    } else {
        BTreeSet::new()
    };
    // The names that may be answered: with SUBSCRIBED the subscribed ones
    // (and, with RECURSIVEMATCH, their superiors); otherwise the
    // mailboxes and the superiors they imply.
    let mut candidates: BTreeSet<&str> = BTreeSet::new();
    if only_subscribed {
        for n in &subs {
            candidates.insert(n);
            if recursive {
                candidates.extend(ancestors(n));
            }
        }
    } else {
        for n in existing.keys() {
            candidates.insert(n);
            candidates.extend(ancestors(n));
        }
    }
    for name in candidates {
        if !matches(name) {
            continue;
        }
        let info = existing.get(name).copied();
        let subscribed = subs.contains(name);
        // RFC 5258 §3.5 CHILDINFO: a descendant meets the selection
        // criteria but not the pattern.
        let childinfo = recursive
            && only_subscribed
            && subs
                .range::<str, _>((std::ops::Bound::Excluded(name), std::ops::Bound::Unbounded))
                .take_while(|d| d.starts_with(name))
                .any(|d| d.as_bytes().get(name.len()) == Some(&(SEPARATOR as u8)) && !matches(d));
        if only_subscribed {
            if !subscribed && !childinfo {
                continue;
            }
        } else if info.is_none() {
            // RFC 9051 §6.3.9: "If the "%" wildcard is the last character
            // of a mailbox name argument, matching levels of hierarchy are
            // also returned. If these levels of hierarchy are not also
            // selectable mailboxes, they are returned with the \Noselect
            // mailbox name attribute."
            let by_percent = full
                .iter()
                .any(|p| p.ends_with('%') && names::matches(p, name));
            if !by_percent {
                continue;
            }
        }
        if only_special && info.and_then(|m| m.special_use).is_none() {
            continue;
        }
        let children = has_children(&existing, name);
        let mut attrs = Vec::new();
        if info.is_none() {
            attrs.push(nonexistent);
        }
        if children {
            attrs.push("\\HasChildren");
        } else if info.is_some() {
            attrs.push("\\HasNoChildren");
        }
        if show_subscribed && subscribed {
            attrs.push("\\Subscribed");
        }
        if let Some(u) = info.and_then(|m| m.special_use) {
            attrs.push(u.attribute());
        }
        out.extend_from_slice(format!("* LIST ({}) \"/\" ", attrs.join(" ")).as_bytes());
        write_mailbox(out, s, name);
        if childinfo {
            out.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
        }
        out.extend_from_slice(b"\r\n");
        // RFC 5819 §2: no STATUS for a name that is no mailbox.
        if let (Some(items), Some(m)) = (&args.status, info) {
            write_status(s, m, items, out).await?;
        }
    }
    Ok(Done::ok("LIST completed"))
}

/// `lsub = "LSUB" SP mailbox SP list-mailbox`: the subscribed mailboxes
/// that match.
pub(crate) async fn lsub(
    s: &mut Session,
    reference: &[u8],
    pattern: &[u8],
    out: &mut Vec<u8>,
) -> CmdResult {
    let reference = if reference.is_empty() {
        String::new()
    } else {
        decode_pattern(s, reference)?
    };
    let pattern = if pattern.is_empty() {
        String::new()
    } else {
        decode_pattern(s, pattern)?
    };
    let full = names::full_pattern(&reference, &pattern);
    let account = account(s)?.id;
    let all = s.ctx.store.list_mailboxes(account).await?;
    for name in s.ctx.store.subscriptions(account).await? {
        if names::matches(&full, &name) {
            // A subscribed name whose mailbox is gone cannot be selected.
            let attrs = if all.iter().any(|m| m.name == name) {
                ""
            } else {
                "\\Noselect"
            };
            out.extend_from_slice(format!("* LSUB ({attrs}) \"/\" ").as_bytes());
            write_mailbox(out, s, &name);
            out.extend_from_slice(b"\r\n");
        }
    }
    Ok(Done::ok("LSUB completed"))
}
