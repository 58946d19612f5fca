//! The network side: a thin loop that moves bytes between a stream and a
//! [`Session`], with the idle timeout, the session's slow-client
//! deadline ([`Session::deadline`]) and the shutdown signal; and an
//! accept loop for the binary.
//!
//! Time bounds of one connection: silence between reads is at most
//! `idle_timeout`; a command line arrives whole within `command_timeout`
//! of its first byte; message data averages `min_transfer_rate` after
//! the grace; a write of our replies completes within `idle_timeout`
//! (a client that does not read cannot hold the session either).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::context::{SmtpContext, TlsMode};
use crate::reverse::ReverseName;
use crate::session::Session;

/// Bytes read from the client at once.
const READ_BUFFER: usize = 64 * 1024;

/// Resolves once `rx` says `true`; never if the sender is gone without
/// saying so (no shutdown will come then).
async fn shutdown_signalled(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|&stop| stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sleeps until `deadline`; for ever when there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why [`drive`] returned.
enum Next {
    /// The session is over.
    Closed,
    /// STARTTLS was accepted; `220` is written: run the handshake.
    StartTls,
}

/// Serves one SMTP connection until QUIT, an error limit, the idle
/// timeout, a shutdown or the client hanging up.
///
/// All replies queued while processing one read are written (and
/// flushed) before the next read, so a pipelining client always gets
/// the answers to what it sent (RFC 2920 §3.2). On an implicit-TLS
/// listener the handshake comes first; after STARTTLS the same session
/// goes on over the TLS stream, with nothing of the clear-text input
/// left over.
///
/// Every log line of the session, plugins' included, is in the span
/// `smtp{session=ID}`, ID being the `session-id` plugins see.
pub async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<SmtpContext>,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tracing::Instrument;
    let id = crate::received::new_queue_id();
    let span = tracing::info_span!("smtp", session = %id);
    connection(stream, peer, ctx, id).instrument(span).await
}

async fn connection<S>(
    mut stream: S,
    peer: SocketAddr,
    ctx: Arc<SmtpContext>,
    id: String,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tracing::debug!(client = %peer, "smtp: connection opened");
    if let TlsMode::Implicit(acceptor) = &ctx.tls {
        let Some(mut tls) = handshake(acceptor, stream, peer).await else {
            return Ok(());
        };
        let mut session = Session::new_tls(ctx.clone(), peer);
        session.tls_info = Some(tls_details(&tls));
        session.id = id;
        session.reverse = ReverseName::start(ctx.reverse.as_ref(), peer.ip());
        session.connected().await;
        drive(&mut tls, &mut session, &ctx).await?;
        return close(tls, peer).await;
    }
    let mut session = Session::new(ctx.clone(), peer);
    session.id = id;
    // Runs while the greeting goes out; awaited where the name is needed.
    session.reverse = ReverseName::start(ctx.reverse.as_ref(), peer.ip());
    session.connected().await;
    match drive(&mut stream, &mut session, &ctx).await? {
        Next::Closed => close(stream, peer).await,
        Next::StartTls => {
            let TlsMode::StartTls(acceptor) = &ctx.tls else {
                return Ok(());
            };
            let Some(mut tls) = handshake(acceptor, stream, peer).await else {
                return Ok(());
            };
            session.tls_started();
            session.tls_info = Some(tls_details(&tls));
            drive(&mut tls, &mut session, &ctx).await?;
            close(tls, peer).await
        }
    }
}

/// The version and cipher of an established TLS session, for the
/// plugins (`message.tls`).
fn tls_details<S>(tls: &mailgate_tls::TlsStream<S>) -> std::sync::Arc<mailgate_policy::TlsDetails> {
    let info = mailgate_tls::SessionInfo::of(tls);
    std::sync::Arc::new(mailgate_policy::TlsDetails {
        version: info.version,
        cipher: info.cipher,
    })
}

/// Runs the TLS handshake within [`HANDSHAKE_TIMEOUT`]; `None` (logged)
/// if it fails.
async fn handshake<S>(
    acceptor: &mailgate_tls::Acceptor,
    stream: S,
    peer: SocketAddr,
) -> Option<mailgate_tls::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let info = mailgate_tls::SessionInfo::of(&tls);
            tracing::debug!(client = %peer, version = %info.version, cipher = %info.cipher, "smtp: TLS established");
            Some(tls)
        }
        Ok(Err(e)) => {
            tracing::info!(client = %peer, error = %e, "smtp: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(client = %peer, "smtp: TLS handshake timed out");
            None
        }
    }
}

async fn close<S: AsyncWrite + Unpin>(mut stream: S, peer: SocketAddr) -> std::io::Result<()> {
    // A TLS close_notify is a write: bounded like the handshake.
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.shutdown()).await;
    tracing::debug!(client = %peer, "smtp: connection closed");
    Ok(())
}

/// The read-answer loop over one stream, until the session closes or
/// asks for TLS.
async fn drive<S>(stream: &mut S, session: &mut Session, ctx: &SmtpContext) -> std::io::Result<Next>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let peer = session.peer();
    let mut shutdown = ctx.shutdown.clone();
    if *shutdown.borrow() {
        session.request_shutdown();
    }
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let out = session.take_output();
        if !out.is_empty() {
            let write = async {
                stream.write_all(&out).await?;
                stream.flush().await
            };
            match tokio::time::timeout(ctx.limits.idle_timeout, write).await {
                Ok(written) => written?,
                Err(_elapsed) => {
                    tracing::info!(client = %peer, "smtp: write timed out");
                    return Ok(Next::Closed);
                }
            }
        }
        if session.is_closed() {
            return Ok(Next::Closed);
        }
        if session.starttls_pending() {
            return Ok(Next::StartTls);
        }
        let deadline = session.deadline();
        let read = tokio::select! {
            read = tokio::time::timeout(ctx.limits.idle_timeout, stream.read(&mut buf)) => read,
            _ = sleep_until_some(deadline) => {
                session.check_pace();
                continue;
            }
            _ = shutdown_signalled(&mut shutdown), if !session.shutdown_requested() => {
                session.request_shutdown();
                continue;
            }
        };
        match read {
            Err(_elapsed) => session.idle_timeout(),
            Ok(Ok(0)) => {
                tracing::debug!(client = %peer, "smtp: client closed the connection");
                return Ok(Next::Closed);
            }
            Ok(Ok(n)) => session.receive(&buf[..n]).await,
            Ok(Err(e)) => {
                tracing::debug!(client = %peer, error = %e, "smtp: read failed");
                return Err(e);
            }
        }
    }
}

/// Accepts connections on `listener` and serves each in its own task
/// until the shutdown signal; then stops accepting and returns once all
/// sessions ended (idle ones end at once with `421`; the caller bounds
/// the wait for the others, e.g. with `tokio::time::timeout`).
pub async fn serve(listener: TcpListener, ctx: Arc<SmtpContext>) {
    let mut shutdown = ctx.shutdown.clone();
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ctx = ctx.clone();
                    sessions.spawn(async move {
                        if let Err(e) = serve_connection(stream, peer, ctx).await {
                            tracing::debug!(client = %peer, error = %e, "smtp: session ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "smtp: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = shutdown_signalled(&mut shutdown) => break,
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}
