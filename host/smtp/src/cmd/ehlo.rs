//! EHLO and HELO (RFC 5321 §4.1.1.1).
//!
//! ```text
//! ehlo = "EHLO" SP ( Domain / address-literal ) CRLF
//! helo = "HELO" SP Domain CRLF
//! ```
//!
//! Either one resets any transaction (§4.1.4). We do not check the name
//! against the client's address: on an MX that refuses real mail.

use mailgate_smtp_proto::{Host, Reply};

use crate::session::{Hello, Session};

impl Session {
    /// The EHLO keywords we advertise, in order; STARTTLS and AUTH depend
    /// on the listener and on the session's state.
    pub(crate) fn capabilities(&self) -> Vec<String> {
        let mut caps = vec![
            "PIPELINING".to_string(),
            format!("SIZE {}", self.ctx.limits.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            // RFC 3461: NOTIFY, ORCPT, RET and ENVID go with each
            // recipient into the queue; a local delivery asked for with
            // NOTIFY=SUCCESS is reported as `delivered`.
            "DSN".to_string(),
            "CHUNKING".to_string(),
            "HELP".to_string(),
        ];
        // RFC 3207 §4: not offered again once under TLS.
        if self.starttls_available() {
            caps.push("STARTTLS".to_string());
        }
        // RFC 4954 §3: only where a password may be sent now (under TLS,
        // unless the clear-text policy allows it), and not after success.
        if self.auth_offered() && self.user.is_none() {
            caps.push(format!("AUTH {}", mailgate_auth::sasl::Mechanism::names()));
        }
        caps
    }

    /// EHLO (`extended`) or HELO.
    pub(crate) async fn ehlo(&mut self, host: Host, extended: bool) {
        // The client's name for the hooks and `Received:` (bounded; most
        // often done while the greeting was on its way).
        self.reverse.settle().await;
        self.hello = Some(Hello {
            name: host.to_string(),
            extended,
        });
        self.reset_transaction();
        if let Some(refusal) = self.policy_helo().await {
            // The command is refused: as if it had not been sent.
            self.hello = None;
            self.reset_transaction();
            return self.refuse(refusal);
        }
        let greeting = format!(
            "{} Hello {} {}",
            self.ctx.hostname,
            host,
            crate::received::address_literal(self.peer.ip())
        );
        if extended {
            let reply = Reply::ehlo(greeting, self.capabilities());
            self.reply(reply);
        } else {
            self.reply(Reply::new(250, None, greeting));
        }
    }
}
