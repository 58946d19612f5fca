//! [`Certificates`]: the key pair in force, swapped atomically on reload.
//!
//! rustls asks a [`ResolvesServerCert`] for the key pair at every
//! handshake; ours returns whatever was loaded last. A reload replaces
//! that `Arc`, so new handshakes get the new pair while sessions already
//! under TLS keep theirs: nothing is dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use crate::error::TlsError;
use crate::load::{files_digest, load_pair, Loaded};

/// How often the watcher looks at the PEM files by default.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// New files were loaded; the new certificate's fingerprint.
    Changed(String),
    /// The files are the ones already in force.
    Unchanged,
}

/// The server's certificate and key, from two PEM files, reloadable.
#[derive(Debug)]
pub struct Certificates {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
    /// The digest of the files at the last attempt, good or bad, so that a
    /// broken pair is reported once, not at every poll.
    last_attempt: Mutex<[u8; 32]>,
}

impl Certificates {
    /// Loads the pair from `cert` and `key` (PEM). Fails if either file is
    /// missing or unusable: a server must not start without its
    /// certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certificates>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = load_pair(cert, key, &provider)?;
        Ok(Arc::new(Certificates {
            cert_path: cert.into(),
            key_path: key.into(),
            provider,
            last_attempt: Mutex::new(loaded.digest),
            current: RwLock::new(loaded),
        }))
    }

    /// The crypto provider every acceptor uses (ring).
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// The SHA-256 fingerprint of the certificate in force.
    pub fn fingerprint(&self) -> String {
        self.read().fingerprint.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The key pair in force.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.read().key.clone()
    }

    /// Loads the files again if their contents changed. On error the pair
    /// in force stays.
    pub fn reload(&self) -> Result<Reloaded, TlsError> {
        let digest = files_digest(&self.cert_path, &self.key_path);
        *self.last_attempt.lock().unwrap_or_else(|p| p.into_inner()) = digest;
        if digest == self.read().digest {
            return Ok(Reloaded::Unchanged);
        }
        let loaded = load_pair(&self.cert_path, &self.key_path, &self.provider)?;
        let fingerprint = loaded.fingerprint.clone();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(Reloaded::Changed(fingerprint))
    }

    /// Reloads and logs the outcome; `why` says what triggered it.
    pub fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(Reloaded::Changed(fingerprint)) => {
                tracing::info!(trigger = why, %fingerprint, cert = %self.cert_path.display(), "tls: certificate reloaded");
            }
            Ok(Reloaded::Unchanged) => {
                tracing::debug!(trigger = why, "tls: certificate files unchanged");
            }
            Err(e) => {
                tracing::warn!(trigger = why, error = %e, "tls: reload failed; keeping the certificate in force");
            }
        }
    }

    /// Whether the files differ from the last attempt (checked by the
    /// watcher before it tries a reload).
    fn files_changed(&self) -> bool {
        let digest = files_digest(&self.cert_path, &self.key_path);
        digest != *self.last_attempt.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches the PEM files every `interval` and reloads when they
    /// change, until `stop` turns `true` (or its sender is gone). The
    /// files are compared by content, so a rewrite within one second (the
    /// granularity of some file systems' mtime) is still seen.
    pub async fn watch(self: Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
            let me = self.clone();
            // Reading files is blocking I/O: keep it off the async workers.
            let changed = tokio::task::spawn_blocking(move || {
                if me.files_changed() {
                    me.reload_logged("file change");
                    true
                } else {
                    false
                }
            })
            .await
            .unwrap_or(false);
            if changed {
                tracing::debug!("tls: watcher handled a change");
            }
        }
    }
}

/// The rustls side: every handshake gets the pair in force.
#[derive(Debug)]
pub(crate) struct Resolver(pub(crate) Arc<Certificates>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selfsigned::ensure_self_signed;

    #[test]
    fn reload_swaps_only_on_change_and_survives_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let first = ensure_self_signed("one.test", &cert, &key).unwrap();
        let certs = Certificates::load(&cert, &key).unwrap();
        assert_eq!(certs.fingerprint(), first);
        assert_eq!(certs.reload().unwrap(), Reloaded::Unchanged);

        // A half-written replacement: the old pair stays in force.
        std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        assert!(certs.reload().is_err());
        assert_eq!(certs.fingerprint(), first);
        assert!(!certs.files_changed(), "a failed attempt is remembered");

        std::fs::remove_file(&cert).unwrap();
        std::fs::remove_file(&key).unwrap();
        let second = ensure_self_signed("two.test", &cert, &key).unwrap();
        assert_ne!(first, second);
        assert!(certs.files_changed());
        assert_eq!(certs.reload().unwrap(), Reloaded::Changed(second.clone()));
        assert_eq!(certs.fingerprint(), second);
    }

    #[test]
    fn a_missing_file_fails_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let e =
            Certificates::load(&dir.path().join("no.pem"), &dir.path().join("no.key")).unwrap_err();
        assert!(e.to_string().contains("no.pem"), "{e}");
    }
}
