//! Reading a certificate chain and its private key from PEM files.
//!
//! The certificate file holds the server certificate first, then any
//! intermediates (the order clients expect, RFC 8446 §4.4.2). The key file
//! holds one private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::TlsError;

/// A key pair as loaded, with what the logs and the dev profile show.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The chain and signing key, ready for rustls.
    pub key: Arc<CertifiedKey>,
    /// SHA-256 fingerprint of the server certificate ([`fingerprint_sha256`]).
    pub fingerprint: String,
    /// A digest of both files' bytes, to notice when they change.
    pub digest: [u8; 32],
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.into(),
        source,
    })
}

/// The digest of the two files' contents, used to tell whether they
/// changed since the last load. A file that cannot be read digests as
/// empty, so that its reappearance counts as a change.
pub fn files_digest(cert: &Path, key: &Path) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for path in [cert, key] {
        let bytes = std::fs::read(path).unwrap_or_default();
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(&bytes);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Parses PEM certificate and key bytes into a checked key pair. `cert`
/// and `key` name the files in messages only.
pub fn parse_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert.into(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.into(),
            message: "no CERTIFICATE section found".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        path: key.into(),
        message: format!("no usable private key: {e}"),
    })?;
    let pair = CertifiedKey::from_der(chain, private, provider).map_err(|e| TlsError::Pair {
        cert: cert.into(),
        key: key.into(),
        message: e.to_string(),
    })?;
    Ok(Arc::new(pair))
}

/// Reads and checks the pair in `cert` and `key`.
pub fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let digest = files_digest(cert, key);
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let pair = parse_pair(&cert_pem, &key_pem, cert, key, provider)?;
    let fingerprint = pair
        .end_entity_cert()
        .map(|c| fingerprint_sha256(c.as_ref()))
        .unwrap_or_default();
    Ok(Loaded {
        key: pair,
        fingerprint,
        digest,
    })
}

/// The SHA-256 fingerprint of a DER certificate, as `openssl x509
/// -fingerprint -sha256` prints it: upper-case hex pairs joined by `:`.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_form() {
        let f = fingerprint_sha256(b"");
        assert!(f.starts_with("E3:B0:C4:42:98:FC:1C:14"), "{f}");
        assert_eq!(f.len(), 32 * 3 - 1);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let p = rustls::crypto::ring::default_provider();
        let (c, k) = (Path::new("c.pem"), Path::new("k.pem"));
        for (cert, key) in [
            (&b""[..], &b""[..]),
            (
                b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                b"",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                b"junk",
            ),
        ] {
            assert!(parse_pair(cert, key, c, k, &p).is_err());
        }
    }
}
