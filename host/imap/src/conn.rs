//! The network loop: reads bytes, frames commands, runs the session,
//! writes its answers; during IDLE it also waits for store events.
//!
//! Pipelined commands are answered in order and written in one go; a
//! continuation request (`+` for a synchronizing literal) is flushed at
//! once, as the client waits for it. RFC 9051 §5.4: the autologout timer
//! is [`crate::ImapContext::idle_timeout`] (at least 30 minutes) once
//! logged in, shorter before. A stream upgrade (STARTTLS) will hook in
//! here: the loop owns the stream and can swap it between commands.

use std::net::SocketAddr;
use std::sync::Arc;

use mailgate_imap_proto::response::write_untagged;
use mailgate_imap_proto::{Frame, Framer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};

use crate::compress::Deflate;
use crate::session::{Flow, Session, StateKind, Upgrade};
use crate::ImapContext;

/// Answers are written once this much is pending even if more pipelined
/// commands wait.
const FLUSH_THRESHOLD: usize = 256 * 1024;

/// Size of one read from the stream.
const READ_CHUNK: usize = 16 * 1024;

/// Serves one IMAP connection until it ends. Never fails: every problem
/// ends the session and is logged.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send>(
    mut stream: S,
    peer: SocketAddr,
    ctx: Arc<ImapContext>,
) {
    let mut session = Session::new(Arc::clone(&ctx), peer);
    let mut framer = Framer::new(ctx.limits);
    let mut out = Vec::new();
    if *ctx.shutdown.borrow() {
        write_untagged(&mut out, "BYE Server shutting down");
        let _ = flush(&mut stream, &mut out, &ctx).await;
        session.set_end_reason("shutdown");
        return;
    }
    session.greeting(&mut out);
    let reason = match run(
        &mut stream,
        &mut session,
        &ctx,
        &mut framer,
        out,
        Vec::new(),
    )
    .await
    {
        End::Closed(reason) => {
            let _ = timeout(ctx.login_timeout, stream.shutdown()).await;
            reason
        }
        // The same session and framer go on over the new stream.
        End::Upgrade(Upgrade::Deflate, leftover) => {
            let mut z = Deflate::new(stream, leftover);
            let reason = match run(
                &mut z,
                &mut session,
                &ctx,
                &mut framer,
                Vec::new(),
                Vec::new(),
            )
            .await
            {
                End::Closed(reason) => reason,
                End::Upgrade(..) => "second stream upgrade",
            };
            let _ = timeout(ctx.login_timeout, z.shutdown()).await;
            reason
        }
    };
    session.set_end_reason(reason);
}

/// How [`run`] ended.
enum End {
    /// The session is over, for this reason.
    Closed(&'static str),
    /// The session asked for a new stream; the bytes read but not yet
    /// framed belong to it.
    Upgrade(Upgrade, Vec<u8>),
}

fn deadline(session: &Session, ctx: &ImapContext) -> Instant {
    let wait = if session.state() == StateKind::NotAuthenticated {
        ctx.login_timeout
    } else {
        ctx.idle_timeout
    };
    Instant::now() + wait
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
    let mut buf = vec![0u8; READ_CHUNK.max(leftover.len())];
    buf[..leftover.len()].copy_from_slice(&leftover);
    let (mut start, mut end) = (0, leftover.len());
    let mut until = deadline(session, ctx);
    loop {
        while start < end {
            let (used, frame) = framer.feed(&buf[start..end]);
            start += used;
            let Some(frame) = frame else { continue };
            let urgent = frame == Frame::Continue;
            until = deadline(session, ctx);
            let flow = session.handle_frame(frame, &mut out).await;
            if flow == Flow::Close {
                return End::Closed(match flush(stream, &mut out, ctx).await {
                    Ok(()) => session.end_reason(),
                    Err(reason) => reason,
                });
            }
            if let Some(upgrade) = session.take_upgrade() {
                // The tagged OK goes out over the old stream; everything
                // after it over the new one.
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
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) => return End::Closed("connection closed without LOGOUT"),
                Ok(n) => (start, end) = (0, n),
                Err(_) => return End::Closed("read error"),
            },
            () = session.changed(), if idling => {
                session.idle_update(&mut out).await;
            }
            () = sleep_until(until) => {
                write_untagged(&mut out, "BYE Autologout; idle for too long");
                let _ = flush(stream, &mut out, ctx).await;
                return End::Closed("idle timeout");
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

/// Writes what is pending, within the idle timeout (a client that stops
/// reading must not hold the session forever).
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    ctx: &ImapContext,
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
