//! Content filter: scores a message by header and body rules, adds
//! `X-Spam-Score`, files spam into Junk, rejects the worst.
//!
//! Grants: `config`. Configuration (all optional):
//! ```toml
//! config = { threshold = 5.0, reject_threshold = 15.0, folder = "Junk",
//!            rules = [ { header = "Subject", contains = "viagra", score = 5.0 },
//!                      { body = true, contains = "wire transfer", score = 2.5 } ] }
//! ```
//! Without `rules`, a small built-in set applies.
use mailgate_plugin_sdk::prelude::*;
use serde::Deserialize;

/// How many bytes of decoded text the body rules look at.
const BODY_LIMIT: u32 = 256 * 1024;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    threshold: f64,
    reject_threshold: Option<f64>,
    folder: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize, Clone)]
struct Rule {
    /// A header name: the rule matches its values.
    #[serde(default)]
    header: Option<String>,
    /// The rule matches the decoded text parts.
    #[serde(default)]
    body: bool,
    /// Case-insensitive substring.
    contains: String,
    score: f64,
}

impl Default for Config {
    fn default() -> Self {
        let rule = |header: Option<&str>, contains: &str, score| Rule {
            header: header.map(str::to_string),
            body: header.is_none(),
            contains: contains.into(),
            score,
        };
        Config {
            threshold: 5.0,
            reject_threshold: None,
            folder: "Junk".into(),
            rules: vec![
                rule(Some("Subject"), "viagra", 5.0),
                rule(Some("Subject"), "you have won", 4.0),
                rule(Some("Subject"), "!!!", 1.5),
                rule(None, "wire transfer", 2.5),
                rule(None, "bitcoin wallet", 3.0),
                rule(None, "unsubscribe", 0.5),
            ],
        }
    }
}

struct ContentFilter;

impl ContentFilter {
    fn config() -> Result<Config, String> {
        mailgate_plugin_sdk::config::get()
    }
}

impl Plugin for ContentFilter {
    const NAME: &'static str = "content-filter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: Hooks = Hooks::DATA;

    fn self_test() -> Result<(), String> {
        let c = Self::config()?;
        if c.rules.iter().any(|r| r.contains.is_empty()) {
            return Err("a rule has an empty `contains`".into());
        }
        Ok(())
    }

    fn data(_: &Session, _: &Envelope, message: &Message) -> Outcome {
        let config = Self::config().unwrap_or_default();
        let mut score = 0.0;
        // Read the body only if some rule needs it: header-only rule sets
        // never copy the body into this instance.
        let body = config
            .rules
            .iter()
            .any(|r| r.body)
            .then(|| message.text(BODY_LIMIT).to_lowercase());
        for rule in &config.rules {
            let needle = rule.contains.to_lowercase();
            let hit = match (&rule.header, &body) {
                (Some(name), _) => message
                    .header(name)
                    .iter()
                    .any(|v| v.to_lowercase().contains(&needle)),
                (None, Some(text)) if rule.body => text.contains(&needle),
                _ => false,
            };
            if hit {
                score += rule.score;
            }
        }
        if let Some(limit) = config.reject_threshold {
            if score >= limit {
                return Outcome::reject(550, "5.7.1", "Message refused as spam");
            }
        }
        let out = Outcome::accept().replace_header("X-Spam-Score", &format!("{score:.1}"));
        if score >= config.threshold {
            out.replace_header("X-Spam-Flag", "YES")
                .set_folder(&config.folder)
        } else {
            out
        }
    }
}

export_plugin!(ContentFilter);
