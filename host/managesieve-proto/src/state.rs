//! Which command is legal in which state (RFC 5804 sections 2.1-2.14):
//! one table, tested as a table.

use crate::command::Command;

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Before a successful `AUTHENTICATE`.
    NonAuthenticated {
        /// TLS is on (implicit or after `STARTTLS`).
        tls: bool,
    },
    /// After it.
    Authenticated {
        /// TLS is on.
        tls: bool,
    },
}

/// Why a command is refused in this state (the session answers `NO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Needs a login first.
    NotAuthenticated,
    /// Only before login (AUTHENTICATE, STARTTLS).
    AlreadyAuthenticated,
    /// STARTTLS with TLS already on.
    TlsActive,
}

impl Refusal {
    /// The reply text.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NotAuthenticated => "Log in first",
            Refusal::AlreadyAuthenticated => "Already logged in",
            Refusal::TlsActive => "TLS is already active",
        }
    }
}

/// Whether `cmd` may run in `state`.
pub fn check(state: State, cmd: &Command) -> Result<(), Refusal> {
    let (authed, tls) = match state {
        State::NonAuthenticated { tls } => (false, tls),
        State::Authenticated { tls } => (true, tls),
    };
    match cmd {
        // Any state (2.4 CAPABILITY, 2.3 LOGOUT, 2.13 NOOP).
        Command::Capability | Command::Logout | Command::Noop { .. } => Ok(()),
        // 2.2 STARTTLS: before login, once.
        Command::StartTls if authed => Err(Refusal::AlreadyAuthenticated),
        Command::StartTls if tls => Err(Refusal::TlsActive),
        Command::StartTls => Ok(()),
        // 2.1 AUTHENTICATE: before login.
        Command::Authenticate { .. } if authed => Err(Refusal::AlreadyAuthenticated),
        Command::Authenticate { .. } => Ok(()),
        // 2.5-2.12, 2.14.1: after login.
        Command::HaveSpace { .. }
        | Command::PutScript { .. }
        | Command::CheckScript { .. }
        | Command::ListScripts
        | Command::SetActive { .. }
        | Command::GetScript { .. }
        | Command::DeleteScript { .. }
        | Command::RenameScript { .. }
        | Command::Unauthenticate => {
            if authed {
                Ok(())
            } else {
                Err(Refusal::NotAuthenticated)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ScriptName;

    #[test]
    fn table() {
        let n = || ScriptName::new("s").unwrap();
        let pre = State::NonAuthenticated { tls: false };
        let pre_tls = State::NonAuthenticated { tls: true };
        let post = State::Authenticated { tls: true };
        let all = [
            Command::Capability,
            Command::Logout,
            Command::Noop { tag: None },
            Command::StartTls,
            Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: None,
            },
            Command::HaveSpace { name: n(), size: 1 },
            Command::PutScript {
                name: n(),
                script: vec![],
            },
            Command::CheckScript { script: vec![] },
            Command::ListScripts,
            Command::SetActive { name: None },
            Command::GetScript { name: n() },
            Command::DeleteScript { name: n() },
            Command::RenameScript { old: n(), new: n() },
            Command::Unauthenticate,
        ];
        let expect = |c: &Command, s: State| -> Result<(), Refusal> {
            let any = matches!(
                c,
                Command::Capability | Command::Logout | Command::Noop { .. }
            );
            let before = matches!(c, Command::StartTls | Command::Authenticate { .. });
            match s {
                _ if any => Ok(()),
                State::NonAuthenticated { tls: true } if matches!(c, Command::StartTls) => {
                    Err(Refusal::TlsActive)
                }
                State::NonAuthenticated { .. } if before => Ok(()),
                State::NonAuthenticated { .. } => Err(Refusal::NotAuthenticated),
                State::Authenticated { .. } if before => Err(Refusal::AlreadyAuthenticated),
                State::Authenticated { .. } => Ok(()),
            }
        };
        for c in &all {
            for s in [pre, pre_tls, post] {
                assert_eq!(check(s, c), expect(c, s), "{c:?} in {s:?}");
            }
        }
    }
}
