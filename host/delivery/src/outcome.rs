//! What the room says about a message: per recipient, or for all of it.
//! Types, not reply strings: the receiving protocol turns them into its
//! replies in one place (`mailgate_smtp`'s `cmd/deliver.rs`).

/// Why a message, or one recipient's copy, was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A plugin refused (reject or tempfail), with the reply it chose.
    Policy(mailgate_policy::Reply),
    /// The account is over its storage quota (`452 4.2.2`).
    MailboxFull,
    /// The account went away since RCPT (`550 5.1.1`).
    UnknownUser,
    /// A plugin sends mail to another domain and there is no outbound
    /// queue (`451 4.3.0`).
    NoOutbound,
    /// A plugin named a malformed next hop (`451 4.3.5`).
    BadNextHop,
    /// The data directory's disk is full (`452 4.3.1`, Postfix's answer
    /// too); temporary, nothing was stored.
    NoSpace,
    /// Our fault: the store or the queue failed (`451 4.3.0`); the detail
    /// is in the log only.
    LocalError,
}

/// The room's answer for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The queue id of the message (in the `250` reply and the log).
    pub id: String,
    /// Set when the message was refused as a whole: nothing was stored
    /// or queued, every recipient gets this.
    pub whole: Option<Refusal>,
    /// Recipients refused on their own (only when the caller answers per
    /// recipient, [`crate::Replies::PerRecipient`]); every other
    /// recipient's copy was taken (stored, queued, or dropped as a plugin
    /// asked).
    pub refused: Vec<(String, Refusal)>,
}

impl Report {
    /// A refusal of the whole message.
    pub fn refused(id: impl Into<String>, why: Refusal) -> Report {
        Report {
            id: id.into(),
            whole: Some(why),
            refused: Vec::new(),
        }
    }

    /// The message was taken for every recipient.
    pub fn taken(id: impl Into<String>) -> Report {
        Report {
            id: id.into(),
            whole: None,
            refused: Vec::new(),
        }
    }

    /// The outcome for `address`: `None` when its copy was taken.
    pub fn refusal_of(&self, address: &str) -> Option<&Refusal> {
        self.whole.as_ref().or_else(|| {
            self.refused
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case(address))
                .map(|(_, r)| r)
        })
    }
}
