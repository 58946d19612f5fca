//! DKIM signing of outgoing mail (RFC 6376) and key generation for
//! `mailgate dkim generate DOMAIN`.
//!
//! One RSA-SHA256 key per local domain, selected by the domain of the
//! message's `From:` address (DMARC aligns on that domain, RFC 7489 §3.1),
//! falling back to the envelope sender's. Signing is done with `mail-auth`
//! on its pure-Rust crypto, at send time, so a key change applies to the
//! queue at once. A message whose domain has no key goes out unsigned.
//!
//! Headers signed (RFC 6376 §5.4.1 recommends From and the ones a reader
//! sees): see [`SIGNED_HEADERS`]; relaxed/relaxed canonicalization
//! (§3.4.2, §3.4.4) survives the header folding relays do.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::generate::DkimKeyPair;
use mail_auth::dkim::Canonicalization;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};

/// Headers covered by the signature (those present in the message).
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// A key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// Reading the key file failed.
    #[error("cannot read DKIM key {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key or the signing library refused.
    #[error("DKIM: {0}")]
    Crypto(String),
}

type DomainKey = mail_auth::dkim::DkimSigner<RsaKey<Sha256>, mail_auth::dkim::Done>;

/// Signs messages for the domains it has keys for.
#[derive(Default)]
pub struct DkimSigner {
    keys: HashMap<String, DomainKey>,
}

/// Shows the domains only, never key material.
impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut domains: Vec<&String> = self.keys.keys().collect();
        domains.sort();
        f.debug_struct("DkimSigner")
            .field("domains", &domains)
            .finish()
    }
}

impl DkimSigner {
    /// A signer without keys.
    pub fn new() -> DkimSigner {
        DkimSigner::default()
    }

