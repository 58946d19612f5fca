//! The configuration file (TOML), read with `--config PATH`.
//!
//! Every key is documented in `docs/configuration.md` and in the commented
//! example `config/mailgate.example.toml`; keep the three in step. Unknown
//! keys are an error, so that a typo does not silently fall back to a
//! default.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has wrong or unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server's name: used in greetings, `Received:` and EHLO.
    pub hostname: String,
    /// Where the store keeps everything.
    pub data_dir: PathBuf,
    /// Local domains (more can be added with `mailgate domain add`).
    #[serde(default)]
    pub domains: Vec<String>,
    /// The account `serve` runs as once its listeners are bound, when
    /// started as root (a name or a uid); see `crate::privileges`.
    #[serde(default)]
    pub user: Option<String>,
    /// The group it runs as (a name or a gid); the user's primary group
    /// when absent.
    #[serde(default)]
    pub group: Option<String>,
    /// Listening addresses; an absent key disables that listener.
    #[serde(default)]
    pub listen: Listen,
    /// Protocol limits.
    #[serde(default)]
    pub limits: Limits,
    /// Authentication settings.
    #[serde(default)]
    pub auth: AuthSettings,
    /// The certificate and key; without them no TLS is offered.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Mail submission by users (ports 587 and 465).
    #[serde(default)]
    pub submission: SubmissionSettings,
    /// Delivery of mail to other domains (`[relay]`).
    #[serde(default)]
    pub relay: RelaySettings,
    /// The outbound queue's retries and concurrency (`[queue]`).
    #[serde(default)]
    pub queue: QueueSettings,
    /// DKIM signing keys (`[[dkim]]`), one per domain.
    #[serde(default)]
    pub dkim: Vec<DkimKey>,
    /// SPF, DKIM and DMARC checks of mail arriving on `smtp` (`[inbound]`).
    #[serde(default)]
    pub inbound: InboundSettings,
    /// `[log]`: the log's format and level.
    #[serde(default)]
    pub log: LogSettings,
    /// `[srs]`: the Sender Rewriting Scheme for forwarded mail.
    #[serde(default)]
    pub srs: crate::srs::SrsSettings,
    /// `[sieve]`: limits of users' Sieve scripts (ManageSieve, delivery).
    #[serde(default)]
    pub sieve: SieveConfig,
    /// `[store]`: which database keeps the mail (SQLite in `data_dir`, or
    /// PostgreSQL).
    #[serde(default)]
    pub store: StoreSettings,
    /// Seconds that sessions in progress get to finish after SIGTERM.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: u64,
    /// `[plugins]`: the policy plugin directory and the defaults of every
    /// plugin; absent = no plugins, and no cost on the SMTP path.
    #[serde(default)]
    pub plugins: Option<mailgate_policy::PluginsConfig>,
    /// `[[plugin]]`: settings of one plugin (grants, limits, config).
    #[serde(default)]
    pub plugin: Vec<mailgate_policy::PluginSettings>,
    /// The file this was read from (set by [`Config::load`]), so SIGHUP
    /// can re-read it; `None` for the development profile.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

fn default_shutdown_timeout() -> u64 {
    30
}

/// `[listen]`: one address (`ip:port`) per listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// SMTP, the MX role (port 25).
    pub smtp: Option<String>,
    /// POP3 (port 110), with STLS when `[tls]` is set.
    pub pop3: Option<String>,
    /// Submission with STARTTLS then AUTH (port 587, RFC 6409).
    pub submission: Option<String>,
    /// Submission over implicit TLS (port 465, RFC 8314 §3.3).
    pub submissions: Option<String>,
    /// POP3 over implicit TLS (port 995, RFC 8314).
    pub pop3s: Option<String>,
    /// IMAP (port 143), with STARTTLS when `[tls]` is set.
    pub imap: Option<String>,
    /// IMAP over implicit TLS (port 993, RFC 8314).
    pub imaps: Option<String>,
    /// LMTP (RFC 2033), local delivery from another mail system.
    pub lmtp: Option<String>,
    /// ManageSieve (RFC 5804, port 4190): users manage their Sieve
    /// scripts; STARTTLS when `[tls]` is set.
    pub managesieve: Option<String>,
    /// The monitoring endpoint (HTTP: `/metrics`, `/healthz/live`,
    /// `/healthz/ready`); docs/monitoring.md.
    pub metrics: Option<String>,
    /// `[listen.proxy]`: the listeners whose connections start with a
    /// PROXY protocol header (from the addresses of `limits.proxy_from`).
    #[serde(default)]
    pub proxy: ListenProxy,
}

impl Listen {
    /// The mail listeners (all but `metrics`) by protocol name, in a fixed
    /// order: the order they are bound in.
    pub fn mail_listeners(&self) -> [(&'static str, &Option<String>); 9] {
        [
            ("smtp", &self.smtp),
            ("submission", &self.submission),
            ("submissions", &self.submissions),
            ("pop3", &self.pop3),
            ("pop3s", &self.pop3s),
            ("imap", &self.imap),
            ("imaps", &self.imaps),
            ("lmtp", &self.lmtp),
            ("managesieve", &self.managesieve),
        ]
    }
}

/// `[listen.proxy]`: `true` for each listener behind a proxy that speaks
/// the PROXY protocol (v1 or v2); see `crate::proxy_protocol`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenProxy {
    /// The `smtp` listener.
    pub smtp: bool,
    /// The `submission` listener.
    pub submission: bool,
    /// The `submissions` listener.
    pub submissions: bool,
    /// The `pop3` listener.
    pub pop3: bool,
    /// The `pop3s` listener.
    pub pop3s: bool,
    /// The `imap` listener.
    pub imap: bool,
    /// The `imaps` listener.
    pub imaps: bool,
    /// The `lmtp` listener.
    pub lmtp: bool,
    /// The `managesieve` listener.
    pub managesieve: bool,
}

impl ListenProxy {
    /// Whether the listener `protocol` (`"smtp"`, `"imaps"`, ...) expects
    /// a PROXY header.
    pub fn enabled(&self, protocol: &str) -> bool {
        match protocol {
            "smtp" => self.smtp,
            "submission" => self.submission,
            "submissions" => self.submissions,
            "pop3" => self.pop3,
            "pop3s" => self.pop3s,
            "imap" => self.imap,
            "imaps" => self.imaps,
            "lmtp" => self.lmtp,
            "managesieve" => self.managesieve,
            _ => false,
        }
    }
}

/// `[log]`: how the server writes its log (to standard error).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (the default) or `json` (one object per line).
    pub format: LogFormat,
    /// A level (`info`) or filter directives (`info,mailgate_relay=debug`);
    /// `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormat> for mailgate_log::Format {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Text => mailgate_log::Format::Text,
            LogFormat::Json => mailgate_log::Format::Json,
        }
    }
}

