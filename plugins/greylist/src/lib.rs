//! Greylisting: the first attempt of an unknown (client network, sender,
//! recipient) triplet gets `451 4.7.1`; a retry after `delay` seconds
//! passes, and the triplet is then known for `remember_days`.
//!
//! Grants: `kv`, `clock`, `config`. Configuration (optional):
//! `config = { delay = 300, remember_days = 36 }`. Authenticated sessions
//! and the null sender's bounces to known triplets are not greylisted.
use mailgate_plugin_sdk::prelude::*;
use mailgate_plugin_sdk::{clock, kv};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    delay: u64,
    remember_days: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            delay: 300,
            remember_days: 36,
        }
    }
}

/// The client's network: a /24 for IPv4 (mail farms retry from a
/// neighbour), a /64 for IPv6.
fn network(ip: &str) -> String {
    if ip.contains(':') {
        ip.split(':').take(4).collect::<Vec<_>>().join(":")
    } else {
        ip.rsplit_once('.')
            .map(|(net, _)| net)
            .unwrap_or(ip)
            .to_string()
    }
}

struct Greylist;

impl Plugin for Greylist {
    const NAME: &'static str = "greylist";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: Hooks = Hooks::RCPT_TO;

    fn rcpt_to(session: &Session, envelope: &Envelope, recipient: &Recipient) -> Outcome {
        if session.auth_user.is_some() {
            return Outcome::accept();
        }
        let config: Config = mailgate_plugin_sdk::config::get().unwrap_or_default();
        let key = format!(
            "{}|{}|{}",
            network(&session.client_ip),
            envelope.mail_from.to_lowercase(),
            recipient.address
        );
        let now = clock::now();
        let remember = Some(config.remember_days * 86_400);
        match kv::get(&key).and_then(|v| String::from_utf8(v).ok()) {
            Some(v) if v == "ok" => Outcome::accept(),
            Some(v) => {
                let first: u64 = v.parse().unwrap_or(now);
                if now.saturating_sub(first) >= config.delay {
                    // Known from now on; a store failure only means
                    // greylisting again next time.
                    let _ = kv::set(&key, b"ok", remember);
                    Outcome::accept()
                } else {
                    Outcome::tempfail(451, "4.7.1", "Greylisted, please try again later")
                }
            }
            None => {
                let _ = kv::set(&key, now.to_string().as_bytes(), Some(86_400));
                Outcome::tempfail(451, "4.7.1", "Greylisted, please try again later")
            }
        }
    }
}

export_plugin!(Greylist);
