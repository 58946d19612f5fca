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
    /// The EHLO keywords we advertise, in order. Data-driven so that the
    /// TLS and AUTH work only adds entries here.
    pub(crate) fn capabilities(&self) -> Vec<String> {
        let caps = vec![
            "PIPELINING".to_string(),
            format!("SIZE {}", self.ctx.limits.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "CHUNKING".to_string(),
            "HELP".to_string(),
        ];
        // Hooks, not yet wired: "STARTTLS" when a TLS acceptor is
        // configured and `!self.tls`; "AUTH PLAIN LOGIN" when
        // `self.ctx.authenticator` is set and the session is under TLS.
        caps
    }

    /// EHLO (`extended`) or HELO.
    pub(crate) fn ehlo(&mut self, host: Host, extended: bool) {
        self.hello = Some(Hello {
            name: host.to_string(),
            extended,
        });
        self.reset_transaction();
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
