//! Running as an unprivileged user: the top-level `user` and `group` keys.
//!
//! Started as root, `mailgate serve` binds its listeners (ports below 1024
//! need root or `CAP_NET_BIND_SERVICE`), then drops to `user` and `group`
//! before it opens the store, the plugins or any other file, so that every
//! file it creates belongs to that user. The drop goes through libc's
//! `setgroups`, `setgid` and `setuid` (the `nix` crate), which POSIX
//! requires to apply to every thread of the process; glibc and musl both
//! do so. It is verified afterwards: the real, effective and saved ids
//! must all be the new ones and `setuid(0)` must fail.
//!
//! Root without `user` is refused when a listener is on a privileged port
//! (a production set-up: the administrator forgot the key); on other ports
//! (a test or a trial run) it is a warning. `user = "root"` keeps root on
//! purpose, with a warning.
//!
//! Started as another user (systemd's `User=`, a container's `USER`),
//! nothing changes; a `user` naming someone else is an error, since only
//! root may switch.
//!
//! Whoever it runs as, the data directory and the files directly in it
//! must belong to that user: a store file left by a run as root would
//! otherwise fail later, in the middle of a session, with "permission
//! denied". [`check_data_dir`] says which file and the `chown` that fixes
//! it.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

/// Why the server cannot run as the configured user.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// Root, a privileged port, and no `user` key.
    #[error(
        "mailgate was started as root and listens on port {port}, but the configuration names no \
         user to run as once the listeners are bound. Add a line such as `user = \"mailgate\"` \
         (and optionally `group = \"mailgate\"`) at the top of the configuration file, before \
         any [table] (create the account with `useradd --system --home-dir /var/lib/mailgate \
         --shell /usr/sbin/nologin mailgate` and `chown -R mailgate: <data_dir>`), or write \
         `user = \"root\"` to keep running as root on purpose"
    )]
    RootWithoutUser {
        /// The lowest privileged port listened on.
        port: u16,
    },
    /// `user` names no account.
    #[error("user = {0:?}: no such user on this system")]
    UnknownUser(String),
    /// `group` names no group.
    #[error("group = {0:?}: no such group on this system")]
    UnknownGroup(String),
    /// Looking up a user or group failed.
    #[error("cannot look up {what}: {source}")]
    Lookup {
        /// `user "x"` or `group "y"`.
        what: String,
        /// Why.
        source: nix::Error,
    },
    /// Not root, and `user` names someone else.
    #[error(
        "the configuration says user = {user:?} (uid {uid}), but mailgate runs as uid {current}, \
         which cannot switch users: start it as root (it drops to {user:?} after binding) or as \
         {user:?} itself"
    )]
    CannotSwitch {
        /// The configured user.
        user: String,
        /// Its uid.
        uid: u32,
        /// Who we are.
        current: u32,
    },
    /// A system call of the drop failed.
    #[error("cannot drop privileges to user {user:?}: {call} failed: {source}")]
    Drop {
        /// The configured user.
        user: String,
        /// `setgroups`, `setgid` or `setuid`.
        call: &'static str,
        /// Why.
        source: nix::Error,
    },
    /// The ids after the drop are not what was asked for.
    #[error("privilege drop to user {0:?} did not take effect (root could be regained)")]
    NotDropped(String),
    /// The data directory or a file in it belongs to someone else.
    #[error(
        "{path} belongs to uid {owner}, but mailgate runs as uid {uid}{name}: it could not write \
         there. Fix the ownership, e.g. `chown -R {uid}:{gid} {dir}`"
    )]
    DataDirOwner {
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Who we run as.
        uid: u32,
        /// Our group.
        gid: u32,
        /// ` (name)` of who we run as, or empty.
        name: String,
        /// The data directory.
        dir: String,
    },
    /// The data directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// What.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The account to run as: the `user` and `group` keys, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The name as configured (for messages).
    pub user: String,
    /// Its uid.
    pub uid: Uid,
    /// The group: `group`, or the user's primary group.
    pub gid: Gid,
}

impl RunAs {
    /// Resolves `user` (a name or a number) and `group` (a name or a
    /// number; absent: the user's primary group). `None` without `user`.
    pub fn resolve(
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Option<RunAs>, PrivilegeError> {
        let Some(name) = user else {
            return Ok(None);
        };
        let found = match name.parse::<u32>() {
            Ok(n) => User::from_uid(Uid::from_raw(n)),
            Err(_) => User::from_name(name),
        }
        .map_err(|source| PrivilegeError::Lookup {
            what: format!("user {name:?}"),
            source,
        })?;
        let (uid, primary) = match (found, name.parse::<u32>()) {
            (Some(u), _) => (u.uid, u.gid),
            // A bare number need not be in /etc/passwd (containers).
            (None, Ok(n)) => (Uid::from_raw(n), Gid::from_raw(n)),
            (None, Err(_)) => return Err(PrivilegeError::UnknownUser(name.to_string())),
        };
        let gid = match group {
            None => primary,
            Some(g) => match g.parse::<u32>() {
                Ok(n) => Gid::from_raw(n),
                Err(_) => {
                    Group::from_name(g)
                        .map_err(|source| PrivilegeError::Lookup {
                            what: format!("group {g:?}"),
                            source,
                        })?
                        .ok_or_else(|| PrivilegeError::UnknownGroup(g.to_string()))?
                        .gid
                }
            },
        };
        Ok(Some(RunAs {
            user: name.to_string(),
            uid,
            gid,
        }))
    }
}

/// What [`drop_after_bind`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not root: nothing to drop.
    Unprivileged,
    /// Switched to this account.
    Dropped(RunAs),
    /// Still root: `user = "root"`, or no `user` and no privileged port.
    StillRoot,
}

