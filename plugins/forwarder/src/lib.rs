//! Forwarder / alias expander: sends the copies of listed addresses on to
//! other addresses, with or without keeping a local copy.
//!
//! Grants: `config`. Configuration:
//! ```toml
//! config = { keep_copy = false,
//!            forward = { "sales@example.org" = ["ann@example.net", "bob@example.com"] } }
//! ```
use std::collections::BTreeMap;

use mailgate_plugin_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    keep_copy: bool,
    forward: BTreeMap<String, Vec<String>>,
}

struct Forwarder;

impl Plugin for Forwarder {
    const NAME: &'static str = "forwarder";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const HOOKS: Hooks = Hooks::ROUTE;

    fn self_test() -> Result<(), String> {
        let c: Config = mailgate_plugin_sdk::config::get()?;
        for (from, to) in &c.forward {
            if !from.contains('@') || to.iter().any(|t| !t.contains('@')) {
                return Err(format!("forward entry {from}: addresses need an @"));
            }
        }
        Ok(())
    }

    fn route(
        _: &Session,
        _: &Envelope,
        recipient: &Recipient,
        _: &Message,
        current: &[Action],
    ) -> Option<Vec<Action>> {
        let config: Config = mailgate_plugin_sdk::config::get().unwrap_or_default();
        let targets = config
            .forward
            .iter()
            .find(|(from, _)| from.eq_ignore_ascii_case(&recipient.address))
            .map(|(_, to)| to.clone())?;
        let mut plan: Vec<Action> = if config.keep_copy {
            current.to_vec()
        } else {
            // Redirect: drop the local deliveries, keep other plugins' forwards.
            current
                .iter()
                .filter(|a| !matches!(a, Action::Deliver(_)))
                .cloned()
                .collect()
        };
        plan.push(Action::Forward(targets));
        Some(plan)
    }
}

export_plugin!(Forwarder);
