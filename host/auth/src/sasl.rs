//! SASL for every protocol: message decoding (RFC 4616 PLAIN; the LOGIN
//! mechanism's two base64 prompts are decoded by [`decode_base64_text`]),
//! and [`SaslExchange`], the server side of one exchange, which SMTP AUTH,
//! POP3 AUTH and IMAP AUTHENTICATE drive with their own framing.

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

/// The SASL mechanisms mailgate offers for password logins.
///
/// SCRAM-SHA-256 is not offered: the store keeps Argon2id hashes only,
/// and SCRAM needs its own salted key (StoredKey/ServerKey, RFC 5802 §3)
/// derived from the password when it is set. See `docs/operations.md`
/// ("Authentication mechanisms") for the trade-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The de-facto LOGIN mechanism (draft-murchison-sasl-login): the
    /// user name and the password, each after a base64 prompt.
    Login,
}

impl Mechanism {
    /// Every mechanism, in the order they are advertised.
    pub const ALL: &'static [Mechanism] = &[Mechanism::Plain, Mechanism::Login];

    /// The mechanism for a name as a client sends it (case-insensitive).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }

    /// `PLAIN LOGIN`, for capability lists.
    pub fn names() -> String {
        Mechanism::ALL
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What the server does next in a SASL exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send this challenge (raw bytes; the protocol base64-encodes it) and
    /// pass the client's answer to [`SaslExchange::step`].
    Challenge(Vec<u8>),
    /// The exchange is over: check these credentials.
    Done(PlainCredentials),
}

/// One SASL exchange on the server side, independent of the protocol
/// that carries it (SMTP `334`, POP3 and IMAP `+`). Cancellation (`*`)
/// is the protocol's business: it simply drops the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslExchange {
    mechanism: Mechanism,
    /// LOGIN: the user name, once given.
    user: Option<String>,
}

/// LOGIN's prompts (the de-facto texts clients expect, RFC-less).
const LOGIN_USER_PROMPT: &[u8] = b"Username:";
const LOGIN_PASSWORD_PROMPT: &[u8] = b"Password:";

impl SaslExchange {
    /// Starts `mechanism` with the client's initial response, if it sent
    /// one (base64, or `=` for an empty one, RFC 4954 §4).
    pub fn start(
        mechanism: Mechanism,
        initial: Option<&str>,
    ) -> Result<(SaslExchange, SaslStep), SaslError> {
        let mut ex = SaslExchange {
            mechanism,
            user: None,
        };
        let step = match (mechanism, initial) {
            // RFC 4616 §2: PLAIN's server challenge is empty.
            (Mechanism::Plain, None) => SaslStep::Challenge(Vec::new()),
            (Mechanism::Plain, Some(ir)) => ex.step(ir)?,
            (Mechanism::Login, None) => SaslStep::Challenge(LOGIN_USER_PROMPT.to_vec()),
            (Mechanism::Login, Some("=")) => SaslStep::Challenge(LOGIN_USER_PROMPT.to_vec()),
            (Mechanism::Login, Some(ir)) => ex.step(ir)?,
        };
        Ok((ex, step))
    }

    /// The mechanism under way.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Takes the client's next answer (base64; `=` or empty for empty).
    pub fn step(&mut self, response: &str) -> Result<SaslStep, SaslError> {
        let response = if response.trim() == "=" { "" } else { response };
        match self.mechanism {
            Mechanism::Plain => decode_plain(response).map(SaslStep::Done),
            Mechanism::Login => {
                let text = decode_base64_text(response)?;
                match self.user.take() {
                    None => {
                        if text.is_empty() {
                            return Err(SaslError::Malformed);
                        }
                        self.user = Some(text);
                        Ok(SaslStep::Challenge(LOGIN_PASSWORD_PROMPT.to_vec()))
                    }
                    Some(user) => {
                        if text.is_empty() {
                            return Err(SaslError::Malformed);
                        }
                        Ok(SaslStep::Done(PlainCredentials {
                            authzid: String::new(),
                            authcid: user,
                            password: text,
                        }))
                    }
                }
            }
        }
    }
}

impl PlainCredentials {
    /// Whether the client asked to act as someone other than itself
    /// (proxy authorization), which mailgate never grants. An authzid
    /// naming the user itself is harmless.
    pub fn asks_for_other_identity(&self) -> bool {
        !self.authzid.is_empty() && !self.authzid.eq_ignore_ascii_case(&self.authcid)
    }
}

#[cfg(test)]
mod exchange_tests {
    use super::*;

    fn b64(s: &str) -> String {
        encode_base64(s.as_bytes())
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        let (_, step) = SaslExchange::start(Mechanism::Plain, Some(&b64("\0u@x\0pw"))).unwrap();
        assert!(matches!(step, SaslStep::Done(c) if c.authcid == "u@x" && c.password == "pw"));
        let (mut ex, step) = SaslExchange::start(Mechanism::Plain, None).unwrap();
        assert_eq!(step, SaslStep::Challenge(vec![]));
        assert!(matches!(
            ex.step(&b64("\0u@x\0pw")).unwrap(),
            SaslStep::Done(_)
        ));
        let (mut ex, _) = SaslExchange::start(Mechanism::Plain, None).unwrap();
        assert_eq!(ex.step("="), Err(SaslError::Malformed));
    }

    #[test]
    fn login_prompts_then_credentials() {
        let (mut ex, step) = SaslExchange::start(Mechanism::Login, None).unwrap();
        assert_eq!(step, SaslStep::Challenge(b"Username:".to_vec()));
        assert_eq!(
            ex.step(&b64("u@x")).unwrap(),
            SaslStep::Challenge(b"Password:".to_vec())
        );
        let SaslStep::Done(c) = ex.step(&b64("pw")).unwrap() else {
            panic!("LOGIN should be done after the password");
        };
        assert_eq!((c.authcid.as_str(), c.password.as_str()), ("u@x", "pw"));
        // The user name as initial response skips the first prompt.
        let (_, step) = SaslExchange::start(Mechanism::Login, Some(&b64("u@x"))).unwrap();
        assert_eq!(step, SaslStep::Challenge(b"Password:".to_vec()));
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None).unwrap();
        assert_eq!(ex.step("!!"), Err(SaslError::Base64));
    }

    #[test]
    fn names_and_authzid() {
        assert_eq!(Mechanism::from_name("login"), Some(Mechanism::Login));
        assert_eq!(Mechanism::from_name("SCRAM-SHA-256"), None);
        assert_eq!(Mechanism::names(), "PLAIN LOGIN");
        let c = decode_plain(&b64("bob@x\0alice@x\0pw")).unwrap();
        assert!(c.asks_for_other_identity());
        let c = decode_plain(&b64("Alice@x\0alice@x\0pw")).unwrap();
        assert!(!c.asks_for_other_identity());
    }
}
