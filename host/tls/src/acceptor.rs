//! [`Acceptor`]: one listener's TLS server side.
//!
//! Each protocol gets its own acceptor because the ALPN name differs
//! (RFC 7301 §3.2: a server that does not speak any protocol the client
//! offers answers `no_application_protocol`); all share one
//! [`Certificates`], so one reload serves every listener.
//!
//! ```text
//! let certs = Certificates::load(cert, key)?;      // once, at start
//! let imap = Acceptor::new(&certs, Alpn::Imap)?;    // once per listener
//! let tls = imap.accept(tcp_stream).await?;         // per connection
//! ```

use std::sync::Arc;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use crate::certs::{Certificates, Resolver};
use crate::error::TlsError;

/// The application protocol a listener speaks inside TLS, for ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// No registered ALPN name (SMTP and submission): client offers are
    /// ignored.
    None,
    /// `pop3` (IANA ALPN registry, RFC 2595).
    Pop3,
    /// `imap` (IANA ALPN registry, RFC 2595; RFC 9051 §11.1).
    Imap,
}

impl Alpn {
    /// The wire names the server accepts.
    fn names(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::None => vec![],
            Alpn::Pop3 => vec![b"pop3".to_vec()],
            Alpn::Imap => vec![b"imap".to_vec()],
        }
    }
}

/// What the logs and `Received:` say about a TLS session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The negotiated ALPN name, if any.
    pub alpn: Option<String>,
}

impl SessionInfo {
    /// Describes an established TLS stream.
    pub fn of<S>(stream: &TlsStream<S>) -> SessionInfo {
        let (_, conn) = stream.get_ref();
        SessionInfo {
            version: conn
                .protocol_version()
                .and_then(|v| v.as_str())
                .map(|v| v.replace("TLSv1_", "TLSv1."))
                .unwrap_or_else(|| "unknown".into()),
            cipher: conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("unknown")
                .to_string(),
            alpn: conn
                .alpn_protocol()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
        }
    }
}

/// How a listener offers TLS; every protocol's context holds one.
#[derive(Debug, Clone, Default)]
pub enum TlsMode {
    /// No TLS (no `[tls]` configured): STARTTLS/STLS are not offered.
    #[default]
    None,
    /// TLS after the protocol's upgrade command (SMTP STARTTLS, RFC 3207;
    /// POP3 STLS, RFC 2595; IMAP STARTTLS, RFC 9051 §6.2.1).
    StartTls(Acceptor),
    /// TLS from the first byte (RFC 8314 §3.3: submissions, POP3S, IMAPS).
    Implicit(Acceptor),
}

impl TlsMode {
    /// The acceptor for an upgrade command, if the listener offers one.
    pub fn starttls(&self) -> Option<&Acceptor> {
        match self {
            TlsMode::StartTls(a) => Some(a),
            _ => None,
        }
    }

    /// The acceptor to run before the greeting, on implicit-TLS listeners.
    pub fn implicit(&self) -> Option<&Acceptor> {
        match self {
            TlsMode::Implicit(a) => Some(a),
            _ => None,
        }
    }
}

/// The TLS server side of one listener. Cheap to clone.
#[derive(Clone)]
pub struct Acceptor {
    inner: tokio_rustls::TlsAcceptor,
    /// The `protocol` label of `mailgate_tls_handshakes_total`.
    counted: mailgate_metrics::Protocol,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

impl Acceptor {
    /// An acceptor serving `certs` with the ALPN name of `alpn`.
    pub fn new(certs: &Arc<Certificates>, alpn: Alpn) -> Result<Acceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(certs.provider().clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(certs.clone())));
        config.alpn_protocols = alpn.names();
        // Our suite order (strongest first) wins over the client's.
        config.ignore_client_order = true;
        let counted = match alpn {
            Alpn::None => mailgate_metrics::Protocol::Smtp,
            Alpn::Pop3 => mailgate_metrics::Protocol::Pop3,
            Alpn::Imap => mailgate_metrics::Protocol::Imap,
        };
        Ok(Acceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            counted,
        })
    }

    /// Runs the server handshake on `stream`. The caller bounds it with a
    /// timeout. Nothing the client sent before the handshake may still be
    /// buffered by the caller: those bytes were sent in clear and must be
    /// thrown away (STARTTLS injection, CVE-2011-0411).
    pub async fn accept<S>(&self, stream: S) -> Result<TlsStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let done = self.inner.accept(stream).await;
        mailgate_metrics::tls_handshake(self.counted, done.is_ok());
        done.map_err(TlsError::Handshake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selfsigned::ensure_self_signed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn certs(dir: &std::path::Path) -> Arc<Certificates> {
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        ensure_self_signed("mx.test", &c, &k).unwrap();
        Certificates::load(&c, &k).unwrap()
    }

    #[tokio::test]
    async fn handshake_alpn_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs(dir.path());
        let acceptor = Acceptor::new(&certs, Alpn::Imap).unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut s = acceptor.accept(a).await.unwrap();
            let info = SessionInfo::of(&s);
            s.write_all(b"* OK\r\n").await.unwrap();
            s.flush().await.unwrap();
            info
        });
        let mut c = crate::testing::connect(&certs, "mx.test", &[b"imap"], b)
            .await
            .unwrap();
        let mut buf = [0u8; 6];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"* OK\r\n");
        let info = server.await.unwrap();
        assert_eq!(info.version, "TLSv1.3");
        assert_eq!(info.alpn.as_deref(), Some("imap"));
    }

    #[tokio::test]
    async fn wrong_alpn_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs(dir.path());
        let acceptor = Acceptor::new(&certs, Alpn::Pop3).unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move { acceptor.accept(a).await.is_err() });
        let client = crate::testing::connect(&certs, "mx.test", &[b"http/1.1"], b).await;
        assert!(client.is_err());
        assert!(
            server.await.unwrap(),
            "the server must refuse a foreign ALPN"
        );
    }

    #[tokio::test]
    async fn garbage_instead_of_a_client_hello_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs(dir.path());
        let acceptor = Acceptor::new(&certs, Alpn::None).unwrap();
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move { acceptor.accept(a).await.is_err() });
        b.write_all(b"MAIL FROM:<evil@example.net>\r\n")
            .await
            .unwrap();
        drop(b);
        assert!(server.await.unwrap());
    }
}
