//! The network loop: reads bytes, frames commands, runs the session,
//! writes its answers; during IDLE it also waits for store events.
//!
//! Pipelined commands are answered in order and written in one go; a
//! continuation request (`+` for a synchronizing literal) is flushed at
//! once, as the client waits for it. RFC 9051 §5.4: the autologout timer
//! is [`crate::ImapContext::idle_timeout`] (at least 30 minutes) once
//! logged in, shorter before; a command must also arrive whole within
//! [`crate::ImapContext::command_timeout`] and an APPEND message at
//! [`crate::ImapContext::min_transfer_rate`] (the clocks are in
//! [`crate::clock`]). The framing limits change at login
//! ([`Session::frame_limits`]). Stream upgrades (STARTTLS, COMPRESS) hook
//! in here: the loop owns the stream and swaps it between commands.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailgate_imap_proto::response::write_untagged;
use mailgate_imap_proto::{Frame, Framer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};

use crate::clock::{after, Clocks};
use crate::compress::Deflate;
use crate::session::{Flow, Session, StateKind, Upgrade};
use crate::ImapContext;

/// Answers are written once this much is pending even if more pipelined
/// commands wait.
const FLUSH_THRESHOLD: usize = 256 * 1024;

/// Size of one read from the stream while commands stream in (a read
/// filled the buffer, or a command is unfinished: an APPEND literal).
const READ_CHUNK: usize = 16 * 1024;

/// Size of the first read of a session waiting for its next command (or
/// in IDLE, waiting for DONE), into a small array of the session's own:
/// thousands of idle sessions hold no read buffer and no output buffer on
/// the heap (both are given back while they wait). A read that fills it
/// is followed by reads of [`READ_CHUNK`].
const IDLE_READ: usize = 64;

/// An output buffer that grew beyond this (a large FETCH) is given back
/// once written, instead of being kept for the session's lifetime.
const KEEP_OUTPUT: usize = 64 * 1024;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one IMAP connection until it ends. Never fails: every problem
/// ends the session and is logged.
///
/// On an implicit-TLS listener (IMAPS) the handshake comes before the
/// greeting. After STARTTLS the session goes on over TLS with a fresh
/// framer: bytes the client sent after the STARTTLS line came in clear
/// and are dropped unread (RFC 9051 §6.2.1; the STARTTLS command
/// injection of CVE-2011-0411).
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<ImapContext>,
) {
    let mut session = Session::new(Arc::clone(&ctx), peer);
    if let Some(acceptor) = ctx.tls.implicit() {
        let Some(tls) = handshake(acceptor, stream, peer).await else {
            session.set_end_reason("TLS handshake failed");
            return;
        };
        session.tls_started();
        // Boxed: the TLS stream's state is on the heap of TLS sessions
        // only, not in the size of every session's future.
        Box::pin(greet_and_serve(tls, &mut session, &ctx)).await;
        return;
    }
    let Some(stream) = greet_and_serve(stream, &mut session, &ctx).await else {
        return;
    };
    // STARTTLS was answered OK.
    let Some(acceptor) = ctx.tls.starttls() else {
        return;
    };
    let Some(tls) = handshake(acceptor, stream, peer).await else {
        session.set_end_reason("TLS handshake failed");
        return;
    };
    session.tls_started();
    let mut framer = Framer::new(ctx.limits);
    // STARTTLS is refused under TLS, so this cannot ask for it again.
    let _ = Box::pin(serve(tls, &mut session, &ctx, &mut framer, Vec::new())).await;
}

/// Greets (or says BYE when the server is stopping) and serves; returns
/// the stream if the session asked for STARTTLS.
async fn greet_and_serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    mut stream: S,
    session: &mut Session,
    ctx: &Arc<ImapContext>,
) -> Option<S> {
    let mut out = Vec::new();
    if *ctx.shutdown.borrow() {
        write_untagged(&mut out, "BYE Server shutting down");
        let _ = flush(&mut stream, &mut out, ctx).await;
        session.set_end_reason("shutdown");
        return None;
    }
    session.greeting(&mut out);
    let mut framer = Framer::new(ctx.limits);
    serve(stream, session, ctx, &mut framer, out).await
}

