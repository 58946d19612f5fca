//! TLS on the connections to the database (`[store] tls`,
//! `tls_ca_file`), with rustls (the ring provider, as everywhere in
//! mailgate) through `tokio-postgres-rustls`.
//!
//! # Modes
//! - [`TlsMode::Disable`]: plain TCP (or a Unix socket). The default,
//!   for a database on the same host or a trusted network.
//! - [`TlsMode::Require`]: TLS, refusing a server that does not offer it,
//!   but the server's certificate is not checked (encrypted, not
//!   authenticated: a machine in the middle can still pose as the
//!   database). As libpq's `sslmode=require`. The handshake signatures
//!   are still checked, so the session keys are the server's.
//! - [`TlsMode::VerifyFull`]: TLS, and the certificate must chain to a
//!   trusted root and name the host of the URL (a DNS name, or an IP
//!   address in its subjectAltName). Roots: the PEM file
//!   [`PgTls::ca_file`], else the system's. As libpq's
//!   `sslmode=verify-full`.
//!
//! There is no "prefer" (TLS if the server offers it, plain text
//! otherwise): it protects against nothing, since whoever can read the
//! traffic can also answer that TLS is not offered.
//!
//! Every connection of a node uses the mode: the pool's, the change
//! listener's ([`super::notify`]), `store migrate`'s.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::config::SslMode;

use crate::{StoreError, StoreResult};

/// The connector every connection to the database is made with.
pub type Connector = tokio_postgres_rustls::MakeRustlsConnect;

/// `[store] tls`: whether and how the connection is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS without checking the certificate.
    Require,
    /// TLS, the certificate checked against the roots and the host name.
    VerifyFull,
}

impl TlsMode {
    /// The word of `[store] tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Require => "require",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    /// The mode named by `word` (`disable`, `require`, `verify-full`).
    pub fn parse(word: &str) -> Option<TlsMode> {
        match word {
            "disable" => Some(TlsMode::Disable),
            "require" => Some(TlsMode::Require),
            "verify-full" => Some(TlsMode::VerifyFull),
            _ => None,
        }
    }
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TLS settings of the connections to the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgTls {
    /// The mode.
    pub mode: TlsMode,
    /// With [`TlsMode::VerifyFull`]: a PEM file of the roots to trust
    /// instead of the system's (a private CA).
    pub ca_file: Option<PathBuf>,
}

impl PgTls {
    /// Refuses settings that contradict each other or the URL: a
    /// `tls_ca_file` without `verify-full`; an `sslmode` in the URL other
    /// than this mode (`prefer`, libpq's default, is not told apart from
    /// no `sslmode`); TLS to a Unix socket (PostgreSQL has none there).
    pub fn check(&self, client: &tokio_postgres::Config) -> StoreResult<()> {
        if self.ca_file.is_some() && self.mode != TlsMode::VerifyFull {
            return Err(StoreError::Invalid(format!(
                "[store] tls_ca_file is only used with tls = \"verify-full\" (tls is \"{}\")",
                self.mode
            )));
        }
        let url_mode = match client.get_ssl_mode() {
            SslMode::Disable => Some(TlsMode::Disable),
            SslMode::Require => Some(TlsMode::Require),
            _ => None,
        };
        if let Some(url_mode) = url_mode {
            let agrees = url_mode == self.mode
                || (url_mode == TlsMode::Require && self.mode == TlsMode::VerifyFull);
            if !agrees {
                return Err(StoreError::Invalid(format!(
                    "[store] url says sslmode={url_mode} but [store] tls is \"{}\": set [store] \
                     tls (\"disable\", \"require\" or \"verify-full\") and leave sslmode out of the URL",
                    self.mode
                )));
            }
        }
        if self.mode != TlsMode::Disable {
            let unix = client
                .get_hosts()
                .iter()
                .any(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
            if unix {
                return Err(StoreError::Invalid(format!(
                    "[store] tls = \"{}\" but the URL names a Unix socket, where PostgreSQL \
                     has no TLS: use tls = \"disable\" there, or a TCP host",
                    self.mode
                )));
            }
        }
        Ok(())
    }

    /// [`PgTls::check`] on a URL; a URL that does not parse is not this
    /// check's business (it is refused as such elsewhere).
    pub fn check_url(&self, url: &str) -> StoreResult<()> {
        match url.parse::<tokio_postgres::Config>() {
            Ok(c) => self.check(&c),
            Err(_) => Ok(()),
        }
    }

    /// Sets `client`'s `sslmode` to this mode (TLS or not; the connector
    /// decides what is verified).
    pub fn apply(&self, client: &mut tokio_postgres::Config) {
        client.ssl_mode(match self.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Require | TlsMode::VerifyFull => SslMode::Require,
        });
    }

