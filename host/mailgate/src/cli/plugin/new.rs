//! `mailgate plugin new NAME`: a plugin crate that builds anywhere with
//! `cargo build --release --target wasm32-wasip2`, from this binary alone.
//!
//! The SDK, the WIT, the release profile and the compiler flags the host
//! expects are compiled into the binary from the repository's own files
//! (`plugins/sdk`, `wit/`, `plugins/Cargo.toml`, `plugins/.cargo`), so
//! what `plugin new` writes is what the examples are built with.
//!
//! Layout of the crate:
//! ```text
//! NAME/Cargo.toml            the plugin, its own workspace, the release profile
//! NAME/Cargo.lock            the versions the examples are built with
//! NAME/.cargo/config.toml    stack size and SIMD flags for wasm32-wasip2
//! NAME/src/lib.rs            the plugin and its unit tests
//! NAME/tests/sample.eml      the message the starting test reads
//! NAME/vendor/sdk/           mailgate-plugin-sdk
//! NAME/wit/policy.wit        the interface (mailgate:policy@0.1.1)
//! NAME/README.md             how to build, test, check, run and install it
//! ```

use std::path::{Path, PathBuf};

use mailgate_policy::Hook;

const SDK_CARGO: &str = include_str!("../../../../../plugins/sdk/Cargo.toml");
const SDK_LIB: &str = include_str!("../../../../../plugins/sdk/src/lib.rs");
const SDK_MESSAGE: &str = include_str!("../../../../../plugins/sdk/src/message.rs");
const SDK_TESTING: &str = include_str!("../../../../../plugins/sdk/src/testing.rs");
const WIT: &str = include_str!("../../../../../wit/policy.wit");
const WORKSPACE: &str = include_str!("../../../../../plugins/Cargo.toml");
const LOCK: &str = include_str!("../../../../../plugins/Cargo.lock");
const CARGO_CONFIG: &str = include_str!("../../../../../plugins/.cargo/config.toml");

/// Longest plugin name.
pub const MAX_NAME: usize = 64;

/// The sample message of the starting test.
pub const SAMPLE_EML: &str = "From: Alice <alice@remote.test>\r\n\
To: bob@example.org\r\n\
Subject: Lunch?\r\n\
Message-ID: <sample@remote.test>\r\n\
\r\n\
Shall we have lunch on Friday?\r\n";

/// Checks `name` as a crate name: lower-case ASCII letters, digits, `-`
/// and `_`, starting with a letter, at most [`MAX_NAME`] bytes.
pub fn valid_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid plugin name {:?}: lower-case letters, digits, '-' and '_', starting with a letter, at most {MAX_NAME} characters",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// The file the crate builds (`cargo` writes `-` as `_`): also the
/// `[[plugin]] name` and what `describe()` says.
pub fn file_stem(name: &str) -> String {
    name.replace('-', "_")
}

/// Parses `--hooks data,route`.
pub fn parse_hooks(list: &str) -> Result<Vec<Hook>, String> {
    let mut hooks = Vec::new();
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let hook = Hook::ALL
            .into_iter()
            .find(|h| h.name() == word || h.name().replace('-', "_") == word)
            .ok_or_else(|| {
                format!(
                    "unknown hook {:?} ({})",
                    word.chars().take(40).collect::<String>(),
                    Hook::ALL.map(|h| h.name()).join(", ")
                )
            })?;
        if hook == Hook::MailboxEvent {
            // Not one of the `Hooks` flags (WIT 0.1.2 added it beside them).
            return Err("mailbox-event is not written by plugin new: add `const MAILBOX_EVENTS: bool = true;` and `fn mailbox_event` to the plugin (docs/plugins.md)".into());
        }
        if !hooks.contains(&hook) {
            hooks.push(hook);
        }
    }
    if hooks.is_empty() {
        return Err("--hooks names no hook".into());
    }
    hooks.sort();
    Ok(hooks)
}

/// Writes the crate `name` into `dir/name` (which must not exist yet);
/// returns that directory.
pub fn write(name: &str, dir: &Path, hooks: &[Hook]) -> Result<PathBuf, String> {
    valid_name(name)?;
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} exists already", root.display()));
    }
    let files: Vec<(&str, String)> = vec![
        ("Cargo.toml", cargo_toml(name)?),
        ("Cargo.lock", LOCK.to_string()),
        (".cargo/config.toml", CARGO_CONFIG.to_string()),
        (".gitignore", "/target\n".to_string()),
        ("src/lib.rs", lib_rs(name, hooks)),
        ("tests/sample.eml", SAMPLE_EML.to_string()),
        ("vendor/sdk/Cargo.toml", SDK_CARGO.to_string()),
        ("vendor/sdk/src/lib.rs", SDK_LIB.to_string()),
        ("vendor/sdk/src/message.rs", SDK_MESSAGE.to_string()),
        ("vendor/sdk/src/testing.rs", SDK_TESTING.to_string()),
        ("wit/policy.wit", WIT.to_string()),
        ("README.md", readme(name, hooks)),
    ];
    for (path, text) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(root)
}

