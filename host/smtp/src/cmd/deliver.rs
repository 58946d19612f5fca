//! The end of a message, shared by DATA and BDAT: refuse it if it is
//! flawed, otherwise add the trace header (RFC 5321 §4.4) and deliver.
//!
//! We reply `250` only after `LocalDelivery::deliver` returned, which is
//! when the message is durable (RFC 5321 §6.1: once we said 250 we own
//! the message).

use mailgate_smtp_proto::{ReceivedMessage, Reply};

use crate::received::{new_queue_id, now_rfc5322, with_protocol, Stamp};
use crate::session::Session;

impl Session {
    /// Refuses or delivers a complete message, and ends the transaction.
    pub(crate) async fn finish_message(&mut self, message: ReceivedMessage) {
        let tx = self.tx.take();
        self.reset_transaction();
        let Some(tx) = tx else {
            return self.reply(Reply::bad_sequence());
        };
        let client = self.peer.ip();
        let from = tx.from.address();
        let rcpts: Vec<&str> = tx.recipients.iter().map(|r| r.address.as_str()).collect();
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
            return self.reply(reply);
        }

        let id = new_queue_id();
        let (helo, extended) = match &self.hello {
            Some(h) => (h.name.as_str(), h.extended),
            None => ("unknown", false),
        };
        let single_rcpt = match rcpts.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        let stamp = Stamp {
            helo,
            peer: client,
            hostname: &self.ctx.hostname,
            protocol: with_protocol(extended, tx.params.smtputf8, self.tls, self.authenticated),
            id: &id,
            for_recipient: single_rcpt,
            date: now_rfc5322(),
        };
        let header = stamp.header();
        let mut data = Vec::with_capacity(header.len() + message.data.len());
        data.extend_from_slice(header.as_bytes());
        data.extend_from_slice(&message.data);
        drop(message);

        match self
            .ctx
            .delivery
            .deliver(&from, &tx.recipients, &data)
            .await
        {
            Ok(delivered) => {
                tracing::info!(%id, %client, %from, rcpts = ?rcpts, size, copies = delivered.len(), outcome = "accepted", "smtp: message accepted");
                self.reply(Reply::with_code(
                    250,
                    2,
                    0,
                    0,
                    format!("Ok: queued as {id}"),
                ));
            }
            Err(e) => {
                tracing::error!(%id, %client, %from, rcpts = ?rcpts, size, error = %e, outcome = "store error", "smtp: delivery failed");
                self.reply(Reply::local_error());
            }
        }
    }
}