/// `[inbound]`: verification of mail arriving on the `smtp` listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct InboundSettings {
    /// Check SPF, DKIM and DMARC and add `Authentication-Results:`.
    pub verify: bool,
    /// Refuse (`550 5.7.1`) a DMARC failure whose domain says `p=reject`.
    pub dmarc_reject: bool,
    /// The bound on each step of the checks, a duration (`"10s"`); also
    /// the bound on the sender domain's lookups.
    pub timeout: String,
    /// Refuse at MAIL a sender whose domain has no MX, A or AAAA record
    /// (`550 5.1.8`; a DNS failure `450 4.1.8`), as Postfix's
    /// `reject_unknown_sender_domain`. Authenticated and trusted clients
    /// are not checked.
    pub reject_unknown_sender_domain: bool,
    /// Look up each SMTP client's name at connect (PTR, confirmed by the
    /// name's A/AAAA records; at most 2 s, while the greeting goes out),
    /// for `Received:` and the plugins' `reverse-name`, as Postfix's
    /// `smtpd_peername_lookup`. Every SMTP listener, not only `smtp`.
    pub reverse_lookup: bool,
}

impl Default for InboundSettings {
    fn default() -> Self {
        InboundSettings {
            verify: true,
            dmarc_reject: true,
            timeout: "10s".into(),
            reject_unknown_sender_domain: true,
            reverse_lookup: true,
        }
    }
}

impl InboundSettings {
    /// `timeout` as a duration (at least one second).
    pub fn timeout(&self) -> Result<Duration, ConfigError> {
        match mailgate_relay::config::parse_duration(&self.timeout) {
            Ok(d) if d >= Duration::from_secs(1) => Ok(d),
            Ok(_) => Err(ConfigError::Invalid(
                "inbound.timeout must be at least 1s".into(),
            )),
            Err(e) => Err(ConfigError::Invalid(format!("inbound.timeout: {e}"))),
        }
    }
}

/// `[tls]`: the server's certificate chain and private key, PEM files.
/// Reloaded when they change and on SIGHUP.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain: the server certificate first, then any
    /// intermediates.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Create a self-signed certificate for `hostname` if `cert` is
    /// missing. Only the development profile sets this; it cannot be
    /// written in the file.
    #[serde(skip)]
    pub self_signed: bool,
}

/// `[relay]`: how mail for other domains leaves (see `crate::relay`).
/// Absent keys keep the relay crate's defaults.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySettings {
    /// The name in EHLO; the top-level `hostname` when absent.
    pub hostname: Option<String>,
    /// DNS servers, `"ip"` or `"ip:port"`; empty: `/etc/resolv.conf`.
    pub nameservers: Vec<String>,
    /// The port of the next hops (25).
    pub port: Option<u16>,
    /// The local address outgoing connections come from.
    pub source_ip: Option<std::net::IpAddr>,
    /// `"host:port"` taking all outbound mail instead of the MX hosts.
    pub smarthost: Option<String>,
    /// AUTH PLAIN user name at the smarthost (sent only over TLS).
    pub smarthost_username: Option<String>,
    /// AUTH PLAIN password at the smarthost.
    pub smarthost_password: Option<String>,
    /// Only these domains go through the smarthost (empty: all).
    pub smarthost_domains: Vec<String>,
    /// Domains whose mail goes only over TLS with a valid certificate.
    pub require_tls: Vec<String>,
    /// Apply the receiving domains' MTA-STS policies (RFC 8461); true
    /// when absent.
    pub mta_sts: Option<bool>,
    /// A PEM file of CA certificates trusted besides the system's for
    /// verified TLS (`require_tls`, MTA-STS SMTP and policy fetches).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// TCP connect timeout, a duration such as `"30s"`.
    pub connect_timeout: Option<String>,
    /// Timeout for each reply of the next hop, a duration.
    pub command_timeout: Option<String>,
    /// Clients that may send to other domains without AUTH on the `smtp`
    /// and `submission` listeners (Postfix's `mynetworks`): addresses or
    /// CIDR ranges. Empty (the default): nobody, not even loopback.
    pub trusted_networks: Vec<String>,
}

/// `[queue]`: retries and concurrency of the outbound queue. Durations are
/// strings such as `"30s"`, `"15m"`, `"4h"`, `"5d"`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Waits between attempts; the last one repeats.
    pub retry: Option<Vec<String>>,
    /// Undelivered after this long: bounced.
    pub max_age: Option<String>,
    /// Tell the sender once after this long (absent: never).
    pub delay_warning: Option<String>,
    /// Deliveries at once to one destination domain.
    pub max_per_destination: Option<usize>,
    /// Deliveries at once in all.
    pub max_concurrent: Option<usize>,
    /// How often the queue is looked at without a new message (picks up
    /// `mailgate queue flush` from the command line).
    pub poll_interval: Option<String>,
    /// How long a node's claim on a message lasts on a shared store
    /// (PostgreSQL), renewed while its attempt runs: how long the
    /// messages of a node that died wait for another node.
    pub lease: Option<String>,
}

/// One `[[dkim]]` table: the signing key of one domain.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DkimKey {
    /// The domain whose mail (by its `From:` address) is signed.
    pub domain: String,
    /// The selector: the key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// The private key, a PEM file (`mailgate dkim generate` makes one).
    pub key: PathBuf,
}

/// `[submission]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SubmissionSettings {
    /// Save a copy of each submitted message in the sender's `Sent`
    /// mailbox.
    pub save_sent: bool,
    /// Extra envelope senders per user: `"user@dom" = ["other@dom",
    /// "@whole.domain"]`.
    pub senders: HashMap<String, Vec<String>>,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message accepted, in bytes (advertised as SIZE).
    pub max_message_size: u64,
    /// Most recipients in one SMTP transaction.
    pub max_recipients: usize,
    /// Longest line inside a message (DATA), in bytes including CRLF.
    pub max_line_length: usize,
    /// Longest command line, in bytes including CRLF.
    pub max_command_line: usize,
    /// Seconds a session may stay silent before it is closed.
    pub idle_timeout: u64,
    /// Protocol errors a session may make before it is closed.
    pub max_errors: u32,
    /// Connections open at once, over the whole server; more are told
    /// the server is busy and closed.
    pub max_connections: usize,
    /// Connections open at once from one client address, per listener
    /// (IPv6 addresses counted per /64).
    pub max_connections_per_ip: usize,
    /// Seconds within which a command line must arrive whole, however
    /// slowly its bytes trickle in.
    pub command_timeout: u64,
    /// Slowest accepted transfer of message data (DATA, BDAT, APPEND
    /// literals), in bytes per second, measured after a grace period.
    pub min_transfer_rate: u64,
    /// The proxies (addresses or CIDR ranges) whose PROXY protocol
    /// headers are believed, on the listeners of `[listen.proxy]`.
    pub proxy_from: Vec<String>,
    /// Free space (bytes) the data directory's file system keeps for new
    /// mail: below it SMTP/LMTP MAIL gets `452 4.3.1` and IMAP APPEND and
    /// COPY `NO`. Bytes or a string with K, M, G or T; `None`: the
    /// smaller of 1 GiB and 5 % of the file system; 0: only a full disk.
    #[serde(
        deserialize_with = "byte_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_free_space: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 1000,
            max_command_line: 2048,
            idle_timeout: 300,
            max_errors: 20,
            max_connections: 10_000,
            max_connections_per_ip: 50,
            command_timeout: 300,
            min_transfer_rate: 1024,
            proxy_from: Vec::new(),
            min_free_space: None,
        }
    }
}

