//! The network loop: reads bytes, lets the session take whole commands,
//! writes its answers.
//!
//! The buffer holds at most one command: a line of up to
//! [`crate::MAX_COMMAND_LINE`] bytes plus a literal of up to
//! `max_script_size` (the parser refuses more before it arrives).
//!
//! Time bounds: the idle timeout runs from the last complete command (a
//! client trickling bytes resets nothing), and a command must arrive whole,
//! literal included, within `command_timeout` of its first byte; either
//! ends the session with `BYE`. Writes are bounded by the idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;

use mailgate_managesieve_proto::response::{self, Code, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};

use crate::session::{Flow, Session};
use crate::ManageSieveContext;

/// Size of one read from the socket.
const READ_CHUNK: usize = 16 * 1024;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why [`run`] returned.
enum End {
    /// The session is over, for this reason.
    Closed(&'static str),
    /// STARTTLS was answered `OK`: run the handshake.
    StartTls,
}

/// Serves one ManageSieve connection until it ends. Never fails: every
/// problem ends the session and is logged. After STARTTLS the session goes
/// on over TLS with a fresh buffer, so nothing sent in clear after
/// STARTTLS is ever executed.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    ctx: Arc<ManageSieveContext>,
) {
    let mut session = Session::new(Arc::clone(&ctx), peer);
    let mut greeting = Vec::new();
    session.greeting(&mut greeting);
    match run(&mut stream, &mut session, &ctx, greeting).await {
        End::Closed(reason) => {
            let _ = timeout(ctx.idle_timeout, stream.shutdown()).await;
            return ended(&session, peer, reason);
        }
        End::StartTls => {}
    }
    let Some(acceptor) = ctx.tls.starttls() else {
        return;
    };
    let mut tls = match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(client = %peer, error = %e, "managesieve: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(client = %peer, "managesieve: TLS handshake timed out");
            return;
        }
    };
    let mut capabilities = Vec::new();
    session.tls_started(&mut capabilities);
    let reason = match run(&mut tls, &mut session, &ctx, capabilities).await {
        End::Closed(reason) => reason,
        // The state table refuses a second STARTTLS.
        End::StartTls => "STARTTLS twice",
    };
    let _ = timeout(ctx.idle_timeout, tls.shutdown()).await;
    ended(&session, peer, reason);
}

fn ended(session: &Session, peer: SocketAddr, reason: &'static str) {
    match session.user() {
        Some(user) => {
            tracing::info!(client = %peer.ip(), user = %user, reason, "managesieve session ended")
        }
        None => tracing::debug!(client = %peer.ip(), reason, "managesieve session ended"),
    }
}

/// The loop proper, starting by writing `first` (greeting or
/// capabilities); returns why it ended.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    ctx: &ManageSieveContext,
    first: Vec<u8>,
) -> End {
    let mut shutdown = ctx.shutdown.clone();
    let mut shutdown_live = true;
    let mut out = first;
    if *shutdown.borrow_and_update() {
        out = response::reply(Status::Bye, Some(&Code::TryLater), "Server shutting down");
        let _ = flush(stream, &mut out, ctx).await;
        return End::Closed("shutdown");
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut deadline = Instant::now() + ctx.idle_timeout;
    // When the first byte of the command being received arrived.
    let mut command_started: Option<Instant> = None;
    loop {
        // Answer every complete command already received.
        while !buf.is_empty() {
            let Some((used, flow)) = session.feed(&buf, &mut out).await else {
                break;
            };
            buf.drain(..used.min(buf.len()));
            command_started = None;
            deadline = Instant::now() + ctx.idle_timeout;
            match flow {
                Flow::Continue => {}
                Flow::Close => {
                    return match flush(stream, &mut out, ctx).await {
                        Ok(()) => End::Closed(session.end_reason()),
                        Err(reason) => End::Closed(reason),
                    };
                }
                // Whatever follows STARTTLS in `buf` was sent in clear:
                // it is dropped with it, never executed.
                Flow::StartTls => {
                    return match flush(stream, &mut out, ctx).await {
                        Ok(()) => End::StartTls,
                        Err(reason) => End::Closed(reason),
                    };
                }
            }
        }
        if !buf.is_empty() {
            command_started.get_or_insert_with(Instant::now);
        }
        if let Err(reason) = flush(stream, &mut out, ctx).await {
            return End::Closed(reason);
        }
        let command_deadline = command_started
            .filter(|_| !ctx.command_timeout.is_zero())
            .map(|s| s + ctx.command_timeout);
        if command_deadline.is_some_and(|d| d <= Instant::now()) {
            return End::Closed(
                bye(
                    stream,
                    ctx,
                    "Command too slow, closing connection",
                    "command too slow",
                )
                .await,
            );
        }
        tokio::select! {
            read = stream.read(&mut chunk) => match read {
                Ok(0) => return End::Closed("connection closed without LOGOUT"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => return End::Closed("read error"),
            },
            () = sleep_until(deadline) => {
                return End::Closed(bye(stream, ctx, "Idle timeout, closing connection", "idle timeout").await);
            }
            () = sleep_until(command_deadline.unwrap_or(deadline)), if command_deadline.is_some() => {
                return End::Closed(bye(stream, ctx, "Command too slow, closing connection", "command too slow").await);
            }
            changed = shutdown.changed(), if shutdown_live => match changed {
                Ok(()) if *shutdown.borrow_and_update() => {
                    return End::Closed(bye(stream, ctx, "Server shutting down", "shutdown").await);
                }
                Ok(()) => {}
                // The sender is gone: no shutdown will ever be signalled.
                Err(_) => shutdown_live = false,
            },
        }
    }
}

/// Says `BYE` with `text` and returns `reason` for the log.
async fn bye<S: AsyncWrite + Unpin>(
    stream: &mut S,
    ctx: &ManageSieveContext,
    text: &str,
    reason: &'static str,
) -> &'static str {
    let mut out = response::reply(Status::Bye, None, text);
    let _ = flush(stream, &mut out, ctx).await;
    reason
}

/// Writes what is pending, within the idle timeout (a client that stops
/// reading must not hold the session for ever).
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    ctx: &ManageSieveContext,
) -> Result<(), &'static str> {
    mailgate_tls::write_within(stream, out, ctx.idle_timeout, usize::MAX).await
}
