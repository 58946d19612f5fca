//! Errors of the TLS layer.

use std::path::PathBuf;

/// Why a certificate could not be loaded or a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key does not fit the certificate, or rustls refused it.
    #[error("certificate {cert} and key {key} do not make a usable pair: {message}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        message: String,
    },
    /// A self-signed certificate could not be made or written.
    #[error("cannot create a self-signed certificate: {0}")]
    Generate(String),
    /// The rustls configuration could not be built.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The handshake failed (bad client, wrong protocol, timeout...).
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}
