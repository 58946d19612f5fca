//! rspamd: asks an rspamd normal worker about each message at `data`
//! (`POST /checkv2`) and acts on its answer; teaches rspamd's controller
//! (`POST /learnspam`, `/learnham`) when users move messages into or out
//! of Junk over IMAP (hook `mailbox-event`).
//!
//! Grants: `http` (with `http_allow` covering `url` and `controller_url`),
//! `config`, `log`. The message is streamed to rspamd by the host
//! (`http::send_message`), never copied into the plugin.
//!
//! Configuration (every key optional; docs/plugins.md has the table):
//! ```toml
//! config = { url = "http://127.0.0.1:11333", controller_url = "http://127.0.0.1:11334",
//!            controller_password = "", skip_authenticated = true,
//!            on_error = "accept", timeout_ms = 0, max_size = 52428800,
//!            junk_folder = "Junk",
//!            actions = { "reject" = "reject", "soft reject" = "tempfail",
//!                        "greylist" = "tempfail", "add header" = "junk",
//!                        "rewrite subject" = "junk", "no action" = "accept" } }
//! ```
use std::collections::BTreeMap;

use mailgate_plugin_sdk::http::{self, Request};
use mailgate_plugin_sdk::log;
use mailgate_plugin_sdk::prelude::*;
use mailgate_plugin_sdk::TlsInfo;
use serde::Deserialize;
use serde_json::Value;

/// What the plugin does with an rspamd action.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Act {
    /// `550 5.7.1` with rspamd's SMTP message when it has one.
    Reject,
    /// `451 4.7.1`.
    Tempfail,
    /// Accept into the Junk folder with `X-Spam: Yes` and the score.
    Junk,
    /// Accept with the score header.
    Accept,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
enum OnError {
    /// Accept the message unchecked (as maddy and Haraka do).
    #[default]
    Accept,
    /// `451 4.7.1`: the sender retries later.
    Tempfail,
}

#[derive(Deserialize, Debug)]
#[serde(default, deny_unknown_fields)]
struct Config {
    url: String,
    controller_url: String,
    controller_password: String,
    skip_authenticated: bool,
    on_error: OnError,
    /// Request deadline, ms; 0: the hook's `timeout_ms`.
    timeout_ms: u32,
    /// Larger messages are not checked (rspamd's own `max_message`
    /// default is 50 MiB).
    max_size: u64,
    junk_folder: String,
    /// rspamd action → what to do; missing actions keep their default.
    actions: BTreeMap<String, Act>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: "http://127.0.0.1:11333".into(),
            controller_url: "http://127.0.0.1:11334".into(),
            controller_password: String::new(),
            skip_authenticated: true,
            on_error: OnError::Accept,
            timeout_ms: 0,
            max_size: 50 << 20,
            junk_folder: "Junk".into(),
            actions: BTreeMap::new(),
        }
    }
}

impl Config {
    fn load() -> Result<Config, String> {
        mailgate_plugin_sdk::config::get()
    }

    /// What to do with rspamd's `action`.
    fn act(&self, action: &str) -> Act {
        if let Some(a) = self.actions.get(action) {
            return *a;
        }
        match action {
            "reject" => Act::Reject,
            "soft reject" | "greylist" => Act::Tempfail,
            "add header" | "rewrite subject" => Act::Junk,
            _ => Act::Accept,
        }
    }

    fn endpoint(base: &str, path: &str) -> String {
        format!("{}/{path}", base.trim_end_matches('/'))
    }
}

/// The `/checkv2` request: the envelope and connection as rspamd's
/// HTTP headers (https://rspamd.com/doc/developers/protocol.html).
fn check_request(
    config: &Config,
    session: &Session,
    envelope: &Envelope,
    tls: Option<TlsInfo>,
) -> Request {
    let mut r = Request::new("POST", &Config::endpoint(&config.url, "checkv2"))
        .header("IP", &session.client_ip)
        .header(
            "Hostname",
            session.reverse_name.as_deref().unwrap_or("unknown"),
        )
        .header("Queue-Id", &session.session_id)
        .header("From", &envelope.mail_from);
    if let Some(helo) = &session.helo {
        r = r.header("Helo", helo);
    }
    if let Some(user) = &session.auth_user {
        r = r.header("User", user);
    }
    match tls {
        Some(t) => {
            r = r
                .header("TLS-Version", &t.version)
                .header("TLS-Cipher", &t.cipher);
        }
        // The host knew TLS was on but not its details.
        None if session.tls => r = r.header("TLS-Version", "TLS"),
        None => {}
    }
    for rcpt in &envelope.recipients {
        r = r.header("Rcpt", rcpt);
    }
    if config.timeout_ms > 0 {
        r = r.timeout_ms(config.timeout_ms);
    }
    r
}

