//! Telling systemd (or any supervisor speaking its protocol) where the
//! server is: `READY=1` once every listener is bound and the server
//! accepts connections, `STOPPING=1` when shutdown begins.
//!
//! The protocol (sd_notify(3)): one datagram of `KEY=VALUE` lines to the
//! unix datagram socket named by `$NOTIFY_SOCKET`; a name starting with
//! `@` is in the abstract namespace (the `@` stands for a leading NUL
//! byte). Written here with std's `UnixDatagram` so that mailgate does not
//! link libsystemd (the static builds could not). Without
//! `$NOTIFY_SOCKET` every call does nothing, so `Type=simple`, a container
//! or a terminal run the same binary.
//!
//! A failed notification is logged, never fatal: the server serves mail
//! whether or not its supervisor hears.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// The environment variable naming the supervisor's socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// What the server tells its supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Every listener is bound and the server serves (`READY=1`).
    Ready,
    /// Shutdown has begun (`STOPPING=1`).
    Stopping,
}

impl State {
    /// Its name, for the log.
    fn as_str(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Stopping => "stopping",
        }
    }

    /// The datagram for this state.
    pub fn message(self) -> String {
        let pid = std::process::id();
        match self {
            // MAINPID lets a supervisor that started a wrapper find us.
            State::Ready => format!("READY=1\nMAINPID={pid}\nSTATUS=serving\n"),
            State::Stopping => "STOPPING=1\nSTATUS=shutting down\n".to_string(),
        }
    }
}

/// Sends `state` to `$NOTIFY_SOCKET` if it is set; logs a failure.
pub fn notify(state: State) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    let socket = socket.to_string_lossy().into_owned();
    match send(&socket, &state.message()) {
        Ok(()) => tracing::debug!(state = state.as_str(), "notified the service manager"),
        Err(e) => tracing::warn!(
            state = state.as_str(),
            socket = %socket,
            error = %e,
            "cannot notify the service manager through NOTIFY_SOCKET"
        ),
    }
}

/// Sends one datagram to `socket`: a path, or `@name` in the abstract
/// namespace.
pub fn send(socket: &str, message: &str) -> io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    if let Some(name) = socket.strip_prefix('@') {
        send_abstract(&sender, name.as_bytes(), message)
    } else if socket.starts_with('/') {
        sender.send_to(message.as_bytes(), Path::new(socket))?;
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor @abstract",
        ))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(sender: &UnixDatagram, name: &[u8], message: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sender.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), &State::Ready.message()).unwrap();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.lines().any(|l| l == "READY=1"), "{text}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("mailgate-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        send(&format!("@{name}"), &State::Stopping.message()).unwrap();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .starts_with("STOPPING=1\n"));
    }

    #[test]
    fn a_relative_name_is_refused() {
        assert!(send("notify.sock", "READY=1\n").is_err());
    }
}