impl Limits {
    /// `min_free_space` as the store takes it.
    pub fn min_free_space(&self) -> mailgate_store::space::MinFreeSpace {
        use mailgate_store::space::MinFreeSpace;
        self.min_free_space
            .map_or(MinFreeSpace::Default, MinFreeSpace::Bytes)
    }
}

/// A size in bytes: an integer, or a string of digits with an optional
/// unit K, M, G or T (powers of 1024, any case), e.g. `"500M"`.
fn byte_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    let text = match Raw::deserialize(d)? {
        Raw::Number(n) => return Ok(Some(n)),
        Raw::Text(t) => t,
    };
    parse_byte_size(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `"500M"` → 524288000; see [`byte_size`].
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "{text:?} is not a size: use bytes, or a number with K, M, G or T"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("{text:?} is not a size: use bytes, or a number with K, M, G or T"))
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Delay after a failed login in milliseconds; doubles with each
    /// further failure from the same address or for the same account.
    pub failure_delay_ms: u64,
    /// The delay never grows beyond this, in milliseconds.
    pub max_failure_delay_ms: u64,
    /// Failures (per client address and per account) after which logins
    /// are refused until `failure_window` seconds have passed.
    pub max_failures: u32,
    /// Seconds that failures are remembered.
    pub failure_window: u64,
    /// Accept passwords without TLS from anywhere.
    pub allow_plaintext: bool,
    /// Accept passwords without TLS from loopback clients (the traffic
    /// never leaves the machine).
    pub trust_loopback: bool,
    /// How long a verified password is remembered (keyed hash, in
    /// memory), a duration such as `"1h"`; `"0"` turns the cache off.
    pub cache_ttl: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            failure_delay_ms: 1000,
            max_failure_delay_ms: 16_000,
            max_failures: 10,
            failure_window: 900,
            allow_plaintext: false,
            trust_loopback: false,
            cache_ttl: "1h".into(),
        }
    }
}

impl AuthSettings {
    /// The clear-text password policy these describe.
    pub fn plaintext(&self) -> mailgate_auth::PlaintextPolicy {
        mailgate_auth::PlaintextPolicy {
            allow_plaintext: self.allow_plaintext,
            trust_loopback: self.trust_loopback,
        }
    }

    /// The limiter settings these describe.
    pub fn limiter(&self) -> mailgate_auth::LimiterSettings {
        mailgate_auth::LimiterSettings {
            base_delay: Duration::from_millis(self.failure_delay_ms),
            max_delay: Duration::from_millis(self.max_failure_delay_ms.max(self.failure_delay_ms)),
            max_failures: self.max_failures,
            window: Duration::from_secs(self.failure_window),
        }
    }

    /// `cache_ttl` as a duration (zero: the credential cache is off).
    pub fn cache_ttl(&self) -> Result<Duration, ConfigError> {
        mailgate_relay::config::parse_duration(&self.cache_ttl).map_err(|e| {
            ConfigError::Invalid(format!("auth.cache_ttl: {e}; \"0\" turns the cache off"))
        })
    }
}

/// `[sieve]`: users' own filters (docs/sieve.md). The limits bind
/// ManageSieve, `mailgate sieve` and the scripts run at delivery alike;
/// each default is Pigeonhole's (Dovecot) where it has one.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SieveConfig {
    /// Largest script, in bytes or with K/M (Pigeonhole
    /// `sieve_max_script_size`: 1M). Also the largest ManageSieve literal.
    #[serde(deserialize_with = "byte_size_plain")]
    pub max_script_size: u64,
    /// Most scripts per account (Pigeonhole `sieve_quota_max_scripts`,
    /// unlimited there; 32 here so that one account cannot fill the store).
    pub max_scripts: usize,
    /// Most `redirect`s one run may ask for (`sieve_max_redirects`: 4);
    /// announced as ManageSieve `MAXREDIRECTS`.
    pub max_redirects: usize,
    /// Most actions one run may ask for (`sieve_max_actions`: 32).
    pub max_actions: usize,
    /// Deepest `include` nesting (`sieve_include_max_nesting_depth`: 10).
    pub max_include_depth: usize,
    /// Most scripts one run may include (`sieve_include_max_includes`: 255).
    pub max_includes: usize,
    /// The step budget of one run (every command, test and comparison
    /// costs steps): a run that uses it up stops and the message is kept.
    pub max_cpu_steps: u64,
    /// Deepest nesting of blocks and tests (Pigeonhole: 32).
    pub max_nesting: usize,
    /// Allow `require "editheader"` (RFC 5293); off as in Pigeonhole.
    pub editheader: bool,
    /// Shortest period between two vacation replies to one sender, a
    /// duration such as `"1d"` (`sieve_vacation_min_period`: 1d).
    pub vacation_min_period: String,
    /// Longest such period (`sieve_vacation_max_period`: 60d).
    pub vacation_max_period: String,
    /// The period when the script gives none (`sieve_vacation_default_period`: 7d).
    pub vacation_default_period: String,
    /// The system Sieve plugin that runs users' active scripts at delivery
    /// (`sieve.wasm`, built from `plugins/sieve`); unset:
    /// [`crate::sieve_delivery::DEFAULT_PLUGIN`] if that file exists.
    /// Without a plugin, scripts are stored but not run.
    pub plugin: Option<PathBuf>,
    /// A directory of the administrator's scripts (`NAME.sieve`), which
    /// users' scripts reach with `include :global "NAME"` (RFC 6609;
    /// Pigeonhole `sieve_global`). Read when the server starts.
    pub global_dir: Option<PathBuf>,
    /// Run users' active scripts at delivery (when the plugin is found).
    pub run_at_delivery: bool,
    /// Wall time of one script run in the sandbox, ms (the plugin and its
    /// interpreter together). A run past it is stopped; the message is kept.
    pub timeout_ms: u64,
    /// Memory of the plugin's sandbox, MiB (the message is read into it).
    pub memory_mb: u32,
    /// WebAssembly fuel of one run (about one unit per instruction): the
    /// sandbox's bound behind `max_cpu_steps`.
    pub fuel: u64,
    /// The time zone of `currentdate` and of `date` without `:zone`:
    /// `"local"` (the server's: `TZ`, else `/etc/localtime`, as in
    /// Pigeonhole), `"UTC"`, or a fixed offset such as `"+0200"`.
    pub time_zone: String,
}

