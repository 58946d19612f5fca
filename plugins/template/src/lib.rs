//! The smallest useful plugin: copy this directory to start a new one.
//!
//! It asks for the `rcpt-to` hook only and accepts every recipient; it
//! imports no capability, so it needs no grant. It is also the "trivial
//! plugin" the host's per-hook cost benchmark calls.
use mailgate_plugin_sdk::prelude::*;

struct Template;

impl Plugin for Template {
    const NAME: &'static str = "template";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    // Name only the hooks you implement: the host never calls the others.
    const HOOKS: Hooks = Hooks::RCPT_TO;

    fn rcpt_to(_session: &Session, _envelope: &Envelope, _recipient: &Recipient) -> Outcome {
        Outcome::accept()
    }
}

export_plugin!(Template);