/// The crate's `Cargo.toml`: the package, its own workspace (with the
/// vendored SDK), the SDK's dependencies and the release profile, the
/// last two taken from the repository's `plugins/Cargo.toml`.
pub fn cargo_toml(name: &str) -> Result<String, String> {
    let ws: toml::Table =
        toml::from_str(WORKSPACE).map_err(|e| format!("embedded plugins/Cargo.toml: {e}"))?;
    let get = |path: &[&str]| -> Result<toml::Table, String> {
        let mut t = &ws;
        for key in path {
            t = t
                .get(*key)
                .and_then(|v| v.as_table())
                .ok_or_else(|| format!("embedded plugins/Cargo.toml has no {}", path.join(".")))?;
        }
        Ok(t.clone())
    };
    let mut deps = get(&["workspace", "dependencies"])?;
    deps.insert(
        "mailgate-plugin-sdk".into(),
        toml::Value::Table(toml::Table::from_iter([(
            "path".to_string(),
            toml::Value::String("vendor/sdk".into()),
        )])),
    );
    let package = get(&["workspace", "package"])?;
    let mut profile = get(&["profile", "release"])?;
    // Per-package overrides are the examples' own.
    profile.remove("package");
    // Each section under its full name (`[workspace.dependencies.serde]`).
    let table = |path: &[&str], t: toml::Table| {
        let mut v = toml::Value::Table(t);
        for key in path.iter().rev() {
            v = toml::Value::Table(toml::Table::from_iter([(key.to_string(), v)]));
        }
        toml::to_string(&v).map_err(|e| e.to_string())
    };
    Ok(format!(
        "# A mailgate policy plugin, written by `mailgate plugin new`.\n\
         # Build: cargo build --release --target wasm32-wasip2\n\
         # Output: target/wasm32-wasip2/release/{stem}.wasm\n\
         [package]\n\
         name = \"{name}\"\n\
         version = \"0.1.0\"\n\
         edition = \"2021\"\n\
         publish = false\n\
         \n\
         [lib]\n\
         crate-type = [\"cdylib\"]\n\
         \n\
         [dependencies]\n\
         mailgate-plugin-sdk.workspace = true\n\
         \n\
         # Its own workspace: the plugin and the SDK copy in vendor/sdk.\n\
         [workspace]\n\
         resolver = \"3\"\n\
         members = [\".\", \"vendor/sdk\"]\n\
         \n\
         {package}\n\
         {deps}\n\
         # Small, fast components: what the host compiles and instantiates.\n\
         {profile}",
        stem = file_stem(name),
        package = table(&["workspace", "package"], package)?,
        deps = table(&["workspace", "dependencies"], deps)?,
        profile = table(&["profile", "release"], profile)?,
    ))
}

/// The Rust type name of a plugin name (`noreply-guard` → `NoreplyGuard`).
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The hooks' constants (`hooks!(MAIL_FROM | RCPT_TO)`).
fn hooks_const(hooks: &[Hook]) -> String {
    let names: Vec<String> = hooks
        .iter()
        .map(|h| h.name().replace('-', "_").to_ascii_uppercase())
        .collect();
    if names.len() == 1 {
        format!("Hooks::{}", names[0])
    } else {
        format!("hooks!({})", names.join(" | "))
    }
}

fn stub(hook: Hook) -> &'static str {
    match hook {
        Hook::Connect => {
            "    fn connect(_session: &Session) -> Outcome {\n        Outcome::accept()\n    }\n"
        }
        Hook::Helo => "    fn helo(_session: &Session) -> Outcome {\n        Outcome::accept()\n    }\n",
        Hook::Auth => {
            "    fn auth(_session: &Session, _attempt: &AuthAttempt) -> Outcome {\n        Outcome::accept()\n    }\n"
        }
        Hook::MailFrom => {
            "    fn mail_from(_session: &Session, _envelope: &Envelope) -> Outcome {\n        Outcome::accept()\n    }\n"
        }
        Hook::RcptTo => {
            "    fn rcpt_to(_session: &Session, _envelope: &Envelope, _recipient: &Recipient) -> Outcome {\n        Outcome::accept()\n    }\n"
        }
        Hook::Data => {
            "    fn data(_session: &Session, _envelope: &Envelope, message: &Message) -> Outcome {\n        if message.first_header(\"Subject\").is_none() {\n            return Outcome::reject(550, \"5.7.1\", \"A message needs a subject here\");\n        }\n        Outcome::accept()\n    }\n"
        }
        Hook::Route => {
            "    fn route(\n        _session: &Session,\n        _envelope: &Envelope,\n        _recipient: &Recipient,\n        _message: &Message,\n        _current: &[Action],\n    ) -> Option<Vec<Action>> {\n        None\n    }\n"
        }
        Hook::MailboxEvent | Hook::Deliver | Hook::Load => "",
    }
}

