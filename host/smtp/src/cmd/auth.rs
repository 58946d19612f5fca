//! AUTH (RFC 4954), submission role only.
//!
//! ```text
//! auth-command = "AUTH" SP sasl-mech [SP initial-response]
//!                *(CRLF [base64]) [CRLF cancel-response] CRLF
//! initial-response = base64 / "="
//! cancel-response = "*"
//! ```
//!
//! RFC 4954 §4: "After an AUTH command has been successfully completed,
//! no more AUTH commands may be issued in the same session", and "The
//! AUTH command is not permitted during a mail transaction." §6: "538
//! 5.7.11 Encryption required for requested authentication mechanism"
//! when a password would otherwise cross the network in clear.
//!
//! Wrong password and unknown user get the same `535 5.7.8`, after the
//! same delay (the shared authenticator sees to both); too many recent
//! failures from the client or for the account get `454 4.7.0`.

use mailgate_auth::sasl::{encode_base64, Mechanism, SaslExchange, SaslStep};
use mailgate_auth::AuthOutcome;
use mailgate_smtp_proto::{FramedLine, Reply};

use crate::context::Role;
use crate::session::{Input, Session};

fn invalid() -> Reply {
    Reply::with_code(535, 5, 7, 8, "Authentication credentials invalid")
}

impl Session {
    /// Whether AUTH may be used (and advertised) now: submission role,
    /// an authenticator, and TLS or a clear-text exception.
    pub(crate) fn auth_offered(&self) -> bool {
        let Some(auth) = &self.ctx.authenticator else {
            return false;
        };
        self.ctx.role == Role::Submission && auth.plaintext_permitted(self.tls, self.peer.ip())
    }

    /// AUTH mechanism [initial-response].
    pub(crate) async fn auth(&mut self, mechanism: &str, initial: Option<&str>) {
        if self.ctx.role != Role::Submission || self.ctx.authenticator.is_none() {
            return self.reply(Reply::not_implemented());
        }
        if self.hello.is_none() {
            return self.reply(Reply::with_code(503, 5, 5, 1, "Error: send EHLO first"));
        }
        if self.user.is_some() {
            return self.reply(Reply::with_code(503, 5, 5, 1, "Already authenticated"));
        }
        if self.tx.is_some() {
            return self.reply(Reply::with_code(
                503,
                5,
                5,
                1,
                "AUTH not permitted during a mail transaction",
            ));
        }
        if !self.auth_offered() {
            tracing::info!(client = %self.peer.ip(), "smtp: AUTH refused before TLS");
            return self.reply(Reply::with_code(
                538,
                5,
                7,
                11,
                "Encryption required for requested authentication mechanism",
            ));
        }
        let Some(mech) = Mechanism::from_name(mechanism) else {
            return self.reply(Reply::with_code(
                504,
                5,
                5,
                4,
                "Unrecognized authentication type",
            ));
        };
        match SaslExchange::start(mech, initial) {
            Ok((exchange, step)) => self.sasl_step(exchange, step).await,
            Err(_) => self.reply(Reply::with_code(501, 5, 5, 2, "Cannot decode response")),
        }
    }

    /// A client line while an exchange waits for it.
    pub(crate) async fn sasl_line(&mut self, line: FramedLine) {
        let Input::Sasl(exchange) = std::mem::replace(&mut self.input, Input::Commands) else {
            return;
        };
        let mut exchange = *exchange;
        let line = match line {
            Ok(line) => line,
            Err(too_long) => return self.reply(too_long.reply()),
        };
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text == "*" {
            return self.reply(Reply::with_code(501, 5, 0, 0, "Authentication cancelled"));
        }
        match exchange.step(text) {
            Ok(step) => self.sasl_step(exchange, step).await,
            Err(_) => self.reply(Reply::with_code(501, 5, 5, 2, "Cannot decode response")),
        }
    }

    async fn sasl_step(&mut self, exchange: SaslExchange, step: SaslStep) {
        let creds = match step {
            SaslStep::Challenge(bytes) => {
                self.input = Input::Sasl(Box::new(exchange));
                // RFC 4954 §4: "334" SP [base64] CRLF; no enhanced code.
                return self.reply(Reply::new(334, None, encode_base64(&bytes)));
            }
            SaslStep::Done(creds) => creds,
        };
        let client = self.peer.ip();
        let method = exchange.mechanism().name();
        if creds.asks_for_other_identity() {
            tracing::warn!(%client, user = %creds.authcid, method, "smtp: AUTH refused: authzid differs");
            return self.reply(invalid());
        }
        let Some(auth) = self.ctx.authenticator.clone() else {
            return self.reply(Reply::not_implemented());
        };
        let counted = match exchange.mechanism() {
            Mechanism::Plain => mailgate_metrics::Mechanism::Plain,
            Mechanism::Login => mailgate_metrics::Mechanism::Login,
        };
        let via = (Some(mailgate_metrics::Protocol::Smtp), counted);
        let outcome = auth
            .authenticate_via(via, &creds.authcid, &creds.password, client)
            .await;
        let success = matches!(outcome, AuthOutcome::Success(_));
        if let Some(refusal) = self.policy_auth(method, &creds.authcid, success).await {
            return self.reply(refusal);
        }
        match outcome {
            AuthOutcome::Success(account) => {
                tracing::info!(%client, user = %account.address, method, tls = self.tls, "smtp: authenticated");
                self.user = Some(account);
                self.reply(Reply::with_code(235, 2, 7, 0, "Authentication successful"));
            }
            AuthOutcome::Failed => self.reply(invalid()),
            AuthOutcome::Blocked => self.reply(Reply::with_code(
                454,
                4,
                7,
                0,
                "Temporary authentication failure, try again later",
            )),
        }
    }
}
