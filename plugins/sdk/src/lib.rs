//! Write mailgate policy plugins in Rust.
//!
//! A plugin is a type implementing [`Plugin`] (every hook has a default that
//! accepts) and one [`export_plugin!`] line:
//!
//! ```ignore
//! use mailgate_plugin_sdk::prelude::*;
//!
//! struct NoBigMail;
//!
//! impl Plugin for NoBigMail {
//!     const NAME: &'static str = "no-big-mail";
//!     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
//!     const HOOKS: Hooks = Hooks::DATA;
//!
//!     fn data(_: &Session, _: &Envelope, message: &Message) -> Outcome {
//!         if message.size() > 10 << 20 {
//!             return Outcome::reject(552, "5.3.4", "Message too big for this site");
//!         }
//!         Outcome::accept()
//!     }
//! }
//!
//! export_plugin!(NoBigMail);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component to put in the host's
//! plugin directory. `mailgate plugin new NAME` writes a crate that does
//! all of this, with a copy of this SDK and of the WIT in it.
//!
//! Several hooks: `const HOOKS: Hooks = hooks!(MAIL_FROM | RCPT_TO);` (or
//! `Hooks::MAIL_FROM.union(Hooks::RCPT_TO)`; the `|` operator is not
//! `const`, so it cannot be used for the constant).
//!
//! Unit tests: the hooks are plain functions; [`testing`] builds their
//! arguments (a message from an `.eml`) and serves the capabilities off
//! WebAssembly, so `cargo test` runs on the build machine.
//!
//! Only the capabilities a plugin actually calls end up as imports of the
//! component, and the host refuses a plugin importing one it was not
//! granted: call [`dns`] functions only in a plugin granted `dns`, and so on.

/// The generated guest bindings of `wit/` (world `mailgate:policy/plugin`).
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "mailgate:policy/plugin",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "mailgate_plugin_sdk::bindings",
        generate_all,
    });
}

pub use bindings::exports::mailgate::policy::metadata::Hooks;
pub use bindings::exports::mailgate::policy::on_mailbox_event::{Direction, Event as MailboxEvent};
pub use bindings::exports::mailgate::policy::on_route::{Action, Delivery};
pub use bindings::mailgate::policy::message::{
    AuthResult, AuthResults, DkimCheck, DmarcCheck, DmarcPolicy, SpfCheck, TextPart, TlsInfo,
};
pub use message::Message;

mod message;
pub mod testing;

/// The union of hooks, usable in a `const`:
/// `const HOOKS: Hooks = hooks!(MAIL_FROM | RCPT_TO);`.
#[macro_export]
macro_rules! hooks {
    ($($hook:ident)|+) => {
        $crate::Hooks::from_bits_retain(0 $(| $crate::Hooks::$hook.bits())+)
    };
}
pub use bindings::mailgate::policy::types::{
    AuthAttempt, Edit, Envelope, Outcome, Param, Recipient, Reply, Session, Verdict,
};

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::{
        export_plugin, hooks, Action, AuthAttempt, AuthResult, AuthResults, Delivery, Direction,
        DmarcPolicy, Edit, Envelope, Hooks, MailboxEvent, Message, Outcome, Param, Plugin,
        Recipient, Reply, Session, TextPart, Verdict,
    };
}

/// A policy plugin. Implement the hooks named in [`Plugin::HOOKS`]; the
/// others keep their defaults (accept) and are never called by the host.
pub trait Plugin {
    /// A short name for logs and `mailgate plugin list`.
    const NAME: &'static str;
    /// The plugin's version, for logs (usually `env!("CARGO_PKG_VERSION")`).
    const VERSION: &'static str;
    /// The hooks the host should call.
    const HOOKS: Hooks;

