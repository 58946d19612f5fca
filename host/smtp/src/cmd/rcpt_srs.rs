//! RCPT to an SRS address of ours (`SRS0=…@` / `SRS1=…@` the `[srs]
//! domain`): a bounce of a message we forwarded, going back to its
//! original sender (see `mailgate_delivery::srs`).
//!
//! A valid address (our hash, not expired) is accepted from anyone, like
//! a local recipient, and the message is relayed to the address it
//! reverses to (the original sender for SRS0, the first forwarder for
//! SRS1) through the outbound queue. Anything else in the SRS form is
//! `550 5.1.1`: a forged or stale address is an unknown user, never a
//! relay. Postfix with postsrsd does the same (`recipient_canonical_maps`).

use std::sync::Arc;

use mailgate_delivery::srs::Srs;
use mailgate_smtp_proto::{RcptParams, Reply};

use crate::session::Session;
use crate::state::State;

impl Session {
    /// Whether `address` is in the SRS form of our `[srs] domain`: then
    /// [`Session::srs_rcpt`] answers it, not the local recipient check.
    pub(super) fn srs_address(&self, address: &str) -> Option<Arc<Srs>> {
        self.ctx
            .srs
            .as_ref()
            .filter(|srs| srs.is_srs_address(address))
            .cloned()
    }

    /// Accepts a valid SRS address for relaying to the address it
    /// reverses to, or refuses it with `550 5.1.1`.
    pub(super) async fn srs_rcpt(&mut self, srs: &Srs, address: String, params: RcptParams) {
        let client = self.peer.ip();
        let original = match srs.reverse(&address) {
            Ok(original) => original,
            Err(why) => {
                tracing::info!(%client, rcpt = %address, reason = %why, "smtp: RCPT rejected: SRS address not valid");
                return self.reply(Reply::with_code(
                    550,
                    5,
                    1,
                    1,
                    format!("<{address}>: Recipient address rejected: {why}"),
                ));
            }
        };
        if self.ctx.outbound.is_none() {
            tracing::warn!(%client, rcpt = %address, "smtp: RCPT to an SRS address refused: no outbound queue");
            return self.refuse(Reply::with_code(
                451,
                4,
                3,
                0,
                format!("<{address}>: cannot relay the bounce now"),
            ));
        }
        if let Err(refusal) = self.policy_rcpt(&original, &params, None).await {
            return self.refuse(refusal);
        }
        tracing::info!(%client, rcpt = %address, to = %original, "smtp: RCPT to an SRS address: relayed to the original sender");
        self.add_recipient(original, None, params);
        self.state = State::RcptGiven;
        self.reply(Reply::with_code(250, 2, 1, 5, "Ok"));
    }
}