/// Drops to `run_as` once the listeners at `bound` are open; see the
/// module doc for the rules.
pub fn drop_after_bind(
    run_as: Option<&RunAs>,
    bound: &[SocketAddr],
) -> Result<Outcome, PrivilegeError> {
    let current = Uid::effective();
    if !current.is_root() {
        return match run_as {
            Some(r) if r.uid != current => Err(PrivilegeError::CannotSwitch {
                user: r.user.clone(),
                uid: r.uid.as_raw(),
                current: current.as_raw(),
            }),
            _ => Ok(Outcome::Unprivileged),
        };
    }
    let Some(run_as) = run_as else {
        if let Some(port) = bound.iter().map(|a| a.port()).filter(|p| *p < 1024).min() {
            return Err(PrivilegeError::RootWithoutUser { port });
        }
        tracing::warn!(
            "running as root: set `user` in the configuration to run as an unprivileged account \
             (docs/deployment.md)"
        );
        return Ok(Outcome::StillRoot);
    };
    if run_as.uid.is_root() {
        tracing::warn!("running as root, as `user` says");
        return Ok(Outcome::StillRoot);
    }
    let fail = |call, source| PrivilegeError::Drop {
        user: run_as.user.clone(),
        call,
        source,
    };
    // Supplementary groups first (root's would otherwise stay), then the
    // group, then the user: after setuid no other change is allowed.
    nix::unistd::setgroups(&[run_as.gid]).map_err(|e| fail("setgroups", e))?;
    nix::unistd::setgid(run_as.gid).map_err(|e| fail("setgid", e))?;
    nix::unistd::setuid(run_as.uid).map_err(|e| fail("setuid", e))?;
    let ids = nix::unistd::getresuid().map_err(|e| fail("getresuid", e))?;
    let gids = nix::unistd::getresgid().map_err(|e| fail("getresgid", e))?;
    let all_uids = [ids.real, ids.effective, ids.saved];
    let all_gids = [gids.real, gids.effective, gids.saved];
    if all_uids.iter().any(|u| *u != run_as.uid)
        || all_gids.iter().any(|g| *g != run_as.gid)
        || nix::unistd::setuid(Uid::from_raw(0)).is_ok()
    {
        return Err(PrivilegeError::NotDropped(run_as.user.clone()));
    }
    tracing::info!(
        user = %run_as.user,
        uid = run_as.uid.as_raw(),
        gid = run_as.gid.as_raw(),
        "listeners bound; running as an unprivileged user from here on"
    );
    Ok(Outcome::Dropped(run_as.clone()))
}

/// Checks that the data directory and the files directly in it belong to
/// the user the server runs as (the effective uid). A data directory that
/// does not exist yet passes: it is created with the right owner.
pub fn check_data_dir(dir: &Path) -> Result<(), PrivilegeError> {
    let uid = Uid::effective();
    let io = |path: &Path, source| PrivilegeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir, e)),
    };
    let wrong_owner =
        |path: &Path, owner: u32| (owner != uid.as_raw()).then(|| (path.to_path_buf(), owner));
    // The directory first: if it is not ours, it may not even be readable.
    let mut found = wrong_owner(dir, meta.uid());
    if found.is_none() {
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let path = entry.map_err(|e| io(dir, e))?.path();
            // symlink_metadata: a link's own owner, not its target's.
            let meta = path.symlink_metadata().map_err(|e| io(&path, e))?;
            found = wrong_owner(&path, meta.uid());
            if found.is_some() {
                break;
            }
        }
    }
    match found {
        None => Ok(()),
        Some((path, owner)) => Err(PrivilegeError::DataDirOwner {
            path,
            owner,
            uid: uid.as_raw(),
            gid: Gid::effective().as_raw(),
            name: User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| format!(" ({})", u.name))
                .unwrap_or_default(),
            dir: dir.display().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_user_key_resolves_to_none() {
        assert_eq!(RunAs::resolve(None, Some("x")).unwrap(), None);
    }

    #[test]
    fn root_and_numbers_resolve() {
        let root = RunAs::resolve(Some("root"), None).unwrap().unwrap();
        assert!(root.uid.is_root());
        let n = RunAs::resolve(Some("64999"), Some("64998"))
            .unwrap()
            .unwrap();
        assert_eq!((n.uid.as_raw(), n.gid.as_raw()), (64999, 64998));
    }

    #[test]
    fn unknown_names_are_errors() {
        let e = RunAs::resolve(Some("no-such-user-mailgate"), None).unwrap_err();
        assert!(matches!(e, PrivilegeError::UnknownUser(_)), "{e}");
        let e = RunAs::resolve(Some("root"), Some("no-such-group-mailgate")).unwrap_err();
        assert!(matches!(e, PrivilegeError::UnknownGroup(_)), "{e}");
    }

    #[test]
    fn an_own_data_dir_passes_and_a_missing_one_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("store.db"), b"").unwrap();
        check_data_dir(dir.path()).unwrap();
        check_data_dir(&dir.path().join("not-yet")).unwrap();
    }

    #[test]
    fn the_root_refusal_says_how_to_set_user() {
        let e = PrivilegeError::RootWithoutUser { port: 25 }.to_string();
        assert!(
            e.contains("user = \"mailgate\"") && e.contains("port 25"),
            "{e}"
        );
    }
}
