//! The `template` policy plugin of mailgate.
//!
//! Its name, in `describe()`, the `.wasm` file and `[[plugin]] name`,
//! is the crate's name with `-` written `_`: `template`.
use mailgate_plugin_sdk::prelude::*;

pub struct Template;

impl Plugin for Template {
    const NAME: &'static str = env!("CARGO_CRATE_NAME");
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    // Name only the hooks you implement: the host never calls the others.
    const HOOKS: Hooks = Hooks::RCPT_TO;

    fn rcpt_to(_session: &Session, _envelope: &Envelope, _recipient: &Recipient) -> Outcome {
        Outcome::accept()
    }
}

export_plugin!(Template);

// `cargo test` runs these on the build machine (no server, no
// WebAssembly): the hooks are plain functions, and
// mailgate_plugin_sdk::testing builds their arguments.
#[cfg(test)]
mod tests {
    use super::Template as T;
    use mailgate_plugin_sdk::prelude::*;
    #[allow(unused_imports)]
    use mailgate_plugin_sdk::testing::{envelope, recipient, session};

    #[test]
    fn accepts_the_sample() {
        #[allow(unused_variables)]
        let env = envelope("alice@remote.test", &["bob@example.org"]);
        #[allow(unused_variables)]
        let message = Message::from_eml(include_bytes!("../tests/sample.eml").to_vec());
        assert!(T::rcpt_to(&session(), &env, &recipient("bob@example.org")).is_accept());
    }
}
