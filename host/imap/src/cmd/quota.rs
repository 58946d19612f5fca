//! GETQUOTA and GETQUOTAROOT (RFC 9208). Each account has one quota root,
//! `""`, over all its mailboxes, with the STORAGE resource in KiB when
//! the account has a `quota_bytes` limit.

use mailgate_imap_proto::response::write_untagged;

use super::{account, find_mailbox, mailbox_name, write_mailbox};
use crate::session::{CmdError, CmdResult, Done, Session};

/// The account's usage and limit in bytes (limit None: unlimited).
pub(crate) async fn usage(s: &Session) -> Result<(u64, Option<u64>), CmdError> {
    let id = account(s)?.id;
    // Re-read: the limit may have been changed since login.
    let limit = s
        .ctx
        .store
        .account_by_id(id)
        .await?
        .and_then(|a| a.quota_bytes);
    let used = s
        .ctx
        .store
        .list_mailboxes(id)
        .await?
        .iter()
        .map(|m| m.size)
        .sum();
    Ok((used, limit))
}

/// `NO [OVERQUOTA]` if adding `bytes` would pass the limit.
pub(crate) async fn check_room(s: &Session, bytes: u64) -> Result<(), CmdError> {
    if let (used, Some(limit)) = usage(s).await? {
        if used.saturating_add(bytes) > limit {
            return Err(CmdError::no("OVERQUOTA", "Quota exceeded"));
        }
    }
    Ok(())
}

fn write_quota(out: &mut Vec<u8>, used: u64, limit: u64) {
    write_untagged(
        out,
        &format!(
            "QUOTA \"\" (STORAGE {} {})",
            used.div_ceil(1024),
            limit / 1024
        ),
    );
}

/// `getquota = "GETQUOTA" SP quota-root-name`
pub(crate) async fn getquota(s: &mut Session, root: &[u8], out: &mut Vec<u8>) -> CmdResult {
    if !root.is_empty() {
        return Err(CmdError::no("NONEXISTENT", "No such quota root"));
    }
    match usage(s).await? {
        (used, Some(limit)) => write_quota(out, used, limit),
        (_, None) => return Err(CmdError::no("NONEXISTENT", "No quota set")),
    }
    Ok(Done::ok("GETQUOTA completed"))
}

/// `getquotaroot = "GETQUOTAROOT" SP mailbox`
pub(crate) async fn getquotaroot(s: &mut Session, raw: &[u8], out: &mut Vec<u8>) -> CmdResult {
    let name = mailbox_name(s, raw)?;
    let info = find_mailbox(s, &name).await?;
    let (used, limit) = usage(s).await?;
    out.extend_from_slice(b"* QUOTAROOT ");
    write_mailbox(out, s, &info.name);
    if limit.is_some() {
        out.extend_from_slice(b" \"\"");
    }
    out.extend_from_slice(b"\r\n");
    if let Some(limit) = limit {
        write_quota(out, used, limit);
    }
    Ok(Done::ok("GETQUOTAROOT completed"))
}
