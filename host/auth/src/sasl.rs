//! SASL message decoding (RFC 4616 PLAIN; the LOGIN mechanism's two
//! base64 prompts are decoded by [`decode_base64_text`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Why a SASL message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Not valid base64.
    #[error("invalid base64")]
    Base64,
    /// Not valid UTF-8.
    #[error("invalid UTF-8")]
    Utf8,
    /// Not `authzid NUL authcid NUL passwd`.
    #[error("malformed PLAIN message")]
    Malformed,
}

/// The credentials in a PLAIN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The identity to act as (often empty).
    pub authzid: String,
    /// The identity whose password is given.
    pub authcid: String,
    /// The password.
    pub password: String,
}

/// Decodes a base64 PLAIN message (RFC 4616 §2):
/// `message = [authzid] UTF8NUL authcid UTF8NUL passwd`.
pub fn decode_plain(b64: &str) -> Result<PlainCredentials, SaslError> {
    let bytes = STANDARD.decode(b64.trim()).map_err(|_| SaslError::Base64)?;
    let text = String::from_utf8(bytes).map_err(|_| SaslError::Utf8)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok(PlainCredentials {
        authzid: authzid.into(),
        authcid: authcid.into(),
        password: password.into(),
    })
}

/// Decodes one base64 line into text (LOGIN mechanism answers).
pub fn decode_base64_text(b64: &str) -> Result<String, SaslError> {
    let bytes = STANDARD.decode(b64.trim()).map_err(|_| SaslError::Base64)?;
    String::from_utf8(bytes).map_err(|_| SaslError::Utf8)
}

/// Encodes text as base64 (for server challenges).
pub fn encode_base64(text: &[u8]) -> String {
    STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_rfc4616_example() {
        // RFC 4616 §4: "\0tim\0tanstaaftanstaaf"
        let c = decode_plain("AHRpbQB0YW5zdGFhZnRhbnN0YWFm").unwrap();
        assert_eq!(c.authzid, "");
        assert_eq!(c.authcid, "tim");
        assert_eq!(c.password, "tanstaaftanstaaf");
    }

    #[test]
    fn plain_malformed() {
        assert_eq!(decode_plain("!!!"), Err(SaslError::Base64));
        assert_eq!(
            decode_plain(&encode_base64(b"only-one-part")),
            Err(SaslError::Malformed)
        );
        assert_eq!(
            decode_plain(&encode_base64(b"a\0b\0c\0d")),
            Err(SaslError::Malformed)
        );
        assert_eq!(
            decode_plain(&encode_base64(b"\0\0pw")),
            Err(SaslError::Malformed)
        );
        assert_eq!(
            decode_plain(&encode_base64(b"\0u\xff\0pw")),
            Err(SaslError::Utf8)
        );
    }
}
