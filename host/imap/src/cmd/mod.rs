//! One handler per command (RFC 9051 §6 and the extensions). Each handler
//! writes its untagged data into `out` and returns the tagged result; the
//! session writes that, after announcing mailbox changes.

pub mod append;
pub mod auth;
pub mod copy;
pub mod create;
pub mod delete;
pub mod expunge;
pub mod fetch;
pub mod list;
pub mod misc;
pub mod quota;
pub mod rename;
pub mod search;
pub mod select;
pub mod sort;
pub mod status;
pub mod store;
pub mod subscribe;
pub mod thread;

use mailgate_imap_proto::response::write_string;
use mailgate_imap_proto::CommandBody;
use mailgate_store::{Account, MailboxInfo};

use crate::names;
use crate::session::{CmdError, CmdResult, Session};

/// Runs a command that needs no special flow (everything but IDLE,
/// AUTHENTICATE and FETCH, which the session handles itself).
pub(crate) async fn dispatch(s: &mut Session, body: CommandBody, out: &mut Vec<u8>) -> CmdResult {
    match body {
        CommandBody::Capability => misc::capability(s, out),
        CommandBody::Noop | CommandBody::Check => misc::noop(),
        CommandBody::Logout => misc::logout(s, out),
        CommandBody::StartTls => misc::starttls(s),
        CommandBody::Id(params) => misc::id(s, params, out),
        CommandBody::Enable(caps) => misc::enable(s, &caps, out),
        CommandBody::Namespace => misc::namespace(s, out),
        CommandBody::Login { user, password } => auth::login(s, &user, &password, out).await,
        CommandBody::Select {
            mailbox,
            read_only,
            condstore,
            qresync,
        } => select::select(s, &mailbox, read_only, condstore, qresync, out).await,
        CommandBody::Close => select::close(s).await,
        CommandBody::Unselect => select::unselect(s),
        CommandBody::Create {
            mailbox,
            special_use,
        } => create::create(s, &mailbox, &special_use).await,
        CommandBody::Delete(mailbox) => delete::delete(s, &mailbox).await,
        CommandBody::Rename { from, to } => rename::rename(s, &from, &to).await,
        CommandBody::Subscribe(m) => subscribe::subscribe(s, &m, true).await,
        CommandBody::Unsubscribe(m) => subscribe::subscribe(s, &m, false).await,
        CommandBody::List(args) => list::list(s, args, out).await,
        CommandBody::Lsub { reference, pattern } => list::lsub(s, &reference, &pattern, out).await,
        CommandBody::Status { mailbox, items } => status::status(s, &mailbox, &items, out).await,
        CommandBody::Append { mailbox, messages } => append::append(s, &mailbox, messages).await,
        CommandBody::Expunge { uids } => expunge::expunge(s, uids.as_ref(), out).await,
        CommandBody::Search { uid, ret, key } => {
            search::search(s, uid, ret.as_deref(), &key, out).await
        }
        CommandBody::Sort { uid, criteria, key } => sort::sort(s, uid, &criteria, &key, out).await,
        CommandBody::Thread {
            uid,
            algorithm,
            key,
        } => thread::thread(s, uid, algorithm, &key, out).await,
        CommandBody::Store {
            uid,
            set,
            unchanged_since,
            mode,
            silent,
            flags,
        } => store::store(s, uid, &set, unchanged_since, mode, silent, &flags, out).await,
        CommandBody::Copy { uid, set, mailbox } => {
            copy::copy(s, uid, &set, &mailbox, false, out).await
        }
        CommandBody::Move { uid, set, mailbox } => {
            copy::copy(s, uid, &set, &mailbox, true, out).await
        }
        CommandBody::Compress(mechanism) => misc::compress(s, &mechanism),
        CommandBody::GetQuota(root) => quota::getquota(s, &root, out).await,
        CommandBody::GetQuotaRoot(m) => quota::getquotaroot(s, &m, out).await,
        CommandBody::Idle | CommandBody::Authenticate { .. } | CommandBody::Fetch { .. } => Err(
            CmdError::Server("IDLE/AUTHENTICATE/FETCH reached dispatch".into()),
        ),
    }
}

/// The logged-in account (the state table guarantees one).
pub(crate) fn account(s: &Session) -> Result<&Account, CmdError> {
    s.account
        .as_ref()
        .ok_or_else(|| CmdError::Server("no account in an authenticated state".into()))
}

/// Decodes a mailbox name from the wire (UTF-8 or modified UTF-7).
pub(crate) fn mailbox_name(s: &Session, raw: &[u8]) -> Result<String, CmdError> {
    names::decode(raw, s.utf8).map_err(CmdError::Bad)
}

/// The account's mailbox with this name, or `NO [NONEXISTENT]`.
pub(crate) async fn find_mailbox(s: &Session, name: &str) -> Result<MailboxInfo, CmdError> {
    let account = account(s)?.id;
    s.ctx
        .store
        .mailbox(account, name)
        .await?
        .ok_or_else(|| CmdError::no("NONEXISTENT", "No such mailbox"))
}

/// Like [`find_mailbox`], without the counters (messages, unseen, size
/// are 0): for SELECT, APPEND and COPY, which do not need them, so that
/// they do not read every message of a large mailbox.
pub(crate) async fn find_mailbox_state(s: &Session, name: &str) -> Result<MailboxInfo, CmdError> {
    let account = account(s)?.id;
    s.ctx
        .store
        .mailbox_state(account, name)
        .await?
        .ok_or_else(|| CmdError::no("NONEXISTENT", "No such mailbox"))
}

/// Writes a mailbox name as a string in the client's encoding.
pub(crate) fn write_mailbox(out: &mut Vec<u8>, s: &Session, name: &str) {
    write_string(out, &names::encode(name, s.utf8), s.utf8);
}

/// The space-separated flags of a message.
pub(crate) fn flag_list(flags: &[String]) -> String {
    flags.join(" ")
}

/// The flags a mailbox shows (RFC 9051 §7.3.5 FLAGS).
pub(crate) const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";
