//! The outbound relay inside `mailgate serve`: the [`Relay`] built from
//! `[relay]`, `[queue]` and `[[dkim]]`. The room of delivery hands it
//! mail through its `mailgate_store::queue::OutboundQueue`, which wakes
//! the runner.
//!
//! The relay itself (queue runner, MX routing, SMTP client, DSN, DKIM)
//! lives in `host/relay`; this module only turns configuration into its
//! parts. The conversion ([`relay_config`], [`dkim_signer`]) also runs
//! when the configuration is loaded, so a bad duration or an unreadable
//! DKIM key stops `mailgate serve` at start, not at the first message.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mailgate_delivery::LocalDelivery;
use mailgate_relay::client::tls::{load_pem_roots, CertificateDer, TlsClients};
use mailgate_relay::config::parse_duration;
use mailgate_relay::dkim::DkimSigner;
use mailgate_relay::{
    HickoryDns, Relay, RelayConfig, RelayParts, RetrySchedule, Router, Smarthost, SystemClock,
};
use mailgate_store::queue::QueueStore;

use crate::config::{Config, ConfigError};

/// Why the relay could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum RelaySetupError {
    /// A `[relay]`, `[queue]` or `[[dkim]]` value is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The DNS resolver could not be made (e.g. no `/etc/resolv.conf`).
    #[error("relay: {0}")]
    Dns(#[from] mailgate_relay::DnsError),
    /// The TLS client configuration could not be made.
    #[error("relay: {0}")]
    Tls(#[from] mailgate_relay::client::tls::TlsSetupError),
}

/// The shortest `[queue] lease`: it is renewed every third of it, and
/// the store counts whole seconds.
pub const MIN_LEASE: Duration = Duration::from_secs(3);
/// The longest `[queue] lease`: the messages of a node that died wait
/// this long at most.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

fn duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    parse_duration(value).map_err(|e| invalid(format!("{key}: {e}")))
}

/// `"ip"` or `"ip:port"` (port 53 when absent); IPv6 as `"[::1]:53"` or
/// a bare `"::1"`.
fn nameserver(value: &str) -> Result<SocketAddr, ConfigError> {
    let v = value.trim();
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Ok(addr);
    }
    v.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            invalid(format!(
                "relay.nameservers: {value:?} is not an IP address or ip:port"
            ))
        })
}

/// `"host:port"`, or `"host"` for port 25.
fn host_port(key: &str, value: &str) -> Result<(String, u16), ConfigError> {
    let v = value.trim();
    // An IPv6 literal needs brackets to carry a port.
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    match v.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port
                .parse()
                .map_err(|_| invalid(format!("{key}: bad port in {value:?}")))?;
            Ok((host.to_string(), port))
        }
        _ if !v.is_empty() => Ok((v.to_string(), 25)),
        _ => Err(invalid(format!("{key} is empty"))),
    }
}

fn domains(list: &[String]) -> BTreeSet<String> {
    list.iter()
        .map(|d| d.trim().trim_end_matches('.').to_lowercase())
        .collect()
}

