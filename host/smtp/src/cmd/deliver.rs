//! The end of a message, shared by DATA and BDAT: refuse it if it is
//! flawed, otherwise add the trace header (RFC 5321 §4.4) and deliver.
//!
//! We reply `250` only after `LocalDelivery::deliver` (and, for remote
//! recipients, `OutboundQueue::enqueue`) returned, which is when the
//! message is durable (RFC 5321 §6.1: once we said 250 we own the
//! message).
//!
//! On the MX role with a [`crate::Verifier`], SPF, DKIM, DMARC (and ARC
//! when the message carries ARC sets) are checked here, once the whole
//! message is in: the result goes into an `Authentication-Results:` field
//! under our `Received:`, before the plugins' `data` hook, so plugins read
//! it in the message, and as data (`message.auth-results`); a DMARC
//! `p=reject` failure is refused with `550 5.7.1`.
//!
//! Header order (RFC 5321 §4.4): our `Received:` and
//! `Authentication-Results:` are this hop's trace fields and stay on top;
//! fields the plugins add go directly below them.
//!
//! On LMTP a refusal of the whole message is sent once per accepted RCPT,
//! a `route` refusal of one recipient answers only that recipient's RCPT,
//! and delivery without plugins is per recipient (`crate::lmtp`).

use mailgate_smtp_proto::{ReceivedMessage, Reply};

use crate::context::Role;
use crate::received::{new_queue_id, now_rfc5322, with_protocol, Stamp};
use crate::session::Transaction;
use crate::verify::{strip_own_results, Envelope, Verification};
use mailgate_store::{DeliveryTarget, MessageStructure, NewMessage};

use crate::cmd::route::Plan;
use crate::session::Session;

impl Session {
    /// Refuses or delivers a complete message, and ends the transaction.
    pub(crate) async fn finish_message(&mut self, message: ReceivedMessage) {
        let tx = self.tx.take();
        self.reset_transaction();
        let Some(mut tx) = tx else {
            return self.reply(Reply::bad_sequence());
        };
        let lmtp_order = self.lmtp_order(&tx.recipients);
        let client = self.peer.ip();
        let from = tx.from.address();
        let rcpts: Vec<String> = tx.recipients.iter().map(|r| r.address.clone()).collect();
        let size = message.size;

        // Bare CR/LF first: it is the smuggling signal, and we refuse
        // rather than normalise so that no hop disagrees with us about
        // where the message ended.
        let rejection = if message.bare_line_ending {
            Some((
                Reply::with_code(
                    550,
                    5,
                    6,
                    11,
                    "Message contains bare CR or LF line endings; only CRLF is allowed",
                ),
                "bare line ending",
            ))
        } else if message.too_large {
            Some((Reply::message_too_large(), "too large"))
        } else if message.line_too_long {
            Some((
                Reply::with_code(
                    500,
                    5,
                    5,
                    2,
                    format!(
                        "Message line too long (more than {} bytes)",
                        self.ctx.limits.max_data_line
                    ),
                ),
                "line too long",
            ))
        } else {
            None
        };
        if let Some((reply, why)) = rejection {
            tracing::info!(%client, %from, rcpts = ?rcpts, size, outcome = why, "smtp: message rejected");
            return self.reply_each(reply);
        }

        let verification = self.verify_inbound(&tx, &message.data).await;
        if let Some(v) = &verification {
            tracing::info!(%client, %from, spf = v.spf, dkim = ?v.dkim, dmarc = v.dmarc, domain = v.dmarc_domain.as_deref().unwrap_or("-"), "smtp: message authentication");
            if let Some(reply) = &v.reject {
                tracing::info!(%client, %from, rcpts = ?rcpts, size, domain = v.dmarc_domain.as_deref().unwrap_or("-"), outcome = "dmarc reject", "smtp: message rejected");
                return self.reply_each(reply.clone());
            }
        }
        let stripped = verification
            .as_ref()
            .and_then(|_| strip_own_results(&self.ctx.hostname, &message.data));

        let id = new_queue_id();
        let (helo, extended) = match &self.hello {
            Some(h) => (h.name.as_str(), h.extended),
            None => ("unknown", false),
        };
        let single_rcpt = match rcpts.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        };
        let stamp = Stamp {
            helo,
            peer: client,
            hostname: &self.ctx.hostname,
            protocol: if self.ctx.lmtp {
                "LMTP"
            } else {
                with_protocol(extended, tx.params.smtputf8, self.tls, self.user.is_some())
            },
            id: &id,
            for_recipient: single_rcpt,
            date: now_rfc5322(),
        };
        let mut header = stamp.header();
        // Our trace fields: `Received:`, then `Authentication-Results:`.
        let mut trace_fields = 1;
        if let Some(v) = &verification {
            header.push_str(&v.header);
            trace_fields += 1;
        }
        let auth_results = verification
            .as_ref()
            .map(|v| std::sync::Arc::new(v.results.clone()));
        // The trace fields go in front of the message in its own buffer
        // (one move of the bytes, into the room the receiver kept when the
        // size was announced): never a second copy of the message.
        let mut data = stripped.unwrap_or(message.data);
        data.reserve_exact(header.len());
        data.splice(0..0, header.bytes());
        // Shared with the plugins' message view, never copied for them.
        let data = std::sync::Arc::new(data);