fn test_of(ty: &str, hook: Hook) -> &'static str {
    let _ = ty;
    match hook {
        Hook::Connect => "        assert!(T::connect(&session()).is_accept());\n",
        Hook::Helo => "        assert!(T::helo(&session()).is_accept());\n",
        Hook::Auth => {
            "        let attempt = AuthAttempt { mechanism: \"PLAIN\".into(), user: \"bob\".into(), success: true };\n        assert!(T::auth(&session(), &attempt).is_accept());\n"
        }
        Hook::MailFrom => "        assert!(T::mail_from(&session(), &env).is_accept());\n",
        Hook::RcptTo => {
            "        assert!(T::rcpt_to(&session(), &env, &recipient(\"bob@example.org\")).is_accept());\n"
        }
        Hook::Data => {
            "        assert!(T::data(&session(), &env, &message).is_accept());\n        let no_subject = Message::from_eml(\"From: a@remote.test\\r\\n\\r\\nhi\\r\\n\");\n        assert!(matches!(T::data(&session(), &env, &no_subject).verdict, Verdict::Reject(_)));\n"
        }
        Hook::Route => {
            "        let r = recipient(\"bob@example.org\");\n        assert!(T::route(&session(), &env, &r, &message, &[]).is_none());\n"
        }
        Hook::MailboxEvent | Hook::Deliver | Hook::Load => "",
    }
}

/// The crate's `src/lib.rs`: a plugin accepting everything at `hooks`
/// (refusing a message without a subject at `data`), and its test.
pub fn lib_rs(name: &str, hooks: &[Hook]) -> String {
    let ty = type_name(name);
    let mut out = format!(
        "//! The `{name}` policy plugin of mailgate.\n\
         //!\n\
         //! Its name, in `describe()`, the `.wasm` file and `[[plugin]] name`,\n\
         //! is the crate's name with `-` written `_`: `{stem}`.\n\
         use mailgate_plugin_sdk::prelude::*;\n\
         \n\
         pub struct {ty};\n\
         \n\
         impl Plugin for {ty} {{\n\
         \x20   const NAME: &'static str = env!(\"CARGO_CRATE_NAME\");\n\
         \x20   const VERSION: &'static str = env!(\"CARGO_PKG_VERSION\");\n\
         \x20   // Name only the hooks you implement: the host never calls the others.\n\
         \x20   const HOOKS: Hooks = {hooks};\n\
         \n",
        stem = file_stem(name),
        hooks = hooks_const(hooks),
    );
    let stubs: Vec<&str> = hooks.iter().map(|h| stub(*h)).collect();
    out.push_str(&stubs.join("\n"));
    out.push_str(&format!(
        "}}\n\
         \n\
         export_plugin!({ty});\n\
         \n\
         // `cargo test` runs these on the build machine (no server, no\n\
         // WebAssembly): the hooks are plain functions, and\n\
         // mailgate_plugin_sdk::testing builds their arguments.\n\
         #[cfg(test)]\n\
         mod tests {{\n\
         \x20   use super::{ty} as T;\n\
         \x20   use mailgate_plugin_sdk::prelude::*;\n\
         \x20   #[allow(unused_imports)]\n\
         \x20   use mailgate_plugin_sdk::testing::{{envelope, recipient, session}};\n\
         \n\
         \x20   #[test]\n\
         \x20   fn accepts_the_sample() {{\n\
         \x20       #[allow(unused_variables)]\n\
         \x20       let env = envelope(\"alice@remote.test\", &[\"bob@example.org\"]);\n\
         \x20       #[allow(unused_variables)]\n\
         \x20       let message = Message::from_eml(include_bytes!(\"../tests/sample.eml\").to_vec());\n"
    ));
    for h in hooks {
        out.push_str(test_of(&ty, *h));
    }
    out.push_str("    }\n}\n");
    out
}