/// Runs the session over `stream` (and over DEFLATE on it after
/// COMPRESS) until it ends; returns the stream if the session asked for
/// STARTTLS, with everything the client sent after it discarded.
async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    mut stream: S,
    session: &mut Session,
    ctx: &Arc<ImapContext>,
    framer: &mut Framer,
    out: Vec<u8>,
) -> Option<S> {
    let reason = match run(&mut stream, session, ctx, framer, out, Vec::new()).await {
        End::Closed(reason) => {
            let _ = timeout(ctx.login_timeout, stream.shutdown()).await;
            reason
        }
        // The leftover bytes (and any partial frame) came in clear after
        // STARTTLS: dropped with the framer.
        End::Upgrade(Upgrade::StartTls, _injected) => return Some(stream),
        // The same session and framer go on over the new stream.
        End::Upgrade(Upgrade::Deflate, leftover) => {
            let mut z = Deflate::new(stream, leftover);
            let reason =
                match Box::pin(run(&mut z, session, ctx, framer, Vec::new(), Vec::new())).await {
                    End::Closed(reason) => reason,
                    End::Upgrade(..) => "second stream upgrade",
                };
            let _ = timeout(ctx.login_timeout, z.shutdown()).await;
            reason
        }
    };
    session.set_end_reason(reason);
    None
}

