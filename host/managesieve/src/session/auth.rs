//! `AUTHENTICATE` (RFC 5804 §2.1) with the shared SASL code: PLAIN and
//! LOGIN, the client's answers as strings, `"*"` to give up.
//!
//! ```text
//! authenticate  = "AUTHENTICATE" SP auth-type [SP string] *(CRLF string)
//! auth-type     = string
//! continue-req  = DQUOTE base64 DQUOTE CRLF    ; or a literal
//! ```

use mailgate_auth::sasl::{encode_base64, Mechanism, PlainCredentials, SaslExchange, SaslStep};
use mailgate_auth::AuthOutcome;
use mailgate_managesieve_proto::response::{self, Code, Status};
use mailgate_managesieve_proto::SaslResponse;
use mailgate_metrics::Mechanism as Counted;

use super::{Flow, Phase, Session};
use crate::MAX_AUTH_FAILURES;

/// The one answer to bad credentials, whether the user exists or not.
const AUTH_FAILED: &str = "Authentication failed";

/// The answer to `AUTHENTICATE` before TLS when the clear-text policy
/// forbids it (Dovecot's words, which clients show).
const NEEDS_TLS: &str =
    "Plaintext authentication disallowed on non-secure connections, use STARTTLS";

impl Session {
    /// `AUTHENTICATE mechanism [initial-response]`.
    pub(super) async fn authenticate(
        &mut self,
        mechanism: &str,
        initial: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Flow {
        // RFC 5804 §2.1: ENCRYPT-NEEDED, "the client should retry after
        // STARTTLS".
        if !self.password_permitted() {
            tracing::info!(client = %self.peer.ip(), "managesieve: AUTHENTICATE refused before TLS");
            return self.client_error(Some(Code::EncryptNeeded), NEEDS_TLS, out);
        }
        let Some(mech) = Mechanism::from_name(mechanism) else {
            return self.client_error(None, "Unsupported authentication mechanism", out);
        };
        // An empty initial response is `""` here, where SASL elsewhere
        // writes `=`.
        let initial = initial.map(|i| if i.is_empty() { "=" } else { i });
        match SaslExchange::start(mech, initial) {
            Ok((exchange, step)) => self.sasl_step(exchange, step, out).await,
            Err(e) => self.client_error(
                None,
                &format!("Invalid SASL {} message: {e}", mech.name()),
                out,
            ),
        }
    }

    /// The client's answer to a challenge.
    pub(super) async fn sasl_answer(&mut self, answer: SaslResponse, out: &mut Vec<u8>) -> Flow {
        let Phase::Sasl(exchange) = std::mem::replace(&mut self.phase, Phase::Anonymous) else {
            return Flow::Continue;
        };
        let mut exchange = *exchange;
        match answer {
            // §2.1: "the client can abort the authentication exchange by
            // sending "*" ... the server MUST reply with NO".
            SaslResponse::Abort => {
                out.extend_from_slice(&response::reply(
                    Status::No,
                    None,
                    "Authentication cancelled",
                ));
                Flow::Continue
            }
            SaslResponse::Data(data) => match exchange.step(&data) {
                Ok(step) => self.sasl_step(exchange, step, out).await,
                Err(e) => {
                    let mech = exchange.mechanism().name();
                    self.client_error(None, &format!("Invalid SASL {mech} message: {e}"), out)
                }
            },
        }
    }

    /// Sends the next challenge, or checks the credentials.
    async fn sasl_step(
        &mut self,
        exchange: SaslExchange,
        step: SaslStep,
        out: &mut Vec<u8>,
    ) -> Flow {
        match step {
            SaslStep::Challenge(bytes) => {
                response::string(out, encode_base64(&bytes).as_bytes());
                out.extend_from_slice(b"\r\n");
                self.phase = Phase::Sasl(Box::new(exchange));
                Flow::Continue
            }
            SaslStep::Done(creds) => self.login(creds, exchange.mechanism(), out).await,
        }
    }

    /// Checks credentials; on success the session is authenticated.
    async fn login(&mut self, creds: PlainCredentials, mech: Mechanism, out: &mut Vec<u8>) -> Flow {
        let client = self.peer.ip();
        let method = mech.name();
        // Acting as someone else (proxy authorization) is not offered.
        if creds.asks_for_other_identity() {
            tracing::warn!(client = %client, user = %creds.authcid, method, "managesieve login refused: authzid differs");
            return self.failed(out);
        }
        let counted = match mech {
            Mechanism::Plain => Counted::Plain,
            Mechanism::Login => Counted::Login,
        };
        let via = (Some(mailgate_metrics::Protocol::ManageSieve), counted);
        let outcome = self
            .ctx
            .auth
            .authenticate_via(via, &creds.authcid, &creds.password, client)
            .await;
        match outcome {
            AuthOutcome::Success(account) => {
                tracing::info!(client = %client, user = %account.address, method, tls = self.tls, "managesieve login");
                self.phase = Phase::Authenticated(account);
                self.auth_failures = 0;
                self.errors = 0;
                out.extend_from_slice(&response::reply(Status::Ok, None, "Logged in"));
                Flow::Continue
            }
            AuthOutcome::Failed => {
                tracing::warn!(client = %client, user = %creds.authcid, method, "managesieve login failed");
                self.failed(out)
            }
            // Temporary, not a verdict on the password: clients retry.
            AuthOutcome::Blocked => {
                tracing::warn!(client = %client, user = %creds.authcid, method, "managesieve login blocked");
                out.extend_from_slice(&response::reply(
                    Status::No,
                    Some(&Code::TryLater),
                    "Too many failures, try later",
                ));
                Flow::Continue
            }
        }
    }

    /// `NO`, or `BYE` after [`MAX_AUTH_FAILURES`].
    fn failed(&mut self, out: &mut Vec<u8>) -> Flow {
        self.auth_failures += 1;
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.end_reason = "too many failed logins";
            out.extend_from_slice(&response::reply(
                Status::Bye,
                None,
                "Too many failed logins, closing connection",
            ));
            return Flow::Close;
        }
        out.extend_from_slice(&response::reply(Status::No, None, AUTH_FAILED));
        Flow::Continue
    }
}
