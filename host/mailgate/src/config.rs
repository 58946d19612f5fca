//! The configuration file (TOML), read with `--config PATH`.
//!
//! Every key is documented in `docs/configuration.md` and in the commented
//! example `config/mailgate.example.toml`; keep the three in step. Unknown
//! keys are an error, so that a typo does not silently fall back to a
//! default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server's name: used in greetings, `Received:` and EHLO.
    pub hostname: String,
    /// Where the store keeps everything.
    pub data_dir: PathBuf,
    /// Local domains (more can be added with `mailgate domain add`).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Listening addresses; an absent key disables that listener.
    #[serde(default)]
    pub listen: Listen,
    /// Protocol limits.
    #[serde(default)]
    pub limits: Limits,
    /// Authentication settings.
    #[serde(default)]
    pub auth: AuthSettings,
    /// Seconds that sessions in progress get to finish after SIGTERM.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: u64,
}

fn default_shutdown_timeout() -> u64 {
    30
}

/// `[listen]`: one address (`ip:port`) per listener.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// SMTP, the MX role (port 25).
    pub smtp: Option<String>,
    /// POP3 (port 110).
    pub pop3: Option<String>,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            failure_delay_ms: 1000,
            max_failure_delay_ms: 16_000,
            max_failures: 10,
            failure_window: 900,
        }
    }
}

impl AuthSettings {
    /// The limiter settings these describe.
    pub fn limiter(&self) -> mailgate_auth::LimiterSettings {
        mailgate_auth::LimiterSettings {
            base_delay: Duration::from_millis(self.failure_delay_ms),
            max_delay: Duration::from_millis(self.max_failure_delay_ms.max(self.failure_delay_ms)),
            max_failures: self.max_failures,
            window: Duration::from_secs(self.failure_window),
        }
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks configuration text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
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
        {
            return Err(ConfigError::Invalid(
                "limits must be positive (and max_message_size at least 1024)".into(),
            ));
        }
        if self.auth.max_failures < 1 {
            return Err(ConfigError::Invalid(
                "auth.max_failures must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// `idle_timeout` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.idle_timeout)
    }
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
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../../../config/mailgate.example.toml");
        Config::parse(text, Path::new("mailgate.example.toml")).unwrap();
    }
}
