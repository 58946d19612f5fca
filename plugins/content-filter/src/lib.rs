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

    /// The configuration, read and prepared (needles lower-cased) once per
    /// instance: the host keeps instances warm between calls, and a
    /// configuration change always comes with a new instance (a reload).
    fn prepared() -> &'static Config {
        static PREPARED: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
        PREPARED.get_or_init(|| {
            let mut c = Self::config().unwrap_or_default();
            for rule in &mut c.rules {
                rule.contains = lowercase(std::mem::take(&mut rule.contains));
            }
            c
        })
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
        let config = Self::prepared();
        let mut score = 0.0;
        // Each header is asked for once, however many rules name it, and
        // its values are lower-cased once.
        let mut headers: Vec<(&str, Vec<String>)> = Vec::new();
        // The body is read only if a body rule is reached: header-only rule
        // sets never copy the body into this instance. Lower-cased once.
        let mut body: Option<String> = None;
        for rule in &config.rules {
            let needle = rule.contains.as_str();
            let hit = match &rule.header {
                Some(name) => {
                    let i = match headers
                        .iter()
                        .position(|(n, _)| n.eq_ignore_ascii_case(name))
                    {
                        Some(i) => i,
                        None => {
                            let values = message.header(name).into_iter().map(lowercase);
                            headers.push((name, values.collect()));
                            headers.len() - 1
                        }
                    };
                    headers[i].1.iter().any(|v| v.contains(needle))
                }
                None if rule.body => {
                    let text = body.get_or_insert_with(|| lowercase(body_text(message)));
                    memchr::memmem::find(text.as_bytes(), needle.as_bytes()).is_some()
                }
                None => false,
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

/// `text` in lower case: in place when it is ASCII (the common case), by
/// the Unicode rules otherwise (what `str::to_lowercase` gives either way).
fn lowercase(mut text: String) -> String {
    if text.is_ascii() {
        text.make_ascii_lowercase();
        text
    } else {
        text.to_lowercase()
    }
}

/// The decoded text parts, each followed by a newline (as
/// `Message::text`), without copying the first part.
fn body_text(message: &Message) -> String {
    let mut parts = message.text_parts(BODY_LIMIT).into_iter();
    let Some(first) = parts.next() else {
        return String::new();
    };
    let mut text = first.text;
    text.push('\n');
    for p in parts {
        text.push_str(&p.text);
        text.push('\n');
    }
    text
}

export_plugin!(ContentFilter);
