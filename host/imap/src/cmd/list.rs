//! LIST (RFC 9051 §6.3.9 with RFC 5258 LIST-EXTENDED, RFC 5819
//! LIST-STATUS, RFC 6154 SPECIAL-USE) and LSUB (RFC 3501 §6.3.9).

use mailgate_imap_proto::ListArgs;
use mailgate_store::MailboxInfo;

use super::{account, mailbox_name, status::write_status, write_mailbox};
use crate::names::{self, SEPARATOR};
use crate::session::{CmdError, CmdResult, Done, Session};

fn has_children(all: &[MailboxInfo], name: &str) -> bool {
    let prefix = format!("{name}{SEPARATOR}");
    all.iter().any(|m| m.name.starts_with(&prefix))
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
/// [SP list-return-opts]`
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
    let only_subscribed = args.select.iter().any(|o| o == "SUBSCRIBED");
    let only_special = args.select.iter().any(|o| o == "SPECIAL-USE");
    let show_subscribed = only_subscribed || args.ret.iter().any(|o| o == "SUBSCRIBED");
    let full: Vec<String> = patterns
        .iter()
        .map(|p| names::full_pattern(&reference, p))
        .collect();
    let account = account(s)?.id;
    let all = s.ctx.store.list_mailboxes(account).await?;
    for m in &all {
        if !full.iter().any(|p| names::matches(p, &m.name)) {
            continue;
        }
        if (only_subscribed && !m.subscribed) || (only_special && m.special_use.is_none()) {
            continue;
        }
        let mut attrs = vec![if has_children(&all, &m.name) {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        }];
        if show_subscribed && m.subscribed {
            attrs.push("\\Subscribed");
        }
        if let Some(u) = m.special_use {
            attrs.push(u.attribute());
        }
        out.extend_from_slice(format!("* LIST ({}) \"/\" ", attrs.join(" ")).as_bytes());
        write_mailbox(out, s, &m.name);
        out.extend_from_slice(b"\r\n");
        if let Some(items) = &args.status {
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
    for m in s.ctx.store.list_mailboxes(account).await? {
        if m.subscribed && names::matches(&full, &m.name) {
            out.extend_from_slice(b"* LSUB () \"/\" ");
            write_mailbox(out, s, &m.name);
            out.extend_from_slice(b"\r\n");
        }
    }
    Ok(Done::ok("LSUB completed"))
}