    /// Run once at load (and by `mailgate plugin check`): check the
    /// configuration, refuse to load with an error.
    fn self_test() -> Result<(), String> {
        Ok(())
    }
    /// A client connected.
    fn connect(_session: &Session) -> Outcome {
        Outcome::accept()
    }
    /// HELO/EHLO.
    fn helo(_session: &Session) -> Outcome {
        Outcome::accept()
    }
    /// An AUTH attempt ended.
    fn auth(_session: &Session, _attempt: &AuthAttempt) -> Outcome {
        Outcome::accept()
    }
    /// MAIL FROM.
    fn mail_from(_session: &Session, _envelope: &Envelope) -> Outcome {
        Outcome::accept()
    }
    /// One RCPT TO.
    fn rcpt_to(_session: &Session, _envelope: &Envelope, _recipient: &Recipient) -> Outcome {
        Outcome::accept()
    }
    /// The whole message.
    fn data(_session: &Session, _envelope: &Envelope, _message: &Message) -> Outcome {
        Outcome::accept()
    }
    /// Whether the host should call [`Plugin::mailbox_event`] (the hook is
    /// not among [`Hooks`]: it came in WIT 0.1.2, whose `hooks` flags stay
    /// those of 0.1.0).
    const MAILBOX_EVENTS: bool = false;

    /// A user filed a message into Junk (`Direction::Spam`) or out of it
    /// (`Direction::Ham`) over IMAP; called after the IMAP reply. An error
    /// is logged by the host and changes nothing else.
    fn mailbox_event(_event: &MailboxEvent, _message: &Message) -> Result<(), String> {
        Ok(())
    }
    /// Where one recipient's copy goes; `None` keeps `current`.
    fn route(
        _session: &Session,
        _envelope: &Envelope,
        _recipient: &Recipient,
        _message: &Message,
        _current: &[Action],
    ) -> Option<Vec<Action>> {
        None
    }
}

/// Exports a [`Plugin`] type as the component's `mailgate:policy/plugin`
/// world.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ident) => {
        const _: () = {
            use $crate::bindings::exports::mailgate::policy as __e;
            use $crate::bindings::mailgate::policy as __i;
            impl __e::metadata::Guest for $ty {
                fn describe() -> __e::metadata::PluginInfo {
                    __e::metadata::PluginInfo {
                        name: <$ty as $crate::Plugin>::NAME.into(),
                        version: <$ty as $crate::Plugin>::VERSION.into(),
                        hooks: <$ty as $crate::Plugin>::HOOKS,
                    }
                }
                fn self_test() -> Result<(), String> {
                    <$ty as $crate::Plugin>::self_test()
                }
            }
            impl __e::on_connect::Guest for $ty {
                fn connect(s: __i::types::Session) -> __i::types::Outcome {
                    <$ty as $crate::Plugin>::connect(&s)
                }
            }
            impl __e::on_helo::Guest for $ty {
                fn helo(s: __i::types::Session) -> __i::types::Outcome {
                    <$ty as $crate::Plugin>::helo(&s)
                }
            }
            impl __e::on_auth::Guest for $ty {
                fn auth(
                    s: __i::types::Session,
                    a: __i::types::AuthAttempt,
                ) -> __i::types::Outcome {
                    <$ty as $crate::Plugin>::auth(&s, &a)
                }
            }
            impl __e::on_mail_from::Guest for $ty {
                fn mail_from(
                    s: __i::types::Session,
                    e: __i::types::Envelope,
                ) -> __i::types::Outcome {
                    <$ty as $crate::Plugin>::mail_from(&s, &e)
                }
            }
            impl __e::on_rcpt_to::Guest for $ty {
                fn rcpt_to(
                    s: __i::types::Session,
                    e: __i::types::Envelope,
                    r: __i::types::Recipient,
                ) -> __i::types::Outcome {
                    <$ty as $crate::Plugin>::rcpt_to(&s, &e, &r)
                }
            }
            impl __e::on_data::Guest for $ty {
                fn data(
                    s: __i::types::Session,
                    e: __i::types::Envelope,
                    m: &__i::message::Message,
                ) -> __i::types::Outcome {
                    <$ty as $crate::Plugin>::data(&s, &e, &$crate::Message::host(m))
                }
            }
            impl __e::on_route::Guest for $ty {
                fn route(
                    s: __i::types::Session,
                    e: __i::types::Envelope,
                    r: __i::types::Recipient,
                    m: &__i::message::Message,
                    c: Vec<__e::on_route::Action>,
                ) -> Option<Vec<__e::on_route::Action>> {
                    <$ty as $crate::Plugin>::route(&s, &e, &r, &$crate::Message::host(m), &c)
                }
            }
            impl __e::on_mailbox_event::Guest for $ty {
                fn wants() -> bool {
                    <$ty as $crate::Plugin>::MAILBOX_EVENTS
                }
                fn mailbox_event(
                    ev: __e::on_mailbox_event::Event,
                    m: &__i::message::Message,
                ) -> Result<(), String> {
                    <$ty as $crate::Plugin>::mailbox_event(&ev, &$crate::Message::host(m))
                }
            }
        };
        $crate::bindings::export_world!($ty with_types_in $crate::bindings);
    };
}