        // The plugins (data, route) may refuse it, edit it, and decide
        // where each copy goes; without them every copy goes to INBOX.
        // The plugins' log lines carry the queue id (and, from the
        // session's span, the session id).
        let plan = tracing::Instrument::instrument(
            self.policy_plan(&mut tx, &data, trace_fields, auth_results),
            tracing::info_span!("message", queue_id = %id),
        )
        .await;
        // What the plugins wrote to their store is durable before the reply.
        self.policy_commit().await;
        let plan = match plan {
            Ok(plan) => plan,
            Err(refusal) => return self.reply_each(refusal),
        };
        let submitted = &data[header.len()..];
        if plan.discarded {
            tracing::info!(%id, %client, %from, rcpts = ?rcpts, size, outcome = "discarded", "smtp: message discarded by policy");
            return self.reply_each(Reply::with_code(
                250,
                2,
                0,
                0,
                format!("Ok: queued as {id}"),
            ));
        }
        let body = plan.edited.as_deref().unwrap_or(&data);
        if self.ctx.lmtp && tx.policy.is_none() && plan.remote.is_empty() {
            return self.lmtp_deliver(&tx.recipients, &from, body, &id).await;
        }
        match self.store_everywhere(&from, &plan, body).await {
            Ok(copies) => {
                tracing::info!(%id, %client, %from, rcpts = ?rcpts, remote = ?plan.remote, size, copies, quarantined = plan.quarantined, user = self.authenticated_user().unwrap_or("-"), outcome = "accepted", "smtp: message accepted");
                self.save_sent_copy(submitted).await;
                let ok = Reply::with_code(250, 2, 0, 0, format!("Ok: queued as {id}"));
                self.reply_plan(&lmtp_order, &plan, ok);
            }
            Err(e) => {
                tracing::error!(%id, %client, %from, rcpts = ?rcpts, size, error = %e, outcome = "store error", "smtp: delivery failed");
                self.reply_plan(&lmtp_order, &plan, Reply::local_error());
            }
        }
    }

    /// The replies after a message delivered under a plan: on LMTP with
    /// recipients refused at `route`, their own reply to each of them and
    /// `outcome` to the others, in RCPT order; otherwise `outcome` once
    /// per reply owed.
    pub(crate) fn reply_plan(&mut self, order: &[String], plan: &Plan, outcome: Reply) {
        if !self.ctx.lmtp || plan.refused.is_empty() || order.is_empty() {
            return self.reply_each(outcome);
        }
        // Per-recipient outcomes are not protocol errors: like
        // `lmtp_deliver`, not counted towards `max_errors`.
        for address in order {
            let reply = plan
                .refused
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case(address))
                .map_or_else(|| outcome.clone(), |(_, r)| r.clone());
            self.write(&reply);
        }
    }

    /// SPF, DKIM and DMARC of `message` (as received), on the MX role
    /// with a verifier and without AUTH; `None` when not checked.
    async fn verify_inbound(&self, tx: &Transaction, message: &[u8]) -> Option<Verification> {
        let verifier = self.ctx.verifier.as_ref()?;
        if self.ctx.role != Role::Mx || self.ctx.lmtp || self.user.is_some() {
            return None;
        }
        let helo = self.hello.as_ref().map_or("", |h| h.name.as_str());
        let mail_from = tx.from.address();
        let env = Envelope {
            client: self.peer.ip(),
            helo,
            mail_from: &mail_from,
        };
        Some(verifier.verify(env, message).await)
    }

    /// Delivers to the local recipients and hands the remote ones to the
    /// outbound queue; returns the number of local copies. Both are
    /// durable when this returns `Ok`.
    async fn store_everywhere(
        &self,
        from: &str,
        plan: &Plan,
        data: &[u8],
    ) -> Result<usize, String> {
        let mut copies = 0;
        if !plan.local.is_empty() {
            copies = self
                .ctx
                .delivery
                .deliver_to(from, &plan.local, data)
                .await
                .map_err(|e| e.to_string())?
                .len();
        }
        if !plan.remote.is_empty() || !plan.relayed.is_empty() {
            let Some(queue) = &self.ctx.outbound else {
                return Err("remote recipients but no outbound queue".into());
            };
            // One queue entry: MX-routed recipients and those a plugin
            // relays through a named next hop.
            let routed: Vec<(String, Option<String>)> = plan
                .remote
                .iter()
                .map(|a| (a.clone(), None))
                .chain(
                    plan.relayed
                        .iter()
                        .map(|(a, h)| (a.clone(), Some(h.clone()))),
                )
                .collect();
            queue
                .enqueue(from, &routed, data)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(copies)
    }

    /// `[submission] save_sent`: a copy of what the user submitted, marked
    /// `\Seen`, in their `Sent` mailbox. A failure here is logged only:
    /// the message itself was accepted.
    async fn save_sent_copy(&self, submitted: &[u8]) {
        let Some(user) = self.user.as_ref().filter(|_| self.ctx.save_sent) else {
            return;
        };
        let raw = std::sync::Arc::new(submitted.to_vec());
        let structure = MessageStructure::parse_off_thread(raw.clone())
            .await
            .unwrap_or_default();
        let message = NewMessage {
            raw,
            internal_date: chrono::Utc::now().timestamp(),
            structure,
        };
        let target = DeliveryTarget {
            account: user.id,
            mailbox: "Sent".into(),
            flags: vec!["\\Seen".into()],
        };
        if let Err(e) = self.ctx.delivery.store().deliver(message, &[target]).await {
            tracing::warn!(user = %user.address, error = %e, "smtp: could not save the Sent copy");
        }
    }
}
