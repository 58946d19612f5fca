//! Router: files each recipient's copy into a folder, by header rules and
//! by plus-address tag (`alice+lists@...` into `lists`).
//!
//! Grants: `config`. Configuration (optional):
//! ```toml
//! config = { tags = true, tag_folders = { news = "Newsletters" },
//!            rules = [ { header = "List-Id", contains = "rust", folder = "Lists/Rust" } ] }
//! ```
//! Header rules win over the tag; the first matching rule wins.
use std::collections::BTreeMap;

use mailgate_plugin_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    tags: bool,
    tag_folders: BTreeMap<String, String>,
    rules: Vec<Rule>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tags: true,
            tag_folders: BTreeMap::new(),
            rules: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
struct Rule {
    header: String,
    contains: String,
    folder: String,
}

/// A folder name a tag may become: no hierarchy tricks, no odd bytes.
fn safe_folder(tag: &str) -> Option<String> {
    let ok = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then(|| tag.to_string())
}

struct Router;

impl Plugin for Router {
    const NAME: &'static str = "router";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: Hooks = Hooks::ROUTE;

    fn route(
        _: &Session,
        _: &Envelope,
        recipient: &Recipient,
        message: &Message,
        current: &[Action],
    ) -> Option<Vec<Action>> {
        let config: Config = mailgate_plugin_sdk::config::get().unwrap_or_default();
        let by_rule = config.rules.iter().find(|r| {
            let needle = r.contains.to_lowercase();
            message
                .header(&r.header)
                .iter()
                .any(|v| v.to_lowercase().contains(&needle))
        });
        let folder = match by_rule {
            Some(rule) => rule.folder.clone(),
            None if config.tags => {
                let tag = recipient.tag.as_deref()?;
                match config.tag_folders.get(tag) {
                    Some(f) => f.clone(),
                    None => safe_folder(tag)?,
                }
            }
            None => return None,
        };
        // Re-target every local delivery of the plan; keep the rest
        // (forwards added by other plugins).
        Some(
            current
                .iter()
                .map(|a| match a {
                    Action::Deliver(d) => Action::Deliver(Delivery {
                        folder: Some(folder.clone()),
                        ..d.clone()
                    }),
                    other => other.clone(),
                })
                .collect(),
        )
    }
}

export_plugin!(Router);
