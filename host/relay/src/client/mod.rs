//! The client side of SMTP (RFC 5321), as the relay uses it: connect to a
//! hop, EHLO, STARTTLS when offered (or required), optional AUTH PLAIN to a
//! smarthost, then one or more mail transactions on the same connection,
//! each giving an outcome per recipient.
//!
//! # Pipelining
//! With PIPELINING (RFC 2920) `MAIL` and every `RCPT` go out in one write
//! and their replies are read afterwards; `DATA` is sent only once at least
//! one `RCPT` was accepted, so no message body ever follows a `DATA` that
//! has no recipient (RFC 2920 §3.1 allows `DATA` to end a group; waiting
//! costs one round trip and removes that case). Without PIPELINING each
//! command waits for its reply.
//!
//! # Extensions the message needs
//! A message that needs SMTPUTF8 or 8BITMIME is not sent to a hop that
//! lacks the extension (RFC 6531 §3.2, RFC 6152 §3): every recipient fails
//! permanently with `5.6.7` / `5.6.3`, since no conversion is done here.
//! A message larger than the hop's `SIZE` fails with `5.3.4`.
//!
//! # DSN parameters
//! To a hop that offers DSN (RFC 3461 §5.2.1) the stored `RET` and
//! `ENVID` go on `MAIL FROM`, `NOTIFY` and `ORCPT` on each `RCPT TO`, as
//! valid xtext ([`crate::dsn::params`]); a hop without DSN gets none of
//! them, and the runner then answers a `SUCCESS` request itself
//! (`relayed`).

pub mod ehlo;
pub mod reply;
pub mod stuff;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub use ehlo::Capabilities;
pub use reply::{ReplyParser, ServerReply};

use crate::config::TlsPolicy;
use crate::dsn::params as dsn_params;

/// Longest reply line read; longer lines end the connection.
const MAX_LINE: usize = 8192;

/// A byte stream the client can talk over (TCP, TLS over TCP, or a test
/// pipe).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why a connection failed as a whole (the outcome for every recipient not
/// yet settled).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Network trouble: connect, read, write, or the peer hung up.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No reply in time.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The server sent something that is not SMTP.
    #[error(transparent)]
    Protocol(#[from] reply::MalformedReply),
    /// The server answered with an error where the session cannot go on
    /// (greeting, EHLO, STARTTLS, AUTH).
    #[error("{0}")]
    Rejected(ServerReply),
    /// TLS was required but not offered, or refused.
    #[error("TLS: {0}")]
    Tls(String),
    /// The TLS handshake after `220` to STARTTLS failed (or timed out):
    /// the connection is gone. With opportunistic TLS the runner tries the
    /// same host again without STARTTLS.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

impl ClientError {
    /// Whether the failure is permanent: only a 5xx reply is.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ClientError::Rejected(r) if r.is_permanent())
    }
}

/// What the next hop did with one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    /// Accepted the message for this recipient.
    Delivered(String),
    /// Try again later (4xx, or the connection failed).
    Temporary(String),
    /// Do not try again (5xx, or the hop cannot take this message).
    Permanent(String),
}

impl RcptOutcome {
    /// The reply text.
    pub fn text(&self) -> &str {
        match self {
            RcptOutcome::Delivered(t) | RcptOutcome::Temporary(t) | RcptOutcome::Permanent(t) => t,
        }
    }
    fn from_reply(reply: &ServerReply) -> RcptOutcome {
        if reply.is_positive() {
            RcptOutcome::Delivered(reply.summary())
        } else if reply.is_permanent() {
            RcptOutcome::Permanent(reply.summary())
        } else {
            RcptOutcome::Temporary(reply.summary())
        }
    }
}

/// One recipient of an outgoing transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecipient {
    /// The address.
    pub address: String,
    /// DSN `NOTIFY`, passed on when the hop offers DSN.
    pub notify: Option<String>,
    /// DSN `ORCPT`, passed on when the hop offers DSN.
    pub orcpt: Option<String>,
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The sender; empty for `<>`.
    pub sender: &'a str,
    /// The recipients.
    pub recipients: &'a [OutRecipient],
    /// The message (not dot-stuffed).
    pub body: &'a [u8],
    /// Needs SMTPUTF8.
    pub smtputf8: bool,
    /// Holds 8-bit data.
    pub eight_bit: bool,
    /// DSN `ENVID`.
    pub envid: Option<&'a str>,
    /// DSN `RET`.
    pub ret_full: Option<bool>,
}

