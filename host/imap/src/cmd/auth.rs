//! LOGIN (RFC 9051 §6.2.3) and AUTHENTICATE PLAIN and LOGIN (RFC 9051
//! §6.2.2, RFC 4616, with the initial response of RFC 4959 SASL-IR).

use mailgate_auth::sasl::{encode_base64, Mechanism, SaslError, SaslExchange, SaslStep};
use mailgate_auth::AuthOutcome;
use mailgate_imap_proto::response::write_continue;

use crate::session::{CmdError, CmdResult, Done, Session, StateKind};
use crate::SASL_MECHANISMS;

/// `login = "LOGIN" SP userid SP password`
pub(crate) async fn login(
    s: &mut Session,
    user: &[u8],
    password: &[u8],
    _out: &mut Vec<u8>,
) -> CmdResult {
    if !s.passwords_ok() {
        return Err(privacy_required());
    }
    let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
    else {
        return Err(failed());
    };
    check(s, mailgate_metrics::Mechanism::ImapLogin, user, password).await
}

/// Where an AUTHENTICATE exchange stands after a step.
pub(crate) enum Progress {
    /// A challenge (`+ ...`) was written; the exchange waits for the
    /// client's next line.
    Continue(SaslExchange),
    /// The exchange is over.
    Done(Done),
}

/// `authenticate = "AUTHENTICATE" SP auth-type [SP initial-resp]`
/// (RFC 9051 §6.2.2; initial response: RFC 4959 SASL-IR). PLAIN and
/// LOGIN, through the SASL exchange shared with SMTP and POP3.
pub(crate) async fn authenticate(
    s: &mut Session,
    mechanism: &str,
    initial: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<Progress, CmdError> {
    if !s.passwords_ok() {
        return Err(privacy_required());
    }
    let Some(mechanism) =
        Mechanism::from_name(mechanism).filter(|m| SASL_MECHANISMS.contains(&m.name()))
    else {
        return Err(CmdError::No(
            None,
            format!("Unsupported authentication mechanism {mechanism}"),
        ));
    };
    // RFC 4959 §3: "=" is an empty initial response, which PLAIN cannot
    // use.
    if mechanism == Mechanism::Plain && initial == Some("=") {
        return Err(failed());
    }
    let (exchange, step) = SaslExchange::start(mechanism, initial).map_err(bad_sasl)?;
    advance(s, exchange, step, out).await
}

/// The client's answer to a `+` of AUTHENTICATE. RFC 9051 §6.2.2: "If
/// the client wishes to cancel an authentication exchange, it issues a
/// line consisting of a single "*"" — answered BAD.
pub(crate) async fn sasl_response(
    s: &mut Session,
    mut exchange: SaslExchange,
    line: &[u8],
    out: &mut Vec<u8>,
) -> Result<Progress, CmdError> {
    if line == b"*" {
        return Err(CmdError::Bad("Authentication cancelled".into()));
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(CmdError::Bad("Invalid base64".into()));
    };
    let step = exchange.step(line).map_err(bad_sasl)?;
    advance(s, exchange, step, out).await
}

/// Sends the next challenge, or checks the credentials the exchange ended
/// with.
async fn advance(
    s: &mut Session,
    exchange: SaslExchange,
    step: SaslStep,
    out: &mut Vec<u8>,
) -> Result<Progress, CmdError> {
    match step {
        SaslStep::Challenge(challenge) => {
            write_continue(out, &encode_base64(&challenge));
            Ok(Progress::Continue(exchange))
        }
        SaslStep::Done(creds) => {
            // RFC 4616 §2: acting as someone else is not supported.
            if !creds.authzid.is_empty() && !creds.authzid.eq_ignore_ascii_case(&creds.authcid) {
                return Err(CmdError::no(
                    "AUTHORIZATIONFAILED",
                    "Cannot act as another user",
                ));
            }
            let counted = match exchange.mechanism() {
                Mechanism::Plain => mailgate_metrics::Mechanism::Plain,
                Mechanism::Login => mailgate_metrics::Mechanism::Login,
            };
            check(s, counted, &creds.authcid, &creds.password)
                .await
                .map(Progress::Done)
        }
    }
}

fn bad_sasl(e: SaslError) -> CmdError {
    CmdError::Bad(format!("Invalid SASL message: {e}"))
}

/// RFC 9051 §6.2.3 / §7.1 PRIVACYREQUIRED: no password without TLS
/// (the capability list says LOGINDISABLED).
fn privacy_required() -> CmdError {
    CmdError::no("PRIVACYREQUIRED", "Passwords are not accepted without TLS")
}

fn failed() -> CmdError {
    CmdError::no("AUTHENTICATIONFAILED", "Authentication failed")
}

/// Verifies the credentials and enters the Authenticated state.
async fn check(
    s: &mut Session,
    mechanism: mailgate_metrics::Mechanism,
    user: &str,
    password: &str,
) -> CmdResult {
    let via = (Some(mailgate_metrics::Protocol::Imap), mechanism);
    match s
        .ctx
        .auth
        .authenticate_via(via, user, password, s.peer.ip())
        .await
    {
        AuthOutcome::Success(account) => {
            tracing::info!(client = %s.peer.ip(), user = %account.address, "imap login");
            // Subscribed before anything is read, so no change is missed.
            s.events = Some(s.ctx.store.subscribe());
            s.account = Some(account);
            s.state = StateKind::Authenticated;
            let caps = s.capabilities().join(" ");
            Ok(Done::with_code(format!("CAPABILITY {caps}"), "Logged in"))
        }
        AuthOutcome::Failed => Err(failed()),
        AuthOutcome::Blocked => Err(CmdError::no(
            "UNAVAILABLE",
            "Too many failed logins, try again later",
        )),
    }
}