/// Runs the TLS handshake within [`HANDSHAKE_TIMEOUT`]; `None` (logged)
/// if it fails.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &mailgate_tls::Acceptor,
    stream: S,
    peer: SocketAddr,
) -> Option<mailgate_tls::TlsStream<S>> {
    match timeout(HANDSHAKE_TIMEOUT, Box::pin(acceptor.accept(stream))).await {
        Ok(Ok(tls)) => {
            let info = mailgate_tls::SessionInfo::of(&tls);
            tracing::debug!(client = %peer, version = %info.version, cipher = %info.cipher, "imap: TLS started");
            Some(tls)
        }
        Ok(Err(e)) => {
            tracing::info!(client = %peer, error = %e, "imap: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(client = %peer, "imap: TLS handshake timed out");
            None
        }
    }
}

/// How [`run`] ended.
enum End {
    /// The session is over, for this reason.
    Closed(&'static str),
    /// The session asked for a new stream; the bytes read but not yet
    /// framed belong to it.
    Upgrade(Upgrade, Vec<u8>),
}

/// How long the session may stay silent in its state.
fn idle_wait(session: &Session, ctx: &ImapContext) -> Duration {
    if session.state() == StateKind::NotAuthenticated {
        ctx.login_timeout
    } else {
        ctx.idle_timeout
    }
}

/// The loop proper over one stream. `out` holds answers not yet sent,
/// `leftover` input not yet framed.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    ctx: &ImapContext,
    framer: &mut Framer,
    mut out: Vec<u8>,
    leftover: Vec<u8>,
) -> End {
    let mut shutdown = ctx.shutdown.clone();
    let mut shutdown_live = true;
    // Input not yet framed is `buf[start..end]`; once it is all framed
    // the buffer is replaced by one of the size the next read needs.
    let mut buf = leftover;
    let (mut start, mut end) = (0, buf.len());
    let mut streaming = false;
    let mut clocks = Clocks::new(after(Instant::now(), idle_wait(session, ctx)));
    loop {
        while start < end {
            framer.set_limits(session.frame_limits());
            let (used, frame) = framer.feed(&buf[start..end]);
            start += used;
            clocks.observe(framer, ctx, idle_wait(session, ctx), Instant::now());
            let Some(frame) = frame else { continue };
            let urgent = frame == Frame::Continue;
            // Commands run boxed: their state (a FETCH, a SEARCH, an
            // APPEND) exists while they run, not in every idle
            // session's future (`a_session_future_stays_small`).
            let mut flow = Box::pin(session.handle_frame(frame, &mut out)).await;
            clocks.restart_idle(after(Instant::now(), idle_wait(session, ctx)));
            // A long answer (FETCH) comes in parts: each is written
            // before the next is made, so the whole never sits in memory.
            while session.has_more_output() {
                // The buffer is kept between the parts (given back after
                // the last one): not allocated and grown again each time.
                if let Err(reason) = flush_keeping(stream, &mut out, ctx, usize::MAX).await {
                    return End::Closed(reason);
                }
                flow = Box::pin(session.resume(&mut out)).await;
            }
            if flow == Flow::Close {
                return End::Closed(match flush(stream, &mut out, ctx).await {
                    Ok(()) => session.end_reason(),
                    Err(reason) => reason,
                });
            }
            if let Some(upgrade) = session.take_upgrade() {
                // The tagged OK goes out over the old stream; everything
                // after it over the new one.
                if matches!(upgrade, Upgrade::StartTls) {
                    // Before the OK: after it, the client's handshake
                    // may already be on its way.
                    drain_ready(stream).await;
                }
                if let Err(reason) = flush(stream, &mut out, ctx).await {
                    return End::Closed(reason);
                }
                return End::Upgrade(upgrade, buf[start..end].to_vec());
            }
            if urgent || out.len() >= FLUSH_THRESHOLD {
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
        let idling = session.is_idling();
        let waiting = !(streaming || framer.in_command());
        if waiting {
            // Between commands: no buffer held while the client is silent.
            buf = Vec::new();
            if out.is_empty() {
                out = Vec::new();
            }
        } else if buf.len() != READ_CHUNK {
            buf = vec![0u8; READ_CHUNK];
        }
        let mut first = [0u8; IDLE_READ];
        let (until, expiry) = clocks.next(ctx);
        tokio::select! {
            read = stream.read(if waiting { &mut first[..] } else { &mut buf[..] }) => match read {
                Ok(0) => return End::Closed("connection closed without LOGOUT"),
                Ok(n) => {
                    if waiting {
                        buf = first[..n].to_vec();
                        streaming = n == IDLE_READ;
                    } else {
                        streaming = n == buf.len();
                    }
                    (start, end) = (0, n);
                }
                Err(_) => return End::Closed("read error"),
            },
            () = session.changed(), if idling => {
                Box::pin(session.idle_update(&mut out)).await;
            }
            () = sleep_until(until) => {
                let (bye, reason) = expiry.bye();
                write_untagged(&mut out, bye);
                let _ = flush(stream, &mut out, ctx).await;
                return End::Closed(reason);
            }
            changed = shutdown.changed(), if shutdown_live => match changed {
                Ok(()) if *shutdown.borrow_and_update() => {
                    return End::Closed(say_shutdown(stream, &mut out, ctx).await);
                }
                Ok(()) => {}
                Err(_) => shutdown_live = false,
            },
        }
    }
}

async fn say_shutdown<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    ctx: &ImapContext,
) -> &'static str {
    write_untagged(out, "BYE Server shutting down");
    let _ = flush(stream, out, ctx).await;
    "shutdown"
}

/// The most bytes [`drain_ready`] reads and drops.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Reads and drops what the client has already sent behind STARTTLS in
/// clear and the small first read of a waiting session left in the
/// socket (up to [`DRAIN_LIMIT`], never waiting): those bytes must be
/// discarded with the rest, not taken for the start of the TLS handshake
/// (RFC 9051 §6.2.1: nothing sent before the handshake is acted on).
async fn drain_ready<S: AsyncRead + Unpin>(stream: &mut S) {
    // On the heap: an array here would grow every session's future.
    let mut chunk = vec![0u8; 4096];
    let mut dropped = 0;
    while dropped < DRAIN_LIMIT {
        // A zero timeout polls the read once: only bytes already here.
        match timeout(Duration::ZERO, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => dropped += n,
            _ => break,
        }
    }
}

/// Writes what is pending, within the idle timeout (a client that stops
/// reading must not hold the session forever).
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    ctx: &ImapContext,
) -> Result<(), &'static str> {
    flush_keeping(stream, out, ctx, KEEP_OUTPUT).await
}

/// [`flush`], keeping a buffer of up to `keep` bytes of capacity.
async fn flush_keeping<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    ctx: &ImapContext,
    keep: usize,
) -> Result<(), &'static str> {
    mailgate_tls::write_within(stream, out, ctx.idle_timeout, keep).await
}
