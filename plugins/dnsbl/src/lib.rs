//! DNSBL check: at connect, looks the client's address up in DNS block
//! lists and refuses listed clients with `554 5.7.1`.
//!
//! Grants: `dns`, `config`. Configuration (optional):
//! `config = { zones = ["zen.spamhaus.org"] }`. A resolver failure lets the
//! client in (a broken list must not stop the mail).
use mailgate_plugin_sdk::dns::{lookup, RecordType};
use mailgate_plugin_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    zones: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            zones: vec!["zen.spamhaus.org".into()],
        }
    }
}

/// The DNSBL query name of `ip` (reversed octets, or nibbles for IPv6).
fn reversed(ip: &str) -> Option<String> {
    if let Ok(v4) = ip.parse::<std::net::Ipv4Addr>() {
        let o = v4.octets();
        return Some(format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0]));
    }
    let v6 = ip.parse::<std::net::Ipv6Addr>().ok()?;
    let mut nibbles = Vec::with_capacity(32);
    for byte in v6.octets().iter().rev() {
        nibbles.push(format!("{:x}", byte & 0xf));
        nibbles.push(format!("{:x}", byte >> 4));
    }
    Some(nibbles.join("."))
}

struct Dnsbl;

impl Plugin for Dnsbl {
    const NAME: &'static str = "dnsbl";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: Hooks = Hooks::CONNECT;

    fn connect(session: &Session) -> Outcome {
        let config: Config = mailgate_plugin_sdk::config::get().unwrap_or_default();
        let Some(rev) = reversed(&session.client_ip) else {
            return Outcome::accept();
        };
        for zone in &config.zones {
            if let Ok(answers) = lookup(&format!("{rev}.{zone}"), RecordType::A) {
                // Lists answer 127.0.0.x for a listing; anything else is an
                // error code of the list (e.g. 127.255.255.254: quota).
                if answers
                    .iter()
                    .any(|a| a.starts_with("127.0.0.") || a.starts_with("127.0.1."))
                {
                    return Outcome::reject(
                        554,
                        "5.7.1",
                        &format!("Client {} listed at {zone}", session.client_ip),
                    );
                }
            }
        }
        Outcome::accept()
    }
}

export_plugin!(Dnsbl);