impl Outcome {
    /// Accept, no edits.
    pub fn accept() -> Outcome {
        Outcome {
            verdict: Verdict::Accept,
            edits: Vec::new(),
        }
    }
    /// Refuse permanently with `code` (5xx), `enhanced` ("5.7.1") and `text`.
    pub fn reject(code: u16, enhanced: &str, text: &str) -> Outcome {
        Outcome {
            verdict: Verdict::Reject(Reply::new(code, enhanced, text)),
            edits: Vec::new(),
        }
    }
    /// Refuse for now with `code` (4xx), `enhanced` ("4.7.1") and `text`.
    pub fn tempfail(code: u16, enhanced: &str, text: &str) -> Outcome {
        Outcome {
            verdict: Verdict::Tempfail(Reply::new(code, enhanced, text)),
            edits: Vec::new(),
        }
    }
    /// Accept and deliver to nobody.
    pub fn discard() -> Outcome {
        Outcome {
            verdict: Verdict::Discard,
            edits: Vec::new(),
        }
    }
    /// Accept into the host's quarantine.
    pub fn quarantine(reason: &str) -> Outcome {
        Outcome {
            verdict: Verdict::Quarantine(reason.into()),
            edits: Vec::new(),
        }
    }
    /// Adds an edit.
    pub fn with(mut self, edit: Edit) -> Outcome {
        self.edits.push(edit);
        self
    }
    /// Adds a header field.
    pub fn add_header(self, name: &str, value: &str) -> Outcome {
        self.with(Edit::AddHeader((name.into(), value.into())))
    }
    /// Replaces every field `name` with one.
    pub fn replace_header(self, name: &str, value: &str) -> Outcome {
        self.with(Edit::ReplaceHeader((name.into(), value.into())))
    }
    /// Files the message into `folder`.
    pub fn set_folder(self, folder: &str) -> Outcome {
        self.with(Edit::SetFolder(folder.into()))
    }
    /// Whether the verdict is accept.
    pub fn is_accept(&self) -> bool {
        matches!(self.verdict, Verdict::Accept)
    }
}

impl Reply {
    /// A reply.
    pub fn new(code: u16, enhanced: &str, text: &str) -> Reply {
        Reply {
            code,
            enhanced: enhanced.into(),
            text: text.into(),
        }
    }
}

impl Delivery {
    /// Into the recipient's own account, in `folder`.
    pub fn into_folder(folder: &str) -> Delivery {
        Delivery {
            account: None,
            folder: Some(folder.into()),
            flags: Vec::new(),
        }
    }
}

impl AuthResult {
    /// The RFC 8601 word, as in `Authentication-Results:` ("pass",
    /// "softfail", ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthResult::None => "none",
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::Softfail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::Temperror => "temperror",
            AuthResult::Permerror => "permerror",
        }
    }
}

