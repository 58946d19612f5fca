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

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
pub use rustls::pki_types::CertificateDer;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The two client configurations.
#[derive(Clone)]
pub struct TlsClients {
    /// Certificate checked against the roots and the host name.
    pub verified: Arc<ClientConfig>,
    /// Any certificate (opportunistic encryption).
    pub opportunistic: Arc<ClientConfig>,
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
        let verified = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let opportunistic = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth();
        Ok(TlsClients {
            verified: Arc::new(verified),
            opportunistic: Arc::new(opportunistic),
        })
    }
}

/// Accepts any certificate, but still checks that the server holds its
/// key (the handshake signatures), so the session keys are real.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