fn on_error(config: &Config, why: &str) -> Outcome {
    log::warn(&format!("rspamd not asked: {why}"));
    match config.on_error {
        OnError::Accept => Outcome::accept(),
        OnError::Tempfail => {
            Outcome::tempfail(451, "4.7.1", "Spam filter unavailable, try again later")
        }
    }
}

/// rspamd's answer as an outcome.
fn outcome(config: &Config, answer: &Value) -> Outcome {
    let action = answer["action"].as_str().unwrap_or("no action");
    let score = answer["score"].as_f64().unwrap_or(0.0);
    let required = answer["required_score"].as_f64().unwrap_or(0.0);
    let smtp_message = answer["messages"]["smtp_message"].as_str();
    let score_header = format!("{score:.2} / {required:.2}");
    match config.act(action) {
        Act::Reject => Outcome::reject(
            550,
            "5.7.1",
            smtp_message.unwrap_or("Spam message rejected"),
        ),
        Act::Tempfail => Outcome::tempfail(451, "4.7.1", smtp_message.unwrap_or("Try again later")),
        Act::Accept => Outcome::accept().add_header("X-Spam-Score", &score_header),
        Act::Junk => {
            let mut out = Outcome::accept();
            // rspamd's milter edits first, so ours win.
            let milter = &answer["milter"];
            if let Some(remove) = milter["remove_headers"].as_object() {
                for name in remove.keys() {
                    out = out.with(Edit::RemoveHeader(name.clone()));
                }
            }
            if let Some(add) = milter["add_headers"].as_object() {
                for (name, v) in add {
                    let value = match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Object(o) => {
                            o.get("value").and_then(Value::as_str).map(String::from)
                        }
                        _ => None,
                    };
                    if let Some(value) = value {
                        out = out.replace_header(name, &value);
                    }
                }
            }
            if action == "rewrite subject" {
                if let Some(subject) = answer["subject"].as_str() {
                    out = out.replace_header("Subject", subject);
                }
            }
            out.replace_header("X-Spam", "Yes")
                .replace_header("X-Spam-Score", &score_header)
                .set_folder(&config.junk_folder)
        }
    }
}

struct Rspamd;

impl Plugin for Rspamd {
    const NAME: &'static str = "rspamd";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: Hooks = Hooks::DATA;
    const MAILBOX_EVENTS: bool = true;

    fn self_test() -> Result<(), String> {
        Config::load().map(|_| ())
    }

    fn data(session: &Session, envelope: &Envelope, message: &Message) -> Outcome {
        let config = match Config::load() {
            Ok(c) => c,
            Err(e) => return on_error(&Config::default(), &e),
        };
        if config.skip_authenticated && session.auth_user.is_some() {
            return Outcome::accept();
        }
        let size = message.size();
        if size > config.max_size {
            log::info(&format!(
                "rspamd not asked: message of {size} bytes over max_size {}",
                config.max_size
            ));
            return Outcome::accept();
        }
        let request = check_request(&config, session, envelope, message.tls());
        let response = match http::send_message(&request, message) {
            Ok(r) => r,
            Err(e) => return on_error(&config, &format!("{e:?}")),
        };
        // rspamd refuses a message over its `max_message` (HTTP 413 or an
        // error naming the size): like ours, such a message is not checked.
        if response.status == 413 || (response.status != 200 && is_size_error(&response.body)) {
            log::info("rspamd not asked: message over rspamd's size limit");
            return Outcome::accept();
        }
        if response.status != 200 {
            return on_error(&config, &format!("HTTP status {}", response.status));
        }
        match serde_json::from_slice::<Value>(&response.body) {
            Ok(answer) if answer.get("error").is_none() => outcome(&config, &answer),
            Ok(answer) if is_size_error(answer["error"].to_string().as_bytes()) => {
                log::info("rspamd not asked: message over rspamd's size limit");
                Outcome::accept()
            }
            Ok(answer) => on_error(&config, &format!("rspamd error {}", answer["error"])),
            Err(e) => on_error(&config, &format!("bad JSON from rspamd: {e}")),
        }
    }

