//! TLS for every mailgate protocol (SMTP STARTTLS and submissions, POP3
//! STLS and POP3S, IMAP STARTTLS and IMAPS).
//!
//! # Role
//! One place that knows rustls: it loads the certificate and key from PEM
//! files, swaps them for new ones when the files change or on SIGHUP, and
//! hands each protocol an [`Acceptor`] that turns any byte stream into a
//! TLS stream. Protocol crates only see [`Acceptor::accept`] and
//! [`TlsStream`]; they never build a rustls configuration themselves.
//!
//! # Invariants
//! - TLS 1.2 and 1.3 only, with the ring provider's AEAD suites (AES-GCM,
//!   ChaCha20-Poly1305) and ECDHE key exchange: every suite offered has
//!   forward secrecy. The server's order of preference wins.
//! - ALPN (RFC 7301) is set where a name is registered: `imap` and `pop3`
//!   (RFC 8314 §6.1 points to them). A client that offers ALPN without
//!   the listener's name is refused (`no_application_protocol`), which
//!   stops cross-protocol attacks of the ALPACA kind. SMTP has no
//!   registered name, so its acceptor ignores ALPN.
//! - A reload never disturbs sessions that are open: each handshake asks
//!   [`Certificates`] for the key pair in force at that moment; sessions
//!   keep the one they started with. A reload that fails (a half-written
//!   file, a key that does not match) keeps the old pair and is logged.
//!
//! # Layout
//! - [`error`]: the error type, [`TlsError`].
//! - [`load`]: reading a certificate chain and key from PEM files.
//! - [`certs`]: [`Certificates`], the reloadable key pair, and its file
//!   watcher.
//! - [`acceptor`]: [`Alpn`], [`Acceptor`], [`TlsMode`] (how a listener
//!   offers TLS) and [`SessionInfo`].
//! - [`selfsigned`]: the development profile's self-signed certificate.
//! - [`testing`]: a trusting TLS client for the protocol crates' tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acceptor;
pub mod certs;
pub mod error;
pub mod load;
pub mod selfsigned;
pub mod testing;
pub mod verify;
pub mod write;

pub use acceptor::{Acceptor, Alpn, SessionInfo, TlsMode};
pub use certs::Certificates;
pub use error::TlsError;
pub use load::fingerprint_sha256;
pub use selfsigned::{certificate_fingerprint, ensure_self_signed};
pub use tokio_rustls::server::TlsStream;
pub use verify::AnyServerCertificate;
pub use write::write_within;
