//! One hook of one plugin on one message, outside a server: what
//! `mailgate plugin run` does. The plugin is loaded by the same
//! [`Runtime`](crate::runtime::Runtime) the server uses (same limits, same capability checks, the
//! resolver the caller gives), its hook called as a session would call it,
//! and the answer reported with what the server would make of it (the
//! host's validation of edits and plans, the failure mode).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::bindings::{self, on_route, RawOutcome};
use crate::caps::Resolver;
use crate::chain::{validate_edits, validate_plan};
use crate::config::{FailureMode, PluginSettings, PolicyConfig};
use crate::error::LoadError;
use crate::message::MessageView;
use crate::runtime::{Answer, Call, LoadedPlugin};
use crate::types::{
    AuthAttempt, Edit, Envelope, Hook, MailboxEvent, RecipientInfo, Reply, RouteAction,
    SessionInfo, Verdict,
};

/// What to call.
#[derive(Debug, Clone)]
pub struct RunInput {
    /// The hook.
    pub hook: Hook,
    /// The session (client, HELO, listener).
    pub session: SessionInfo,
    /// The envelope: sender and recipients. `rcpt-to` and `route` are
    /// called once per recipient, in order; `rcpt-to` sees the recipients
    /// accepted before.
    pub envelope: Envelope,
    /// The AUTH attempt, for `auth`.
    pub auth: Option<AuthAttempt>,
    /// The message, for `data`, `route` and `mailbox-event`.
    pub message: Option<Vec<u8>>,
    /// What `mailbox-event` is told (account, direction, mailboxes).
    pub mailbox_event: Option<MailboxEvent>,
}

/// The report of one call.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// The recipient, for `rcpt-to` and `route`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// What the server would do: "accept", "reject", "tempfail",
    /// "discard", "quarantine" (for `route`: the plan's first action).
    pub verdict: String,
    /// The SMTP reply of a reject or tempfail, as the server sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// The quarantine reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The edits the server would apply, e.g. `add-header X-Spam: yes`.
    pub edits: Vec<String>,
    /// The route plan (`route` only), e.g. `deliver folder=Junk`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Vec<String>>,
    /// How the call failed (trap, time-out, limit, invalid answer), with
    /// the failure mode applied to get `verdict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The plugin's log lines, `level: text`.
    pub logs: Vec<String>,
    /// Wall time of the call, microseconds (instantiation included).
    pub elapsed_us: u64,
    /// The instance's linear memory after the call, bytes.
    pub memory_bytes: u64,
}

/// The report of `mailgate plugin run`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The name the plugin gives itself.
    pub plugin: String,
    /// Its version.
    pub version: String,
    /// The hook called.
    pub hook: String,
    /// One call, or one per recipient for `rcpt-to` and `route`.
    pub calls: Vec<CallReport>,
}

/// Why a run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The plugin did not load.
    #[error("refused: {0}")]
    Load(#[from] LoadError),
    /// The plugin does not ask for the hook.
    #[error("the plugin does not ask for hook {hook} (it asks for: {asked})")]
    NotWanted {
        /// The hook.
        hook: Hook,
        /// The hooks it asks for.
        asked: String,
    },
    /// The hook needs something the input lacks.
    #[error("{0}")]
    Input(String),
}

