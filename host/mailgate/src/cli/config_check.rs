//! `mailgate config check [PATH] [--non-default]`: validate a configuration
//! file and print the configuration the server would run with, as TOML
//! (Postfix `postconf` / `postconf -n`, Dovecot `doveconf` / `doveconf -n`).
//!
//! The file is read by the same [`Config::load`] as `serve`, so what this
//! accepts the server accepts, and what it refuses is reported with the file
//! and the line. The printed configuration is itself a valid configuration
//! file; secrets in it are replaced by [`HIDDEN`].

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::config::{is_secret_key, Config, ConfigError, HIDDEN};

/// `mailgate config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file and print the effective configuration
    /// (every key, defaults filled in) as TOML, like `postconf` and
    /// `doveconf`. Exits 0 when the file is valid; otherwise exits 1 and
    /// names the file and line of the problem. Passwords and other secrets
    /// are printed as `<hidden>`.
    Check {
        /// The file to check; default: `--config`, then `$MAILGATE_CONFIG`,
        /// then /etc/mailgate/mailgate.toml.
        #[arg(value_name = "PATH")]
        path: Option<PathBuf>,
        /// Print only the keys whose value differs from the default (like
        /// `postconf -n` and `doveconf -n`); `hostname` and `data_dir`,
        /// which have no default, are always printed. A key set to its
        /// default value is not shown.
        #[arg(long)]
        non_default: bool,
    },
}

/// Runs `mailgate config ...`; `config` is `--config` (or
/// `$MAILGATE_CONFIG`), `dev` is `--dev`. On success the text to print.
pub fn run(config: Option<&Path>, dev: bool, command: &ConfigCommand) -> Result<String, String> {
    let ConfigCommand::Check { path, non_default } = command;
    let (config, shown) = match (path.as_deref(), config) {
        (Some(p), Some(c)) if p != c => {
            return Err(format!(
                "two files given: {} and --config {}; give one",
                p.display(),
                c.display()
            ))
        }
        (Some(p), _) if dev => {
            return Err(format!(
                "--dev and a file ({}) given; give one",
                p.display()
            ))
        }
        (Some(p), _) | (None, Some(p)) => (load(p)?, p.display().to_string()),
        (None, None) if dev => (
            crate::dev::config(PathBuf::from("dev-data")),
            "the development profile (--dev)".to_string(),
        ),
        (None, None) => {
            let p = Path::new(super::DEFAULT_CONFIG);
            (load(p)?, p.display().to_string())
        }
    };
    let text = if *non_default {
        render(&non_default_keys(&config)?)?
    } else {
        render(&effective(&config)?)?
    };
    let what = if *non_default {
        "keys that differ from the default"
    } else {
        "effective configuration, defaults filled in"
    };
    Ok(format!("# {shown}: valid; {what}\n{text}"))
}

/// Reads `path` as `serve` does; an error names the file and, where it can
/// be found, the line.
pub(crate) fn load(path: &Path) -> Result<Config, String> {
    match Config::load(path) {
        Ok(c) => Ok(c),
        Err(ConfigError::Invalid(message)) => {
            // Range checks run after parsing and do not know the line: look
            // the key the message names up in the file.
            let text = std::fs::read_to_string(path).unwrap_or_default();
            match named_key(&message).and_then(|(t, k)| line_of(&text, t, k)) {
                Some(n) => Err(format!("{}:{n}: {message}", path.display())),
                None => Err(format!("{}: {message}", path.display())),
            }
        }
        // Read and parse errors already name the file, and parse errors
        // the line and column (with a secret's value hidden by the parser).
        Err(e) => Err(e.to_string()),
    }
}

/// `config` with the `[relay]` and `[queue]` keys that are absent set to
/// the values the relay uses then, so that they are printed. Left absent:
/// `relay.hostname` (the top-level `hostname`), `source_ip`, `smarthost*`,
/// `tls_ca_file` and `queue.delay_warning` (absent means none/never).
fn filled(config: &Config) -> Result<Config, String> {
    let relay = crate::relay::relay_config(config).map_err(|e| e.to_string())?;
    let mut c = config.clone();
    let r = &mut c.relay;
    r.port.get_or_insert(relay.port);
    r.mta_sts.get_or_insert(relay.mta_sts);
    r.connect_timeout
        .get_or_insert_with(|| duration(relay.connect_timeout));
    r.command_timeout
        .get_or_insert_with(|| duration(relay.command_timeout));
    let q = &mut c.queue;
    q.retry
        .get_or_insert_with(|| relay.retry.steps.iter().map(|d| duration(*d)).collect());
    q.max_age
        .get_or_insert_with(|| duration(relay.retry.max_age));
    q.max_per_destination
        .get_or_insert(relay.max_per_destination);
    q.max_concurrent.get_or_insert(relay.max_concurrent);
    q.poll_interval
        .get_or_insert_with(|| duration(relay.poll_interval));
    q.lease.get_or_insert_with(|| duration(relay.lease));
    Ok(c)
}