/// How to open a session.
#[derive(Clone)]
pub struct SessionParams {
    /// Our EHLO name.
    pub helo: String,
    /// Local address to connect from.
    pub source_ip: Option<IpAddr>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Reply timeout.
    pub command_timeout: Duration,
    /// STARTTLS policy.
    pub tls: TlsPolicy,
    /// TLS client configurations.
    pub tls_clients: tls::TlsClients,
    /// `AUTH PLAIN` user and password (only ever sent over TLS).
    pub auth: Option<(String, String)>,
}

/// An open SMTP session with a hop, greeted and ready for `MAIL`.
pub struct SmtpClient {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    caps: Capabilities,
    host: String,
    tls: bool,
    /// Over TLS, why the certificate is not valid for `host` (`None`:
    /// valid, or no TLS).
    cert_problem: Option<String>,
    timeout: Duration,
    /// A transaction was left half-way (RSET before the next).
    dirty: bool,
}

impl SmtpClient {
    /// Connects to `addr` (from the configured source address) and opens a
    /// session with `host` (the name the certificate must carry).
    pub async fn connect(
        addr: SocketAddr,
        host: &str,
        params: &SessionParams,
    ) -> Result<SmtpClient, ClientError> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(src) = params.source_ip {
            if src.is_ipv4() == addr.is_ipv4() {
                socket.bind(SocketAddr::new(src, 0))?;
            }
        }
        let tcp: TcpStream = tokio::time::timeout(params.connect_timeout, socket.connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let _ = tcp.set_nodelay(true);
        SmtpClient::open(Box::new(tcp), host, params).await
    }

    /// Opens a session over an established stream: greeting, EHLO,
    /// STARTTLS and AUTH as the parameters say.
    pub async fn open(
        stream: Box<dyn Stream>,
        host: &str,
        params: &SessionParams,
    ) -> Result<SmtpClient, ClientError> {
        let mut c = SmtpClient {
            stream,
            buf: Vec::new(),
            caps: Capabilities::default(),
            host: host.to_string(),
            tls: false,
            cert_problem: None,
            timeout: params.command_timeout,
            dirty: false,
        };
        // RFC 5321 §4.3.2: the greeting is 220, or 554 for "no service".
        let greeting = c.read_reply().await?;
        if greeting.code != 220 {
            return Err(ClientError::Rejected(greeting));
        }
        c.ehlo(&params.helo).await?;
        let want_tls = params.tls != TlsPolicy::Disabled;
        if want_tls && c.caps.starttls {
            c = c.starttls(params).await?;
        } else if params.tls == TlsPolicy::RequireVerified {
            return Err(ClientError::Tls(format!(
                "{} does not offer STARTTLS, and TLS is required",
                c.host
            )));
        }
        if let Some((user, pass)) = &params.auth {
            c.auth_plain(user, pass).await?;
        }
        Ok(c)
    }

    /// The hop's capabilities (after TLS, the ones it offered then).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Over TLS, why the peer's certificate is not valid for the host
    /// name under the verified roots (`None`: it is, or the session is
    /// plain). Always `None` with [`TlsPolicy::RequireVerified`], where
    /// such a certificate ends the handshake.
    pub fn cert_problem(&self) -> Option<&str> {
        self.cert_problem.as_deref()
    }

    /// The host name this session is with.
    pub fn host(&self) -> &str {
        &self.host
    }