impl Default for SieveConfig {
    fn default() -> Self {
        SieveConfig {
            max_script_size: 1 << 20,
            max_scripts: 32,
            max_redirects: 4,
            max_actions: 32,
            max_include_depth: 10,
            max_includes: 255,
            max_cpu_steps: 1_000_000,
            max_nesting: 32,
            editheader: false,
            vacation_min_period: "1d".into(),
            vacation_max_period: "60d".into(),
            vacation_default_period: "7d".into(),
            plugin: None,
            global_dir: None,
            run_at_delivery: true,
            timeout_ms: 2000,
            memory_mb: 128,
            fuel: 2_000_000_000,
            time_zone: "local".into(),
        }
    }
}

/// The largest `[sieve] max_script_size` accepted: a script is held in
/// memory whole, by ManageSieve while it arrives and by delivery.
pub const MAX_SIEVE_SCRIPT_SIZE: u64 = 64 << 20;

impl SieveConfig {
    /// The interpreter's settings: these limits over its defaults.
    pub fn settings(&self) -> Result<mailgate_sieve::Settings, ConfigError> {
        let period = |key: &str, v: &str| {
            mailgate_relay::config::parse_duration(v)
                .map(|d| d.as_secs())
                .map_err(|e| ConfigError::Invalid(format!("sieve.{key}: {e}")))
        };
        Ok(mailgate_sieve::Settings {
            max_script_size: usize::try_from(self.max_script_size).unwrap_or(usize::MAX),
            max_actions: self.max_actions,
            max_redirects: self.max_redirects,
            max_include_depth: self.max_include_depth,
            max_includes: self.max_includes,
            max_cpu_steps: self.max_cpu_steps,
            max_nesting: self.max_nesting,
            editheader: self.editheader,
            vacation_min_period: period("vacation_min_period", &self.vacation_min_period)?,
            vacation_max_period: period("vacation_max_period", &self.vacation_max_period)?,
            vacation_default_period: period(
                "vacation_default_period",
                &self.vacation_default_period,
            )?,
            ..mailgate_sieve::Settings::default()
        })
    }

    /// `time_zone` in minutes east of UTC; `None` for `"local"` (the
    /// server's zone at each delivery).
    pub fn time_zone(&self) -> Result<Option<i32>, ConfigError> {
        let tz = self.time_zone.trim();
        if tz.eq_ignore_ascii_case("local") {
            return Ok(None);
        }
        if tz.eq_ignore_ascii_case("utc") || tz.eq_ignore_ascii_case("z") {
            return Ok(Some(0));
        }
        let bad = || {
            ConfigError::Invalid(format!(
                "sieve.time_zone: \"{}\" is not \"local\", \"UTC\" or an offset such as \"+0200\"",
                self.time_zone.escape_debug()
            ))
        };
        let (sign, digits) = match tz.as_bytes().first() {
            Some(b'+') => (1, &tz[1..]),
            Some(b'-') => (-1, &tz[1..]),
            _ => return Err(bad()),
        };
        let digits = digits.replace(':', "");
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let (h, m): (i32, i32) = (
            digits[..2].parse().map_err(|_| bad())?,
            digits[2..].parse().map_err(|_| bad())?,
        );
        if h > 14 || m > 59 {
            return Err(bad());
        }
        Ok(Some(sign * (h * 60 + m)))
    }

    /// The checks of `Config::validate`.
    fn validate(&self) -> Result<(), ConfigError> {
        self.time_zone()?;
        if self.max_script_size < 1 || self.max_script_size > MAX_SIEVE_SCRIPT_SIZE {
            return Err(ConfigError::Invalid(format!(
                "sieve.max_script_size must be between 1 and {MAX_SIEVE_SCRIPT_SIZE} bytes"
            )));
        }
        if self.max_scripts < 1 || self.max_actions < 1 || self.max_include_depth < 1 {
            return Err(ConfigError::Invalid(
                "sieve.max_scripts, max_actions and max_include_depth must be at least 1".into(),
            ));
        }
        if self.max_cpu_steps < 1000 || self.max_nesting < 1 {
            return Err(ConfigError::Invalid(
                "sieve.max_cpu_steps must be at least 1000 and max_nesting at least 1".into(),
            ));
        }
        let s = self.settings()?;
        if s.vacation_min_period > s.vacation_max_period {
            return Err(ConfigError::Invalid(
                "sieve.vacation_min_period is longer than vacation_max_period".into(),
            ));
        }
        Ok(())
    }
}

/// `[store] backend`: the engine that keeps the mail.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// One SQLite database in `data_dir` (`mailgate.db`): one node.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`[store] url`), which several nodes may
    /// share. Incomplete: see [`StoreSettings::experimental`].
    Postgres,
}

/// `[store] tls`: TLS to the database (see
/// `mailgate_store::postgres::tls`).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StoreTls {
    /// Plain TCP (or a Unix socket).
    #[default]
    Disable,
    /// Encrypted; the certificate is not checked.
    Require,
    /// Encrypted; the certificate must chain to a trusted root and name
    /// the URL's host.
    VerifyFull,
}

impl StoreTls {
    fn pg(self, ca_file: Option<PathBuf>) -> mailgate_store::postgres::tls::PgTls {
        use mailgate_store::postgres::tls::{PgTls, TlsMode};
        PgTls {
            mode: match self {
                StoreTls::Disable => TlsMode::Disable,
                StoreTls::Require => TlsMode::Require,
                StoreTls::VerifyFull => TlsMode::VerifyFull,
            },
            ca_file,
        }
    }
}

/// `[store]`: which database keeps the mail.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `"sqlite"` (the default) or `"postgres"`.
    pub backend: StoreBackend,
    /// PostgreSQL only: `postgres://user@host:5432/database`. A password
    /// may be in it, but [`StoreSettings::password_file`] keeps it out of
    /// the configuration file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// PostgreSQL only: a file whose first line is the database password
    /// (it wins over one in the URL). Read at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL only: the most connections this node opens to the
    /// database.
    pub pool_size: usize,
    /// PostgreSQL only: TLS to the database: `"disable"` (the default),
    /// `"require"` (encrypted, certificate not checked) or
    /// `"verify-full"` (encrypted, certificate checked against the roots
    /// and the URL's host). A `sslmode` in the URL must agree.
    pub tls: StoreTls,
    /// PostgreSQL only, with `tls = "verify-full"`: a PEM file of the CA
    /// certificates to trust instead of the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// Allow `backend = "postgres"` while that backend is incomplete
    /// (development and testing only; docs/scaling.md says what works).
    pub experimental: bool,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            backend: StoreBackend::Sqlite,
            url: None,
            password_file: None,
            pool_size: mailgate_store::postgres::DEFAULT_POOL_SIZE,
            tls: StoreTls::Disable,
            tls_ca_file: None,
            experimental: false,
        }
    }
}