impl DmarcPolicy {
    /// The `p=` word ("none", "quarantine", "reject"), "" when unspecified.
    pub fn as_str(&self) -> &'static str {
        match self {
            DmarcPolicy::Unspecified => "",
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

impl AuthResults {
    /// Whether DMARC passed: the `From:` domain is authenticated (an
    /// aligned SPF or DKIM pass). What most policies want to know.
    pub fn dmarc_pass(&self) -> bool {
        self.dmarc.result == AuthResult::Pass
    }

    /// Whether a DKIM signature by `domain` (compared case-insensitively)
    /// passed.
    pub fn dkim_pass_for(&self, domain: &str) -> bool {
        self.dkim
            .iter()
            .any(|d| d.result == AuthResult::Pass && d.domain.eq_ignore_ascii_case(domain))
    }

    /// A one-line summary for logs and headers:
    /// `spf=pass (a.test) dkim=pass (a.test s1) dmarc=pass (a.test p=reject) arc=none`.
    pub fn summary(&self) -> String {
        let mut out = format!("spf={} ({})", self.spf.result.as_str(), self.spf.domain);
        if self.dkim.is_empty() {
            out.push_str(" dkim=none");
        }
        for d in &self.dkim {
            out.push_str(&format!(
                " dkim={} ({} {})",
                d.result.as_str(),
                d.domain,
                d.selector
            ));
        }
        out.push_str(&format!(
            " dmarc={} ({} p={})",
            self.dmarc.result.as_str(),
            self.dmarc.domain,
            self.dmarc.policy.as_str()
        ));
        out.push_str(&format!(" arc={}", self.arc.as_str()));
        out
    }
}

/// Capability "log" (grant `log`). Off WebAssembly (unit tests) the lines
/// are collected for [`testing::logs`].
pub mod log {
    pub use crate::bindings::mailgate::policy::log::Level;
    fn write(level: Level, text: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::mailgate::policy::log::write(level, text);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::log(
            match level {
                Level::Debug => "debug",
                Level::Info => "info",
                Level::Warn => "warn",
                Level::Error => "error",
            },
            text,
        );
    }
    /// A debug line.
    pub fn debug(text: &str) {
        write(Level::Debug, text)
    }
    /// An info line.
    pub fn info(text: &str) {
        write(Level::Info, text)
    }
    /// A warning.
    pub fn warn(text: &str) {
        write(Level::Warn, text)
    }
    /// An error line.
    pub fn error(text: &str) {
        write(Level::Error, text)
    }
}

/// Capability "dns" (grant `dns`). Off WebAssembly (unit tests) it answers
/// what [`testing::set_dns`] was given.
pub mod dns {
    pub use crate::bindings::mailgate::policy::dns::{DnsError, RecordType};

    /// The records of `kind` at `name`, as text.
    pub fn lookup(name: &str, kind: RecordType) -> Result<Vec<String>, DnsError> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::mailgate::policy::dns::lookup(name, kind);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let kind = match kind {
                RecordType::A => "a",
                RecordType::Aaaa => "aaaa",
                RecordType::Mx => "mx",
                RecordType::Txt => "txt",
                RecordType::Ptr => "ptr",
            };
            crate::testing::dns(name, kind).ok_or(DnsError::NotFound)
        }
    }
}

/// Capability "http" (grant `http`, destinations in `http_allow`). Off
/// WebAssembly (unit tests) requests are recorded
/// ([`testing::http_requests`]) and answered from
/// [`testing::push_http_answer`].
pub mod http {
    pub use crate::bindings::mailgate::policy::http::{HttpError, Request, Response};
    use crate::Message;

