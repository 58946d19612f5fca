//! The envelope of one message: who sent it, to whom, and the DSN
//! parameters (RFC 3461) each recipient carries into the queue.
//!
//! This is the one envelope of a transaction. The plugins see it as
//! `mailgate_policy::Envelope` (sender, MAIL parameters, recipient
//! addresses), made from it by [`Envelope::for_plugins`] whenever a hook
//! is called, and what they change comes back through
//! [`Envelope::apply_edits`]: that type is the policy crate's side of the
//! WIT boundary (`wit/policy.wit`'s `envelope`), which cannot know
//! recipient resolution or the queue, since `mailgate-policy` depends on
//! nothing protocol- or delivery-side (docs/architecture.md).

use crate::{LocalDelivery, LocalRecipient, RecipientCheck, Refusal};

/// The envelope as the receiving protocol collected it (MAIL, RCPT) and
/// the plugins edited it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse path without angle brackets; empty for `<>`.
    pub mail_from: String,
    /// The recipients, in RCPT order, without duplicates.
    pub recipients: Vec<Recipient>,
    /// DSN `ENVID` (RFC 3461 §4.4), xtext as sent.
    pub envid: Option<String>,
    /// DSN `RET` (RFC 3461 §4.3): `true` for `FULL`, `false` for `HDRS`.
    pub ret_full: Option<bool>,
    /// `SMTPUTF8` was given (RFC 6531).
    pub smtputf8: bool,
    /// `BODY=8BITMIME` was given (RFC 6152).
    pub eight_bit: bool,
}

/// One recipient of the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address (lower-cased for a local one), without angle brackets.
    pub address: String,
    /// Who it reaches here; `None` for an address in another domain
    /// (authenticated submission, or added by a plugin).
    pub local: Option<LocalRecipient>,
    /// DSN `NOTIFY` as RFC 3461 writes it (`SUCCESS,DELAY`, `NEVER`);
    /// `None`: the default (failures and delays).
    pub notify: Option<String>,
    /// DSN `ORCPT` as received (`rfc822;alice@example.org`).
    pub orcpt: Option<String>,
}

impl Recipient {
    /// A recipient without DSN parameters.
    pub fn new(address: impl Into<String>, local: Option<LocalRecipient>) -> Recipient {
        Recipient {
            address: address.into(),
            local,
            notify: None,
            orcpt: None,
        }
    }

    /// Whether NOTIFY asks for a success notice (RFC 3461 §4.1).
    pub fn wants_success(&self) -> bool {
        self.notify.as_deref().is_some_and(|n| {
            n.split(',')
                .any(|w| w.trim().eq_ignore_ascii_case("SUCCESS"))
        })
    }
}

impl Envelope {
    /// The envelope as the plugins see it, with the MAIL parameters the
    /// transaction keeps for them: the one conversion to the policy
    /// crate's type.
    pub fn for_plugins(&self, mail_params: &[mailgate_policy::Param]) -> mailgate_policy::Envelope {
        mailgate_policy::Envelope {
            mail_from: self.mail_from.clone(),
            mail_params: mail_params.to_vec(),
            recipients: self.recipients.iter().map(|r| r.address.clone()).collect(),
        }
    }

    /// Adds a recipient unless its address is there already.
    pub fn add(&mut self, recipient: Recipient) {
        if !self.has(&recipient.address) {
            self.recipients.push(recipient);
        }
    }

    /// Whether `address` is a recipient.
    pub fn has(&self, address: &str) -> bool {
        self.recipients
            .iter()
            .any(|r| r.address.eq_ignore_ascii_case(address))
    }

    /// Whether there is no recipient.
    pub fn is_empty(&self) -> bool {
        self.recipients.is_empty()
    }

    /// Applies what a plugin changed in the recipients (`before` →
    /// `after`, as addresses; `current` is the recipient the host is
    /// adding, which is not an addition of the plugin's). Added local
    /// addresses join the envelope; added remote ones too when there is
    /// an outbound queue (`outbound`), else the change is refused with
    /// [`Refusal::NoOutbound`]; unknown local ones are logged and
    /// dropped.
    pub async fn apply_edits(
        &mut self,
        delivery: &LocalDelivery,
        outbound: bool,
        before: &[String],
        after: &[String],
        current: &str,
    ) -> Result<(), Refusal> {
        let added: Vec<&String> = after
            .iter()
            .filter(|a| !before.contains(a) && a.as_str() != current)
            .collect();
        self.recipients
            .retain(|r| !before.contains(&r.address) || after.contains(&r.address));
        for address in added {
            match delivery.check_recipient(address).await {
                Ok(RecipientCheck::Local(r)) => {
                    tracing::info!(rcpt = %address, "delivery: recipient added by policy");
                    self.add(Recipient::new(r.address.clone(), Some(r)));
                }
                Ok(RecipientCheck::NotLocal) if outbound => {
                    self.add(Recipient::new(address.clone(), None));
                }
                Ok(RecipientCheck::NotLocal) => {
                    tracing::warn!(rcpt = %address, "delivery: policy added a remote recipient but there is no outbound queue");
                    return Err(Refusal::NoOutbound);
                }
                Ok(RecipientCheck::UnknownUser) => {
                    tracing::warn!(rcpt = %address, "delivery: policy added an unknown local recipient; ignored");
                }
                Err(e) => {
                    tracing::error!(rcpt = %address, error = %e, "delivery: recipient check failed");
                    return Err(Refusal::LocalError);
                }
            }
        }
        Ok(())
    }
}