/// The largest `[store] pool_size` accepted (PostgreSQL's own default
/// `max_connections` is 100, shared by every node).
pub const MAX_STORE_POOL_SIZE: usize = 1000;

impl StoreSettings {
    /// The checks of `Config::validate`.
    fn validate(&self) -> Result<(), ConfigError> {
        match self.backend {
            StoreBackend::Sqlite => {
                if self.url.is_some() || self.password_file.is_some() {
                    return Err(ConfigError::Invalid(
                        "store.url and store.password_file are for backend = \"postgres\"; \
                         the sqlite backend keeps its database in data_dir"
                            .into(),
                    ));
                }
                if self.tls != StoreTls::Disable || self.tls_ca_file.is_some() {
                    return Err(ConfigError::Invalid(
                        "store.tls and store.tls_ca_file are for backend = \"postgres\" \
                         (TLS to the database server)"
                            .into(),
                    ));
                }
            }
            StoreBackend::Postgres => {
                if !self.experimental {
                    return Err(ConfigError::Invalid(
                        "store.backend = \"postgres\" is not complete yet (docs/scaling.md says \
                         what works): use \"sqlite\", or set store.experimental = true for \
                         development and testing only"
                            .into(),
                    ));
                }
                match self.url.as_deref().map(str::trim) {
                    None | Some("") => {
                        return Err(ConfigError::Invalid(
                            "store.backend = \"postgres\" needs store.url, e.g. \
                             \"postgres://mailgate@db.example.org:5432/mailgate\""
                                .into(),
                        ))
                    }
                    Some(url) if !mailgate_store::backend::is_postgres_url(url) => {
                        return Err(ConfigError::Invalid(format!(
                            "store.url {:?} is not a PostgreSQL URL \
                             (postgres://user@host:port/database)",
                            mailgate_store::backend::url_without_password(url)
                        )))
                    }
                    Some(_) => {}
                }
                if let Some(p) = &self.password_file {
                    std::fs::File::open(p).map_err(|e| {
                        ConfigError::Invalid(format!(
                            "store.password_file {} cannot be read: {e}",
                            p.display()
                        ))
                    })?;
                }
                if self.pool_size < 1 || self.pool_size > MAX_STORE_POOL_SIZE {
                    return Err(ConfigError::Invalid(format!(
                        "store.pool_size must be between 1 and {MAX_STORE_POOL_SIZE}"
                    )));
                }
                // Contradictions (a CA file without verify-full, a URL
                // sslmode that says otherwise, TLS to a Unix socket), then
                // the CA file itself.
                let tls = self.tls.pg(self.tls_ca_file.clone());
                tls.check_url(self.url.as_deref().unwrap_or_default())
                    .map_err(|e| ConfigError::Invalid(store_message(e)))?;
                if tls.mode == mailgate_store::postgres::tls::TlsMode::VerifyFull {
                    tls.connector()
                        .map_err(|e| ConfigError::Invalid(store_message(e)))?;
                }
            }
        }
        Ok(())
    }

    /// What to open: SQLite in `data_dir`, or PostgreSQL with the
    /// password read from `password_file`.
    pub fn backend_config(&self, data_dir: &Path) -> Result<mailgate_store::BackendConfig, String> {
        match self.backend {
            StoreBackend::Sqlite => Ok(mailgate_store::BackendConfig::Sqlite {
                data_dir: data_dir.to_path_buf(),
            }),
            StoreBackend::Postgres => {
                let url = self.url.clone().unwrap_or_default();
                let mut pg = mailgate_store::postgres::PgConfig::new(url);
                pg.pool_size = self.pool_size;
                pg.tls = self.tls.pg(self.tls_ca_file.clone());
                if let Some(p) = &self.password_file {
                    pg = pg
                        .with_password_file(p)
                        .map_err(|e| format!("store.password_file {}: {e}", p.display()))?;
                }
                Ok(mailgate_store::BackendConfig::Postgres(pg))
            }
        }
    }
}

/// A store error's message for a configuration error (without the
/// "invalid: " of [`mailgate_store::StoreError::Invalid`]).
fn store_message(e: mailgate_store::StoreError) -> String {
    match e {
        mailgate_store::StoreError::Invalid(m) => m,
        other => other.to_string(),
    }
}

