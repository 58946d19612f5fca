//! The system Sieve plugin (`plugins/sieve`, world `sieve-filter`, WIT
//! 0.1.4): [`SieveFilter`] loads it into an engine of its own and runs one
//! account's script on one message ([`SieveFilter::run`]), returning the
//! actions as host types. Carrying them out is the delivery room's
//! (`mailgate-delivery`).
//!
//! The engine is separate from the operator plugins' ([`crate::PolicyManager`]):
//! it exists without `[plugins]`, always meters fuel, and a reload of the
//! operator plugins never touches it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::bindings::on_deliver;
use crate::caps::{MemoryKv, StaticResolver};
use crate::config::{FailureMode, Limits, PluginSettings};
use crate::error::{FailureKind, LoadError, PluginFailure, PolicyError};

/// Why the system Sieve plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SieveLoadError {
    /// The engine or the file.
    #[error(transparent)]
    Engine(#[from] PolicyError),
    /// The component was refused.
    #[error("the Sieve plugin was refused: {0}")]
    Load(#[from] LoadError),
}
use crate::message::MessageView;
use crate::runtime::{Answer, Call, LoadedPlugin, Runtime, RuntimeOptions};
use crate::stats::PluginStats;
use crate::types::Hook;

/// A script by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedScript {
    /// Its name.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// What the host tells the plugin for one account's copy.
#[derive(Debug, Clone, Default)]
pub struct SieveRequest {
    /// The account (its address).
    pub account: String,
    /// The envelope recipient that reached it.
    pub envelope_to: String,
    /// The envelope sender, "" for `<>`.
    pub envelope_from: String,
    /// The active script.
    pub script: NamedScript,
    /// The account's other scripts (`include :personal`).
    pub personal: Vec<NamedScript>,
    /// The administrator's scripts (`include :global`).
    pub global: Vec<NamedScript>,
    /// The account's folders.
    pub mailboxes: Vec<String>,
    /// `duplicate` keys seen within their period.
    pub seen: Vec<String>,
    /// Seconds since the Unix epoch.
    pub now: i64,
    /// Minutes east of UTC.
    pub zone: i32,
    /// The interpreter's settings as JSON (`mailgate_sieve::Settings`).
    pub settings: String,
}

/// A vacation auto-reply the script asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SieveVacation {
    /// The body (a MIME entity when `mime`).
    pub reason: String,
    /// `:subject`.
    pub subject: Option<String>,
    /// `:from`.
    pub from: Option<String>,
    /// `:addresses`.
    pub addresses: Vec<String>,
    /// `:mime`.
    pub mime: bool,
    /// `:handle` (or one made of the fields).
    pub handle: String,
    /// Seconds: one reply per sender per period.
    pub period: u64,
}

/// One action, in the script's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SieveAction {
    /// Into INBOX with these flags.
    Keep(Vec<String>),
    /// Into a folder.
    FileInto {
        /// The folder.
        mailbox: String,
        /// `:create`.
        create: bool,
        /// Flags of the stored copy.
        flags: Vec<String>,
    },
    /// Forward to an address.
    Redirect(String),
    /// Drop (unless another action stores it).
    Discard,
    /// Refuse with a reason; `extended` for `ereject`.
    Reject {
        /// The reason.
        reason: String,
        /// `ereject`.
        extended: bool,
    },
    /// An auto-reply.
    Vacation(SieveVacation),
    /// `addheader` / `deleteheader`: the copies the actions after it store
    /// or redirect have it applied ([`MessageView::apply_sieve_edit`]).
    EditHeader(SieveHeaderEdit),
}

/// A header change by `addheader` / `deleteheader` (RFC 5293).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SieveHeaderEdit {
    /// Add `name: value` at the top, or at the end with `last`.
    Add {
        /// The field name.
        name: String,
        /// The value, one line.
        value: String,
        /// `:last`.
        last: bool,
    },
    /// Delete the `occurrence`-th field (from 1) named `name`.
    Delete {
        /// The field name.
        name: String,
        /// Which one, from 1.
        occurrence: u32,
    },
}

