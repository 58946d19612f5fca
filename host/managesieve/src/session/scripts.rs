//! The script commands of a logged-in session (RFC 5804 §2.5-2.12).
//!
//! Their rules (quota, names taken or missing, the active script) are the
//! protocol crate's `scripts::handle`, which works on a synchronous
//! `ScriptStore`. The store is asynchronous, so each command runs in three
//! steps: read what the rules look at (the account's list, and the text
//! for `GETSCRIPT`), let `handle` decide over that snapshot (a change it
//! asks for is only recorded), then carry the change out on the store.
//! A change another session made in between is caught by the store itself
//! (a name taken, the script now active), whose refusal the client hears.

use mailgate_managesieve_proto::response::{self, Code, Status};
use mailgate_managesieve_proto::scripts::{handle, Quota, ScriptStore, StoreFailure};
use mailgate_managesieve_proto::Command;
use mailgate_store::{Account, StoreError};

use crate::ManageSieveContext;

/// A change `handle` asked for.
#[derive(Debug)]
enum Change {
    Put(String, Vec<u8>),
    Delete(String),
    Rename(String, String),
    SetActive(Option<String>),
}

/// What `handle` sees: the snapshot, and the change it records.
struct Snapshot {
    list: Vec<(String, bool)>,
    text: Option<(String, Option<Vec<u8>>)>,
    change: Option<Change>,
}

impl ScriptStore for Snapshot {
    fn list(&self) -> Result<Vec<(String, bool)>, StoreFailure> {
        Ok(self.list.clone())
    }
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreFailure> {
        match &self.text {
            Some((n, text)) if n == name => Ok(text.clone()),
            _ => Err(StoreFailure(format!("script {name:?} was not read"))),
        }
    }
    fn put(&mut self, name: &str, script: &[u8]) -> Result<(), StoreFailure> {
        self.change = Some(Change::Put(name.into(), script.to_vec()));
        Ok(())
    }
    fn delete(&mut self, name: &str) -> Result<(), StoreFailure> {
        self.change = Some(Change::Delete(name.into()));
        Ok(())
    }
    fn rename(&mut self, old: &str, new: &str) -> Result<(), StoreFailure> {
        self.change = Some(Change::Rename(old.into(), new.into()));
        Ok(())
    }
    fn set_active(&mut self, name: Option<&str>) -> Result<(), StoreFailure> {
        self.change = Some(Change::SetActive(name.map(str::to_string)));
        Ok(())
    }
}

/// Runs one script command for `account`, the reply into `out`.
pub(super) async fn run(
    ctx: &ManageSieveContext,
    account: &Account,
    cmd: &Command,
    out: &mut Vec<u8>,
) {
    let store = &ctx.scripts;
    let snapshot = async {
        let list = store
            .sieve_list(account.id)
            .await?
            .into_iter()
            .map(|i| (i.name, i.active))
            .collect();
        let text = match cmd {
            Command::GetScript { name } => {
                let t = store.sieve_get(account.id, name.as_str()).await?;
                Some((name.as_str().to_string(), t.map(String::into_bytes)))
            }
            _ => None,
        };
        Ok::<_, StoreError>(Snapshot {
            list,
            text,
            change: None,
        })
    };
    let mut snapshot = match snapshot.await {
        Ok(s) => s,
        Err(e) => return store_error(account, e, out),
    };
    let quota = Quota {
        max_scripts: ctx.max_scripts,
        max_script_size: ctx.settings.max_script_size as u64,
    };
    let check = |script: &[u8]| {
        mailgate_sieve::compile_bytes(script, &ctx.settings)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let handled = handle(cmd, &mut snapshot, &quota, &check);
    if let Some(f) = &handled.failure {
        tracing::error!(user = %account.address, error = %f.0, "managesieve: script command failed");
    }
    let Some(change) = snapshot.change else {
        out.extend_from_slice(&handled.reply);
        return;
    };
    let id = account.id;
    let done = match &change {
        Change::Put(name, script) => match std::str::from_utf8(script) {
            // It compiled, so it is UTF-8; kept as a check all the same.
            Ok(text) => store.sieve_put(id, name, text).await.map(|()| true),
            Err(_) => Err(StoreError::Invalid("the script is not UTF-8".into())),
        },
        Change::Delete(name) => store.sieve_delete(id, name).await,
        Change::Rename(old, new) => store.sieve_rename(id, old, new).await,
        Change::SetActive(name) => store.sieve_set_active(id, name.as_deref()).await,
    };
    match done {
        Ok(true) => {
            log_change(account, &change);
            out.extend_from_slice(&handled.reply);
        }
        // Gone since the snapshot (another session deleted it).
        Ok(false) => out.extend_from_slice(&response::reply(
            Status::No,
            Some(&Code::NonExistent),
            "There is no script by that name",
        )),
        Err(e) => store_error(account, e, out),
    }
}

/// One line per change, without the script's text.
fn log_change(account: &Account, change: &Change) {
    let user = &account.address;
    match change {
        Change::Put(name, script) => {
            tracing::info!(user = %user, script = %name, size = script.len(), "managesieve: script stored")
        }
        Change::Delete(name) => {
            tracing::info!(user = %user, script = %name, "managesieve: script deleted")
        }
        Change::Rename(old, new) => {
            tracing::info!(user = %user, script = %old, to = %new, "managesieve: script renamed")
        }
        Change::SetActive(Some(name)) => {
            tracing::info!(user = %user, script = %name, "managesieve: script activated")
        }
        Change::SetActive(None) => tracing::info!(user = %user, "managesieve: scripts deactivated"),
    }
}

/// A store error as the client hears it; our faults go to the log only.
fn store_error(account: &Account, e: StoreError, out: &mut Vec<u8>) {
    let (code, text) = match &e {
        StoreError::Active(_) => (Some(Code::Active), "The active script cannot be deleted"),
        StoreError::Exists(_) => (Some(Code::AlreadyExists), "A script by that name exists"),
        StoreError::NotFound(_) => (Some(Code::NonExistent), "There is no script by that name"),
        StoreError::Invalid(_) => (None, "Invalid script name or script"),
        StoreError::NoSpace => (Some(Code::TryLater), "Not enough disk space"),
        _ => {
            tracing::error!(user = %account.address, error = %e, "managesieve: store failed");
            (Some(Code::TryLater), "Internal error, try again later")
        }
    };
    out.extend_from_slice(&response::reply(Status::No, code.as_ref(), text));
}