/// A size in bytes that must be given (see [`byte_size`]).
fn byte_size_plain<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    byte_size(d).map(|v| v.unwrap_or(0))
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and checks configuration text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        // A parse error quotes the line, which may hold a password.
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: hide_quoted_secret(&e.to_string(), text),
        })?;
        config.domains = config
            .domains
            .iter()
            .map(|d| d.trim().to_lowercase())
            .collect();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.hostname.trim().is_empty() || self.hostname.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid(format!(
                "hostname {:?} is not a host name",
                self.hostname
            )));
        }
        let l = &self.limits;
        if l.max_command_line < 512 {
            return Err(ConfigError::Invalid(
                "limits.max_command_line must be at least 512 (RFC 5321 §4.5.3.1.4)".into(),
            ));
        }
        if l.max_line_length < 1000 {
            return Err(ConfigError::Invalid(
                "limits.max_line_length must be at least 1000 (RFC 5321 §4.5.3.1.6)".into(),
            ));
        }
        if l.max_recipients < 1
            || l.max_message_size < 1024
            || l.idle_timeout < 1
            || l.max_errors < 1
            || l.max_connections < 1
            || l.max_connections_per_ip < 1
            || l.command_timeout < 1
        {
            return Err(ConfigError::Invalid(
                "limits must be positive (and max_message_size at least 1024)".into(),
            ));
        }
        if self.tls.is_none() {
            for (key, value) in [
                ("submissions", &self.listen.submissions),
                ("pop3s", &self.listen.pop3s),
                ("imaps", &self.listen.imaps),
            ] {
                if value.is_some() {
                    return Err(ConfigError::Invalid(format!(
                        "listen.{key} is implicit TLS and needs a [tls] table with cert and key"
                    )));
                }
            }
        }
        if self.plugins.is_none() && !self.plugin.is_empty() {
            return Err(ConfigError::Invalid(
                "[[plugin]] entries need a [plugins] table with the plugin directory".into(),
            ));
        }
        if self.auth.max_failures < 1 {
            return Err(ConfigError::Invalid(
                "auth.max_failures must be at least 1".into(),
            ));
        }
        self.auth.cache_ttl()?;
        mailgate_log::check_level(&self.log.level)
            .map_err(|e| ConfigError::Invalid(format!("log.level: {e}")))?;
        if let Some(m) = &self.listen.metrics {
            m.parse::<std::net::SocketAddr>().map_err(|_| {
                ConfigError::Invalid(format!(
                    "listen.metrics {m:?} is not an address with a port, e.g. \"127.0.0.1:9925\""
                ))
            })?;
        }
        self.check_proxy_and_user()?;
        // Converted once here so that a bad relay value stops the server at
        // start; the DKIM key files are read by `serve`.
        crate::relay::relay_config(self)?;
        self.inbound.timeout()?;
        self.trusted_networks()?;
        self.sieve.validate()?;
        self.store.validate()?;
        self.srs.build(&self.domains)?;
        Ok(())
    }

    /// What the policy runtime reads: `[plugins]` and the `[[plugin]]`
    /// entries; `None` without `[plugins]` (no plugins at all).
    pub fn policy(&self) -> Option<mailgate_policy::PolicyConfig> {
        Some(mailgate_policy::PolicyConfig {
            plugins: self.plugins.clone()?,
            plugin: self.plugin.clone(),
        })
    }

    /// `[listen.proxy]` names only configured listeners and comes with
    /// `limits.proxy_from`; `group` comes with `user`.
    fn check_proxy_and_user(&self) -> Result<(), ConfigError> {
        let trusted = self.trusted_proxies()?;
        let l = &self.listen;
        for (name, address) in l.mail_listeners() {
            if !l.proxy.enabled(name) {
                continue;
            }
            if address.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "listen.proxy.{name} is on but there is no listen.{name} listener"
                )));
            }
            if trusted.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "listen.proxy.{name} is on but limits.proxy_from is empty: list the \
                     addresses of the proxies whose PROXY headers are believed"
                )));
            }
        }
        if self.group.is_some() && self.user.is_none() {
            return Err(ConfigError::Invalid(
                "group is set without user: name the user to run as too".into(),
            ));
        }
        Ok(())
    }

    /// `limits.proxy_from`, parsed.
    pub fn trusted_proxies(&self) -> Result<crate::proxy_protocol::TrustedProxies, ConfigError> {
        crate::proxy_protocol::TrustedProxies::parse(&self.limits.proxy_from)
            .map_err(ConfigError::Invalid)
    }

    /// `relay.trusted_networks`, parsed.
    pub fn trusted_networks(&self) -> Result<mailgate_smtp::TrustedNetworks, ConfigError> {
        mailgate_smtp::TrustedNetworks::parse(&self.relay.trusted_networks)
            .map_err(|e| ConfigError::Invalid(format!("relay.trusted_networks: {e}")))
    }

    /// `idle_timeout` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.idle_timeout)
    }
}

// Secrets in what the configuration shows: `config check`'s output and
// the parse errors of every command, `serve` and SIGHUP included.

/// What a secret's value is printed as.
pub const HIDDEN: &str = "<hidden>";

/// Whether a key's value is a secret: its name contains `password`,
/// `passwd`, `secret` or `token`, or ends in `api_key`/`apikey`
/// (case-insensitive; also inside a plugin's `config` table).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "passwd", "secret", "token"]
        .iter()
        .any(|s| k.contains(s))
        || k.ends_with("api_key")
        || k.ends_with("apikey")
}

