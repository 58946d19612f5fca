//! `mailgate queue flush` waking the running server at once.
//!
//! The server listens on a Unix socket, `<data_dir>/queue.sock` (mode
//! 0600: only the server's user and root may connect). A connection is
//! the whole request: the server wakes its queue runner, answers `ok` and
//! closes; it reads nothing from the client. The CLI marks the messages
//! due in the database first, then connects; with no server (no socket,
//! or nobody listening) the messages simply go at the server's next start.
//!
//! A socket was chosen over the `store_events` table (polled every 500 ms
//! by stores with IMAP subscribers) because a wake-up is not a mailbox
//! change and should not wait for a poll, and over a signal to the pid in
//! `serve.pid` because a stale pid file could make the CLI signal an
//! unrelated process: a socket that accepts is always the server.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mailgate_relay::Relay;
use tokio::net::UnixListener;
use tokio::sync::watch;

/// The socket's file name in the data directory.
pub const SOCKET: &str = "queue.sock";
/// How long the CLI waits for the server's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The socket's path for a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Starts listening (the server holds the data directory's lock, so a
/// socket file left by a crash is its own to replace). A failure is
/// logged and the server runs on: `queue flush` then waits for the next
/// poll, as it did before.
pub fn listen(data_dir: &Path, relay: Arc<Relay>, mut shutdown: watch::Receiver<bool>) {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = match bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e,
                "queue: cannot listen for queue flush; it will wait for [queue] poll_interval");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        relay.wake();
                        // Three bytes into a fresh socket's buffer: never
                        // blocks; a client that went away is no matter.
                        let _ = stream.try_write(b"ok\n");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "queue: accept on the flush socket failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = shutdown.changed() => break,
            }
        }
        let _ = std::fs::remove_file(&path);
    });
}

fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// What [`poke`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poke {
    /// The server answered: its queue runner is looking at the queue now.
    Woken,
    /// No server listens (not running, or an old version).
    NotRunning,
}

/// Asks the running server to look at its queue now.
pub fn poke(data_dir: &Path) -> Result<Poke, String> {
    use std::io::ErrorKind;
    let path = socket_path(data_dir);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(Poke::NotRunning)
        }
        Err(e) => {
            return Err(format!(
                "cannot reach the server at {}: {e}",
                path.display()
            ))
        }
    };
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut answer = [0u8; 8];
    let mut got = 0;
    while got < answer.len() {
        match stream.read(&mut answer[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => {
                return Err(format!(
                    "no answer from the server at {}: {e}",
                    path.display()
                ))
            }
        }
    }
    if &answer[..got] == b"ok\n" {
        Ok(Poke::Woken)
    } else {
        Err(format!(
            "unexpected answer from the server at {}",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(poke(dir.path()), Ok(Poke::NotRunning));
        // A stale socket file nobody listens on.
        drop(std::os::unix::net::UnixListener::bind(socket_path(dir.path())).unwrap());
        assert_eq!(poke(dir.path()), Ok(Poke::NotRunning));
    }
}
