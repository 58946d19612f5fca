//! What a successful run asks of the host. The interpreter performs
//! nothing itself: the host files, redirects, replies and edits.

use crate::message::DuplicateCheck;

/// One action, in the order the script asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Store in INBOX with these flags (`keep`, or the implicit keep).
    Keep {
        /// IMAP flags for the stored copy.
        flags: Vec<String>,
        /// Whether this is the implicit keep (RFC 5228 section 2.10.2).
        implicit: bool,
    },
    /// Store in a folder (`fileinto`).
    FileInto {
        /// The folder's name as written (UTF-8, hierarchy by the host's separator).
        mailbox: String,
        /// `:create`: create the folder when missing (RFC 5490).
        create: bool,
        /// IMAP flags for the stored copy.
        flags: Vec<String>,
        /// `:copy` (RFC 3894): did not cancel the implicit keep.
        copy: bool,
    },
    /// Forward to an address (`redirect`).
    Redirect {
        /// The address, `local@domain`.
        address: String,
        /// `:copy`.
        copy: bool,
    },
    /// `discard`: the message is dropped unless another action stores it.
    Discard,
    /// `reject` (a DSN/MDN-like refusal) or `ereject` (refuse at SMTP time
    /// when possible) with the reason for the sender (RFC 5429).
    Reject {
        /// The reason.
        reason: String,
        /// `ereject`.
        extended: bool,
    },
    /// An auto-reply (RFC 5230). Whether to send it is the host's decision:
    /// see [`crate::vacation::should_reply`] and the period.
    Vacation(Vacation),
}

/// The fields of a vacation reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacation {
    /// The reply's body (a MIME entity when `mime`).
    pub reason: String,
    /// `:subject`; `None`: the host uses "Auto: " and the original subject.
    pub subject: Option<String>,
    /// `:from`.
    pub from: Option<String>,
    /// `:addresses`: more of the user's own addresses.
    pub addresses: Vec<String>,
    /// `:mime`.
    pub mime: bool,
    /// `:handle`, or one made of the reply's fields, so that a changed
    /// reply is sent again (RFC 5230 section 4.2).
    pub handle: String,
    /// One reply per sender per this many seconds, already bounded by
    /// the settings' minimum and maximum.
    pub period: u64,
}

/// A header change by `addheader` / `deleteheader` (RFC 5293), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Add a field at the top (or at the end, `last`).
    Add {
        /// Field name.
        name: String,
        /// Value, one line.
        value: String,
        /// `:last`.
        last: bool,
    },
    /// Delete the `occurrence`-th field (from 1, counted from the top in the
    /// header as it was at that point) named `name`.
    Delete {
        /// Field name.
        name: String,
        /// Which one, from 1.
        occurrence: usize,
    },
}

/// The result of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The actions, implicit keep last when it applies.
    pub actions: Vec<Action>,
    /// Header edits for the stored and redirected copies.
    pub header_edits: Vec<HeaderEdit>,
    /// For each action (same index as `actions`), how many of
    /// `header_edits` had been made when it was taken: an action sees the
    /// message with those edits (RFC 5293 section 3), so a `redirect` after
    /// `addheader` sends the edited message and one before it does not.
    pub edits_before: Vec<usize>,
    /// `duplicate` tests to record now that the run succeeded: a new id is
    /// inserted; a seen one is refreshed only with `last`.
    pub duplicates: Vec<(DuplicateCheck, bool)>,
    /// Steps used of `max_cpu_steps`.
    pub steps: u64,
}

impl Outcome {
    /// Whether the message is stored in INBOX (explicit or implicit keep).
    pub fn keeps(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, Action::Keep { .. }))
    }
}