    async fn ehlo(&mut self, helo: &str) -> Result<(), ClientError> {
        self.send(format!("EHLO {helo}\r\n").as_bytes()).await?;
        let reply = self.read_reply().await?;
        if reply.is_positive() {
            self.caps = Capabilities::from_reply(&reply);
            return Ok(());
        }
        // RFC 5321 §3.2: a server that does not know EHLO gets HELO.
        self.send(format!("HELO {helo}\r\n").as_bytes()).await?;
        let reply = self.read_reply().await?;
        if !reply.is_positive() {
            return Err(ClientError::Rejected(reply));
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    /// RFC 3207 §4.2: after `220` the TLS handshake starts; after it, the
    /// client MUST discard what it knew about the server and send EHLO
    /// again.
    async fn starttls(mut self, params: &SessionParams) -> Result<SmtpClient, ClientError> {
        self.send(b"STARTTLS\r\n").await?;
        let reply = self.read_reply().await?;
        if reply.code != 220 {
            if params.tls == TlsPolicy::RequireVerified {
                return Err(ClientError::Tls(format!("STARTTLS refused: {reply}")));
            }
            // Opportunistic: go on in plain text.
            return Ok(self);
        }
        if !self.buf.is_empty() {
            // Bytes after the 220 were sent before the handshake: a
            // response injection attempt (CVE-2011-0411 style).
            return Err(ClientError::Tls("data after STARTTLS reply".into()));
        }
        let config = match params.tls {
            TlsPolicy::RequireVerified => params.tls_clients.verified.clone(),
            _ => params.tls_clients.opportunistic.clone(),
        };
        let name = ServerName::try_from(self.host.clone())
            .or_else(|_| ServerName::try_from("invalid.invalid".to_string()))
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = tokio::time::timeout(self.timeout, connector.connect(name, self.stream))
            .await
            .map_err(|_| ClientError::Handshake("timed out".into()))?
            .map_err(|e| ClientError::Handshake(e.to_string()))?;
        let cert_problem = if params.tls == TlsPolicy::RequireVerified {
            None
        } else {
            let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
            let certs: Vec<CertificateDer<'static>> =
                certs.iter().map(|c| c.clone().into_owned()).collect();
            params.tls_clients.check(&self.host, &certs).err()
        };
        let mut c = SmtpClient {
            stream: Box::new(tls),
            buf: Vec::new(),
            caps: Capabilities::default(),
            host: self.host,
            tls: true,
            cert_problem,
            timeout: self.timeout,
            dirty: false,
        };
        c.ehlo(&params.helo).await?;
        Ok(c)
    }

    /// RFC 4954 with the PLAIN mechanism (RFC 4616), only over TLS.
    async fn auth_plain(&mut self, user: &str, pass: &str) -> Result<(), ClientError> {
        if !self.tls {
            return Err(ClientError::Tls(
                "refusing to send credentials without TLS".into(),
            ));
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        self.send(format!("AUTH PLAIN {token}\r\n").as_bytes())
            .await?;
        let reply = self.read_reply().await?;
        if reply.code != 235 {
            return Err(ClientError::Rejected(reply));
        }
        Ok(())
    }

    /// Sends one message and returns the outcome for each recipient, in
    /// order. A `ClientError` means the connection is unusable; the caller
    /// treats every recipient as temporarily failed (or permanently, for
    /// [`ClientError::is_permanent`]).
    pub async fn send_mail(&mut self, env: &Envelope<'_>) -> Result<Vec<RcptOutcome>, ClientError> {
        if let Some(reason) = self.unsupported(env) {
            return Ok(vec![RcptOutcome::Permanent(reason); env.recipients.len()]);
        }
        if self.dirty {
            self.send(b"RSET\r\n").await?;
            let r = self.read_reply().await?;
            if !r.is_positive() {
                return Err(ClientError::Rejected(r));
            }
        }
        self.dirty = true;
        let mut commands = Vec::new();
        commands.push(self.mail_command(env));
        for r in env.recipients {
            commands.push(self.rcpt_command(r, env));
        }
        let mut replies = Vec::with_capacity(commands.len());
        if self.caps.pipelining {
            self.send(commands.concat().as_bytes()).await?;
            for _ in &commands {
                replies.push(self.read_reply().await?);
            }
        } else {
            for cmd in &commands {
                self.send(cmd.as_bytes()).await?;
                let reply = self.read_reply().await?;
                let stop = replies.is_empty() && !reply.is_positive();
                replies.push(reply);
                if stop {
                    break;
                }
            }
        }
        let mail = &replies[0];
        if !mail.is_positive() {
            // MAIL refused: every recipient shares its fate.
            return Ok(vec![RcptOutcome::from_reply(mail); env.recipients.len()]);
        }
        let mut outcomes: Vec<RcptOutcome> =
            replies[1..].iter().map(RcptOutcome::from_reply).collect();
        if !outcomes
            .iter()
            .any(|o| matches!(o, RcptOutcome::Delivered(_)))
        {
            return Ok(outcomes);
        }
        self.send(b"DATA\r\n").await?;
        let data = self.read_reply().await?;
        if data.code != 354 {
            settle_accepted(&mut outcomes, &data);
            return Ok(outcomes);
        }
        self.send(&stuff::dot_stuff(env.body)).await?;
        let done = self.read_reply().await?;
        settle_accepted(&mut outcomes, &done);
        self.dirty = false;
        Ok(outcomes)
    }

    /// Why this hop cannot take the message, if it cannot.
    fn unsupported(&self, env: &Envelope<'_>) -> Option<String> {
        if env.smtputf8 && !self.caps.smtputf8 {
            return Some(format!(
                "553 5.6.7 {} does not support SMTPUTF8, which this message needs",
                self.host
            ));
        }
        if env.eight_bit && !self.caps.eight_bit_mime {
            return Some(format!(
                "554 5.6.3 {} does not support 8BITMIME, which this message needs",
                self.host
            ));
        }
        if self.caps.too_large(env.body.len() as u64) {
            return Some(format!(
                "552 5.3.4 message of {} bytes is larger than {} accepts",
                env.body.len(),
                self.host
            ));
        }
        None
    }

    fn mail_command(&self, env: &Envelope<'_>) -> String {
        let mut cmd = format!("MAIL FROM:<{}>", env.sender);
        if self.caps.size.is_some() {
            cmd.push_str(&format!(" SIZE={}", env.body.len()));
        }
        if env.eight_bit {
            cmd.push_str(" BODY=8BITMIME");
        }
        if env.smtputf8 {
            cmd.push_str(" SMTPUTF8");
        }
        // RFC 3461 §5.2.1: the DSN parameters go on only to a hop that
        // offers DSN, as xtext; a value that cannot be sent is left out.
        if self.caps.dsn {
            if let Some(ret) = env.ret_full {
                cmd.push_str(if ret { " RET=FULL" } else { " RET=HDRS" });
            }
            if let Some(envid) = env
                .envid
                .and_then(|e| dsn_param(dsn_params::envid_param(e)))
            {
                cmd.push_str(&format!(" ENVID={envid}"));
            }
        }
        cmd.push_str("\r\n");
        cmd
    }

    fn rcpt_command(&self, r: &OutRecipient, env: &Envelope<'_>) -> String {
        let mut cmd = format!("RCPT TO:<{}>", r.address);
        if self.caps.dsn {
            if let Some(n) = r.notify.as_deref() {
                if let Some(n) = dsn_param(dsn_params::Notify::parse(Some(n))) {
                    cmd.push_str(&format!(" NOTIFY={}", n.to_param()));
                }
            }
            let utf8_session = env.smtputf8 && self.caps.smtputf8;
            if let Some(o) = r
                .orcpt
                .as_deref()
                .and_then(|o| dsn_param(dsn_params::orcpt_param(o, utf8_session)))
            {
                cmd.push_str(&format!(" ORCPT={o}"));
            }
        }
        cmd.push_str("\r\n");
        cmd
    }

    /// Ends the session politely; errors are of no interest any more.
    pub async fn quit(mut self) {
        if self.send(b"QUIT\r\n").await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.read_reply()).await;
        }
        let _ = self.stream.shutdown().await;
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| ClientError::Timeout)??;
        Ok(())
    }