    /// Adds the key for `domain` from PEM text (PKCS#1 or PKCS#8).
    pub fn add_pem(&mut self, domain: &str, selector: &str, pem: &[u8]) -> Result<(), DkimError> {
        let der =
            PrivateKeyDer::from_pem_slice(pem).map_err(|e| DkimError::Crypto(e.to_string()))?;
        let key =
            RsaKey::<Sha256>::from_key_der(der).map_err(|e| DkimError::Crypto(e.to_string()))?;
        let domain = domain.trim_end_matches('.').to_lowercase();
        let signer = mail_auth::dkim::DkimSigner::from_key(key)
            .domain(domain.clone())
            .selector(selector)
            .headers(SIGNED_HEADERS.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        self.keys.insert(domain, signer);
        Ok(())
    }

    /// Adds the key for `domain` from a PEM file.
    pub fn add_file(&mut self, domain: &str, selector: &str, path: &Path) -> Result<(), DkimError> {
        let pem = std::fs::read(path).map_err(|e| DkimError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.add_pem(domain, selector, &pem)
    }

    /// Whether any key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The message with a `DKIM-Signature:` header in front, signed for
    /// its `From:` domain (else `sender`'s); `None` when that domain has no
    /// key or signing failed (logged: the message then goes out unsigned
    /// rather than not at all).
    pub fn sign_for(&self, sender: &str, message: &[u8]) -> Option<Vec<u8>> {
        let domain = from_domain(message).or_else(|| domain_of(sender))?;
        let signer = self.keys.get(&domain)?;
        match signer.sign(message) {
            Ok(signature) => {
                let mut out = signature.to_header().into_bytes();
                out.extend_from_slice(message);
                Some(out)
            }
            Err(e) => {
                tracing::error!(%domain, error = %e, "dkim: signing failed");
                None
            }
        }
    }
}

fn domain_of(address: &str) -> Option<String> {
    let d = address
        .rsplit_once('@')?
        .1
        .trim_end_matches('.')
        .to_lowercase();
    (!d.is_empty()).then_some(d)
}

/// The domain of the first address in the `From:` header, if one parses.
fn from_domain(message: &[u8]) -> Option<String> {
    let headers = crate::dsn::header_section(message);
    let text = String::from_utf8_lossy(headers);
    let mut value = None;
    let mut lines = text.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        if line.len() >= 5 && line[..5].eq_ignore_ascii_case("from:") {
            let mut v = line[5..].to_string();
            while lines.peek().is_some_and(|l| l.starts_with([' ', '\t'])) {
                v.push_str(lines.next().unwrap_or(""));
            }
            value = Some(v);
            break;
        }
    }
    let value = value?;
    let addr = match (value.rfind('<'), value.rfind('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_string(),
        _ => value.trim().to_string(),
    };
    domain_of(&addr)
}

/// A new key and what to publish for it.
pub struct GeneratedKey {
    /// The private key, PEM (`RSA PRIVATE KEY`, PKCS#1), for the key file.
    pub private_pem: String,
    /// Where the TXT record goes: `<selector>._domainkey.<domain>`.
    pub dns_name: String,
    /// The TXT record's value: `v=DKIM1; k=rsa; p=...`.
    pub txt: String,
}

impl GeneratedKey {
    /// The record in zone-file form, split into 255-byte strings.
    pub fn zone_line(&self) -> String {
        let parts: Vec<String> = self
            .txt
            .as_bytes()
            .chunks(255)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect();
        format!("{}. IN TXT ( {} )", self.dns_name, parts.join(" "))
    }
}

/// `mailgate dkim generate DOMAIN`: an RSA key of `bits` (2048 is the
/// usual size; RFC 8301 §3.2 requires at least 1024).
pub fn generate(domain: &str, selector: &str, bits: usize) -> Result<GeneratedKey, DkimError> {
    let pair = DkimKeyPair::generate_rsa(bits).map_err(|e| DkimError::Crypto(e.to_string()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = b64.encode(pair.private_key());
    let mut pem = String::from("-----BEGIN RSA PRIVATE KEY-----\n");
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END RSA PRIVATE KEY-----\n");
    // Checks the key reads back the way the signer will read it.
    let der = PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(pair.private_key().to_vec()));
    RsaKey::<Sha256>::from_key_der(der).map_err(|e| DkimError::Crypto(e.to_string()))?;
    Ok(GeneratedKey {
        private_pem: pem,
        dns_name: format!("{selector}._domainkey.{}", domain.trim_end_matches('.')),
        txt: format!(
            "v=DKIM1; k=rsa; p={}",
            b64.encode(subject_public_key_info(pair.public_key()))
        ),
    })
}

/// DER length octets (X.690 §8.1.3, definite form).
fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

/// Wraps a PKCS#1 `RSAPublicKey` in a `SubjectPublicKeyInfo` (RFC 5280
/// §4.1.2.7) for the `p=` tag. RFC 6376 §3.6.1 names the bare
/// `RSAPublicKey`, but its own examples, OpenSSL-made keys and hence most
/// published records are `SubjectPublicKeyInfo`, and some verifiers
/// (OpenDKIM) read only that form; every verifier reads it.
fn subject_public_key_info(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1 (rsaEncryption), NULL }
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x03];
    bit_string.extend(der_length(pkcs1.len() + 1));
    bit_string.push(0); // no unused bits
    bit_string.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    out.extend(der_length(ALGORITHM.len() + bit_string.len()));
    out.extend_from_slice(&ALGORITHM);
    out.extend(bit_string);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_key_is_subject_public_key_info() {
        let key = generate("a.test", "s1", 1024).unwrap();
        let p = key.txt.split("p=").nth(1).unwrap();
        // The well-known prefix of a 1024-bit RSA SubjectPublicKeyInfo.
        assert!(
            p.starts_with("MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQ"),
            "{p}"
        );
        let key = generate("a.test", "s1", 2048).unwrap();
        let p = key.txt.split("p=").nth(1).unwrap();
        assert!(
            p.starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"),
            "{p}"
        );
        assert_eq!(der_length(5), vec![5]);
        assert_eq!(der_length(0x81), vec![0x81, 0x81]);
        assert_eq!(der_length(0x10e), vec![0x82, 0x01, 0x0e]);
    }
}
