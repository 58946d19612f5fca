//! The AUTHORIZATION state: STLS, USER/PASS, AUTH PLAIN and LOGIN, and
//! opening the maildrop.

use mailgate_auth::sasl::{encode_base64, Mechanism, PlainCredentials, SaslExchange, SaslStep};
use mailgate_auth::AuthOutcome;
use mailgate_metrics::Mechanism as Counted;
use mailgate_pop3_proto::response::{write_continuation, write_data_line, write_end};
use mailgate_pop3_proto::{parse_sasl_response, Command, ResponseCode, SaslResponse};
use mailgate_store::Account;

use super::{Session, State};
use crate::maildrop::Maildrop;

/// The one answer to bad credentials, whether the user exists or not.
const AUTH_FAILED: &str = "Authentication failed";

/// The answer to a password command before TLS when the clear-text
/// policy forbids it (the wording Dovecot uses, which clients show).
const NEEDS_TLS: &str = "Plaintext authentication disallowed on non-secure connections, use STLS";

impl Session {
    pub(super) async fn authorization_command(&mut self, command: Command, out: &mut Vec<u8>) {
        match command {
            // RFC 1939 §7: "USER name ... +OK name is a valid mailbox /
            // -ERR never heard of mailbox name". We always say +OK: the
            // answer to PASS must not tell which accounts exist.
            Command::User(_) | Command::Pass(_) | Command::Auth { .. }
                if !self.password_permitted() =>
            {
                tracing::info!(client = %self.peer.ip(), "pop3: password command refused before TLS");
                self.state = State::Authorization { user: None };
                self.err(out, Some(ResponseCode::Auth), NEEDS_TLS);
            }
            Command::User(name) => {
                self.state = State::Authorization { user: Some(name) };
                self.ok(out, "Send your password");
            }
            // RFC 1939 §7: "PASS string ... may only be given in the
            // AUTHORIZATION state immediately after a successful USER".
            Command::Pass(password) => {
                let user = match &mut self.state {
                    State::Authorization { user } => user.take(),
                    _ => None,
                };
                match user {
                    Some(user) => self.login(&user, &password, "USER", out).await,
                    None => self.err(out, None, "Send USER first"),
                }
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                self.state = State::Authorization { user: None };
                self.auth(mechanism, initial_response, out).await;
            }
            Command::Apop { .. } => self.err(out, None, "APOP not supported"),
            Command::Stls => self.stls(out),
            Command::Capa => self.capa(out),
            Command::Quit => self.sign_off(out, ""),
            // The state table lets nothing else through.
            _ => self.err(out, None, "Command not valid in this state"),
        }
    }

    /// RFC 2449 §5: "+OK Capability list follows" and one capability per
    /// line.
    pub(super) fn capa(&mut self, out: &mut Vec<u8>) {
        self.ok(out, "Capability list follows");
        for cap in self.capabilities() {
            write_data_line(out, cap.as_bytes());
        }
        write_end(out);
    }

    /// RFC 2595 §4: "STLS ... Responses: +OK -ERR ... Restrictions: Only
    /// permitted in AUTHORIZATION state." After `+OK` nothing more is read
    /// in clear: the connection loop discards what is buffered.
    fn stls(&mut self, out: &mut Vec<u8>) {
        if self.tls {
            return self.err(out, None, "Command not permitted when TLS active");
        }
        if !self.stls_available() {
            return self.err(out, None, "STLS not available");
        }
        self.ok(out, "Begin TLS negotiation");
        self.stls = true;
    }

    /// RFC 5034 §4:
    /// ```text
    /// auth_command = "AUTH" SP sasl-mech [SP initial-response]
    ///                *(CRLF [base64]) [CRLF cancel-response] CRLF
    /// continue-req = "+" SP [base64] CRLF
    /// ```
    /// `AUTH` alone (the RFC 1734 habit many clients keep) lists the
    /// mechanisms as a multi-line answer.
    async fn auth(
        &mut self,
        mechanism: Option<String>,
        initial_response: Option<String>,
        out: &mut Vec<u8>,
    ) {
        let Some(mechanism) = mechanism else {
            self.ok(out, "Supported mechanisms follow");
            for mech in Mechanism::ALL {
                write_data_line(out, mech.name().as_bytes());
            }
            write_end(out);
            return;
        };
        let Some(mech) = Mechanism::from_name(&mechanism) else {
            self.err(out, None, "Unsupported authentication mechanism");
            return;
        };
        match SaslExchange::start(mech, initial_response.as_deref()) {
            Ok((exchange, step)) => self.sasl_step(exchange, step, out).await,
            Err(e) => self.err(
                out,
                None,
                &format!("Invalid SASL {} message: {e}", mech.name()),
            ),
        }
    }

    /// The client's line after a `+` challenge: an answer or `*`.
    pub(super) async fn sasl_response(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let State::Sasl(exchange) =
            std::mem::replace(&mut self.state, State::Authorization { user: None })
        else {
            return;
        };
        let mut exchange = *exchange;
        match parse_sasl_response(line) {
            // RFC 5034 §4: on "*" the server "MUST reject the AUTH command
            // by sending an -ERR reply".
            Ok(SaslResponse::Cancel) => self.err(out, None, "Authentication cancelled"),
            Ok(SaslResponse::Data(data)) => match exchange.step(&data) {
                Ok(step) => self.sasl_step(exchange, step, out).await,
                Err(e) => {
                    let mech = exchange.mechanism().name();
                    self.err(out, None, &format!("Invalid SASL {mech} message: {e}"));
                }
            },
            Err(_) => self.err(out, None, "Invalid base64 in SASL response"),
        }
    }

