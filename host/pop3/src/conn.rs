//! The network loop: reads lines, runs the session, writes its answers.
//!
//! RFC 2449 §6.6 (PIPELINING): the client may send several commands
//! without waiting; we answer everything already received before writing,
//! so a pipelined batch goes back in one write.
//!
//! Time bounds: the idle timeout runs from the last complete command
//! line (a client trickling bytes resets nothing), and a command line
//! must arrive whole within `command_timeout` of its first byte; either
//! ends the session with `-ERR` (no UPDATE state).
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

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why [`run`] returned.
enum End {
    /// The session is over, for this reason.
    Closed(&'static str),
    /// STLS was answered `+OK`: run the handshake.
    StartTls,
}

/// Serves one POP3 connection until it ends. Never fails: every problem
/// ends the session and is logged. On a POP3S listener the handshake
/// comes first; after STLS the session goes on over TLS with a fresh
/// line buffer, so nothing sent in clear after STLS is ever executed.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    ctx: Arc<Pop3Context>,
) {
    if let Some(acceptor) = ctx.tls.implicit() {
        let Some(mut tls) = handshake(acceptor, stream, peer).await else {
            return;
        };
        let mut session = Session::new_tls(Arc::clone(&ctx), peer);
        finish(&mut tls, &mut session, &ctx, true).await;
        return;
    }
    let mut session = Session::new(Arc::clone(&ctx), peer);
    if !finish(&mut stream, &mut session, &ctx, true).await {
        return;
    }
    // STLS was accepted.
    let Some(acceptor) = ctx.tls.starttls() else {
        return;
    };
    let Some(mut tls) = handshake(acceptor, stream, peer).await else {
        session.set_end_reason("TLS handshake failed");
        return;
    };
    session.tls_started();
    finish(&mut tls, &mut session, &ctx, false).await;
    // Dropping the session logs its end and releases the maildrop lock.
}

/// Runs the session over `stream`; `true` if it asked for STLS (the
/// stream is then left open for the handshake).
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    ctx: &Pop3Context,
    greet: bool,
) -> bool {
    match run(stream, session, ctx, greet).await {
        End::StartTls => true,
        End::Closed(reason) => {
            session.set_end_reason(reason);
            let _ = timeout(ctx.idle_timeout, stream.shutdown()).await;
            false
        }
    }
}

/// Runs the TLS handshake within [`HANDSHAKE_TIMEOUT`]; `None` (logged)
/// if it fails.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &mailgate_tls::Acceptor,
    stream: S,
    peer: SocketAddr,
) -> Option<mailgate_tls::TlsStream<S>> {
    match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::info!(client = %peer, error = %e, "pop3: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(client = %peer, "pop3: TLS handshake timed out");
            None
        }
    }
}

/// The loop proper; returns why it ended.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    ctx: &Pop3Context,
    greet: bool,
) -> End {
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
        return End::Closed("shutdown");
    }
    if greet {
        session.greeting(&mut out);
    }
    let mut framer = LineFramer::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let (mut start, mut end) = (0, 0);
    // Reset by each complete line, not by each read, so a client
    // trickling one byte at a time cannot hold the session forever.
    let mut deadline = Instant::now() + ctx.idle_timeout;
    // When the first byte of the command line being received arrived.
    let mut line_started: Option<Instant> = None;
    loop {
        // Answer every complete line already received.
        while start < end {
            let (used, frame) = framer.feed(&buf[start..end]);
            start += used;
            if framer.has_partial() {
                line_started.get_or_insert_with(Instant::now);
            } else {
                line_started = None;
            }
            let Some(frame) = frame else { continue };
            deadline = Instant::now() + ctx.idle_timeout;
            match session.handle_frame(frame, &mut out).await {
                Flow::Continue => {}
                Flow::Close => {
                    return match flush(stream, &mut out, ctx).await {
                        Ok(()) => End::Closed(session.end_reason()),
                        Err(reason) => End::Closed(reason),
                    };
                }
                // Whatever follows STLS in `buf` and in the framer was
                // sent in clear: it is dropped with them, never executed.
                Flow::StartTls => {
                    return match flush(stream, &mut out, ctx).await {
                        Ok(()) => End::StartTls,
                        Err(reason) => End::Closed(reason),
                    };
                }
            }
            if out.len() >= FLUSH_THRESHOLD {
                if let Err(reason) = flush(stream, &mut out, ctx).await {
                    return End::Closed(reason);
                }
            }
        }
        if let Err(reason) = flush(stream, &mut out, ctx).await {
            return End::Closed(reason);
        }
        if *shutdown.borrow() {
            return End::Closed(say_shutdown(stream, &mut out, ctx).await);
        }
        let line_deadline = line_started
            .filter(|_| !ctx.command_timeout.is_zero())
            .map(|s| s + ctx.command_timeout);
        if line_deadline.is_some_and(|d| d <= Instant::now()) {
            return End::Closed(say_too_slow(stream, &mut out, ctx).await);
        }
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) => return End::Closed("connection closed without QUIT"),
                Ok(n) => (start, end) = (0, n),
                Err(_) => return End::Closed("read error"),
            },
            () = sleep_until(deadline) => {
                // RFC 1939 §3 allows closing without a word; a line helps
                // whoever debugs a client.
                write_err(&mut out, None, "Idle timeout, closing connection");
                let _ = flush(stream, &mut out, ctx).await;
                return End::Closed("idle timeout");
            }
            () = sleep_until(line_deadline.unwrap_or(deadline)), if line_deadline.is_some() => {
                return End::Closed(say_too_slow(stream, &mut out, ctx).await);
            }
            changed = shutdown.changed(), if shutdown_live => match changed {
                Ok(()) if *shutdown.borrow_and_update() => return End::Closed(say_shutdown(stream, &mut out, ctx).await),
                Ok(()) => {}
                // The sender is gone: no shutdown will ever be signalled.
                Err(_) => shutdown_live = false,
            },
        }
    }
}

/// A command line took longer than `command_timeout`.
async fn say_too_slow<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    ctx: &Pop3Context,
) -> &'static str {
    write_err(out, None, "Command line too slow, closing connection");
    let _ = flush(stream, out, ctx).await;
    "command line too slow"
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
    mailgate_tls::write_within(stream, out, ctx.idle_timeout, usize::MAX).await
}
