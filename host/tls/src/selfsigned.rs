//! The development profile's self-signed certificate (rcgen).
//!
//! Made once, on first start, for the profile's host name, and kept in
//! the data directory so that a client that pinned its fingerprint keeps
//! trusting it across restarts. Never used without `--dev`.

use std::io::Write;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::TlsError;
use crate::load::fingerprint_sha256;

/// Makes a self-signed certificate for `hostname` in `cert` and `key`
/// unless `cert` exists already; returns the certificate's SHA-256
/// fingerprint either way. The key file is created readable by its owner
/// only.
pub fn ensure_self_signed(hostname: &str, cert: &Path, key: &Path) -> Result<String, TlsError> {
    if !cert.exists() {
        let names = vec![hostname.to_string()];
        let made = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        write_private(key, made.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(cert, made.cert.pem()).map_err(|source| TlsError::Read {
            path: cert.into(),
            source,
        })?;
    }
    certificate_fingerprint(cert)
}

/// The SHA-256 fingerprint ([`fingerprint_sha256`]) of the first
/// certificate in the PEM file `cert`.
pub fn certificate_fingerprint(cert: &Path) -> Result<String, TlsError> {
    let der = CertificateDer::from_pem_file(cert).map_err(|e| TlsError::Pem {
        path: cert.into(),
        message: e.to_string(),
    })?;
    Ok(fingerprint_sha256(der.as_ref()))
}

/// Writes a file that only its owner may read (a private key).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Read {
        path: path.into(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}