/// A duration as the configuration writes it, in the largest unit that
/// divides it (`"5d"`, `"4h"`, `"15m"`, `"90s"`).
fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// The whole configuration as a TOML table, secrets hidden.
fn effective(config: &Config) -> Result<toml::Table, String> {
    let config = filled(config)?;
    let mut table = toml::Table::try_from(&config)
        .map_err(|e| format!("cannot print the configuration: {e}"))?;
    hide_secrets(&mut table);
    Ok(table)
}

/// Only the keys whose value differs from a configuration with the same
/// `hostname` and `data_dir` and nothing else.
fn non_default_keys(config: &Config) -> Result<toml::Table, String> {
    let mut base = toml::Table::new();
    base.insert("hostname".into(), config.hostname.clone().into());
    base.insert(
        "data_dir".into(),
        config.data_dir.display().to_string().into(),
    );
    let mut defaults: Config = base
        .try_into()
        .map_err(|e| format!("cannot build the defaults: {e}"))?;
    // `[plugins]` is compared with its defaults for the same directory; the
    // directory is always printed (it is what turns plugins on).
    defaults.plugins = config
        .plugins
        .as_ref()
        .map(|p| mailgate_policy::PluginsConfig::new(p.dir.clone()));
    let defaults = toml::Table::try_from(&filled(&defaults)?)
        .map_err(|e| format!("cannot print the configuration: {e}"))?;
    let actual = toml::Table::try_from(&filled(config)?)
        .map_err(|e| format!("cannot print the configuration: {e}"))?;
    let mut out = difference(&actual, &defaults);
    for key in ["hostname", "data_dir"] {
        if let Some(v) = actual.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(toml::Value::Table(plugins)) = actual.get("plugins") {
        if let Some(dir) = plugins.get("dir") {
            let entry = out
                .entry("plugins")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                t.insert("dir".into(), dir.clone());
            }
        }
    }
    hide_secrets(&mut out);
    Ok(out)
}

/// The entries of `actual` that are not the same in `defaults`; tables are
/// compared key by key, arrays as a whole.
fn difference(actual: &toml::Table, defaults: &toml::Table) -> toml::Table {
    let mut out = toml::Table::new();
    for (key, value) in actual {
        match (value, defaults.get(key)) {
            (v, Some(d)) if v == d => {}
            (toml::Value::Table(t), Some(toml::Value::Table(d))) => {
                let inner = difference(t, d);
                if !inner.is_empty() {
                    out.insert(key.clone(), toml::Value::Table(inner));
                }
            }
            (v, _) => {
                out.insert(key.clone(), v.clone());
            }
        }
    }
    out
}

/// Replaces the value of every secret key, at any depth, with [`HIDDEN`],
/// and the password of a `url` (`[store] url = "postgres://u:PW@h/db"`).
fn hide_secrets(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        if is_secret_key(key) {
            *value = toml::Value::String(HIDDEN.into());
        } else if let (true, toml::Value::String(url)) = (key == "url", &*value) {
            *value = toml::Value::String(mailgate_store::backend::url_without_password(url));
        } else {
            hide_in(value);
        }
    }
}

fn hide_in(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => hide_secrets(t),
        toml::Value::Array(a) => a.iter_mut().for_each(hide_in),
        _ => {}
    }
}

fn render(table: &toml::Table) -> Result<String, String> {
    toml::to_string(table).map_err(|e| format!("cannot print the configuration: {e}"))
}

/// The `table.key` (or top-level `key`) a range-check message starts with.
fn named_key(message: &str) -> Option<(&str, &str)> {
    let word = message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .find(|w| !w.is_empty())?;
    match word.split_once('.') {
        Some((table, key)) if !table.is_empty() && !key.is_empty() => Some((table, key)),
        _ if word == "hostname" => Some(("", word)),
        // A whole table (`limits must be positive`, `[[plugin]] entries
        // need ...`): its header's line.
        None => Some((word, "")),
        _ => None,
    }
}