    fn mailbox_event(event: &MailboxEvent, message: &Message) -> Result<(), String> {
        let config = Config::load()?;
        if message.size() > config.max_size {
            return Ok(());
        }
        let path = match event.direction {
            Direction::Spam => "learnspam",
            Direction::Ham => "learnham",
        };
        let mut request = Request::new("POST", &Config::endpoint(&config.controller_url, path))
            .header("Deliver-To", &event.account);
        if !config.controller_password.is_empty() {
            request = request.header("Password", &config.controller_password);
        }
        if config.timeout_ms > 0 {
            request = request.timeout_ms(config.timeout_ms);
        }
        let response = http::send_message(&request, message).map_err(|e| format!("{e:?}"))?;
        let body = String::from_utf8_lossy(&response.body);
        match response.status {
            200 => {
                log::info(&format!("rspamd {path} for {}", event.account));
                Ok(())
            }
            // Already learned: nothing to do.
            208 => Ok(()),
            s => Err(format!(
                "rspamd {path}: HTTP {s}: {}",
                body.chars().take(200).collect::<String>()
            )),
        }
    }
}

fn is_size_error(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    text.contains("too large") || text.contains("too big") || text.contains("max_message")
}

export_plugin!(Rspamd);

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_plugin_sdk::testing::{self, envelope, session};

    fn has(o: &Outcome, edit: &str) -> bool {
        format!("{:?}", o.edits).contains(edit)
    }

    fn answer(json: &str) -> Outcome {
        outcome(&Config::default(), &serde_json::from_str(json).unwrap())
    }

    #[test]
    fn actions_map_to_verdicts() {
        let o = answer(
            r#"{"action":"reject","score":20,"required_score":15,"messages":{"smtp_message":"Gtube pattern"}}"#,
        );
        match o.verdict {
            Verdict::Reject(r) => assert_eq!(
                (r.code, r.enhanced.as_str(), r.text.as_str()),
                (550, "5.7.1", "Gtube pattern")
            ),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            answer(r#"{"action":"greylist"}"#).verdict,
            Verdict::Tempfail(_)
        ));
        assert!(matches!(
            answer(r#"{"action":"soft reject"}"#).verdict,
            Verdict::Tempfail(_)
        ));
        let o = answer(r#"{"action":"no action","score":1.5,"required_score":15}"#);
        assert!(o.is_accept());
        assert_eq!(o.edits.len(), 1);
        assert!(has(&o, r#"AddHeader(("X-Spam-Score", "1.50 / 15.00"))"#));
        let o = answer(
            r#"{"action":"add header","score":7,"required_score":15,"milter":{"add_headers":{"X-Spamd-Bar":{"value":"+++","order":0}},"remove_headers":{"X-Spam":1}}}"#,
        );
        assert!(o.is_accept());
        assert!(has(&o, r#"SetFolder("Junk")"#));
        assert!(has(&o, r#"ReplaceHeader(("X-Spam", "Yes"))"#));
        assert!(has(&o, r#"ReplaceHeader(("X-Spamd-Bar", "+++"))"#));
        assert!(has(&o, r#"RemoveHeader("X-Spam")"#));
    }

    #[test]
    fn the_check_carries_the_envelope_and_on_error_applies() {
        testing::reset();
        testing::set_config(r#"{"url":"http://127.0.0.1:1/","on_error":"tempfail"}"#);
        let mut s = session();
        s.helo = Some("mx.remote.test".into());
        let e = envelope("a@remote.test", &["b@example.org", "c@example.org"]);
        let m = Message::from_eml("Subject: hi\r\n\r\nbody\r\n");
        let o = Rspamd::data(&s, &e, &m);
        assert!(matches!(o.verdict, Verdict::Tempfail(_)), "{o:?}");
        let sent = testing::http_requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].url, "http://127.0.0.1:1/checkv2");
        let rcpts: Vec<_> = sent[0]
            .headers
            .iter()
            .filter(|(n, _)| n == "Rcpt")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(rcpts, ["b@example.org", "c@example.org"]);
        assert!(sent[0]
            .headers
            .contains(&("Helo".into(), "mx.remote.test".into())));
        assert_eq!(sent[0].body, b"Subject: hi\r\n\r\nbody\r\n");
    }
}