/// `message` (a TOML parse error, which quotes the line `at line N` and
/// may repeat its value) with the value hidden when that line sets a secret
/// key, or a key that may be a misspelt one (it contains `pas`, `pw`,
/// `secr` or `tok`).
pub fn hide_quoted_secret(message: &str, text: &str) -> String {
    let line = message
        .split_once("at line ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| text.lines().nth(n.checked_sub(1)?));
    let Some((key, value)) = line.and_then(|l| l.split_once('=')) else {
        return message.to_string();
    };
    let key = key.trim().trim_matches('"');
    let key = key
        .rsplit('.')
        .next()
        .unwrap_or(key)
        .trim()
        .trim_matches('"');
    let value = value.trim();
    let lower = key.to_ascii_lowercase();
    let looks_secret = ["pas", "pw", "secr", "tok"]
        .iter()
        .any(|s| lower.contains(s));
    if value.is_empty() || !(is_secret_key(key) || looks_secret) {
        return message.to_string();
    }
    let mut out = message.replace(value, HIDDEN);
    let inner = value.trim_matches(|c| c == '"' || c == '\'');
    if !inner.is_empty() {
        out = out.replace(inner, HIDDEN);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
hostname = "mx.example.org"
data_dir = "/var/lib/mailgate"
domains  = ["Example.org"]

[listen]
smtp = "0.0.0.0:25"
pop3 = "0.0.0.0:110"
"#;

    #[test]
    fn the_documented_minimal_config_parses() {
        let c = Config::parse(MINIMAL, Path::new("t.toml")).unwrap();
        assert_eq!(c.hostname, "mx.example.org");
        assert_eq!(c.domains, vec!["example.org"]);
        assert_eq!(c.listen.smtp.as_deref(), Some("0.0.0.0:25"));
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let typo = MINIMAL.replace("[listen]", "[listen]\nsmpt = \"1.2.3.4:25\"");
        let e = Config::parse(&typo, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("smpt"), "{e}");
        let small = format!("{MINIMAL}\n[limits]\nmax_command_line = 100\n");
        assert!(Config::parse(&small, Path::new("t.toml")).is_err());
        // A zero here would refuse every connection or close every session.
        for key in [
            "max_connections",
            "max_connections_per_ip",
            "command_timeout",
        ] {
            let zero = format!("{MINIMAL}\n[limits]\n{key} = 0\n");
            assert!(Config::parse(&zero, Path::new("t.toml")).is_err(), "{key}");
        }
    }

    #[test]
    fn a_parse_error_does_not_quote_a_password() {
        let text = format!("{MINIMAL}\n[relay]\nsmarthost_password = \"Sw0rdfish-77\" extra\n");
        let e = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml") && !e.contains("Sw0rdfish-77"), "{e}");
    }

    #[test]
    fn auth_cache_ttl() {
        let c = Config::parse(MINIMAL, Path::new("t.toml")).unwrap();
        assert_eq!(c.auth.cache_ttl().unwrap(), Duration::from_secs(3600));
        for (value, secs) in [("0", 0), ("90s", 90), ("30m", 1800), ("2h", 7200)] {
            let text = format!("{MINIMAL}\n[auth]\ncache_ttl = \"{value}\"\n");
            let c = Config::parse(&text, Path::new("t.toml")).unwrap();
            assert_eq!(c.auth.cache_ttl().unwrap(), Duration::from_secs(secs));
        }
        for value in ["1 hour", "-1s", "", "forever"] {
            let text = format!("{MINIMAL}\n[auth]\ncache_ttl = \"{value}\"\n");
            let e = Config::parse(&text, Path::new("t.toml")).unwrap_err();
            assert!(e.to_string().contains("auth.cache_ttl"), "{e}");
        }
    }

    #[test]
    fn tls_listeners_need_a_certificate() {
        let with = format!("{MINIMAL}pop3s = \"0.0.0.0:995\"\n");
        let e = Config::parse(&with, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pop3s") && e.contains("[tls]"), "{e}");
        let ok = format!("{with}\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n");
        let c = Config::parse(&ok, Path::new("t.toml")).unwrap();
        assert_eq!(c.tls.unwrap().cert, PathBuf::from("/c.pem"));
        assert!(!c.auth.allow_plaintext && !c.auth.trust_loopback);
    }

    #[test]
    fn imaps_needs_a_certificate() {
        let with = format!("{MINIMAL}imap = \"0.0.0.0:143\"\nimaps = \"0.0.0.0:993\"\n");
        let e = Config::parse(&with, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("imaps") && e.contains("[tls]"), "{e}");
        let ok = format!("{with}\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n");
        let c = Config::parse(&ok, Path::new("t.toml")).unwrap();
        assert_eq!(c.listen.imap.as_deref(), Some("0.0.0.0:143"));
        assert_eq!(c.listen.imaps.as_deref(), Some("0.0.0.0:993"));
    }

    #[test]
    fn submission_senders_table() {
        let text = format!(
            "{MINIMAL}submission = \"0.0.0.0:587\"\n[submission]\nsave_sent = true\n[submission.senders]\n\"boss@example.org\" = [\"@example.org\"]\n"
        );
        let c = Config::parse(&text, Path::new("t.toml")).unwrap();
        assert!(c.submission.save_sent);
        assert_eq!(
            c.submission.senders["boss@example.org"],
            vec!["@example.org"]
        );
    }

    #[test]
    fn lmtp_and_inbound_keys() {
        let c = Config::parse(MINIMAL, Path::new("t.toml")).unwrap();
        assert!(c.listen.lmtp.is_none());
        assert_eq!(c.inbound, InboundSettings::default());
        assert!(c.inbound.verify && c.inbound.dmarc_reject);
        let text = MINIMAL.replace(
            "[listen]",
            "[inbound]\nverify = true\ndmarc_reject = false\ntimeout = \"3s\"\n\n[listen]\nlmtp = \"127.0.0.1:24\"",
        );
        let c = Config::parse(&text, Path::new("t.toml")).unwrap();
        assert_eq!(c.listen.lmtp.as_deref(), Some("127.0.0.1:24"));
        assert!(c.inbound.verify && !c.inbound.dmarc_reject);
        assert_eq!(c.inbound.timeout().unwrap(), Duration::from_secs(3));
        let bad = MINIMAL.replace("[listen]", "[inbound]\ntimeout = \"soon\"\n[listen]");
        assert!(Config::parse(&bad, Path::new("t.toml")).is_err());
        let typo = MINIMAL.replace("[listen]", "[inbound]\nverfy = true\n[listen]");
        assert!(Config::parse(&typo, Path::new("t.toml")).is_err());
    }

    #[test]
    fn store_tls_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        // Not a certificate: refused when read at start.
        std::fs::write(&ca, "junk\n").unwrap();
        let pg = |extra: &str| {
            format!(
                "{MINIMAL}\n[store]\nbackend = \"postgres\"\nexperimental = true\n\
                 url = \"postgres://mail@127.0.0.1:5432/mail\"\n{extra}"
            )
        };
        let c = Config::parse(&pg(""), Path::new("t.toml")).unwrap();
        assert_eq!(c.store.tls, StoreTls::Disable);
        let c = Config::parse(&pg("tls = \"require\"\n"), Path::new("t.toml")).unwrap();
        match c.store.backend_config(&c.data_dir).unwrap() {
            mailgate_store::BackendConfig::Postgres(p) => {
                assert_eq!(p.tls.mode, mailgate_store::postgres::tls::TlsMode::Require)
            }
            other => panic!("{other:?}"),
        }
        for (extra, why) in [
            (
                format!(
                    "tls = \"verify-full\"\ntls_ca_file = {:?}\n",
                    ca.display().to_string()
                ),
                "no certificate",
            ),
            (
                "tls = \"require\"\ntls_ca_file = \"/etc/ca.pem\"\n".to_string(),
                "only used with",
            ),
            ("tls = \"prefer\"\n".to_string(), "unknown variant"),
        ] {
            let e = Config::parse(&pg(&extra), Path::new("t.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{extra}: {e}");
        }
        let e = Config::parse(
            &pg("").replace("/mail\"", "/mail?sslmode=require\""),
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sslmode=require"), "{e}");
        let e = Config::parse(
            &format!("{MINIMAL}\n[store]\ntls = \"require\"\n"),
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("for backend = \"postgres\""), "{e}");
    }

    #[test]
    fn store_keys() {
        let c = Config::parse(MINIMAL, Path::new("t.toml")).unwrap();
        assert_eq!(c.store, StoreSettings::default());
        assert_eq!(c.store.backend, StoreBackend::Sqlite);
        assert!(matches!(
            c.store.backend_config(&c.data_dir).unwrap(),
            mailgate_store::BackendConfig::Sqlite { .. }
        ));
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let pg = format!(
            "{MINIMAL}\n[store]\nbackend = \"postgres\"\nexperimental = true\n\
             url = \"postgres://mail@127.0.0.1:5432/mail\"\npassword_file = {:?}\npool_size = 4\n",
            pw.display().to_string()
        );
        let c = Config::parse(&pg, Path::new("t.toml")).unwrap();
        assert_eq!(
            (c.store.backend, c.store.pool_size),
            (StoreBackend::Postgres, 4)
        );
        match c.store.backend_config(&c.data_dir).unwrap() {
            mailgate_store::BackendConfig::Postgres(p) => {
                assert_eq!(p.password.as_deref(), Some("s3cret"));
                assert_eq!(p.pool_size, 4);
            }
            other => panic!("{other:?}"),
        }
        // Unfinished: refused without the development switch, and the
        // message says what to do.
        let e = Config::parse(
            &pg.replace("experimental = true\n", ""),
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("not complete") && e.contains("experimental"),
            "{e}"
        );
        for (bad, why) in [
            ("backend = \"postgres\"\nexperimental = true", "needs store.url"),
            (
                "backend = \"postgres\"\nexperimental = true\nurl = \"mysql://x/y\"",
                "not a PostgreSQL URL",
            ),
            (
                "backend = \"postgres\"\nexperimental = true\nurl = \"postgres://h/d\"\n\
                 password_file = \"/nonexistent/pw\"",
                "cannot be read",
            ),
            (
                "backend = \"postgres\"\nexperimental = true\nurl = \"postgres://h/d\"\npool_size = 0",
                "pool_size",
            ),
            ("url = \"postgres://h/d\"", "for backend = \"postgres\""),
            ("backend = \"mysql\"", "unknown variant"),
            ("pool = 3", "unknown field"),
        ] {
            let t = format!("{MINIMAL}\n[store]\n{bad}\n");
            let e = Config::parse(&t, Path::new("t.toml")).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // The URL's password never shows in the error.
        let t = format!(
            "{MINIMAL}\n[store]\nbackend = \"postgres\"\nexperimental = true\nurl = \"mysql://u:hunter2@h/d\"\n"
        );
        let e = Config::parse(&t, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn sieve_keys() {
        let c = Config::parse(MINIMAL, Path::new("t.toml")).unwrap();
        assert_eq!(c.sieve, SieveConfig::default());
        let s = c.sieve.settings().unwrap();
        assert_eq!(
            (s.max_script_size, s.max_redirects, s.max_actions),
            (1 << 20, 4, 32)
        );
        assert_eq!(s.vacation_default_period, 7 * 86_400);
        let set = format!(
            "{MINIMAL}\n[sieve]\nmax_script_size = \"64K\"\nmax_scripts = 5\nmax_redirects = 1\nvacation_min_period = \"1h\"\n"
        );
        let c = Config::parse(&set, Path::new("t.toml")).unwrap();
        assert_eq!((c.sieve.max_script_size, c.sieve.max_scripts), (65_536, 5));
        let s = c.sieve.settings().unwrap();
        assert_eq!((s.max_redirects, s.vacation_min_period), (1, 3600));
        assert_eq!(c.sieve.time_zone().unwrap(), None, "local by default");
        for (tz, minutes) in [("UTC", 0), ("+0200", 120), ("-05:30", -330)] {
            let c = SieveConfig {
                time_zone: tz.into(),
                ..SieveConfig::default()
            };
            assert_eq!(c.time_zone().unwrap(), Some(minutes), "{tz}");
        }
        for bad in [
            "max_script_size = 0",
            "max_script_size = \"1G\"",
            "max_scripts = 0",
            "vacation_min_period = \"90d\"",
            "vacation_max_period = \"soon\"",
            "max_script = 3",
            "time_zone = \"Mars/Olympus\"",
            "time_zone = \"+2\"",
            "time_zone = \"+2500\"",
        ] {
            let t = format!("{MINIMAL}\n[sieve]\n{bad}\n");
            assert!(Config::parse(&t, Path::new("t.toml")).is_err(), "{bad}");
        }
    }

    /// `[relay] trusted_networks` (empty: nobody) and `[inbound]
    /// reject_unknown_sender_domain` (on): defaults, values, bad entries.
    #[test]
    fn trusted_networks_and_unknown_sender_domain_keys() {
        let c = Config::parse(MINIMAL, Path::new("t.toml")).unwrap();
        assert!(c.inbound.reject_unknown_sender_domain);
        assert!(c.trusted_networks().unwrap().is_empty());
        let text = MINIMAL.replace(
            "[listen]",
            "[inbound]\nreject_unknown_sender_domain = false\n\n[relay]\n\
             trusted_networks = [\"127.0.0.0/8\", \"::1/128\", \"192.0.2.7\"]\n\n[listen]",
        );
        let c = Config::parse(&text, Path::new("t.toml")).unwrap();
        assert!(!c.inbound.reject_unknown_sender_domain);
        let t = c.trusted_networks().unwrap();
        assert!(t.contains("127.1.2.3".parse().unwrap()) && t.contains("::1".parse().unwrap()));
        assert!(t.contains("192.0.2.7".parse().unwrap()));
        assert!(!t.contains("192.0.2.8".parse().unwrap()));
        let bad = MINIMAL.replace(
            "[listen]",
            "[relay]\ntrusted_networks = [\"office.example\"]\n\n[listen]",
        );
        let err = Config::parse(&bad, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("relay.trusted_networks") && err.contains("office.example"),
            "{err}"
        );
    }

    #[test]
    fn proxy_and_user_keys() {
        let c = Config::parse(MINIMAL, Path::new("t.toml")).unwrap();
        assert!(!c.listen.proxy.enabled("smtp") && c.user.is_none());
        let on = format!(
            "user = \"mail\"\ngroup = \"mail\"\n{MINIMAL}\n[listen.proxy]\nsmtp = true\n\n[limits]\nproxy_from = [\"10.0.0.0/8\", \"::1\"]\n"
        );
        let c = Config::parse(&on, Path::new("t.toml")).unwrap();
        assert!(c.listen.proxy.enabled("smtp") && !c.listen.proxy.enabled("pop3"));
        let trusted = c.trusted_proxies().unwrap();
        assert!(trusted.contains("10.9.8.7".parse().unwrap()));
        assert_eq!(c.user.as_deref(), Some("mail"));
        let untrusted = format!("{MINIMAL}\n[listen.proxy]\nsmtp = true\n");
        let e = Config::parse(&untrusted, Path::new("t.toml")).unwrap_err();
        assert!(e.to_string().contains("proxy_from"), "{e}");
        let absent = on.replace("smtp = true", "imap = true");
        let e = Config::parse(&absent, Path::new("t.toml")).unwrap_err();
        assert!(e.to_string().contains("listen.imap"), "{e}");
        let bad = on.replace("10.0.0.0/8", "10.0.0.0/99");
        assert!(Config::parse(&bad, Path::new("t.toml")).is_err());
        let group_only = format!("group = \"mail\"\n{MINIMAL}");
        assert!(Config::parse(&group_only, Path::new("t.toml")).is_err());
    }

    #[test]
    fn min_free_space_takes_bytes_or_units() {
        use mailgate_store::space::MinFreeSpace;
        let c = Config::parse(MINIMAL, Path::new("t.toml")).unwrap();
        assert_eq!(c.limits.min_free_space(), MinFreeSpace::Default);
        for (value, bytes) in [
            ("0", 0),
            ("4096", 4096),
            ("\"64M\"", 64 << 20),
            ("\"2g\"", 2 << 30),
        ] {
            let text = format!("{MINIMAL}\n[limits]\nmin_free_space = {value}\n");
            let c = Config::parse(&text, Path::new("t.toml")).unwrap();
            assert_eq!(
                c.limits.min_free_space(),
                MinFreeSpace::Bytes(bytes),
                "{value}"
            );
        }
        for bad in ["\"5X\"", "\"-1\"", "\"\"", "\"99999999999T\"", "-3"] {
            let text = format!("{MINIMAL}\n[limits]\nmin_free_space = {bad}\n");
            assert!(Config::parse(&text, Path::new("t.toml")).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../../../config/mailgate.example.toml");
        Config::parse(text, Path::new("mailgate.example.toml")).unwrap();
    }
}
