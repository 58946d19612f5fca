//! SIGHUP: the configuration file is read again and what can change
//! while the server runs is applied, without closing a connection.
//!
//! # What applies live, and when
//! - `domains`: recipients checked from now on (the SMTP sessions and the
//!   queue's local hand-off share one [`LocalDelivery`]).
//! - `[limits]`, `[auth]`, `[submission]`, `[inbound]`, `hostname`: every
//!   listener's session settings are built again from the new file and
//!   each *new* session gets them; a session already open keeps the ones
//!   it started with. `max_connections` and `max_connections_per_ip`
//!   count the connections already open; `min_free_space` applies to the
//!   next write.
//! - `[auth]`: when it changed, a new authenticator serves new sessions
//!   (its failure counts and credential cache start empty).
//! - `[relay]` and `[queue]`: the relay's settings for the attempts that
//!   start from now on ([`mailgate_relay::Relay::set_config`]); a new
//!   resolver when `nameservers` changed and new TLS clients when
//!   `tls_ca_file` did ([`mailgate_relay::Relay::set_transport`]).
//!   `trusted_networks` is read by each new SMTP session.
//! - `[plugins]`/`[[plugin]]`: `crate::plugins::reload`.
//! - `[sieve]`: ManageSieve's limits for new sessions, and users' scripts
//!   at delivery (limits, `editheader`, `time_zone`, `global_dir` read
//!   again) for the messages of new SMTP/LMTP sessions
//!   (`crate::sieve_delivery::reconfigure`); `plugin`, `run_at_delivery`
//!   and the sandbox's `timeout_ms`, `memory_mb` and `fuel` need a restart.
//!
//! Keys that cannot change without a restart ([`restart_keys`]) are logged
//! at WARN, one line each (`key X changed: restart needed to apply`), and
//! their running value is kept. A file that does not load keeps the whole
//! running configuration, with one ERROR line naming the file and line.
//! One INFO line says what was applied.

use std::sync::{Arc, RwLock};

use mailgate_delivery::LocalDelivery;

use crate::config::Config;

/// A value that a reload replaces while readers hold the old one: each
/// reader takes the `Arc` in force when it starts (a session, a queue
/// run) and keeps it.
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    /// A live value starting as `value`.
    pub fn new(value: T) -> Live<T> {
        Live(RwLock::new(Arc::new(value)))
    }

    /// The value in force now.
    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the value for every later [`Live::get`].
    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

/// The configuration keys whose change a running server cannot apply,
/// with the names the file uses: the listeners (bound once, before root
/// is dropped), the data directory and the store in it, `user`/`group`,
/// `[tls]` (which listeners have TLS and from which files; the files'
/// contents are reloaded on their own), `[log]`, `shutdown_timeout`,
/// `[[dkim]]` (the signing keys, read at start), `[queue]
/// max_concurrent` (the relay's pool), `[relay] mta_sts` (its policy
/// cache is made at start), `[srs]` (one secret for the sessions and the
/// queue's bounce hand-off), `[store]` (opened once), the `[sieve]`
/// plugin and its sandbox (`plugin`, `run_at_delivery`, `timeout_ms`,
/// `memory_mb`, `fuel`) and the presence of `[plugins]`
/// (`crate::plugins::reload` says so itself).
pub fn restart_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let mut check = |key: &str, changed: bool| {
        if changed {
            keys.push(key.to_string());
        }
    };
    for ((name, a), (_, b)) in old
        .listen
        .mail_listeners()
        .into_iter()
        .zip(new.listen.mail_listeners())
    {
        check(&format!("listen.{name}"), a != b);
    }
    check("listen.metrics", old.listen.metrics != new.listen.metrics);
    check("listen.proxy", old.listen.proxy != new.listen.proxy);
    check(
        "limits.proxy_from",
        old.limits.proxy_from != new.limits.proxy_from,
    );
    check("data_dir", old.data_dir != new.data_dir);
    check("user", old.user != new.user);
    check("group", old.group != new.group);
    check("tls", old.tls != new.tls);
    check("log", old.log != new.log);
    check(
        "shutdown_timeout",
        old.shutdown_timeout != new.shutdown_timeout,
    );
    check("dkim", old.dkim != new.dkim);
    check(
        "queue.max_concurrent",
        old.queue.max_concurrent != new.queue.max_concurrent,
    );
    check("relay.mta_sts", old.relay.mta_sts != new.relay.mta_sts);
    // The sessions sign with it and the queue's bounce hand-off (made at
    // start) reverses with it: one secret for both.
    check("srs", old.srs != new.srs);
    // The store is opened once, at start.
    check("store", old.store != new.store);
    // The system Sieve plugin and its sandbox are loaded at start; the
    // other `[sieve]` keys apply live.
    let (a, b) = (&old.sieve, &new.sieve);
    check("sieve.plugin", a.plugin != b.plugin);
    check(
        "sieve.run_at_delivery",
        a.run_at_delivery != b.run_at_delivery,
    );
    check("sieve.timeout_ms", a.timeout_ms != b.timeout_ms);
    check("sieve.memory_mb", a.memory_mb != b.memory_mb);
    check("sieve.fuel", a.fuel != b.fuel);
    keys
}