    /// Sends the next challenge, or checks the credentials.
    async fn sasl_step(&mut self, exchange: SaslExchange, step: SaslStep, out: &mut Vec<u8>) {
        let method = exchange.mechanism().name();
        match step {
            SaslStep::Challenge(bytes) => {
                write_continuation(out, &encode_base64(&bytes));
                self.state = State::Sasl(Box::new(exchange));
            }
            SaslStep::Done(creds) => self.sasl_login(creds, method, out).await,
        }
    }

    /// RFC 4616 §2: `message = [authzid] UTF8NUL authcid UTF8NUL passwd`.
    async fn sasl_login(
        &mut self,
        creds: PlainCredentials,
        method: &'static str,
        out: &mut Vec<u8>,
    ) {
        // Acting as someone else (proxy authorization) is not offered.
        if creds.asks_for_other_identity() {
            tracing::warn!(client = %self.peer.ip(), user = %creds.authcid, "pop3 login refused: authzid differs");
            self.err(out, Some(ResponseCode::Auth), AUTH_FAILED);
            return;
        }
        self.login(&creds.authcid, &creds.password, method, out)
            .await;
    }

    /// Checks credentials and, on success, opens the maildrop.
    async fn login(&mut self, user: &str, password: &str, method: &'static str, out: &mut Vec<u8>) {
        let client = self.peer.ip();
        let mechanism = match method {
            "USER" => Counted::UserPass,
            "PLAIN" => Counted::Plain,
            "LOGIN" => Counted::Login,
            _ => Counted::Unknown,
        };
        let via = (Some(mailgate_metrics::Protocol::Pop3), mechanism);
        let outcome = self.ctx.auth.authenticate_via(via, user, password, client);
        match outcome.await {
            AuthOutcome::Success(account) => self.open_maildrop(account, method, out).await,
            AuthOutcome::Failed => {
                tracing::warn!(client = %client, user = %user, method, "pop3 login failed");
                self.err(out, Some(ResponseCode::Auth), AUTH_FAILED);
            }
            // A temporary refusal, not a verdict on the password: with
            // [SYS/TEMP] (RFC 3206 §4) clients retry later instead of
            // asking the user for a new password. It tells nothing about
            // the account, since unknown names are counted the same way.
            AuthOutcome::Blocked => {
                tracing::warn!(client = %client, user = %user, method, "pop3 login blocked");
                self.err(
                    out,
                    Some(ResponseCode::SysTemp),
                    "Too many failures, try later",
                );
            }
        }
    }

    /// RFC 1939 §7: "the POP3 server then acquires an exclusive-access lock
    /// on the maildrop [...] If the maildrop cannot be opened for some
    /// reason (for example, a lock can not be acquired [...]), the POP3
    /// server responds with a negative status indicator." The session
    /// stays in AUTHORIZATION then.
    async fn open_maildrop(&mut self, account: Account, method: &'static str, out: &mut Vec<u8>) {
        let client = self.peer.ip();
        let lock = match self.ctx.locks.lock_maildrop(account.id).await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::info!(client = %client, user = %account.address, method, "pop3 login: maildrop in use");
                self.err(
                    out,
                    Some(ResponseCode::InUse),
                    "Maildrop is locked by another session",
                );
                return;
            }
            Err(e) => {
                tracing::error!(user = %account.address, error = %e, "pop3: cannot lock the maildrop");
                self.err(out, Some(ResponseCode::SysTemp), "Unable to lock maildrop");
                return;
            }
        };
        let store = &self.ctx.store;
        let mailbox = match store.mailbox(account.id, "INBOX").await {
            Ok(Some(m)) => m,
            Ok(None) => {
                tracing::error!(user = %account.address, "pop3: account has no INBOX");
                self.err(out, Some(ResponseCode::SysPerm), "Unable to open maildrop");
                return;
            }
            Err(e) => {
                tracing::error!(user = %account.address, error = %e, "pop3: cannot open INBOX");
                self.err(out, Some(ResponseCode::SysTemp), "Unable to open maildrop");
                return;
            }
        };
        let messages = match store.list_messages(mailbox.id).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(user = %account.address, error = %e, "pop3: cannot list INBOX");
                self.err(out, Some(ResponseCode::SysTemp), "Unable to open maildrop");
                return;
            }
        };
        // Unique-ids kept from another server (`mailgate import`); without
        // them a client leaving mail on the server would fetch it again,
        // so failing to read them fails the login like the list above.
        let uidls = match store.pop3_uidls(mailbox.id).await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(user = %account.address, error = %e, "pop3: cannot read kept UIDLs");
                self.err(out, Some(ResponseCode::SysTemp), "Unable to open maildrop");
                return;
            }
        };
        let maildrop =
            Maildrop::new(lock, mailbox.id, mailbox.uid_validity, &messages).with_uidls(uidls);
        let (count, size) = maildrop.stat();
        tracing::info!(client = %client, user = %account.address, method, messages = count, "pop3 login");
        self.user = Some(account.address);
        self.state = State::Transaction(Box::new(maildrop));
        self.ok(out, &format!("Logged in, {count} messages ({size} octets)"));
    }
}