/// A `duplicate` key to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SieveDuplicate {
    /// The key.
    pub key: String,
    /// Seconds from now.
    pub period: u64,
    /// `:last`.
    pub last: bool,
}

/// A successful run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SieveResponse {
    /// The actions.
    pub actions: Vec<SieveAction>,
    /// `duplicate` keys to remember.
    pub duplicates: Vec<SieveDuplicate>,
    /// Interpreter steps used.
    pub steps: u64,
}

/// Why a run gave no actions. In every case the host keeps the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SieveError {
    /// The script does not compile.
    #[error("the script does not compile: {0}")]
    Compile(String),
    /// It stopped with an error or a limit.
    #[error("the script failed: {0}")]
    Runtime(String),
    /// The sandbox stopped it (fuel, time, memory, a trap).
    #[error("the sandbox stopped the script: {}", .0.kind)]
    Sandbox(PluginFailure),
}

/// The limits of one run in the sandbox.
#[derive(Debug, Clone, Copy)]
pub struct SieveLimits {
    /// Wall time of one run.
    pub timeout: Duration,
    /// Linear memory of one instance, bytes.
    pub memory_bytes: u64,
    /// WebAssembly fuel of one run.
    pub fuel: u64,
    /// Instances alive at once (pool slots).
    pub max_instances: u32,
}

impl Default for SieveLimits {
    fn default() -> Self {
        SieveLimits {
            timeout: Duration::from_secs(2),
            memory_bytes: 128 << 20,
            fuel: 2_000_000_000,
            max_instances: 32,
        }
    }
}

/// The loaded system Sieve plugin.
pub struct SieveFilter {
    // Field order: the plugin (its warm instances) goes before its engine.
    plugin: LoadedPlugin,
    _runtime: Runtime,
}

impl SieveFilter {
    /// Loads the plugin from `path` (a component of world `sieve-filter`)
    /// into an engine of its own, with fuel metering.
    pub async fn load(path: &Path, limits: SieveLimits) -> Result<SieveFilter, SieveLoadError> {
        let bytes = std::fs::read(path).map_err(|e| PolicyError::Io(path.to_path_buf(), e))?;
        Self::from_bytes(bytes, limits).await
    }

    /// Loads the plugin from its bytes.
    pub async fn from_bytes(
        bytes: Vec<u8>,
        limits: SieveLimits,
    ) -> Result<SieveFilter, SieveLoadError> {
        let runtime = Runtime::new(RuntimeOptions {
            max_instances: limits.max_instances.max(2),
            fuel: true,
            cache_dir: None,
            kv: Arc::new(MemoryKv::new()),
            resolver: Arc::new(StaticResolver::default()),
            reuse_instances: true,
            http_ca_file: None,
        })?;
        let settings = PluginSettings {
            name: "sieve".into(),
            enabled: true,
            ..PluginSettings::default()
        };
        let plugin = runtime
            .load(
                "sieve",
                bytes,
                &settings,
                Limits {
                    memory_bytes: limits.memory_bytes,
                    timeout: limits.timeout,
                    fuel: Some(limits.fuel),
                    failure: FailureMode::FailOpen,
                },
                Arc::new(PluginStats::default()),
            )
            .await?;
        if !plugin.exports(Hook::Deliver) {
            // A plugin of an older `sieve-filter` world (0.1.3: no
            // `edit-header` action) exports an `on-deliver` of other types.
            let older = plugin.imports().iter().any(|i| {
                i.starts_with("mailgate:policy/") && !i.ends_with(crate::runtime::WIT_VERSION)
            });
            let why = if older {
                format!("the component was built against an older mailgate:policy than {}: rebuild it (scripts/build-plugins) with this release", crate::runtime::WIT_VERSION)
            } else {
                "the component does not export `on-deliver`".to_string()
            };
            return Err(LoadError::Link(why).into());
        }
        let filter = SieveFilter {
            plugin,
            _runtime: runtime,
        };
        // A component of another `sieve-filter` version may link (the
        // export is found by semver) yet fail every call on the types of
        // its answer: one call at load tells, instead of every delivery.
        let probe = SieveRequest {
            script: NamedScript {
                name: "load-check".into(),
                text: "keep;".into(),
            },
            ..SieveRequest::default()
        };
        let message = Arc::new(MessageView::new(&b"Subject: load check\r\n\r\n"[..]));
        if let Err(e) = filter.run(probe, message).await {
            return Err(LoadError::SelfTest(format!(
                "a test run of `keep;` failed ({e}); a sieve.wasm built against an older mailgate:policy than {} must be rebuilt (scripts/build-plugins) with this release",
                crate::runtime::WIT_VERSION
            ))
            .into());
        }
        Ok(filter)
    }

