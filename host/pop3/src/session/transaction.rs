//! The TRANSACTION state (RFC 1939 §5, §7) and QUIT's UPDATE (§6).

use mailgate_pop3_proto::response::{write_data_line, write_end, write_message, write_top};
use mailgate_pop3_proto::{Command, ResponseCode};

use super::{Session, State};
use crate::maildrop::{LookupError, Maildrop};

impl Session {
    pub(super) async fn transaction_command(&mut self, command: Command, out: &mut Vec<u8>) {
        match command {
            // RFC 1939 §5: "+OK nn mm" (number of messages, size in octets).
            Command::Stat => {
                let (count, size) = self.maildrop().map(Maildrop::stat).unwrap_or_default();
                self.ok(out, &format!("{count} {size}"));
            }
            // RFC 1939 §5: "scan listing": "msg-number size".
            Command::List(None) => {
                let lines = self.listing(|_, e| e.size.to_string());
                let (count, size) = self.maildrop().map(Maildrop::stat).unwrap_or_default();
                self.multi_line(out, &format!("{count} messages ({size} octets)"), &lines);
            }
            Command::List(Some(n)) => match self.lookup(n, |_, e| e.size.to_string()) {
                Ok(size) => self.ok(out, &format!("{n} {size}")),
                Err(e) => self.err(out, None, &e.to_string()),
            },
            // RFC 1939 §7: "unique-id listing": "msg-number unique-id".
            Command::Uidl(None) => {
                let lines = self.listing(|m, e| m.unique_id(e));
                self.multi_line(out, "Unique-id listing follows", &lines);
            }
            Command::Uidl(Some(n)) => match self.lookup(n, |m, e| m.unique_id(e)) {
                Ok(id) => self.ok(out, &format!("{n} {id}")),
                Err(e) => self.err(out, None, &e.to_string()),
            },
            Command::Retr(n) => self.retrieve(n, None, out).await,
            Command::Top { msg, lines } => self.retrieve(msg, Some(lines), out).await,
            // RFC 1939 §5: "The POP3 server marks the message as deleted.
            // [...] the message isn't actually deleted until the POP3
            // session enters the UPDATE state."
            Command::Dele(n) => {
                let marked = match &mut self.state {
                    State::Transaction(m) => m.mark_deleted(n),
                    _ => Err(LookupError::NoSuchMessage),
                };
                match marked {
                    Ok(()) => self.ok(out, &format!("message {n} deleted")),
                    Err(e) => self.err(out, None, &e.to_string()),
                }
            }
            // RFC 1939 §5: "If any messages have been marked as deleted by
            // the POP3 server, they are unmarked."
            Command::Rset => {
                if let State::Transaction(m) = &mut self.state {
                    m.reset();
                }
                let (count, size) = self.maildrop().map(Maildrop::stat).unwrap_or_default();
                self.ok(
                    out,
                    &format!("maildrop has {count} messages ({size} octets)"),
                );
            }
            Command::Noop => self.ok(out, ""),
            Command::Capa => self.capa(out),
            Command::Quit => self.update(out).await,
            _ => self.err(out, None, "Command not valid in this state"),
        }
    }

    fn maildrop(&self) -> Option<&Maildrop> {
        match &self.state {
            State::Transaction(m) => Some(m),
            _ => None,
        }
    }

    /// One line per message not marked as deleted: `n <what>`.
    fn listing(&self, what: impl Fn(&Maildrop, &crate::maildrop::Entry) -> String) -> Vec<String> {
        match self.maildrop() {
            Some(m) => m
                .visible()
                .map(|(n, e)| format!("{n} {}", what(m, e)))
                .collect(),
            None => Vec::new(),
        }
    }

    fn lookup<T>(
        &self,
        n: u32,
        what: impl Fn(&Maildrop, &crate::maildrop::Entry) -> T,
    ) -> Result<T, LookupError> {
        let m = self.maildrop().ok_or(LookupError::NoSuchMessage)?;
        m.get(n).map(|e| what(m, e))
    }

    fn multi_line(&mut self, out: &mut Vec<u8>, first: &str, lines: &[String]) {
        self.ok(out, first);
        for line in lines {
            write_data_line(out, line.as_bytes());
        }
        write_end(out);
    }

