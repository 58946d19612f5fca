//! What the SMTP and POP3 clients share: a line-oriented connection with a
//! deadline on every read and write, and the benchmark's error type.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Anything that stops a benchmark run; the text says what and where.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(format!("i/o error: {e}"))
    }
}

/// The benchmark's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error`] from anything printable.
pub fn err<T>(message: impl Into<String>) -> Result<T> {
    Err(Error(message.into()))
}

/// Read buffer size: large enough that a 10 KiB POP3 response usually
/// arrives in one or two reads instead of many small ones.
const READ_BUFFER: usize = 64 * 1024;

/// A buffered connection to a server. Generic over the stream so that the
/// protocol code can be unit-tested against an in-memory duplex pipe.
pub struct Conn<S> {
    io: BufReader<S>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Wraps `stream`; every single read or write that takes longer than
    /// `timeout` fails, so a stuck server can never hang the benchmark.
    pub fn new(stream: S, timeout: Duration) -> Self {
        Self::with_capacity(stream, timeout, READ_BUFFER)
    }

    /// Like [`Conn::new`] with a read buffer of `capacity` bytes (small
    /// for the thousands of idle IMAP connections).
    pub fn with_capacity(stream: S, timeout: Duration, capacity: usize) -> Self {
        Conn {
            io: BufReader::with_capacity(capacity, stream),
            timeout,
        }
    }

    /// Appends exactly `n` bytes (a literal) to `buf`.
    pub async fn read_exact(&mut self, buf: &mut Vec<u8>, n: usize) -> Result<()> {
        use tokio::io::AsyncReadExt;
        let start = buf.len();
        buf.resize(start + n, 0);
        tokio::time::timeout(self.timeout, self.io.read_exact(&mut buf[start..]))
            .await
            .map_err(|_| {
                Error(format!(
                    "no answer from the server within {:?}",
                    self.timeout
                ))
            })??;
        Ok(())
    }

    /// Appends one line, CRLF included, to `buf`. End of stream is an
    /// error: both protocols always say something before closing.
    pub async fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let n = tokio::time::timeout(self.timeout, self.io.read_until(b'\n', buf))
            .await
            .map_err(|_| {
                Error(format!(
                    "no answer from the server within {:?}",
                    self.timeout
                ))
            })??;
        if n == 0 || buf.last() != Some(&b'\n') {
            return err("the server closed the connection");
        }
        Ok(())
    }

    /// Writes all of `bytes` (commands are written whole, so a pipelined
    /// group leaves in one segment where the kernel allows).
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        tokio::time::timeout(self.timeout, self.io.get_mut().write_all(bytes))
            .await
            .map_err(|_| {
                Error(format!(
                    "the server did not read our data within {:?}",
                    self.timeout
                ))
            })??;
        Ok(())
    }
}

/// `line` without its trailing CRLF (or LF), as text for error messages
/// and reply parsing.
pub fn trim_eol(line: &[u8]) -> String {
    let end = line
        .iter()
        .rposition(|&b| b != b'\r' && b != b'\n')
        .map_or(0, |i| i + 1);
    String::from_utf8_lossy(&line[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn trims_line_endings() {
        assert_eq!(trim_eol(b"250 ok\r\n"), "250 ok");
        assert_eq!(trim_eol(b"+OK\n"), "+OK");
        assert_eq!(trim_eol(b"\r\n"), "");
    }

    #[tokio::test]
    async fn reads_lines_and_reports_eof() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut conn = Conn::new(client, Duration::from_secs(5));
        server.write_all(b"one\r\ntwo\r\npartial").await.unwrap();
        drop(server);
        let mut buf = Vec::new();
        conn.read_line(&mut buf).await.unwrap();
        assert_eq!(buf, b"one\r\n");
        buf.clear();
        conn.read_line(&mut buf).await.unwrap();
        assert_eq!(buf, b"two\r\n");
        buf.clear();
        assert!(conn.read_line(&mut buf).await.is_err());
    }

    #[tokio::test]
    async fn read_times_out() {
        let (client, _server) = tokio::io::duplex(1024);
        let mut conn = Conn::new(client, Duration::from_millis(20));
        let mut buf = Vec::new();
        let e = conn.read_line(&mut buf).await.unwrap_err();
        assert!(e.0.contains("no answer"), "{e}");
    }
}
