//! TLS for STARTTLS (RFC 3207) on the client side.
//!
//! Two rustls configurations, both with the `ring` provider: one that
//! checks the server's certificate against the roots (the system's, plus
//! any the configuration adds) and one that accepts any certificate. The
//! second is for opportunistic TLS: RFC 7435 §1.1 — encryption without
//! authentication still defeats passive eavesdropping, and most MX hosts
//! present certificates that do not name them, so refusing those would
//! mean sending in plain text instead.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
pub use rustls::pki_types::CertificateDer;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};

/// The two client configurations.
#[derive(Clone)]
pub struct TlsClients {
    /// Certificate checked against the roots and the host name.
    pub verified: Arc<ClientConfig>,
    /// Any certificate (opportunistic encryption).
    pub opportunistic: Arc<ClientConfig>,
    /// The WebPKI check of `verified`, on its own: tells after an
    /// opportunistic handshake whether the certificate would have passed
    /// (MTA-STS `testing` mode reports it). `None` without any root.
    checker: Option<Arc<dyn ServerCertVerifier>>,
}

/// TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("TLS setup: {0}")]
pub struct TlsSetupError(String);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsClients {
    /// Builds both; `extra_roots` are trusted besides the system's roots
    /// (`system_roots = false` leaves those out, for tests).
    pub fn new(
        extra_roots: &[CertificateDer<'static>],
        system_roots: bool,
    ) -> Result<TlsClients, TlsSetupError> {
        let mut roots = RootCertStore::empty();
        if system_roots {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A broken system certificate is skipped, not fatal.
                let _ = roots.add(cert);
            }
        }
        for cert in extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| TlsSetupError(e.to_string()))?;
        }
        let checker = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots.clone()),
            provider(),
        )
        .build()
        .ok()
        .map(|v| v as Arc<dyn ServerCertVerifier>);
        let verified = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let opportunistic = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(mailgate_tls::AnyServerCertificate::new(
                provider(),
            )))
            .with_no_client_auth();
        Ok(TlsClients {
            verified: Arc::new(verified),
            opportunistic: Arc::new(opportunistic),
            checker,
        })
    }

    /// Whether the chain `certs` (end entity first), as a server sent it,
    /// is valid for `host` under the roots of [`TlsClients::verified`]:
    /// `Err` says why not.
    pub fn check(&self, host: &str, certs: &[CertificateDer<'static>]) -> Result<(), String> {
        let checker = self.checker.as_ref().ok_or("no trusted roots")?;
        let (end, intermediates) = certs.split_first().ok_or("no certificate")?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        checker
            .verify_server_cert(end, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The certificates of the PEM file `path` (`[relay] tls_ca_file`), to
/// be trusted as roots besides the system's; a file that cannot be read,
/// holds a broken PEM block, or no certificate at all is an error.
pub fn load_pem_roots(
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    use rustls::pki_types::pem::PemObject;
    let fail = |why: String| TlsSetupError(format!("{}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    // Each must be usable as a trust anchor.
    let mut store = RootCertStore::empty();
    for c in &certs {
        store.add(c.clone()).map_err(|e| fail(e.to_string()))?;
    }
    Ok(certs)
}