/// The relay's settings from `[relay]` and `[queue]`; anything not given
/// keeps [`RelayConfig::default`]'s value.
pub fn relay_config(config: &Config) -> Result<RelayConfig, ConfigError> {
    let r = &config.relay;
    let q = &config.queue;
    let mut out = RelayConfig {
        hostname: r
            .hostname
            .clone()
            .unwrap_or_else(|| config.hostname.clone()),
        ..RelayConfig::default()
    };
    out.nameservers = r
        .nameservers
        .iter()
        .map(|n| nameserver(n))
        .collect::<Result<_, _>>()?;
    if let Some(port) = r.port {
        if port == 0 {
            return Err(invalid("relay.port must not be 0".into()));
        }
        out.port = port;
    }
    out.source_ip = r.source_ip;
    out.require_tls = domains(&r.require_tls);
    if let Some(on) = r.mta_sts {
        out.mta_sts = on;
    }
    // Read here too, so a bad file stops the server at start.
    extra_roots(config)?;
    if let Some(s) = &r.smarthost {
        let (host, port) = host_port("relay.smarthost", s)?;
        let auth = match (&r.smarthost_username, &r.smarthost_password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "relay.smarthost_username and relay.smarthost_password go together".into(),
                ))
            }
        };
        out.smarthost = Some(Smarthost {
            host,
            port,
            auth,
            domains: domains(&r.smarthost_domains),
        });
    } else if r.smarthost_username.is_some() || !r.smarthost_domains.is_empty() {
        return Err(invalid(
            "relay.smarthost_* keys need relay.smarthost".into(),
        ));
    }
    if let Some(t) = &r.connect_timeout {
        out.connect_timeout = duration("relay.connect_timeout", t)?;
    }
    if let Some(t) = &r.command_timeout {
        out.command_timeout = duration("relay.command_timeout", t)?;
    }

    let mut retry = RetrySchedule::default();
    if let Some(steps) = &q.retry {
        if steps.is_empty() {
            return Err(invalid("queue.retry needs at least one step".into()));
        }
        retry.steps = steps
            .iter()
            .map(|s| duration("queue.retry", s))
            .collect::<Result<_, _>>()?;
        if retry.steps.iter().any(|d| d.is_zero()) {
            return Err(invalid("queue.retry steps must be longer than 0s".into()));
        }
    }
    if let Some(a) = &q.max_age {
        retry.max_age = duration("queue.max_age", a)?;
    }
    if let Some(w) = &q.delay_warning {
        retry.delay_warning = Some(duration("queue.delay_warning", w)?);
    }
    out.retry = retry;
    if let Some(n) = q.max_per_destination {
        out.max_per_destination = n;
    }
    if let Some(n) = q.max_concurrent {
        out.max_concurrent = n;
    }
    if out.max_per_destination == 0 || out.max_concurrent == 0 {
        return Err(invalid(
            "queue.max_per_destination and queue.max_concurrent must be at least 1".into(),
        ));
    }
    if let Some(p) = &q.poll_interval {
        out.poll_interval = duration("queue.poll_interval", p)?;
        if out.poll_interval.is_zero() {
            return Err(invalid("queue.poll_interval must be longer than 0s".into()));
        }
    }
    if let Some(l) = &q.lease {
        out.lease = duration("queue.lease", l)?;
        if !(MIN_LEASE..=MAX_LEASE).contains(&out.lease) {
            return Err(invalid(format!(
                "queue.lease must be between {}s and {}s",
                MIN_LEASE.as_secs(),
                MAX_LEASE.as_secs()
            )));
        }
    }
    Ok(out)
}

/// The CA certificates of `[relay] tls_ca_file` (none without it).
pub fn extra_roots(config: &Config) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    match &config.relay.tls_ca_file {
        Some(path) => load_pem_roots(path).map_err(|e| invalid(format!("relay.tls_ca_file: {e}"))),
        None => Ok(Vec::new()),
    }
}

/// The DKIM signer of `[[dkim]]` (`None` without keys). Each key file is
/// read here, so a missing or broken key is an error at start.
pub fn dkim_signer(config: &Config) -> Result<Option<Arc<DkimSigner>>, ConfigError> {
    if config.dkim.is_empty() {
        return Ok(None);
    }
    let mut signer = DkimSigner::new();
    let mut seen = BTreeSet::new();
    for k in &config.dkim {
        let domain = k.domain.trim().trim_end_matches('.').to_lowercase();
        if !seen.insert(domain.clone()) {
            return Err(invalid(format!(
                "dkim: two keys for {domain}; one per domain"
            )));
        }
        if k.selector.is_empty()
            || !k
                .selector
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(invalid(format!(
                "dkim: selector {:?} for {domain} is not a DNS label",
                k.selector
            )));
        }
        signer
            .add_file(&domain, &k.selector, &k.key)
            .map_err(|e| invalid(format!("dkim key for {domain}: {e}")))?;
    }
    Ok(Some(Arc::new(signer)))
}

/// The relay's resolver (`[relay] nameservers`) and TLS clients (`[relay]
/// tls_ca_file`), at start and on a reload that changed them.
pub fn transport(
    config: &Config,
    relay: &RelayConfig,
) -> Result<(Router, TlsClients), RelaySetupError> {
    let dns = HickoryDns::new(&relay.nameservers, relay.dns_timeout)?;
    let tls = TlsClients::new(&extra_roots(config)?, true)?;
    Ok((Router::new(Arc::new(dns)), tls))
}

