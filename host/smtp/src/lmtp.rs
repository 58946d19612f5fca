//! LMTP (RFC 2033) on the SMTP session: the `[listen] lmtp` listener,
//! for a mail system in front of us (Postfix, an MDA handoff) that has
//! already accepted the mail and wants it stored.
//!
//! What differs from SMTP, and nothing else does:
//! - `LHLO` instead of `EHLO`/`HELO` (those get `500 5.5.1`, §4.1); the
//!   greeting says `LMTP`.
//! - No relaying (as on the MX role): only local recipients, no AUTH, no
//!   verification of SPF/DKIM/DMARC (the client did that).
//! - After the final dot of DATA (or `BDAT LAST`, RFC 3030 with RFC 2033
//!   §4.2) one reply per accepted RCPT, in RCPT order (§4.2), each sent
//!   once that recipient's copy is durable. A duplicate RCPT gets the
//!   reply of its first occurrence.
//! - Per recipient: an account over its `quota_bytes` gets
//!   `452 4.2.2 Mailbox full` and the others still get their copy; an
//!   account that vanished since RCPT gets `550 5.1.1`.
//! - With policy plugins the message goes through `data`/`route` as in
//!   SMTP; plugins see the listener as "lmtp". A refusal of the whole
//!   message (at `data`, or by the host) answers every recipient alike; a
//!   `route` reject or tempfail of one recipient answers that recipient's
//!   RCPT only, and the others get their copies and their `250` (the
//!   quota check per recipient is done only without plugins).

use mailgate_delivery::Target;
use mailgate_smtp_proto::{ForwardPath, Host, RcptParams, Reply, Verb};
use mailgate_store::AccountId;

use crate::session::Session;
use crate::state::{self, State};

/// Whether `verb` may be used in `state` on an LMTP session.
pub(crate) fn check(verb: Verb, state: State) -> Result<(), Reply> {
    match verb {
        Verb::Lhlo => Ok(()),
        Verb::Ehlo | Verb::Helo => Err(Reply::with_code(
            500,
            5,
            5,
            1,
            "Error: this is LMTP, send LHLO",
        )),
        Verb::Mail if state == State::Connected => {
            Err(Reply::with_code(503, 5, 5, 1, "Error: send LHLO first"))
        }
        _ => state::check(verb, state),
    }
}

impl Session {
    /// The greeting: `220 <host> ESMTP mailgate`, or `LMTP` for LMTP.
    pub(crate) fn greeting(&self) -> Reply {
        if self.ctx.lmtp {
            Reply::new(220, None, format!("{} LMTP mailgate", self.ctx.hostname))
        } else {
            Reply::greeting(&self.ctx.hostname)
        }
    }

    /// LHLO: like EHLO (RFC 2033 §4.1), same capabilities (no STARTTLS,
    /// no AUTH on this listener).
    pub(crate) async fn lhlo(&mut self, host: Host) {
        self.ehlo(host, true).await;
    }

    /// MAIL on LMTP: a new list of accepted RCPTs.
    pub(crate) fn lmtp_new_transaction(&mut self) {
        self.lmtp_rcpts.clear();
    }

    /// RCPT on LMTP: remembers which recipient each accepted RCPT is,
    /// so the replies after the message line up with them.
    pub(crate) async fn lmtp_rcpt(&mut self, to: ForwardPath, params: RcptParams) {
        let address = match &to {
            ForwardPath::Postmaster => format!("postmaster@{}", self.ctx.postmaster_domain),
            ForwardPath::Path(p) => p.mailbox.to_string(),
        };
        let mark = self.out.len();
        self.rcpt(to, params).await;
        if !self.out.get(mark..).is_some_and(|r| r.starts_with(b"250")) {
            return;
        }
        let Some(tx) = self.tx.as_ref() else {
            return;
        };
        let index = tx
            .recipients
            .iter()
            .position(|r| r.address.eq_ignore_ascii_case(&address))
            .unwrap_or(tx.recipients.len().saturating_sub(1));
        self.lmtp_rcpts.push(index);
    }

    /// How many replies the end of the message owes: one per accepted
    /// RCPT on LMTP, one on SMTP.
    pub(crate) fn replies_owed(&self) -> usize {
        if self.ctx.lmtp {
            self.lmtp_rcpts.len().max(1)
        } else {
            1
        }
    }

    /// Sends `reply` once per reply owed (the same answer for every
    /// recipient). It is the message's outcome (refused for its content
    /// or by policy, or delivered), never a protocol error: not counted
    /// towards `max_errors`.
    pub(crate) fn reply_each(&mut self, reply: Reply) {
        for _ in 0..self.replies_owed() {
            self.refuse(reply.clone());
        }
    }