/// `new` with the running value of every key in [`restart_keys`] put
/// back, so that what is applied never half-changes one of them.
pub fn keep_restart_keys(old: &Config, mut new: Config) -> Config {
    new.listen = old.listen.clone();
    new.limits.proxy_from = old.limits.proxy_from.clone();
    new.data_dir = old.data_dir.clone();
    new.user = old.user.clone();
    new.group = old.group.clone();
    new.tls = old.tls.clone();
    new.log = old.log.clone();
    new.shutdown_timeout = old.shutdown_timeout;
    new.dkim = old.dkim.clone();
    new.queue.max_concurrent = old.queue.max_concurrent;
    new.relay.mta_sts = old.relay.mta_sts;
    new.srs = old.srs.clone();
    new.store = old.store.clone();
    new.sieve.plugin = old.sieve.plugin.clone();
    new.sieve.run_at_delivery = old.sieve.run_at_delivery;
    new.sieve.timeout_ms = old.sieve.timeout_ms;
    new.sieve.memory_mb = old.sieve.memory_mb;
    new.sieve.fuel = old.sieve.fuel;
    new
}

/// The top-level tables (and keys) that differ between `old` and `new`,
/// for the summary line: `domains`, `limits`, `auth`, ... in file order.
pub fn changed_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name: &'static str, changed: bool| {
        if changed {
            out.push(name);
        }
    };
    check("hostname", old.hostname != new.hostname);
    check("domains", old.domains != new.domains);
    check("limits", old.limits != new.limits);
    check("auth", old.auth != new.auth);
    check("submission", old.submission != new.submission);
    check("relay", old.relay != new.relay);
    check("queue", old.queue != new.queue);
    check("inbound", old.inbound != new.inbound);
    check("sieve", old.sieve != new.sieve);
    check(
        "plugins",
        old.plugins != new.plugins || old.plugin != new.plugin,
    );
    out
}

/// The configuration domains into `delivery` (for new recipients).
pub fn apply_domains(delivery: &LocalDelivery, config: &Config) {
    delivery.set_config_domains(&config.domains);
}

/// A configuration error as one log line: the file, the line when it is
/// known, and the message with its line breaks folded (TOML errors quote
/// the offending line over several lines).
pub fn one_line_error(path: &std::path::Path, message: &str) -> String {
    let folded: Vec<&str> = message
        .lines()
        .map(str::trim)
        // The quoted source line and its markers (`10 | key = ...`, `|   ^`)
        // add nothing to the line and column already named.
        .filter(|l| !l.chars().all(|c| " |^~-".contains(c)))
        .filter(|l| {
            !l.split_once(" |")
                .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    let text = folded.join(" | ");
    let name = path.display().to_string();
    if text.starts_with(&name) {
        text
    } else {
        format!("{name}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "hostname = \"mx.a.test\"\ndata_dir = \"/tmp/x\"\ndomains = [\"a.test\"]\n\n[listen]\nsmtp = \"127.0.0.1:2525\"\n";

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn listeners_and_data_dir_need_a_restart_domains_and_limits_do_not() {
        let old = parse(BASE);
        let new = parse(&format!(
            "{}\n[limits]\nmax_message_size = 20000\n",
            BASE.replace("2525", "2526")
                .replace("/tmp/x", "/tmp/y")
                .replace("[\"a.test\"]", "[\"a.test\", \"b.test\"]")
        ));
        assert_eq!(restart_keys(&old, &new), vec!["listen.smtp", "data_dir"]);
        assert_eq!(changed_sections(&old, &new), vec!["domains", "limits"]);
        let applied = keep_restart_keys(&old, new);
        assert_eq!(applied.listen, old.listen);
        assert_eq!(applied.data_dir, old.data_dir);
        assert_eq!(applied.domains, vec!["a.test", "b.test"]);
        assert_eq!(applied.limits.max_message_size, 20000);
        assert!(restart_keys(&old, &applied).is_empty());
    }

    /// `[sieve]`: the limits, `editheader` and `time_zone` apply live; the
    /// plugin and its sandbox need a restart (and keep their running value).
    #[test]
    fn sieve_limits_apply_live_the_plugin_needs_a_restart() {
        let old = parse(BASE);
        let new = parse(&format!(
            "{BASE}\n[sieve]\nmax_redirects = 2\neditheader = true\ntime_zone = \"UTC\"\n\
             plugin = \"/x/sieve.wasm\"\nfuel = 5000\n"
        ));
        assert_eq!(restart_keys(&old, &new), vec!["sieve.plugin", "sieve.fuel"]);
        assert_eq!(changed_sections(&old, &new), vec!["sieve"]);
        let applied = keep_restart_keys(&old, new);
        assert_eq!(applied.sieve.plugin, None);
        assert_eq!(applied.sieve.fuel, old.sieve.fuel);
        assert_eq!(applied.sieve.max_redirects, 2);
        assert!(applied.sieve.editheader);
        assert_eq!(applied.sieve.time_zone, "UTC");
        assert!(restart_keys(&old, &applied).is_empty());
    }

    #[test]
    fn an_error_is_one_line_with_the_file() {
        let e =
            "TOML parse error at line 3, column 5\n  |\n3 | x = \n  |     ^\nexpected a value\n";
        let line = one_line_error(Path::new("/etc/m.toml"), e);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("/etc/m.toml: "), "{line}");
        assert!(line.contains("line 3") && line.contains("expected a value"));
        assert_eq!(
            line,
            "/etc/m.toml: TOML parse error at line 3, column 5 | expected a value"
        );
    }

    #[test]
    fn live_values_are_replaced_for_later_readers() {
        let live = Live::new(1);
        let before = live.get();
        live.set(2);
        assert_eq!((*before, *live.get()), (1, 2));
    }
}
