//! The script commands of an authenticated session (RFC 5804 sections
//! 2.5-2.12) as one function over a [`ScriptStore`], so their rules
//! (quota, the active script, names taken or missing) are tested without
//! a socket or a database. The session (`mailgate-managesieve`) calls [`handle`] and
//! writes the reply; a store failure's details go to its log only.

use crate::command::{Command, ScriptName};
use crate::response::{self, Code, Status};

/// A store failure (our fault): the client hears `NO (TRYLATER)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailure(pub String);

/// One user's scripts. Names are compared exactly (RFC 5804 section 1.6:
/// names are UTF-8, compared octet by octet).
pub trait ScriptStore {
    /// Every script's name, and whether it is the active one.
    fn list(&self) -> Result<Vec<(String, bool)>, StoreFailure>;
    /// A script's text.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreFailure>;
    /// Writes a script, replacing one of the same name (the active one stays active).
    fn put(&mut self, name: &str, script: &[u8]) -> Result<(), StoreFailure>;
    /// Deletes a script that is not active.
    fn delete(&mut self, name: &str) -> Result<(), StoreFailure>;
    /// Renames a script (the active one stays active).
    fn rename(&mut self, old: &str, new: &str) -> Result<(), StoreFailure>;
    /// Makes a script active, or none with `None`.
    fn set_active(&mut self, name: Option<&str>) -> Result<(), StoreFailure>;
}

/// The bounds on one user's scripts (`[sieve] max_scripts`, `max_script_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Most scripts per user.
    pub max_scripts: usize,
    /// Largest script in bytes.
    pub max_script_size: u64,
}

/// A reply, and for the log what went wrong on our side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The bytes for the client.
    pub reply: Vec<u8>,
    /// A store failure, for the log (never sent to the client).
    pub failure: Option<StoreFailure>,
}

fn ok(reply: Vec<u8>) -> Handled {
    Handled {
        reply,
        failure: None,
    }
}

fn no(code: Option<Code>, text: &str) -> Handled {
    ok(response::reply(Status::No, code.as_ref(), text))
}

fn done() -> Handled {
    ok(response::reply(Status::Ok, None, ""))
}

/// Runs one script command. `check` compiles a script and returns the
/// error text (with line and column) when it does not compile. Other
/// commands answer `NO`.
pub fn handle(
    cmd: &Command,
    store: &mut dyn ScriptStore,
    quota: &Quota,
    check: &dyn Fn(&[u8]) -> Result<(), String>,
) -> Handled {
    match run(cmd, store, quota, check) {
        Ok(h) => h,
        Err(f) => Handled {
            reply: response::reply(
                Status::No,
                Some(&Code::TryLater),
                "Internal error, try again later",
            ),
            failure: Some(f),
        },
    }
}

fn exists(store: &dyn ScriptStore, name: &ScriptName) -> Result<Option<bool>, StoreFailure> {
    Ok(store
        .list()?
        .into_iter()
        .find(|(n, _)| n == name.as_str())
        .map(|(_, active)| active))
}

/// Room for `size` bytes under `name`: `Err` is the refusal.
fn room(
    store: &dyn ScriptStore,
    quota: &Quota,
    name: &ScriptName,
    size: u64,
) -> Result<Result<(), Handled>, StoreFailure> {
    if size > quota.max_script_size {
        return Ok(Err(no(
            Some(Code::QuotaMaxSize),
            &format!("Scripts are limited to {} bytes", quota.max_script_size),
        )));
    }
    let list = store.list()?;
    if !list.iter().any(|(n, _)| n == name.as_str()) && list.len() >= quota.max_scripts {
        return Ok(Err(no(
            Some(Code::QuotaMaxScripts),
            &format!("At most {} scripts", quota.max_scripts),
        )));
    }
    Ok(Ok(()))
}