/// The relay of `config`, over `store`'s queue, delivering mail for our
/// own domains (bounces to local senders) through `local`. Not running
/// yet: spawn [`Relay::run`].
pub fn build(
    config: &Config,
    store: Arc<dyn QueueStore>,
    mta_sts_cache: Arc<dyn mailgate_store::MtaStsCache>,
    local: Arc<LocalDelivery>,
) -> Result<Arc<Relay>, RelaySetupError> {
    let relay_config = relay_config(config)?;
    let (router, tls) = transport(config, &relay_config)?;
    // With [srs], the runner's own bounces to our SRS addresses go back
    // to the original senders instead of to a local mailbox.
    let local: Arc<dyn mailgate_relay::local::LocalHandoff> =
        match config.srs.build(&config.domains).ok().flatten() {
            Some(srs) => Arc::new(crate::srs::SrsHandoff::new(local, store.clone(), srs)),
            None => local,
        };
    Ok(Relay::new(RelayParts {
        store,
        local: Some(local),
        router,
        config: relay_config,
        clock: Arc::new(SystemClock),
        tls,
        dkim: dkim_signer(config)?,
        mta_sts_cache: Some(mta_sts_cache),
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "hostname = \"mx.a.test\"\ndata_dir = \"/tmp/x\"\ndomains = [\"a.test\"]\n";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}{extra}"), Path::new("t.toml"))
    }

    #[test]
    fn relay_and_queue_tables_become_the_relay_config() {
        let c = parse(
            "[relay]\nnameservers = [\"127.0.0.1:5353\", \"::1\"]\nport = 2525\nsource_ip = \"127.0.0.2\"\n\
             smarthost = \"smtp.provider.test:587\"\nsmarthost_username = \"u\"\nsmarthost_password = \"p\"\n\
             require_tls = [\"Bank.test\"]\n\
             [queue]\nretry = [\"1s\", \"2m\"]\nmax_age = \"3d\"\ndelay_warning = \"4h\"\npoll_interval = \"5s\"\n\
             max_per_destination = 2\nmax_concurrent = 8\n",
        )
        .unwrap();
        let r = relay_config(&c).unwrap();
        assert_eq!(r.hostname, "mx.a.test");
        assert_eq!(
            r.nameservers,
            vec![
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(r.port, 2525);
        assert_eq!(r.source_ip, Some("127.0.0.2".parse().unwrap()));
        let s = r.smarthost.clone().unwrap();
        assert_eq!((s.host.as_str(), s.port), ("smtp.provider.test", 587));
        assert_eq!(s.auth, Some(("u".into(), "p".into())));
        assert!(r.require_tls.contains("bank.test"));
        assert!(r.mta_sts, "MTA-STS is on by default");
        let off = parse("[relay]\nmta_sts = false\n").unwrap();
        assert!(!relay_config(&off).unwrap().mta_sts);
        assert_eq!(
            r.retry.steps,
            vec![Duration::from_secs(1), Duration::from_secs(120)]
        );
        assert_eq!(r.retry.max_age, Duration::from_secs(3 * 86_400));
        assert_eq!(r.retry.delay_warning, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(r.poll_interval, Duration::from_secs(5));
        assert_eq!((r.max_per_destination, r.max_concurrent), (2, 8));
    }

    #[test]
    fn queue_lease_has_a_default_and_bounds() {
        let d = relay_config(&parse("").unwrap()).unwrap();
        assert_eq!(d.lease, Duration::from_secs(60));
        let r = relay_config(&parse("[queue]\nlease = \"2m\"\n").unwrap()).unwrap();
        assert_eq!(r.lease, Duration::from_secs(120));
        for (bad, why) in [
            ("2s", "between 3s and 3600s"),
            ("2h", "between 3s and 3600s"),
            ("soon", "queue.lease"),
        ] {
            let err = parse(&format!("[queue]\nlease = \"{bad}\"\n"))
                .map_err(|e| e.to_string())
                .and_then(|c| relay_config(&c).map_err(|e| e.to_string()))
                .unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults_without_tables() {
        let r = relay_config(&parse("").unwrap()).unwrap();
        let d = RelayConfig::default();
        assert_eq!(r.port, 25);
        assert_eq!(r.retry, d.retry);
        assert!(r.nameservers.is_empty() && r.smarthost.is_none());
        assert!(dkim_signer(&parse("").unwrap()).unwrap().is_none());
    }

    #[test]
    fn bad_values_are_refused_at_load() {
        for bad in [
            "[queue]\nretry = [\"5 weeks\"]\n",
            "[queue]\nretry = []\n",
            "[queue]\nmax_age = \"x\"\n",
            "[queue]\nmax_concurrent = 0\n",
            "[relay]\nnameservers = [\"ns.example\"]\n",
            "[relay]\nport = 0\n",
            "[relay]\nsmarthost_username = \"u\"\n",
            "[relay]\nsmarthost = \"h:1\"\nsmarthost_username = \"u\"\n",
            "[relay]\nbogus = 1\n",
            "[relay]\ntls_ca_file = \"/nonexistent/ca.pem\"\n",
            "[[dkim]]\ndomain = \"a.test\"\nselector = \"s\"\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let c =
            parse("[[dkim]]\ndomain = \"a.test\"\nselector = \"s\"\nkey = \"/nonexistent.pem\"\n")
                .unwrap();
        let e = dkim_signer(&c).unwrap_err().to_string();
        assert!(
            e.contains("a.test") && e.contains("/nonexistent.pem"),
            "{e}"
        );
    }
}