    /// The address of each accepted RCPT, in order (LMTP; empty on SMTP),
    /// before the plugins at `data` change the recipients.
    pub(crate) fn lmtp_order(
        &self,
        recipients: &[mailgate_delivery::LocalRecipient],
    ) -> Vec<String> {
        if !self.ctx.lmtp {
            return Vec::new();
        }
        self.lmtp_rcpts
            .iter()
            .map(|&i| {
                recipients
                    .get(i)
                    .map(|r| r.address.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Stores `data` for each accepted recipient into INBOX and sends one
    /// reply per accepted RCPT, in order. The copies go in one store
    /// commit (the body is stored once); if that fails, each recipient is
    /// tried alone so that one bad account does not fail the others.
    pub(crate) async fn lmtp_deliver(
        &mut self,
        recipients: &[mailgate_delivery::LocalRecipient],
        from: &str,
        data: &[u8],
        id: &str,
    ) {
        let order = std::mem::take(&mut self.lmtp_rcpts);
        let client = self.peer.ip();
        // Per recipient: the accounts with room, or the refusal.
        let mut plans: Vec<Result<Vec<AccountId>, Reply>> = Vec::with_capacity(recipients.len());
        for r in recipients {
            plans.push(
                self.accounts_with_room(&r.address, &r.accounts, data.len())
                    .await,
            );
        }
        let all: Vec<Target> = plans
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .flatten()
            .copied()
            .map(Target::inbox)
            .collect();
        let together = self
            .ctx
            .delivery
            .deliver_to(from, &all, data)
            .await
            .map_err(|e| e.to_string());
        let mut outcomes: Vec<Reply> = Vec::with_capacity(recipients.len());
        for (r, plan) in recipients.iter().zip(plans) {
            let accounts = match plan {
                Ok(accounts) => accounts,
                Err(refusal) => {
                    outcomes.push(refusal);
                    continue;
                }
            };
            let result = match &together {
                Ok(_) => Ok(()),
                Err(_) => {
                    let targets: Vec<Target> = accounts.into_iter().map(Target::inbox).collect();
                    self.ctx
                        .delivery
                        .deliver_to(from, &targets, data)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            };
            outcomes.push(match result {
                Ok(()) => {
                    tracing::info!(%id, %client, %from, rcpt = %r.address, size = data.len(), outcome = "accepted", "lmtp: message delivered");
                    Reply::with_code(
                        250,
                        2,
                        0,
                        0,
                        format!("<{}> Ok: delivered as {id}", r.address),
                    )
                }
                Err(e) => {
                    tracing::error!(%id, %client, %from, rcpt = %r.address, error = %e, outcome = "store error", "lmtp: delivery failed");
                    Reply::local_error()
                }
            });
        }
        if order.is_empty() {
            // Cannot happen (DATA needs a recipient); answer once anyway.
            return self.refuse(Reply::local_error());
        }
        // Outcomes of delivery, not protocol errors: not counted towards
        // `max_errors`, so many full mailboxes cannot cut the replies short.
        for i in order {
            let reply = outcomes.get(i).cloned().unwrap_or_else(Reply::local_error);
            self.write(&reply);
        }
    }

    /// The accounts of one recipient that exist and have room for
    /// `size` more bytes; the refusal when none has.
    async fn accounts_with_room(
        &self,
        address: &str,
        accounts: &[AccountId],
        size: usize,
    ) -> Result<Vec<AccountId>, Reply> {
        let store = self.ctx.delivery.store();
        let mut ok = Vec::with_capacity(accounts.len());
        let mut full = false;
        for &id in accounts {
            let account = match store.account_by_id(id).await {
                Ok(Some(a)) => a,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(rcpt = %address, error = %e, "lmtp: account lookup failed");
                    return Err(Reply::local_error());
                }
            };
            if let Some(limit) = account.quota_bytes {
                let used: u64 = match store.list_mailboxes(id).await {
                    Ok(boxes) => boxes.iter().map(|m| m.size).sum(),
                    Err(e) => {
                        tracing::error!(rcpt = %address, error = %e, "lmtp: quota lookup failed");
                        return Err(Reply::local_error());
                    }
                };
                if used.saturating_add(size as u64) > limit {
                    tracing::info!(client = %self.peer.ip(), rcpt = %address, account = %account.address, used, limit, "lmtp: over quota");
                    full = true;
                    continue;
                }
            }
            ok.push(id);
        }
        if !ok.is_empty() {
            Ok(ok)
        } else if full {
            Err(Reply::with_code(
                452,
                4,
                2,
                2,
                format!("<{address}>: Mailbox full"),
            ))
        } else {
            Err(Reply::with_code(
                550,
                5,
                1,
                1,
                format!("<{address}>: User unknown"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lmtp_table() {
        let code = |v, s| check(v, s).err().map(|r| r.code());
        assert_eq!(code(Verb::Lhlo, State::Connected), None);
        assert_eq!(code(Verb::Lhlo, State::RcptGiven), None);
        assert_eq!(code(Verb::Ehlo, State::Connected), Some(500));
        assert_eq!(code(Verb::Helo, State::Greeted), Some(500));
        assert_eq!(code(Verb::Mail, State::Connected), Some(503));
        assert_eq!(code(Verb::Mail, State::Greeted), None);
        assert_eq!(code(Verb::Data, State::RcptGiven), None);
        assert_eq!(code(Verb::Bdat, State::Chunking), None);
    }
}