    /// Reads one complete reply.
    async fn read_reply(&mut self) -> Result<ServerReply, ClientError> {
        let mut parser = ReplyParser::new();
        loop {
            let line = self.read_line().await?;
            if let Some(reply) = parser.push_line(&line)? {
                return Ok(reply);
            }
        }
    }

    /// One line without its line end (CRLF, or a bare LF from a sloppy
    /// server).
    async fn read_line(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(ClientError::Protocol(reply::MalformedReply(
                    "reply line too long".into(),
                )));
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .map_err(|_| ClientError::Timeout)??;
            if n == 0 {
                return Err(ClientError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The reply to DATA or to the final dot decides for every recipient
/// that RCPT had accepted.
fn settle_accepted(outcomes: &mut [RcptOutcome], reply: &ServerReply) {
    for o in outcomes.iter_mut() {
        if matches!(o, RcptOutcome::Delivered(_)) {
            *o = RcptOutcome::from_reply(reply);
        }
    }
}

/// A DSN parameter that can be sent, or `None` (logged) if the stored
/// value cannot.
fn dsn_param<T>(value: Result<T, dsn_params::InvalidParam>) -> Option<T> {
    match value {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "relay: a stored DSN parameter is not passed on");
            None
        }
    }
}

/// Shared TLS client configurations, built once.
pub type SharedTls = Arc<tls::TlsClients>;
