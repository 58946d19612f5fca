//! The end of a message, shared by DATA and BDAT: refuse it if it is
//! flawed, otherwise write this hop's trace fields (RFC 5321 §4.4), hand
//! it to the room (`mailgate_delivery::Room`), and turn the room's report
//! into replies: one for SMTP, one per accepted RCPT for LMTP (RFC 2033
//! §4.2). What happens to the message in between (plugins' `data` and
//! `route`, quotas, the store, the queue, the Sent copy) is the room's.
//!
//! We reply `250` only after the room returned, which is when the
//! message is durable (RFC 5321 §6.1: once we said 250 we own the
//! message).
//!
//! On the MX role with a [`crate::Verifier`], SPF, DKIM, DMARC (and ARC
//! when the message carries ARC sets) are checked here, once the whole
//! message is in: the result goes into an `Authentication-Results:` field
//! under our `Received:`, so plugins read it in the message, and as data
//! (`message.auth-results`); a DMARC `p=reject` failure is refused with
//! `550 5.7.1`.

use mailgate_delivery::{Arrival, Refusal, Report, Trace};
use mailgate_log::list;
use mailgate_metrics::{MessageOutcome, RejectReason};
use mailgate_smtp_proto::{ReceivedMessage, Reply};
use mailgate_store::queue::new_message_id;

use crate::cmd::rcpt::mailbox_full;
use crate::context::Role;
use crate::received::{now_rfc5322, with_protocol, Stamp};
use crate::session::{Session, Transaction};
use crate::verify::{strip_own_results, SpfIdentity, Verification};

/// The reply for a refusal from the room; `address` names the recipient
/// when the reply is one recipient's (LMTP). The one place these
/// outcomes become SMTP replies.
pub(crate) fn refusal_reply(why: &Refusal, address: Option<&str>) -> Reply {
    match why {
        Refusal::Policy(r) => crate::policy::smtp_reply(r),
        Refusal::MailboxFull => match address {
            Some(a) => mailbox_full(a),
            None => Reply::with_code(452, 4, 2, 2, "Mailbox full"),
        },
        Refusal::UnknownUser => Reply::with_code(
            550,
            5,
            1,
            1,
            format!("<{}>: User unknown", address.unwrap_or("")),
        ),
        Refusal::NoOutbound => Reply::with_code(
            451,
            4,
            3,
            0,
            "Cannot forward to other domains now, please try again later",
        ),
        Refusal::BadNextHop => {
            Reply::with_code(451, 4, 3, 5, "next hop misconfigured; try again later")
        }
        Refusal::NoSpace => Reply::with_code(452, 4, 3, 1, "Insufficient system storage"),
        Refusal::LocalError => Reply::local_error(),
    }
}

/// The metrics' outcome of a refusal: rejected (with its reason) when
/// the reply is permanent, tempfailed when it is temporary.
fn outcome_of(why: &Refusal) -> MessageOutcome {
    if refusal_reply(why, None).code() < 500 {
        return MessageOutcome::Tempfailed;
    }
    MessageOutcome::Rejected(match why {
        Refusal::Policy(_) => RejectReason::Policy,
        Refusal::MailboxFull => RejectReason::Quota,
        _ => RejectReason::Other,
    })
}

impl Session {
    /// Refuses or delivers a complete message, and ends the transaction.
    pub(crate) async fn message_complete(&mut self, message: ReceivedMessage) {
        let tx = self.tx.take();
        let accepted = std::mem::take(&mut self.accepted_rcpts);
        self.reset_transaction();
        let Some(tx) = tx else {
            return self.reply(Reply::bad_sequence());
        };
        let client = self.peer.ip();
        let from = tx.from.address();
        let size = message.size;
        // The end of DATA: delivery latency is measured from here.
        let ended = std::time::Instant::now();

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
            self.count(MessageOutcome::Rejected(if message.too_large {
                RejectReason::Size
            } else {
                RejectReason::Content
            }));
            tracing::info!(%client, %from, rcpts = %list(accepted.iter().map(String::as_str)), size, outcome = why, "smtp: message rejected");
            return self.answer_all(&accepted, reply);
        }

        let verification = self.verify_inbound(&tx, &message.data).await;
        if let Some(v) = &verification {
            tracing::info!(%client, %from, spf = v.spf, dkim = %list(v.dkim.iter().copied()), dmarc = v.dmarc, domain = v.dmarc_domain.as_deref().unwrap_or("-"), "smtp: message authentication");
            if let Some(reply) = &v.reject {
                self.count(MessageOutcome::Rejected(RejectReason::Authentication));
                tracing::info!(%client, %from, rcpts = %list(accepted.iter().map(String::as_str)), size, domain = v.dmarc_domain.as_deref().unwrap_or("-"), outcome = "dmarc reject", "smtp: message rejected");
                return self.answer_all(&accepted, reply.clone());
            }
        }
        let stripped = verification
            .as_ref()
            .and_then(|_| strip_own_results(&self.ctx.hostname, &message.data));