    impl Request {
        /// A request with no header fields, no body and the hook's deadline.
        pub fn new(method: &str, url: &str) -> Request {
            Request {
                method: method.into(),
                url: url.into(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: 0,
            }
        }
        /// Adds a header field.
        pub fn header(mut self, name: &str, value: &str) -> Request {
            self.headers.push((name.into(), value.into()));
            self
        }
        /// Sets the body.
        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
            self.body = body.into();
            self
        }
        /// Sets a deadline shorter than the hook's, in milliseconds.
        pub fn timeout_ms(mut self, ms: u32) -> Request {
            self.timeout_ms = ms;
            self
        }
    }

    impl Response {
        /// The first header field `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Sends `request`.
    pub fn send(request: &Request) -> Result<Response, HttpError> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::mailgate::policy::http::send(request);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::http(request, request.body.clone())
    }

    /// Sends `request` with `message` as its body, streamed by the host
    /// (never copied into the plugin).
    pub fn send_message(request: &Request, message: &Message) -> Result<Response, HttpError> {
        #[cfg(target_arch = "wasm32")]
        if let Some(m) = message.host_resource() {
            return crate::bindings::mailgate::policy::http::send_message(request, m);
        }
        let body = message.mock_bytes().unwrap_or_default();
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::mailgate::policy::http::send(&Request {
            body,
            ..request.clone()
        });
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::http(request, body)
    }
}

/// Capability "kv" (grant `kv`). Off WebAssembly (unit tests) an in-memory
/// map per test thread (time-to-live ignored).
pub mod kv {
    #[cfg(target_arch = "wasm32")]
    use crate::bindings::mailgate::policy::kv as host;
    pub use crate::bindings::mailgate::policy::kv::KvError;

    /// The value at `key`, if any.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        #[cfg(target_arch = "wasm32")]
        return host::get(key);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::kv_get(key)
    }
    /// Sets `key`, expiring after `ttl_seconds` if given.
    pub fn set(key: &str, value: &[u8], ttl_seconds: Option<u64>) -> Result<(), KvError> {
        #[cfg(target_arch = "wasm32")]
        return host::set(key, value, ttl_seconds);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = ttl_seconds;
            crate::testing::kv_set(key, value);
            Ok(())
        }
    }
    /// Removes `key`.
    pub fn delete(key: &str) {
        #[cfg(target_arch = "wasm32")]
        host::delete(key);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::kv_delete(key)
    }
    /// Adds `delta` to the integer at `key` (0 when absent), returns the
    /// new value.
    pub fn increment(key: &str, delta: i64, ttl_seconds: Option<u64>) -> Result<i64, KvError> {
        #[cfg(target_arch = "wasm32")]
        return host::increment(key, delta, ttl_seconds);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = ttl_seconds;
            crate::testing::kv_increment(key, delta).map_err(KvError::Unavailable)
        }
    }

    /// The value at `key` as an integer (0 when absent or not an integer).
    pub fn get_i64(key: &str) -> i64 {
        get(key)
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Capability "clock" (grant `clock`). Off WebAssembly (unit tests) it
/// reads [`testing::set_clock`]'s time.
pub mod clock {
    /// Unix time, seconds.
    pub fn now() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::mailgate::policy::clock::now();
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::now().0
    }
    /// Milliseconds since the plugin was loaded.
    pub fn monotonic_ms() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::mailgate::policy::clock::monotonic_ms();
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::now().1
    }
}

/// Capability "config" (grant `config`). Off WebAssembly (unit tests) it
/// returns what [`testing::set_config`] set.
pub mod config {
    /// The plugin's `config` table as JSON text.
    pub fn json() -> String {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::mailgate::policy::config::get();
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::config_json()
    }
    /// The plugin's `config` table deserialised into `T`.
    pub fn get<T: serde::de::DeserializeOwned>() -> Result<T, String> {
        serde_json::from_str(&json()).map_err(|e| format!("bad plugin config: {e}"))
    }
}

/// Splits `local@domain`, lower-casing the domain.
pub fn split_address(address: &str) -> Option<(&str, String)> {
    let at = address.rfind('@')?;
    Some((&address[..at], address[at + 1..].to_ascii_lowercase()))
}
