//! Writing a session's pending output with a deadline: the one write
//! path of the POP3, IMAP and ManageSieve network loops, plain or TLS.

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// Writes and flushes `out` to `stream` within `limit` (a client that
/// stops reading must not hold its session for ever), then empties `out`.
/// `out` keeps its capacity up to `keep` bytes and is released past it,
/// so an idle session does not hold the buffer of its largest answer.
/// `Err` names what failed, for the session's closing log line.
pub async fn write_within<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    limit: Duration,
    keep: usize,
) -> Result<(), &'static str> {
    if out.is_empty() {
        return Ok(());
    }
    let result = timeout(limit, async {
        stream.write_all(out).await?;
        stream.flush().await
    })
    .await;
    if out.capacity() > keep {
        *out = Vec::new();
    } else {
        out.clear();
    }
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("write error"),
        Err(_) => Err("write timeout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_then_empties_and_releases_a_large_buffer() {
        let mut sink = Vec::new();
        let mut out = b"+OK hello\r\n".to_vec();
        write_within(&mut sink, &mut out, Duration::from_secs(1), 4)
            .await
            .unwrap();
        assert_eq!(sink, b"+OK hello\r\n");
        assert!(out.is_empty());
        assert_eq!(out.capacity(), 0, "over `keep`: released");
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"* OK\r\n");
        write_within(&mut sink, &mut out, Duration::from_secs(1), 1024)
            .await
            .unwrap();
        assert!(out.is_empty() && out.capacity() >= 64, "kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_never_reads_times_out() {
        // A duplex pipe of 8 bytes whose other end nobody reads.
        let (mut a, _b) = tokio::io::duplex(8);
        let mut out = vec![b'x'; 1024];
        let r = write_within(&mut a, &mut out, Duration::from_secs(5), usize::MAX).await;
        assert_eq!(r, Err("write timeout"));
        assert!(out.is_empty());
    }
}