/// Loads `path` with `settings` under `config`'s limits (a fresh
/// instance per call, an in-memory key-value store) and runs `input`.
pub async fn run_file(
    path: &Path,
    settings: &PluginSettings,
    config: &PolicyConfig,
    resolver: Arc<dyn Resolver>,
    input: RunInput,
) -> Result<RunReport, RunError> {
    let (_runtime, plugin) =
        crate::manager::load_standalone(path, settings, config, config.plugins.fuel, resolver)
            .await?;
    let hook = input.hook;
    if !plugin.wants(hook) {
        return Err(RunError::NotWanted {
            hook,
            asked: plugin
                .hooks()
                .iter()
                .map(|h| h.name())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    plugin.capture_logs();
    let s: bindings::mailgate::policy::types::Session = (&input.session).into();
    let message = || -> Result<Arc<MessageView>, RunError> {
        let raw = input
            .message
            .clone()
            .ok_or_else(|| RunError::Input(format!("hook {hook} needs a message (MESSAGE.eml)")))?;
        Ok(Arc::new(MessageView::new(raw)))
    };
    let mut calls = Vec::new();
    match hook {
        Hook::Connect | Hook::Helo | Hook::Auth | Hook::MailFrom | Hook::Data => {
            let call = match hook {
                Hook::Connect => Call::Connect(s),
                Hook::Helo => Call::Helo(s),
                Hook::Auth => {
                    let a = input.auth.as_ref().ok_or_else(|| {
                        RunError::Input("hook auth needs --auth-user".to_string())
                    })?;
                    Call::Auth(s, a.into())
                }
                Hook::MailFrom => Call::MailFrom(s, (&input.envelope).into()),
                _ => Call::Data(s, (&input.envelope).into(), message()?),
            };
            calls.push(outcome_call(&plugin, hook, None, call).await);
        }
        Hook::RcptTo => {
            let mut envelope = input.envelope.clone();
            let all = std::mem::take(&mut envelope.recipients);
            if all.is_empty() {
                return Err(RunError::Input("hook rcpt-to needs --rcpt".into()));
            }
            for rcpt in all {
                let r: bindings::mailgate::policy::types::Recipient = (&recipient(&rcpt)).into();
                let call = Call::RcptTo(s.clone(), (&envelope).into(), r);
                let report = outcome_call(&plugin, hook, Some(rcpt.clone()), call).await;
                if report.verdict == "accept" {
                    envelope.recipients.push(rcpt);
                }
                calls.push(report);
            }
        }
        Hook::Route => {
            if input.envelope.recipients.is_empty() {
                return Err(RunError::Input("hook route needs --rcpt".into()));
            }
            let view = message()?;
            let e: bindings::mailgate::policy::types::Envelope = (&input.envelope).into();
            for rcpt in &input.envelope.recipients {
                let current = vec![on_route::Action::from(&RouteAction::Deliver(
                    Default::default(),
                ))];
                let r: bindings::mailgate::policy::types::Recipient = (&recipient(rcpt)).into();
                let call = Call::Route(s.clone(), e.clone(), r, view.clone(), current);
                calls.push(route_call(&plugin, rcpt, call).await);
            }
        }
        Hook::MailboxEvent => {
            let event = input
                .mailbox_event
                .as_ref()
                .ok_or_else(|| RunError::Input("hook mailbox-event needs --direction".into()))?;
            let call = Call::MailboxEvent(event.into(), message()?);
            let mut report = empty_report(None);
            let started = Instant::now();
            let answer = plugin.call(call).await;
            report.elapsed_us = started.elapsed().as_micros() as u64;
            report.memory_bytes = plugin.last_memory() as u64;
            report.logs = logs(&plugin);
            match answer {
                Ok(Answer::Done(Ok(()))) => {}
                Ok(Answer::Done(Err(why))) => {
                    report.verdict = "error".into();
                    report.reason = Some(why);
                }
                Ok(_) => {
                    report.verdict = "error".into();
                    report.failure = Some("wrong answer type".into());
                }
                Err(f) => {
                    report.verdict = "error".into();
                    report.failure = Some(f.kind.to_string());
                }
            }
            calls.push(report);
        }
        Hook::Load | Hook::Deliver => return Err(RunError::Input("not a hook".into())),
    }
    Ok(RunReport {
        plugin: plugin.plugin_name().to_string(),
        version: plugin.version().to_string(),
        hook: hook.name().to_string(),
        calls,
    })
}

/// A recipient as the server would see a local one: its own account, its
/// `+tag`.
fn recipient(address: &str) -> RecipientInfo {
    let address = address.to_ascii_lowercase();
    let tag = address
        .split('@')
        .next()
        .and_then(|l| l.split_once('+'))
        .map(|(_, t)| t.to_string());
    RecipientInfo {
        account: Some(address.clone()),
        address,
        params: Vec::new(),
        tag,
    }
}

fn empty_report(recipient: Option<String>) -> CallReport {
    CallReport {
        recipient,
        verdict: "accept".into(),
        reply: None,
        reason: None,
        edits: Vec::new(),
        route: None,
        failure: None,
        logs: Vec::new(),
        elapsed_us: 0,
        memory_bytes: 0,
    }
}

fn set_verdict(report: &mut CallReport, verdict: &Verdict) {
    let (word, reply, reason) = match verdict {
        Verdict::Accept => ("accept", None, None),
        Verdict::Reject(r) => ("reject", Some(r.to_string()), None),
        Verdict::Tempfail(r) => ("tempfail", Some(r.to_string()), None),
        Verdict::Discard => ("discard", None, None),
        Verdict::Quarantine(why) => ("quarantine", None, Some(why.clone())),
    };
    report.verdict = word.into();
    report.reply = reply;
    report.reason = reason;
}

fn failed_verdict(mode: FailureMode) -> Verdict {
    match mode {
        FailureMode::FailOpen => Verdict::Accept,
        FailureMode::FailClosed => Verdict::Tempfail(Reply::policy_failure()),
    }
}

async fn outcome_call(
    plugin: &LoadedPlugin,
    hook: Hook,
    recipient: Option<String>,
    call: Call,
) -> CallReport {
    let mut report = empty_report(recipient);
    let started = Instant::now();
    let answer = plugin.call(call).await;
    report.elapsed_us = started.elapsed().as_micros() as u64;
    report.memory_bytes = plugin.last_memory() as u64;
    report.logs = logs(plugin);
    let out: RawOutcome = match answer {
        Ok(Answer::Outcome(o)) => o.into(),
        Ok(_) => {
            report.failure = Some("wrong answer type".into());
            set_verdict(&mut report, &failed_verdict(plugin.failure_mode()));
            return report;
        }
        Err(f) => {
            report.failure = Some(f.kind.to_string());
            set_verdict(&mut report, &failed_verdict(plugin.failure_mode()));
            return report;
        }
    };
    set_verdict(&mut report, &out.verdict);
    if matches!(out.verdict, Verdict::Reject(_) | Verdict::Tempfail(_)) {
        // The server drops the edits of a refusal.
        return report;
    }
    if let Err(why) = validate_edits(&out.edits) {
        report.failure = Some(format!("invalid answer: {why}"));
        set_verdict(&mut report, &failed_verdict(plugin.failure_mode()));
        return report;
    }
    report.edits = out
        .edits
        .iter()
        .filter(|e| applies_at(e, hook))
        .map(edit_text)
        .collect();
    report
}

/// Whether the server applies `edit` at `hook` (others are ignored).
fn applies_at(edit: &Edit, hook: Hook) -> bool {
    match edit {
        Edit::AddRecipient(_) | Edit::RemoveRecipient(_) => {
            matches!(hook, Hook::RcptTo | Hook::Data)
        }
        _ => hook == Hook::Data,
    }
}

fn edit_text(edit: &Edit) -> String {
    match edit {
        Edit::AddHeader(n, v) => format!("add-header {n}: {v}"),
        Edit::RemoveHeader(n) => format!("remove-header {n}"),
        Edit::ReplaceHeader(n, v) => format!("replace-header {n}: {v}"),
        Edit::AddRecipient(a) => format!("add-recipient {a}"),
        Edit::RemoveRecipient(a) => format!("remove-recipient {a}"),
        Edit::SetFolder(f) => format!("set-folder {f}"),
    }
}

fn action_text(a: &RouteAction) -> String {
    match a {
        RouteAction::Deliver(d) => {
            let mut s = "deliver".to_string();
            if let Some(acc) = &d.account {
                s.push_str(&format!(" account={acc}"));
            }
            if let Some(f) = &d.folder {
                s.push_str(&format!(" folder={f}"));
            }
            if !d.flags.is_empty() {
                s.push_str(&format!(" flags={}", d.flags.join(",")));
            }
            s
        }
        RouteAction::Forward(to) => format!("forward {}", to.join(",")),
        RouteAction::Relay(h) => format!("relay {h}"),
        RouteAction::Discard => "discard".into(),
        RouteAction::Quarantine(r) => format!("quarantine {r}"),
        RouteAction::Reject(r) => format!("reject {r}"),
        RouteAction::Tempfail(r) => format!("tempfail {r}"),
    }
}

async fn route_call(plugin: &LoadedPlugin, rcpt: &str, call: Call) -> CallReport {
    let mut report = empty_report(Some(rcpt.to_string()));
    let started = Instant::now();
    let answer = plugin.call(call).await;
    report.elapsed_us = started.elapsed().as_micros() as u64;
    report.memory_bytes = plugin.last_memory() as u64;
    report.logs = logs(plugin);
    let default = vec![RouteAction::Deliver(Default::default())];
    let plan = match answer {
        Ok(Answer::Route(None)) => default,
        Ok(Answer::Route(Some(actions))) => {
            let actions: Vec<RouteAction> = actions.into_iter().map(Into::into).collect();
            match validate_plan(&actions) {
                Ok(()) => actions,
                Err(why) => {
                    report.failure = Some(format!("invalid answer: {why}"));
                    failed_plan(plugin.failure_mode())
                }
            }
        }
        Ok(_) => {
            report.failure = Some("wrong answer type".into());
            failed_plan(plugin.failure_mode())
        }
        Err(f) => {
            report.failure = Some(f.kind.to_string());
            failed_plan(plugin.failure_mode())
        }
    };
    let verdict = match plan.first() {
        Some(RouteAction::Reject(r)) => Verdict::Reject(r.clone()),
        Some(RouteAction::Tempfail(r)) => Verdict::Tempfail(r.clone()),
        Some(RouteAction::Discard) => Verdict::Discard,
        Some(RouteAction::Quarantine(q)) => Verdict::Quarantine(q.clone()),
        _ => Verdict::Accept,
    };
    set_verdict(&mut report, &verdict);
    report.route = Some(plan.iter().map(action_text).collect());
    report
}

fn failed_plan(mode: FailureMode) -> Vec<RouteAction> {
    match mode {
        FailureMode::FailOpen => vec![RouteAction::Deliver(Default::default())],
        FailureMode::FailClosed => vec![RouteAction::Tempfail(Reply::policy_failure())],
    }
}

fn logs(plugin: &LoadedPlugin) -> Vec<String> {
    plugin
        .take_logs()
        .into_iter()
        .map(|(level, text)| format!("{level}: {text}"))
        .collect()
}