fn run(
    cmd: &Command,
    store: &mut dyn ScriptStore,
    quota: &Quota,
    check: &dyn Fn(&[u8]) -> Result<(), String>,
) -> Result<Handled, StoreFailure> {
    Ok(match cmd {
        // 2.5: would a script of this size fit?
        Command::HaveSpace { name, size } => match room(store, quota, name, *size)? {
            Ok(()) => done(),
            Err(h) => h,
        },
        // 2.6: stored only if it compiles.
        Command::PutScript { name, script } => {
            if let Err(h) = room(store, quota, name, script.len() as u64)? {
                return Ok(h);
            }
            if let Err(e) = check(script) {
                return Ok(no(None, &e));
            }
            store.put(name.as_str(), script)?;
            done()
        }
        // 2.12
        Command::CheckScript { script } => {
            if script.len() as u64 > quota.max_script_size {
                return Ok(no(
                    Some(Code::QuotaMaxSize),
                    &format!("Scripts are limited to {} bytes", quota.max_script_size),
                ));
            }
            match check(script) {
                Ok(()) => done(),
                Err(e) => no(None, &e),
            }
        }
        // 2.7
        Command::ListScripts => {
            let list = store.list()?;
            ok(response::list_scripts(
                list.iter().map(|(n, a)| (n.as_str(), *a)),
            ))
        }
        // 2.8: "" deactivates.
        Command::SetActive { name: None } => {
            store.set_active(None)?;
            done()
        }
        Command::SetActive { name: Some(name) } => match exists(store, name)? {
            None => no(Some(Code::NonExistent), "There is no script by that name"),
            Some(_) => {
                store.set_active(Some(name.as_str()))?;
                done()
            }
        },
        // 2.9
        Command::GetScript { name } => match store.get(name.as_str())? {
            None => no(Some(Code::NonExistent), "There is no script by that name"),
            Some(s) => ok(response::get_script(&s)),
        },
        // 2.10: never the active script.
        Command::DeleteScript { name } => match exists(store, name)? {
            None => no(Some(Code::NonExistent), "There is no script by that name"),
            Some(true) => no(Some(Code::Active), "The active script cannot be deleted"),
            Some(false) => {
                store.delete(name.as_str())?;
                done()
            }
        },
        // 2.11.1
        Command::RenameScript { old, new } => {
            if exists(store, old)?.is_none() {
                no(Some(Code::NonExistent), "There is no script by that name")
            } else if old != new && exists(store, new)?.is_some() {
                no(Some(Code::AlreadyExists), "A script by the new name exists")
            } else {
                store.rename(old.as_str(), new.as_str())?;
                done()
            }
        }
        _ => no(None, "Not a script command"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Memory {
        scripts: Vec<(String, Vec<u8>)>,
        active: Option<String>,
        broken: bool,
    }

    impl ScriptStore for Memory {
        fn list(&self) -> Result<Vec<(String, bool)>, StoreFailure> {
            if self.broken {
                return Err(StoreFailure("disk on fire".into()));
            }
            Ok(self
                .scripts
                .iter()
                .map(|(n, _)| (n.clone(), self.active.as_deref() == Some(n)))
                .collect())
        }
        fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreFailure> {
            Ok(self
                .scripts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.clone()))
        }
        fn put(&mut self, name: &str, script: &[u8]) -> Result<(), StoreFailure> {
            self.scripts.retain(|(n, _)| n != name);
            self.scripts.push((name.into(), script.to_vec()));
            Ok(())
        }
        fn delete(&mut self, name: &str) -> Result<(), StoreFailure> {
            self.scripts.retain(|(n, _)| n != name);
            Ok(())
        }
        fn rename(&mut self, old: &str, new: &str) -> Result<(), StoreFailure> {
            for (n, _) in &mut self.scripts {
                if n == old {
                    *n = new.into();
                }
            }
            if self.active.as_deref() == Some(old) {
                self.active = Some(new.into());
            }
            Ok(())
        }
        fn set_active(&mut self, name: Option<&str>) -> Result<(), StoreFailure> {
            self.active = name.map(str::to_string);
            Ok(())
        }
    }

    const QUOTA: Quota = Quota {
        max_scripts: 2,
        max_script_size: 100,
    };

    fn check(s: &[u8]) -> Result<(), String> {
        if s.starts_with(b"keep") {
            Ok(())
        } else {
            Err("line 1, column 1: unknown command".into())
        }
    }

    fn name(s: &str) -> ScriptName {
        ScriptName::new(s).unwrap()
    }

    fn say(store: &mut Memory, cmd: Command) -> String {
        let h = handle(&cmd, store, &QUOTA, &check);
        String::from_utf8(h.reply).unwrap()
    }

    #[test]
    fn a_users_scripts() {
        let mut m = Memory::default();
        let put = |n: &str, s: &[u8]| Command::PutScript {
            name: name(n),
            script: s.to_vec(),
        };
        assert_eq!(say(&mut m, put("a", b"keep;")), "OK\r\n");
        assert_eq!(
            say(&mut m, put("bad", b"frob;")),
            "NO \"line 1, column 1: unknown command\"\r\n"
        );
        assert_eq!(
            say(&mut m, put("b", &[b'k'; 101])),
            "NO (QUOTA/MAXSIZE) \"Scripts are limited to 100 bytes\"\r\n"
        );
        assert_eq!(say(&mut m, put("b", b"keep; #b")), "OK\r\n");
        assert_eq!(
            say(&mut m, put("c", b"keep;")),
            "NO (QUOTA/MAXSCRIPTS) \"At most 2 scripts\"\r\n"
        );
        assert_eq!(
            say(&mut m, put("a", b"keep; #2")),
            "OK\r\n",
            "replacing needs no new room"
        );
        assert_eq!(
            say(
                &mut m,
                Command::HaveSpace {
                    name: name("c"),
                    size: 1
                }
            ),
            "NO (QUOTA/MAXSCRIPTS) \"At most 2 scripts\"\r\n"
        );
        assert_eq!(
            say(
                &mut m,
                Command::HaveSpace {
                    name: name("a"),
                    size: 100
                }
            ),
            "OK\r\n"
        );
        assert_eq!(
            say(
                &mut m,
                Command::SetActive {
                    name: Some(name("zz"))
                }
            ),
            "NO (NONEXISTENT) \"There is no script by that name\"\r\n"
        );
        assert_eq!(
            say(
                &mut m,
                Command::SetActive {
                    name: Some(name("a"))
                }
            ),
            "OK\r\n"
        );
        assert_eq!(
            say(&mut m, Command::ListScripts),
            "\"b\"\r\n\"a\" ACTIVE\r\nOK\r\n"
        );
        assert_eq!(
            say(&mut m, Command::DeleteScript { name: name("a") }),
            "NO (ACTIVE) \"The active script cannot be deleted\"\r\n"
        );
        assert_eq!(
            say(
                &mut m,
                Command::RenameScript {
                    old: name("a"),
                    new: name("b")
                }
            ),
            "NO (ALREADYEXISTS) \"A script by the new name exists\"\r\n"
        );
        assert_eq!(
            say(
                &mut m,
                Command::RenameScript {
                    old: name("a"),
                    new: name("main")
                }
            ),
            "OK\r\n"
        );
        assert_eq!(
            say(&mut m, Command::GetScript { name: name("main") }),
            "{8}\r\nkeep; #2\r\nOK\r\n"
        );
        assert_eq!(
            say(&mut m, Command::ListScripts),
            "\"b\"\r\n\"main\" ACTIVE\r\nOK\r\n"
        );
        assert_eq!(say(&mut m, Command::SetActive { name: None }), "OK\r\n");
        assert_eq!(
            say(&mut m, Command::DeleteScript { name: name("main") }),
            "OK\r\n"
        );
        assert_eq!(
            say(&mut m, Command::GetScript { name: name("main") }),
            "NO (NONEXISTENT) \"There is no script by that name\"\r\n"
        );
        assert_eq!(
            say(
                &mut m,
                Command::CheckScript {
                    script: b"frob".to_vec()
                }
            ),
            "NO \"line 1, column 1: unknown command\"\r\n"
        );
        assert_eq!(
            say(
                &mut m,
                Command::CheckScript {
                    script: b"keep;".to_vec()
                }
            ),
            "OK\r\n"
        );
    }

    #[test]
    fn store_failures_stay_in_the_log() {
        let mut m = Memory {
            broken: true,
            ..Memory::default()
        };
        let h = handle(&Command::ListScripts, &mut m, &QUOTA, &check);
        assert_eq!(
            String::from_utf8(h.reply).unwrap(),
            "NO (TRYLATER) \"Internal error, try again later\"\r\n"
        );
        assert_eq!(h.failure, Some(StoreFailure("disk on fire".into())));
    }
}
