//! [`Message`]: the message at `data` and `route`, either the host's (in a
//! running plugin) or one built from an `.eml` for a unit test on the
//! build machine ([`Message::from_eml`]).

use crate::bindings::mailgate::policy::message as wit;
use crate::{AuthResults, TextPart};

/// The message as the hooks see it. In a plugin it is the host's message
/// (every method asks the host); in a unit test it is built with
/// [`Message::from_eml`] and answers the same questions from the bytes.
pub struct Message<'a> {
    source: Source<'a>,
}

enum Source<'a> {
    Host(&'a wit::Message),
    Mock(crate::testing::MockMessage),
}

impl<'a> Message<'a> {
    /// The host's message, lent for one call (used by [`crate::export_plugin!`]).
    #[doc(hidden)]
    pub fn host(message: &'a wit::Message) -> Message<'a> {
        Message {
            source: Source::Host(message),
        }
    }
}

impl<'a> Message<'a> {
    /// The host's resource (none for a unit-test message).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn host_resource(&self) -> Option<&'a wit::Message> {
        match self.source {
            Source::Host(m) => Some(m),
            Source::Mock(_) => None,
        }
    }

    /// A unit-test message's bytes (none for the host's).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn mock_bytes(&self) -> Option<Vec<u8>> {
        match &self.source {
            Source::Host(_) => None,
            Source::Mock(m) => Some(crate::testing::mock_bytes(m)),
        }
    }
}

impl Message<'static> {
    /// A message for a unit test, from the bytes of an `.eml` file (header,
    /// blank line, body; CRLF or LF line ends). See [`crate::testing`].
    pub fn from_eml(eml: impl Into<Vec<u8>>) -> Message<'static> {
        Message {
            source: Source::Mock(crate::testing::MockMessage::new(eml.into())),
        }
    }

    /// [`Message::from_eml`] with the host's authentication results.
    pub fn with_auth_results(mut self, results: AuthResults) -> Message<'static> {
        if let Source::Mock(m) = &mut self.source {
            m.auth = Some(results);
        }
        self
    }
}

impl Message<'_> {
    /// The size in bytes, as the message would be delivered now.
    pub fn size(&self) -> u64 {
        match &self.source {
            Source::Host(m) => m.size(),
            Source::Mock(m) => m.raw.len() as u64,
        }
    }
    /// The values of the header fields named `name` (case-insensitive),
    /// unfolded, white space trimmed, top to bottom.
    pub fn header(&self, name: &str) -> Vec<String> {
        match &self.source {
            Source::Host(m) => m.header(name),
            Source::Mock(m) => m.header(name),
        }
    }
    /// The names of all header fields, top to bottom.
    pub fn header_names(&self) -> Vec<String> {
        match &self.source {
            Source::Host(m) => m.header_names(),
            Source::Mock(m) => m.header_names(),
        }
    }
    /// The bytes `[start, start + len)` of the message (the host caps `len`
    /// at 1 MiB per call).
    pub fn raw(&self, start: u64, len: u32) -> Vec<u8> {
        match &self.source {
            Source::Host(m) => m.raw(start, len),
            Source::Mock(m) => {
                let s = (start.min(m.raw.len() as u64)) as usize;
                let e = s.saturating_add(len.min(1 << 20) as usize).min(m.raw.len());
                m.raw[s..e].to_vec()
            }
        }
    }
    /// The decoded text/plain and text/html parts, at most `max_bytes` of
    /// text in all.
    pub fn text_parts(&self, max_bytes: u32) -> Vec<TextPart> {
        match &self.source {
            Source::Host(m) => m.text_parts(max_bytes),
            Source::Mock(m) => m.text_parts(max_bytes),
        }
    }
    /// The host's SPF/DKIM/DMARC/ARC results of this message; `None` when
    /// the host did not verify (submission, LMTP, verification off).
    pub fn auth_results(&self) -> Option<AuthResults> {
        match &self.source {
            Source::Host(m) => m.auth_results(),
            Source::Mock(m) => m.auth.clone(),
        }
    }
    /// The TLS session the message arrived over (version and cipher);
    /// `None` without TLS, and for a unit-test message.
    pub fn tls(&self) -> Option<crate::TlsInfo> {
        match &self.source {
            Source::Host(m) => m.tls(),
            Source::Mock(_) => None,
        }
    }
    /// The first value of header `name`, if any.
    pub fn first_header(&self, name: &str) -> Option<String> {
        self.header(name).into_iter().next()
    }
    /// The host's SPF/DKIM/DMARC/ARC results (`auth_results`); `None` when
    /// the host did not verify (submission, LMTP, verification off). Trust
    /// these, not `Authentication-Results:` fields in the message.
    pub fn auth(&self) -> Option<AuthResults> {
        self.auth_results()
    }
    /// All decoded text, at most `max_bytes`, parts joined by newlines.
    pub fn text(&self, max_bytes: u32) -> String {
        let mut out = String::new();
        for p in self.text_parts(max_bytes) {
            out.push_str(&p.text);
            out.push('\n');
        }
        out
    }
}