    /// The connector for this mode. Reads [`PgTls::ca_file`] (or the
    /// system's roots) now; an unreadable file, one without a
    /// certificate, or no root at all is an error.
    pub fn connector(&self) -> StoreResult<Connector> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Invalid(format!("TLS setup: {e}")))?;
        let config = match self.mode {
            // Never used for a handshake (sslmode=disable), but the
            // connection type is the same for every mode.
            TlsMode::Disable => builder
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
            TlsMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(
                    mailgate_tls::AnyServerCertificate::new(provider),
                ))
                .with_no_client_auth(),
            TlsMode::VerifyFull => builder
                .with_root_certificates(self.roots()?)
                .with_no_client_auth(),
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }

    /// The roots of `verify-full`.
    fn roots(&self) -> StoreResult<RootCertStore> {
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                use rustls::pki_types::pem::PemObject;
                let fail = |why: String| {
                    StoreError::Invalid(format!("[store] tls_ca_file {}: {why}", path.display()))
                };
                let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| fail(e.to_string()))?;
                if certs.is_empty() {
                    return Err(fail("no certificate in the file".into()));
                }
                for c in certs {
                    roots.add(c).map_err(|e| fail(e.to_string()))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    // A broken system certificate is skipped, not fatal.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(StoreError::Invalid(
                        "[store] tls = \"verify-full\": the system has no trusted root \
                         certificates; name the database's CA in [store] tls_ca_file"
                            .into(),
                    ));
                }
            }
        }
        Ok(roots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> tokio_postgres::Config {
        u.parse().unwrap()
    }

    #[test]
    fn modes_and_contradictions() {
        for m in [TlsMode::Disable, TlsMode::Require, TlsMode::VerifyFull] {
            assert_eq!(TlsMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(TlsMode::parse("prefer"), None);
        let plain = PgTls::default();
        let require = PgTls {
            mode: TlsMode::Require,
            ca_file: None,
        };
        let full = PgTls {
            mode: TlsMode::VerifyFull,
            ca_file: Some("/ca.pem".into()),
        };
        let tcp = url("postgres://m@db.example:5432/m");
        for t in [&plain, &require, &full] {
            t.check(&tcp).unwrap();
        }
        // sslmode in the URL must agree.
        let e = plain
            .check(&url("postgres://m@db.example/m?sslmode=require"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslmode=require") && e.contains("tls"), "{e}");
        assert!(require
            .check(&url("postgres://m@db.example/m?sslmode=disable"))
            .is_err());
        require
            .check(&url("postgres://m@db.example/m?sslmode=require"))
            .unwrap();
        full.check(&url("postgres://m@db.example/m?sslmode=require"))
            .unwrap();
        // A CA file without verify-full.
        let e = PgTls {
            mode: TlsMode::Require,
            ca_file: Some("/ca.pem".into()),
        }
        .check(&tcp)
        .unwrap_err()
        .to_string();
        assert!(e.contains("tls_ca_file"), "{e}");
        // No TLS on a Unix socket.
        let unix = url("host=/run/postgresql dbname=m");
        plain.check(&unix).unwrap();
        assert!(require.check(&unix).is_err());
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let t = PgTls {
            mode: TlsMode::VerifyFull,
            ca_file: Some(empty),
        };
        let e = t.connector().err().expect("refused").to_string();
        assert!(e.contains("no certificate"), "{e}");
        let t = PgTls {
            mode: TlsMode::VerifyFull,
            ca_file: Some(dir.path().join("missing.pem")),
        };
        assert!(t.connector().is_err());
        PgTls::default().connector().unwrap();
        PgTls {
            mode: TlsMode::Require,
            ca_file: None,
        }
        .connector()
        .unwrap();
    }
}