fn readme(name: &str, hooks: &[Hook]) -> String {
    let stem = file_stem(name);
    let hooks: Vec<&str> = hooks.iter().map(|h| h.name()).collect();
    format!(
        "# {name}: a mailgate policy plugin\n\
\n\
Written by `mailgate plugin new {name} --hooks {hooks}`. It builds on its own:\n\
this directory holds a copy of the SDK (`vendor/sdk`) and of the interface\n\
(`wit/policy.wit`, mailgate:policy@{wit}) taken from the `mailgate` binary\n\
that wrote it.\n\
\n\
## Build\n\
\n\
    rustup target add wasm32-wasip2     # once\n\
    cargo build --release --target wasm32-wasip2\n\
\n\
The component is `target/wasm32-wasip2/release/{stem}.wasm`. `Cargo.toml`\n\
carries the size-tuned release profile and `.cargo/config.toml` the flags\n\
the host expects (a 256 KiB stack, SIMD); keep both.\n\
\n\
## Name\n\
\n\
The plugin's name is the crate's name with `-` written `_`: `{stem}`. It is\n\
the file name cargo writes, what `describe()` says (`env!(\"CARGO_CRATE_NAME\")`),\n\
the `[[plugin]] name` of its settings and the `plugin=` field of its log\n\
lines. In the plugin directory the file may carry an ordering prefix\n\
(`20-{stem}.wasm`); it still matches `[[plugin]] name = \"{stem}\"`.\n\
\n\
## Test\n\
\n\
    cargo test                          # unit tests, on this machine\n\
    mailgate plugin check target/wasm32-wasip2/release/{stem}.wasm\n\
    mailgate plugin run target/wasm32-wasip2/release/{stem}.wasm --hook {first} \\\n\
        --from alice@remote.test --rcpt bob@example.org tests/sample.eml\n\
\n\
The unit tests call the hooks as plain functions with the arguments\n\
`mailgate_plugin_sdk::testing` builds (a session, an envelope, a message\n\
from an `.eml`); capabilities are served in memory there (`testing::set_config`,\n\
`testing::logs`, ...). `plugin check` and `plugin run` load the component in\n\
the server's real runtime, with the same limits and capabilities; add\n\
`--grant config --config-json '{{...}}'` for a plugin that reads its config.\n\
\n\
## Install\n\
\n\
Copy the `.wasm` into the server's `[plugins] dir`; the server loads it within\n\
`poll_ms` (or at once on `mailgate plugin reload`). Give it settings if it\n\
needs capabilities:\n\
\n\
    [[plugin]]\n\
    name = \"{stem}\"\n\
    grants = [\"log\"]\n\
\n\
See the server's docs/plugins.md for the hooks, verdicts, edits, limits and\n\
capabilities.\n",
        hooks = hooks.join(","),
        first = hooks.first().copied().unwrap_or("data"),
        wit = mailgate_policy::runtime::WIT_VERSION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("noreply-guard").is_ok());
        assert!(valid_name("Greylist").is_err());
        assert!(valid_name("20-greylist").is_err());
        assert!(valid_name("../x").is_err());
        assert!(valid_name(&"a".repeat(MAX_NAME + 1)).is_err());
        assert_eq!(file_stem("noreply-guard"), "noreply_guard");
        assert_eq!(type_name("noreply-guard"), "NoreplyGuard");
    }

    #[test]
    fn hooks_are_parsed_and_combined() {
        let h = parse_hooks("rcpt-to,mail_from,rcpt-to").unwrap();
        assert_eq!(h, vec![Hook::MailFrom, Hook::RcptTo]);
        assert_eq!(hooks_const(&h), "hooks!(MAIL_FROM | RCPT_TO)");
        assert!(parse_hooks("mailbox-event").is_err());
        assert!(parse_hooks("").is_err());
    }

    /// The repository's template is what `plugin new template --hooks
    /// rcpt-to` writes: the copy-me crate and the generator cannot drift.
    #[test]
    fn the_template_is_what_plugin_new_writes() {
        let template = include_str!("../../../../../plugins/template/src/lib.rs");
        assert_eq!(lib_rs("template", &[Hook::RcptTo]), template);
    }

    /// The generated Cargo.toml carries the examples' release profile and
    /// dependencies.
    #[test]
    fn cargo_toml_has_the_profile() {
        let text = cargo_toml("noreply-guard").unwrap();
        let t: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(t["package"]["name"].as_str(), Some("noreply-guard"));
        assert_eq!(t["profile"]["release"]["lto"].as_bool(), Some(true));
        assert_eq!(t["profile"]["release"]["panic"].as_str(), Some("abort"));
        assert!(t["workspace"]["dependencies"]["wit-bindgen"].is_table());
        assert_eq!(
            t["workspace"]["dependencies"]["mailgate-plugin-sdk"]["path"].as_str(),
            Some("vendor/sdk")
        );
        assert!(CARGO_CONFIG.contains("stack-size"));
    }
}
