//! A scripted SMTP server for tests: says what the script says, records
//! every transaction it accepts, and can offer STARTTLS with a
//! self-signed certificate. The real `mailgate-smtp` session is used for
//! end-to-end tests; this peer is for the failure cases a real server will
//! not produce on demand (4xx on one recipient, a missing extension).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::client::Stream;

/// What the peer answers.
#[derive(Clone)]
pub struct PeerScript {
    /// The greeting line, e.g. `220 peer.test ESMTP`.
    pub greeting: String,
    /// EHLO keywords after the first line.
    pub capabilities: Vec<String>,
    /// The reply to RCPT for an address (full reply line).
    pub rcpt: Arc<dyn Fn(&str) -> String + Send + Sync>,
    /// The reply after the final dot.
    pub data_done: String,
    /// A TLS server configuration offered through STARTTLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Offer STARTTLS, answer it with `220`, then send bytes that are not
    /// TLS and hang up: the client's handshake fails.
    pub broken_tls: bool,
    /// Wait this long before the greeting (a slow server).
    pub greeting_delay: std::time::Duration,
}

impl Default for PeerScript {
    fn default() -> Self {
        PeerScript {
            greeting: "220 peer.test ESMTP".into(),
            capabilities: [
                "PIPELINING",
                "8BITMIME",
                "SIZE 1000000",
                "ENHANCEDSTATUSCODES",
            ]
            .map(String::from)
            .to_vec(),
            rcpt: Arc::new(|_| "250 2.1.5 Ok".into()),
            data_done: "250 2.0.0 Ok: queued".into(),
            tls: None,
            broken_tls: false,
            greeting_delay: std::time::Duration::ZERO,
        }
    }
}

/// One transaction the peer accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMessage {
    /// The MAIL command's argument line.
    pub mail: String,
    /// The recipients it accepted.
    pub rcpts: Vec<String>,
    /// The data, dot-unstuffed, without the final dot line.
    pub data: Vec<u8>,
    /// Whether the session was under TLS.
    pub tls: bool,
    /// Which connection (1-based count) carried it.
    pub connection: usize,
}

#[derive(Default)]
struct Log {
    messages: Vec<PeerMessage>,
    connections: usize,
    commands: Vec<String>,
}

/// A running scripted peer; stops when dropped.
pub struct ScriptedPeer {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    task: JoinHandle<()>,
}

impl Drop for ScriptedPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedPeer {
    /// Listens on `ip` (port chosen by the system).
    pub async fn start(ip: &str, script: PeerScript) -> std::io::Result<ScriptedPeer> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Log::default()));
        let l = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = {
                    let mut g = l.lock().unwrap_or_else(|p| p.into_inner());
                    g.connections += 1;
                    g.connections
                };
                let (script, log) = (script.clone(), l.clone());
                tokio::spawn(async move {
                    let _ = session(Box::new(stream), script, log, n).await;
                });
            }
        });
        Ok(ScriptedPeer { addr, log, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The messages accepted so far.
    pub fn messages(&self) -> Vec<PeerMessage> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .messages
            .clone()
    }
    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .connections
    }
    /// Every command line received, in order.
    pub fn commands(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .commands
            .clone()
    }
}

async fn write(s: &mut (impl AsyncWrite + Unpin), line: &str) -> std::io::Result<()> {
    s.write_all(format!("{line}\r\n").as_bytes()).await?;
    s.flush().await
}

async fn session(
    stream: Box<dyn Stream>,
    script: PeerScript,
    log: Arc<Mutex<Log>>,
    connection: usize,
) -> std::io::Result<()> {
    let mut io = BufReader::new(stream);
    let mut tls = false;
    tokio::time::sleep(script.greeting_delay).await;
    write(&mut io, &script.greeting).await?;
    let mut mail = None;
    let mut rcpts = Vec::new();
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let line = line.trim_end().to_string();
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .commands
            .push(line.clone());
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            let mut caps = script.capabilities.clone();
            if (script.tls.is_some() || script.broken_tls) && !tls {
                caps.push("STARTTLS".into());
            }
            let mut reply = String::from("250-peer.test");
            for (i, c) in caps.iter().enumerate() {
                let sep = if i + 1 == caps.len() { ' ' } else { '-' };
                reply.push_str(&format!("\r\n250{sep}{c}"));
            }
            if caps.is_empty() {
                reply = "250 peer.test".into();
            }
            write(&mut io, &reply).await?;
        } else if upper == "STARTTLS" && script.broken_tls {
            write(&mut io, "220 2.0.0 Ready to start TLS").await?;
            // Wait for the ClientHello, then answer with plain text.
            let mut hello = [0u8; 512];
            let _ = tokio::io::AsyncReadExt::read(&mut io, &mut hello).await?;
            write(&mut io, "this is not a TLS server hello").await?;
            return Ok(());
        } else if upper == "STARTTLS" && script.tls.is_some() && !tls {
            write(&mut io, "220 2.0.0 Ready to start TLS").await?;
            let Some(config) = script.tls.clone() else {
                return Ok(());
            };
            let inner = io.into_inner();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let stream = acceptor.accept(inner).await?;
            io = BufReader::new(Box::new(stream));
            tls = true;
            mail = None;
            rcpts.clear();
        } else if upper.starts_with("MAIL FROM:") {
            mail = Some(line[10..].to_string());
            rcpts.clear();
            write(&mut io, "250 2.1.0 Ok").await?;
        } else if upper.starts_with("RCPT TO:") {
            let addr = line[8..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches(|c| c == '<' || c == '>')
                .to_string();
            let reply = (script.rcpt)(&addr);
            if reply.starts_with('2') {
                rcpts.push(addr);
            }
            write(&mut io, &reply).await?;
        } else if upper == "DATA" {
            if mail.is_none() || rcpts.is_empty() {
                write(&mut io, "554 5.5.1 No valid recipients").await?;
                continue;
            }
            write(&mut io, "354 go ahead").await?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                let n = read_until_lf(&mut io, &mut l).await?;
                if n == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(l);
            }
            let ok = script.data_done.starts_with('2');
            if ok {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .messages
                    .push(PeerMessage {
                        mail: mail.take().unwrap_or_default(),
                        rcpts: std::mem::take(&mut rcpts),
                        data,
                        tls,
                        connection,
                    });
            }
            write(&mut io, &script.data_done).await?;
        } else if upper == "RSET" {
            mail = None;
            rcpts.clear();
            write(&mut io, "250 2.0.0 Ok").await?;
        } else if upper == "QUIT" {
            write(&mut io, "221 2.0.0 Bye").await?;
            return Ok(());
        } else if upper == "NOOP" {
            write(&mut io, "250 2.0.0 Ok").await?;
        } else {
            write(&mut io, "502 5.5.2 Command not recognized").await?;
        }
    }
}

async fn read_until_lf(
    io: &mut BufReader<Box<dyn Stream>>,
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    io.read_until(b'\n', out).await
}

/// A self-signed certificate for `names` and a rustls server configuration
/// using it (ring provider).
pub fn self_signed_tls(
    names: &[&str],
) -> (
    Arc<rustls::ServerConfig>,
    rustls::pki_types::CertificateDer<'static>,
) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).expect("rcgen");
    let cert_der = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert_der.clone()], key)
    .expect("certificate");
    (Arc::new(config), cert_der)
}
