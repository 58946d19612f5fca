//! The parsed structure of a message: envelope and MIME tree, computed
//! once at delivery (with mail-parser) and saved with the message, so that
//! IMAP never re-parses a message to answer FETCH ENVELOPE or
//! BODYSTRUCTURE.
//!
//! PLACEHOLDER: being written; the public surface is `MessageStructure`,
//! `MessageStructure::parse` and serde.

use serde::{Deserialize, Serialize};

/// The saved structure of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStructure {
    /// Number of bytes of the header block, including the blank line.
    pub header_len: u64,
}

impl MessageStructure {
    /// Parses a raw message. Never fails: damaged input gives a best-effort
    /// structure.
    pub fn parse(raw: &[u8]) -> MessageStructure {
        let header_len = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .unwrap_or(raw.len()) as u64;
        MessageStructure { header_len }
    }
}
