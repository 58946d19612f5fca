//! GETQUOTA and GETQUOTAROOT (RFC 9208). Each account has one quota root,
//! `""`, over all its mailboxes, with the STORAGE resource in KiB when
//! the account has a `quota_bytes` limit.

use mailgate_imap_proto::response::write_untagged;

use super::{account, find_mailbox, mailbox_name, write_mailbox};
use crate::session::{CmdError, CmdResult, Done, Session};

/// The account's usage and limit in bytes (limit None: unlimited).
pub(crate) async fn usage(s: &Session) -> Result<(u64, Option<u64>), CmdError> {
    let id = account(s)?.id;
    let limit = limit(s, id).await?;
    let used = mailgate_store::quota::usage(s.ctx.store.as_ref(), id).await?;
    Ok((used, limit))
}

/// The account's limit, read again: it may have changed since login.
async fn limit(s: &Session, id: mailgate_store::AccountId) -> Result<Option<u64>, CmdError> {
    Ok(s.ctx
        .store
        .account_by_id(id)
        .await?
        .and_then(|a| a.quota_bytes))
}

/// The quota check of APPEND, COPY and MOVE: `NO [OVERQUOTA]` if adding
/// `bytes` would pass the account's limit. Otherwise the account stays
/// locked (the server's `QuotaLocks`, shared with delivery) until the
/// returned guards drop, which the caller does once the messages are
/// stored: the check and the store are one step, as for delivery
/// (`mailgate_store::quota`). An account without a quota takes no lock.
pub(crate) async fn reserve_room(
    s: &Session,
    bytes: u64,
) -> Result<Vec<tokio::sync::OwnedMutexGuard<()>>, CmdError> {
    let id = account(s)?.id;
    let Some(limit) = limit(s, id).await? else {
        return Ok(Vec::new());
    };
    let guards = s.ctx.quota_locks.lock([id]).await;
    match mailgate_store::quota::check(s.ctx.store.as_ref(), id, limit, bytes).await? {
        mailgate_store::quota::QuotaCheck::Fits => Ok(guards),
        mailgate_store::quota::QuotaCheck::Full { .. } => {
            Err(CmdError::no("OVERQUOTA", "Quota exceeded"))
        }
    }
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
