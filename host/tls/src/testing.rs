//! Helpers for tests of the protocol crates: a TLS client that trusts
//! exactly the server's current certificate, so sessions can be driven
//! through `tokio::io::duplex` without sockets or a CA.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;

use crate::certs::Certificates;
use crate::error::TlsError;

/// Connects as a TLS client over `stream` to a server presenting `certs`'
/// current certificate (named `hostname`), offering `alpn`.
pub async fn connect<S>(
    certs: &Certificates,
    hostname: &str,
    alpn: &[&[u8]],
    stream: S,
) -> Result<TlsStream<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut roots = RootCertStore::empty();
    let current = certs.current();
    let leaf = current
        .end_entity_cert()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    roots
        .add(leaf.clone().into_owned())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ClientConfig::builder_with_provider(certs.provider().clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let name =
        ServerName::try_from(hostname.to_string()).map_err(|e| TlsError::Config(e.to_string()))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(TlsError::Handshake)
}