    /// The plugin's version (from its `describe`).
    pub fn version(&self) -> &str {
        self.plugin.version()
    }

    /// Runs `request`'s script on `message` under the sandbox's limits.
    pub async fn run(
        &self,
        request: SieveRequest,
        message: Arc<MessageView>,
    ) -> Result<SieveResponse, SieveError> {
        let request = to_wit(request);
        match self.plugin.call(Call::Deliver(request, message)).await {
            Ok(Answer::Delivered(Ok(r))) => Ok(from_wit(r)),
            Ok(Answer::Delivered(Err(on_deliver::Failure::Compile(e)))) => {
                Err(SieveError::Compile(e))
            }
            Ok(Answer::Delivered(Err(on_deliver::Failure::Runtime(e)))) => {
                Err(SieveError::Runtime(e))
            }
            Ok(_) => Err(SieveError::Sandbox(self.plugin.failure(
                Hook::Deliver,
                FailureKind::InvalidAnswer("wrong answer type".into()),
                Duration::ZERO,
            ))),
            Err(f) => Err(SieveError::Sandbox(f)),
        }
    }
}

fn script(s: NamedScript) -> on_deliver::Script {
    on_deliver::Script {
        name: s.name,
        text: s.text,
    }
}

fn to_wit(r: SieveRequest) -> on_deliver::Request {
    on_deliver::Request {
        account: r.account,
        envelope_to: r.envelope_to,
        envelope_from: r.envelope_from,
        script: script(r.script),
        personal: r.personal.into_iter().map(script).collect(),
        global: r.global.into_iter().map(script).collect(),
        mailboxes: r.mailboxes,
        seen: r.seen,
        now: r.now,
        zone: r.zone,
        settings: r.settings,
    }
}

fn from_wit(r: on_deliver::Response) -> SieveResponse {
    use on_deliver::Action as A;
    SieveResponse {
        actions: r
            .actions
            .into_iter()
            .map(|a| match a {
                A::Keep(flags) => SieveAction::Keep(flags),
                A::FileInto(f) => SieveAction::FileInto {
                    mailbox: f.mailbox,
                    create: f.create,
                    flags: f.flags,
                },
                A::Redirect(to) => SieveAction::Redirect(to),
                A::Discard => SieveAction::Discard,
                A::Reject(r) => SieveAction::Reject {
                    reason: r.reason,
                    extended: r.extended,
                },
                A::EditHeader(on_deliver::HeaderEdit::Add(h)) => {
                    SieveAction::EditHeader(SieveHeaderEdit::Add {
                        name: h.name,
                        value: h.value,
                        last: h.last,
                    })
                }
                A::EditHeader(on_deliver::HeaderEdit::Delete(h)) => {
                    SieveAction::EditHeader(SieveHeaderEdit::Delete {
                        name: h.name,
                        occurrence: h.occurrence,
                    })
                }
                A::Vacation(v) => SieveAction::Vacation(SieveVacation {
                    reason: v.reason,
                    subject: v.subject,
                    from: v.from,
                    addresses: v.addresses,
                    mime: v.mime,
                    handle: v.handle,
                    period: v.period,
                }),
            })
            .collect(),
        duplicates: r
            .duplicates
            .into_iter()
            .map(|d| SieveDuplicate {
                key: d.key,
                period: d.period,
                last: d.last,
            })
            .collect(),
        steps: r.steps,
    }
}