/// The 1-based line on which `key` is set inside `[table]` (`""`: at the
/// top, before any table), if the file has it there. A key ending in `_`
/// (from `smarthost_*`) matches every key it begins; an empty key matches
/// the table's first header.
fn line_of(text: &str, table: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(header) = l.strip_prefix('[') {
            let name = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("");
            current = name.trim().to_string();
            if key.is_empty() && current == table {
                return Some(i + 1);
            }
            continue;
        }
        if key.is_empty() {
            continue;
        }
        let Some((k, _)) = l.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches('"');
        let k_table_key = match k.split_once('.') {
            // Dotted keys at the top: `limits.max_errors = 5`.
            Some((t, rest)) if current.is_empty() => Some((t.trim(), rest.trim())),
            _ => None,
        };
        let same = |k: &str| k == key || (key.ends_with('_') && k.starts_with(key));
        let in_table = current == table && same(k);
        if in_table || k_table_key.is_some_and(|(t, k)| t == table && same(k)) {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::hide_quoted_secret;

    const FILE: &str = r#"
hostname = "mx.example.org"
data_dir = "/var/lib/mailgate"
domains = ["example.org"]

[listen]
smtp = "0.0.0.0:25"

[limits]
max_recipients = 50

[relay]
smarthost = "relay.example.net:587"
smarthost_username = "mx"
smarthost_password = "s3cret"
"#;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn the_effective_configuration_reads_back_as_the_same() {
        let config = parse(FILE);
        let text = render(&effective(&config).unwrap()).unwrap();
        assert!(text.contains("max_errors = 20"), "{text}");
        assert!(text.contains("port = 25"), "{text}");
        assert!(text.contains("poll_interval = \"30s\""), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("smarthost_password = \"<hidden>\""), "{text}");
        let mut again = parse(&text);
        again.relay.smarthost_password = config.relay.smarthost_password.clone();
        assert_eq!(again, filled(&config).unwrap());
        let example = include_str!("../../../../config/mailgate.example.toml");
        let config = parse(example);
        let text = render(&effective(&config).unwrap()).unwrap();
        let mut again = parse(&text);
        again.relay.smarthost_password = config.relay.smarthost_password.clone();
        assert_eq!(again, filled(&config).unwrap());
    }

    #[test]
    fn non_default_shows_what_the_file_changed() {
        let text = render(&non_default_keys(&parse(FILE)).unwrap()).unwrap();
        assert!(text.contains("max_recipients = 50"), "{text}");
        assert!(text.contains("hostname = \"mx.example.org\""), "{text}");
        assert!(!text.contains("max_errors"), "{text}");
        assert!(!text.contains("[auth]"), "{text}");
        assert!(text.contains("smarthost_password = \"<hidden>\""), "{text}");
        parse(&text);
        let plugins = format!("{FILE}\n[plugins]\ndir = \"/p\"\ntimeout_ms = 5\n");
        let out = non_default_keys(&parse(&plugins)).unwrap();
        let want: toml::Table = toml::from_str("dir = \"/p\"\ntimeout_ms = 5").unwrap();
        assert_eq!(out["plugins"], toml::Value::Table(want));
        let plugins = format!("{FILE}\n[plugins]\ndir = \"/p\"\n");
        let out = non_default_keys(&parse(&plugins)).unwrap();
        let want: toml::Table = toml::from_str("dir = \"/p\"").unwrap();
        assert_eq!(out["plugins"], toml::Value::Table(want));
    }

    #[test]
    fn secrets_by_name() {
        for k in [
            "smarthost_password",
            "Password",
            "client_secret",
            "api_token",
            "apikey",
            "x_api_key",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["smarthost_username", "key", "dir", "cert", "require_tls"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn parse_errors_do_not_quote_a_password() {
        let text = "hostname = \"h\"\n[relay]\nsmarthost_password = 12345678\nsmarthost_pasword = \"Pw-9\"\n";
        for t in [text.to_string(), text.replace("12345678", "\"x\"")] {
            let e = Config::parse(&t, Path::new("t.toml"))
                .unwrap_err()
                .to_string();
            let shown = hide_quoted_secret(&e, &t);
            assert!(
                !shown.contains("12345678") && !shown.contains("Pw-9"),
                "{shown}"
            );
            assert!(
                shown.contains("<hidden>") && shown.contains("t.toml"),
                "{shown}"
            );
        }
        let typo = "hostname = \"h\"\n[limits]\nmax_erors = 5\n";
        let e = Config::parse(typo, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(hide_quoted_secret(&e, typo), e);
    }

    #[test]
    fn range_errors_find_their_line() {
        let text = "hostname = \"h\"\n[limits]\nmax_errors = 5\nmax_command_line = 100\n";
        assert_eq!(
            named_key("limits.max_command_line must be"),
            Some(("limits", "max_command_line"))
        );
        assert_eq!(line_of(text, "limits", "max_command_line"), Some(4));
        assert_eq!(line_of(text, "", "hostname"), Some(1));
        assert_eq!(
            line_of("limits.max_errors = 0\n", "limits", "max_errors"),
            Some(1)
        );
        assert_eq!(line_of(text, "auth", "max_errors"), None);
        assert_eq!(named_key("[[plugin]] entries need"), Some(("plugin", "")));
        assert_eq!(named_key("limits must be positive"), Some(("limits", "")));
        assert_eq!(line_of(text, "limits", ""), Some(2));
        assert_eq!(
            line_of("a = 1\n[[plugin]]\nname = \"x\"\n", "plugin", ""),
            Some(2)
        );
        assert_eq!(line_of(text, "cannot", ""), None);
        let relay = "[relay]\nport = 25\nsmarthost_username = \"u\"\n";
        let (t, k) = named_key("relay.smarthost_* keys need relay.smarthost").unwrap();
        assert_eq!(line_of(relay, t, k), Some(3));
    }
}