    /// RETR (`lines` = `None`) and TOP.
    ///
    /// RFC 1939 §5 RETR: "the POP3 server issues a positive response; the
    /// response given is multi-line." §7 TOP: "the POP3 server sends the
    /// headers of the message, the blank line separating the headers from
    /// the body, and then the number of lines of the indicated message's
    /// body".
    async fn retrieve(&mut self, n: u32, lines: Option<u32>, out: &mut Vec<u8>) {
        let (mailbox, uid) = match self.lookup(n, |m, e| (m.mailbox(), e.uid)) {
            Ok(found) => found,
            Err(e) => return self.err(out, None, &e.to_string()),
        };
        let raw = match self.ctx.store.message_raw(mailbox, uid).await {
            Ok(Some(raw)) => raw,
            // Expunged meanwhile by another protocol (IMAP): POP3's lock
            // covers POP3 sessions only.
            Ok(None) => return self.err(out, None, "Message was removed by another session"),
            Err(e) => {
                tracing::error!(user = self.user.as_deref().unwrap_or("-"), error = %e, "pop3: cannot read message");
                return self.err(out, Some(ResponseCode::SysTemp), "Unable to read message");
            }
        };
        let start = match lines {
            None => {
                self.ok(out, &format!("{} octets", raw.len()));
                let start = out.len();
                write_message(out, &raw);
                self.retrieved += 1;
                start
            }
            Some(lines) => {
                self.ok(out, "Top of message follows");
                let start = out.len();
                write_top(out, &raw, lines);
                start
            }
        };
        // The message's bytes as sent (dot-stuffed, with the final `.`).
        let listener = match self.ctx.tls {
            mailgate_tls::TlsMode::Implicit(_) => mailgate_metrics::Listener::Pop3s,
            _ => mailgate_metrics::Listener::Pop3,
        };
        mailgate_metrics::bytes_sent(listener, (out.len() - start) as u64);
    }

    /// RFC 1939 §6: "When the client issues the QUIT command from the
    /// TRANSACTION state, the POP3 session enters the UPDATE state. [...]
    /// The POP3 server removes all messages marked as deleted from the
    /// maildrop and replies as to the status of this operation. If there
    /// is an error, such as a resource shortage, encountered while removing
    /// messages, the maildrop may result in having some or none of the
    /// messages marked as deleted be removed."
    ///
    /// `+OK` is sent only once the store has made the removal durable, so
    /// the messages are gone for IMAP as well.
    async fn update(&mut self, out: &mut Vec<u8>) {
        let Some(m) = self.maildrop() else {
            return self.sign_off(out, "");
        };
        let (mailbox, marked) = (m.mailbox(), m.marked());
        // The lock went with the store connection that held it (a shared
        // store): another session may have the maildrop now, so nothing
        // is removed (RFC 1939 §6 lets QUIT say so with -ERR).
        if !marked.is_empty() && !m.lock_held().await {
            tracing::warn!(
                user = self.user.as_deref().unwrap_or("-"),
                "pop3: maildrop lock lost during the session; nothing removed"
            );
            self.err(
                out,
                Some(ResponseCode::SysTemp),
                "Maildrop lock lost, no messages removed, try again",
            );
            self.state = State::Done;
            self.end_reason = "maildrop lock lost";
            self.closing = true;
            return;
        }
        if !marked.is_empty() {
            match self.ctx.store.expunge(mailbox, &marked).await {
                Ok(removed) => self.deleted = u32::try_from(removed.len()).unwrap_or(u32::MAX),
                Err(e) => {
                    tracing::error!(user = self.user.as_deref().unwrap_or("-"), error = %e, "pop3: expunge failed");
                    // The session ends either way (RFC 1939 §6); the lock
                    // goes with it.
                    self.err(
                        out,
                        Some(ResponseCode::SysTemp),
                        "Some deleted messages not removed, try again",
                    );
                    self.state = State::Done;
                    self.end_reason = "expunge failed";
                    self.closing = true;
                    return;
                }
            }
        }
        // What is left is counted in the store, after the removal: the
        // snapshot does not know what another session (IMAP EXPUNGE)
        // removed, nor what arrived since the login.
        let left = match self.ctx.store.list_messages(mailbox).await {
            Ok(left) => format!(" ({} messages left)", left.len()),
            Err(e) => {
                tracing::warn!(user = self.user.as_deref().unwrap_or("-"), error = %e, "pop3: could not count the messages left");
                String::new()
            }
        };
        // Given back before +OK: a client that logs in again at once, on
        // this node or another, finds the maildrop free.
        if let State::Transaction(m) = std::mem::replace(&mut self.state, State::Done) {
            let m = *m;
            m.release_lock().await;
        }
        self.sign_off(out, &left);
    }
}
