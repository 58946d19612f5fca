//! The network loop: reads lines, runs the session, writes its answers.
//!
//! RFC 2449 §6.6 (PIPELINING): the client may send several commands
//! without waiting; we answer everything already received before writing,
//! so a pipelined batch goes back in one write.
//!
//! RFC 1939 §3: "If a session is terminated for some reason other than a
//! client-issued QUIT command, the POP3 session does NOT enter the UPDATE
//! state and MUST not remove any messages from the maildrop." That holds
//! here for the idle timeout, the shutdown signal, I/O errors and the
//! peer closing: the loop returns, the [`Session`] is dropped, and with it
//! the maildrop lock.

use std::net::SocketAddr;
use std::sync::Arc;

use mailgate_pop3_proto::response::write_err;
use mailgate_pop3_proto::{LineFramer, ResponseCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};

use crate::session::{Flow, Session};
use crate::Pop3Context;

/// Answers are written out once this much is pending even if more
/// pipelined commands wait, so a batch of RETRs does not pile up in memory.
const FLUSH_THRESHOLD: usize = 64 * 1024;

/// Size of one read from the socket.
const READ_CHUNK: usize = 4096;

/// Serves one POP3 connection until it ends. Never fails: every problem
/// ends the session and is logged.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    ctx: Arc<Pop3Context>,
) {
    let mut session = Session::new(Arc::clone(&ctx), peer);
    let reason = run(&mut stream, &mut session, &ctx).await;
    session.set_end_reason(reason);
    let _ = timeout(ctx.idle_timeout, stream.shutdown()).await;
    // Dropping the session logs its end and releases the maildrop lock.
}

/// The loop proper; returns why the session ended.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    ctx: &Pop3Context,
) -> &'static str {
    let mut shutdown = ctx.shutdown.clone();
    let mut shutdown_live = true;
    let mut out = Vec::new();
    if *shutdown.borrow_and_update() {
        write_err(
            &mut out,
            Some(ResponseCode::SysTemp),
            "server shutting down",
        );
        let _ = flush(stream, &mut out, ctx).await;
        return "shutdown";
    }
    session.greeting(&mut out);
    let mut framer = LineFramer::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let (mut start, mut end) = (0, 0);
    // Reset by each complete line, not by each read, so a client
    // trickling one byte at a time cannot hold the session forever.
    let mut deadline = Instant::now() + ctx.idle_timeout;
    loop {
        // Answer every complete line already received.
        while start < end {
            let (used, frame) = framer.feed(&buf[start..end]);
            start += used;
            let Some(frame) = frame else { continue };
            deadline = Instant::now() + ctx.idle_timeout;
            let flow = session.handle_frame(frame, &mut out).await;
            if flow == Flow::Close {
                return match flush(stream, &mut out, ctx).await {
                    Ok(()) => session.end_reason(),
                    Err(reason) => reason,
                };
            }
            if out.len() >= FLUSH_THRESHOLD {
                if let Err(reason) = flush(stream, &mut out, ctx).await {
                    return reason;
                }
            }
        }
        if let Err(reason) = flush(stream, &mut out, ctx).await {
            return reason;
        }
        if *shutdown.borrow() {
            return say_shutdown(stream, &mut out, ctx).await;
        }
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) => return "connection closed without QUIT",
                Ok(n) => (start, end) = (0, n),
                Err(_) => return "read error",
            },
            () = sleep_until(deadline) => {
                // RFC 1939 §3 allows closing without a word; a line helps
                // whoever debugs a client.
                write_err(&mut out, None, "Idle timeout, closing connection");
                let _ = flush(stream, &mut out, ctx).await;
                return "idle timeout";
            }
            changed = shutdown.changed(), if shutdown_live => match changed {
                Ok(()) if *shutdown.borrow_and_update() => return say_shutdown(stream, &mut out, ctx).await,
                Ok(()) => {}
                // The sender is gone: no shutdown will ever be signalled.
                Err(_) => shutdown_live = false,
            },
        }
    }
}

async fn say_shutdown<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    ctx: &Pop3Context,
) -> &'static str {
    write_err(out, Some(ResponseCode::SysTemp), "server shutting down");
    let _ = flush(stream, out, ctx).await;
    "shutdown"
}

/// Writes what is pending, within the idle timeout (a client that stops
/// reading must not hold the session forever).
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    ctx: &Pop3Context,
) -> Result<(), &'static str> {
    if out.is_empty() {
        return Ok(());
    }
    let result = timeout(ctx.idle_timeout, async {
        stream.write_all(out).await?;
        stream.flush().await
    })
    .await;
    out.clear();
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("write error"),
        Err(_) => Err("write timeout"),
    }
}