        // The queue id: in the `250`, our `Received:` and every later log
        // line about the message (docs/operations.md, *Following a
        // message in the logs*).
        let id = new_message_id();
        let trace = self.trace(&tx, &id, verification);
        let arrival = Arrival {
            id,
            body: stripped.unwrap_or(message.data),
            trace,
            session: self.session_info(),
            replies: self.ctx.role.replies(),
            sent_copy: self.user.clone().filter(|_| self.ctx.save_sent),
            envelope: tx.envelope,
            policy: tx.policy,
        };
        let report = self.ctx.room().deliver(arrival).await;
        let refusal = report.whole.as_ref().or(match self.ctx.role.replies() {
            mailgate_delivery::Replies::One => report.refused.first().map(|(_, r)| r),
            mailgate_delivery::Replies::PerRecipient => None,
        });
        match refusal {
            Some(why) => self.count(outcome_of(why)),
            None => {
                self.count(MessageOutcome::Accepted);
                mailgate_metrics::delivery_latency(ended.elapsed());
                if let Some(listener) = self.ctx.listener {
                    mailgate_metrics::bytes_received(listener, size);
                }
            }
        }
        self.answer(&accepted, report);
    }

    /// Counts one message's outcome on this listener
    /// (`mailgate_smtp_messages_total`).
    fn count(&self, outcome: MessageOutcome) {
        if let Some(listener) = self.ctx.listener {
            mailgate_metrics::smtp_message(listener, outcome);
        }
    }

    /// This hop's trace fields: `Received:`, then
    /// `Authentication-Results:` when the message was verified.
    fn trace(&self, tx: &Transaction, id: &str, verification: Option<Verification>) -> Trace {
        let (helo, extended) = match &self.hello {
            Some(h) => (h.name.as_str(), h.extended),
            None => ("unknown", false),
        };
        let single_rcpt = match tx.envelope.recipients.as_slice() {
            [one] => Some(one.address.as_str()),
            _ => None,
        };
        let stamp = Stamp {
            helo,
            peer: self.peer.ip(),
            reverse_name: self.reverse.name(),
            hostname: &self.ctx.hostname,
            protocol: match self.ctx.role {
                Role::Lmtp => "LMTP",
                Role::Mx | Role::Submission => {
                    with_protocol(extended, tx.params.smtputf8, self.tls, self.user.is_some())
                }
            },
            id,
            for_recipient: single_rcpt,
            date: now_rfc5322(),
        };
        let mut fields = stamp.header();
        let mut count = 1;
        let mut auth = None;
        if let Some(v) = verification {
            fields.push_str(&v.header);
            count += 1;
            auth = Some(std::sync::Arc::new(v.results));
        }
        Trace {
            fields,
            count,
            auth,
            tls: self.tls_info.clone(),
        }
    }

    /// The replies for the room's report: one (SMTP), or one per
    /// accepted RCPT in RCPT order (LMTP).
    fn answer(&mut self, accepted: &[String], report: Report) {
        let id = &report.id;
        match self.ctx.role.replies() {
            mailgate_delivery::Replies::One => {
                let reply = match report
                    .whole
                    .as_ref()
                    .or(report.refused.first().map(|(_, r)| r))
                {
                    Some(why) => refusal_reply(why, None),
                    None => Reply::with_code(250, 2, 0, 0, format!("Ok: queued as {id}")),
                };
                self.refuse(reply);
            }
            mailgate_delivery::Replies::PerRecipient => {
                // Outcomes of delivery, not protocol errors: not counted
                // towards `max_errors`, so many full mailboxes cannot cut
                // the replies short.
                for address in accepted {
                    let reply = match report.refusal_of(address) {
                        Some(why) => refusal_reply(why, Some(address)),
                        None => Reply::with_code(
                            250,
                            2,
                            0,
                            0,
                            format!("<{address}> Ok: delivered as {id}"),
                        ),
                    };
                    self.write(&reply);
                }
                if accepted.is_empty() {
                    // Cannot happen (DATA needs a recipient); answer once.
                    self.refuse(Reply::local_error());
                }
            }
        }
    }

    /// `reply` to every reply owed: once (SMTP) or once per accepted
    /// RCPT (LMTP). The message's outcome, never a protocol error.
    fn answer_all(&mut self, accepted: &[String], reply: Reply) {
        let owed = match self.ctx.role.replies() {
            mailgate_delivery::Replies::One => 1,
            mailgate_delivery::Replies::PerRecipient => accepted.len().max(1),
        };
        for _ in 0..owed {
            self.refuse(reply.clone());
        }
    }

    /// SPF, DKIM and DMARC of `message` (as received), on the MX role
    /// with a verifier and without AUTH; `None` when not checked. A
    /// client in `trusted_networks` is checked and its results written,
    /// but a DMARC failure is not refused: it is one of our own hosts.
    async fn verify_inbound(&self, tx: &Transaction, message: &[u8]) -> Option<Verification> {
        let verifier = self.ctx.verifier.as_ref()?;
        if self.ctx.role != Role::Mx || self.user.is_some() {
            return None;
        }
        let helo = self.hello.as_ref().map_or("", |h| h.name.as_str());
        let mail_from = tx.from.address();
        let identity = SpfIdentity {
            client: self.peer.ip(),
            helo,
            mail_from: &mail_from,
        };
        let mut verification = verifier.verify(identity, message).await;
        if verification.reject.is_some() && self.trusted() {
            tracing::info!(client = %self.peer.ip(), from = %mail_from, "smtp: DMARC reject not applied: trusted network");
            verification.reject = None;
        }
        Some(verification)
    }
}
