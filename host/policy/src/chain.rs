//! [`Chain`]: the plugins in config order, and what one stage of a session
//! asks of them.
//!
//! # Semantics
//! - Plugins run in file-name order; each sees the edits of those before it
//!   (recipients in the envelope, header edits in the message, the folder).
//! - The first verdict other than accept ends the chain (reject, tempfail,
//!   discard, quarantine). Edits that come with a reject or tempfail are
//!   dropped; with discard or quarantine they apply.
//! - A plugin that fails (trap, time-out, limit hit, invalid answer) counts
//!   as accept under `fail-open` and as `451 4.7.0` under `fail-closed`.
//! - A `Chain` is immutable: a reload builds a new one, and a session keeps
//!   the one it took (see [`crate::PolicyManager::snapshot`]).

use std::sync::Arc;

use crate::bindings::{self, on_route, RawOutcome};
use crate::config::FailureMode;
use crate::error::PluginFailure;
use crate::message::MessageView;
use crate::runtime::{Answer, Call, LoadedPlugin};
use crate::types::{
    AuthAttempt, Edit, Envelope, Hook, MailboxEvent, RecipientInfo, Reply, RouteAction,
    SessionInfo, Verdict,
};

/// Most edits one answer may carry.
pub const MAX_EDITS: usize = 100;
/// Longest header value a plugin may add (after unfolding).
pub const MAX_HEADER_VALUE: usize = 8 * 1024;
/// Most header bytes one answer may add.
pub const MAX_ADDED_HEADER_BYTES: usize = 64 * 1024;
/// Longest run without a space in an added value (it could not be folded
/// under the 998-byte line limit).
pub const MAX_UNFOLDABLE_RUN: usize = 900;
/// Most actions in a route plan.
pub const MAX_ROUTE_ACTIONS: usize = 32;
/// Most addresses in one forward action.
pub const MAX_FORWARD: usize = 100;

/// The verdict of a stage, and which plugin ended the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Accept if every plugin accepted.
    pub verdict: Verdict,
    /// The plugin (file stem) whose verdict ended the chain.
    pub by: Option<String>,
}

impl Decision {
    fn accept() -> Decision {
        Decision {
            verdict: Verdict::Accept,
            by: None,
        }
    }
}

/// The verdict at end of data, with the folder the plugins chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDecision {
    /// The verdict.
    pub verdict: Verdict,
    /// The plugin that ended the chain.
    pub by: Option<String>,
    /// The last `set-folder` (for every local recipient), if any.
    pub folder: Option<String>,
}

/// Where one recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    /// The plan: `[Deliver(default)]` when no plugin changed it.
    pub actions: Vec<RouteAction>,
    /// The plugin whose reject/tempfail ended the chain.
    pub by: Option<String>,
}

/// The plugins of one configuration generation.
#[derive(Default)]
pub struct Chain {
    pub(crate) plugins: Vec<Arc<LoadedPlugin>>,
    pub(crate) generation: u64,
}

impl Chain {
    /// A chain without plugins (every stage accepts at once).
    pub fn empty() -> Chain {
        Chain::default()
    }

    /// Increases with every reload that changed something.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The plugins, in order.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// Whether any plugin wants `hook` (callers may skip building
    /// arguments when not).
    pub fn wants(&self, hook: Hook) -> bool {
        self.plugins.iter().any(|p| p.wants(hook))
    }

    /// A user filed `message` into or out of Junk (hook `mailbox-event`):
    /// every plugin that wants the hook is told, in order, whatever the
    /// others answered. Returns the plugins (file stems) whose call failed
    /// or answered an error, which are logged here at WARN; nothing else
    /// follows from a failure. Callers run this off the IMAP session's
    /// path (after its reply).
    pub async fn mailbox_event(
        &self,
        event: &MailboxEvent,
        message: Arc<MessageView>,
    ) -> Vec<String> {
        let e: bindings::on_mailbox_event::Event = event.into();
        let mut failed = Vec::new();
        for p in self.plugins.iter().filter(|p| p.wants(Hook::MailboxEvent)) {
            match p.call(Call::MailboxEvent(e.clone(), message.clone())).await {
                Ok(Answer::Done(Ok(()))) => {}
                Ok(Answer::Done(Err(why))) => {
                    let why: String = why
                        .chars()
                        .take(400)
                        .map(|c| if c.is_control() { '?' } else { c })
                        .collect();
                    tracing::warn!(
                        plugin = %p.name(),
                        direction = event.direction.name(),
                        "plugin mailbox-event answered an error: {why}"
                    );
                    failed.push(p.name().to_string());
                }
                // Already logged by the call.
                Ok(_) | Err(_) => failed.push(p.name().to_string()),
            }
        }
        failed
    }

    /// A client connected.
    pub async fn connect(&self, session: &SessionInfo) -> Decision {
        let s: bindings::mailgate::policy::types::Session = session.into();
        self.simple(Hook::Connect, || Call::Connect(s.clone()))
            .await
    }

    /// HELO/EHLO (`session.helo` set).
    pub async fn helo(&self, session: &SessionInfo) -> Decision {
        let s: bindings::mailgate::policy::types::Session = session.into();
        self.simple(Hook::Helo, || Call::Helo(s.clone())).await
    }

    /// An AUTH attempt ended.
    pub async fn auth(&self, session: &SessionInfo, attempt: &AuthAttempt) -> Decision {
        let s: bindings::mailgate::policy::types::Session = session.into();
        let a: bindings::mailgate::policy::types::AuthAttempt = attempt.into();
        self.simple(Hook::Auth, || Call::Auth(s.clone(), a.clone()))
            .await
    }

    /// MAIL FROM was accepted by the host.
    pub async fn mail_from(&self, session: &SessionInfo, envelope: &Envelope) -> Decision {
        let s: bindings::mailgate::policy::types::Session = session.into();
        let e: bindings::mailgate::policy::types::Envelope = envelope.into();
        self.simple(Hook::MailFrom, || Call::MailFrom(s.clone(), e.clone()))
            .await
    }

    /// Calls a hook whose edits are ignored, in order, until one plugin's
    /// verdict ends the chain.
    async fn simple(&self, hook: Hook, args: impl Fn() -> Call) -> Decision {
        for p in self.plugins.iter().filter(|p| p.wants(hook)) {
            let out = outcome(p, p.call(args()).await);
            if !out.edits.is_empty() {
                tracing::debug!(plugin = p.name(), %hook, "edits ignored at this hook");
            }
            if out.verdict.ends_chain() {
                return Decision {
                    verdict: out.verdict,
                    by: Some(p.name().to_string()),
                };
            }
        }
        Decision::accept()
    }

    /// One RCPT TO that passed the host's checks. Recipient edits are
    /// applied to `envelope` (the host must check added recipients as it
    /// checks RCPT TO). A reject refuses this recipient only; the host adds
    /// it to `envelope.recipients` itself when the verdict is accept.
    pub async fn rcpt_to(
        &self,
        session: &SessionInfo,
        envelope: &mut Envelope,
        recipient: &RecipientInfo,
    ) -> Decision {
        let s: bindings::mailgate::policy::types::Session = session.into();
        let r: bindings::mailgate::policy::types::Recipient = recipient.into();
        for p in self.plugins.iter().filter(|p| p.wants(Hook::RcptTo)) {
            let call = Call::RcptTo(s.clone(), (&*envelope).into(), r.clone());
            let mut out = outcome(p, p.call(call).await);
            if matches!(out.verdict, Verdict::Reject(_) | Verdict::Tempfail(_)) {
                return ended(p, out.verdict);
            }
            if let Err(why) = validate_edits(&out.edits) {
                out = outcome(p, Err(p.invalid_answer(Hook::RcptTo, why)));
                if out.verdict.ends_chain() {
                    return ended(p, out.verdict);
                }
            }
            apply_envelope_edits(envelope, &out.edits);
            if out.verdict.ends_chain() {
                return ended(p, out.verdict);
            }
        }
        Decision::accept()
    }

    /// The whole message: header edits are applied to `message`, recipient
    /// edits to `envelope`; the last `set-folder` is returned.
    pub async fn data(
        &self,
        session: &SessionInfo,
        envelope: &mut Envelope,
        message: &mut MessageView,
    ) -> DataDecision {
        let s: bindings::mailgate::policy::types::Session = session.into();
        let mut folder = None;
        for p in self.plugins.iter().filter(|p| p.wants(Hook::Data)) {
            // Each plugin gets its own snapshot of the view (cheap: the body
            // is shared), so nothing it does can change what the host holds.
            let view = Arc::new(message.clone());
            let call = Call::Data(s.clone(), (&*envelope).into(), view);
            let mut out = outcome(p, p.call(call).await);
            if matches!(out.verdict, Verdict::Reject(_) | Verdict::Tempfail(_)) {
                return DataDecision {
                    verdict: out.verdict,
                    by: Some(p.name().to_string()),
                    folder,
                };
            }
            if let Err(why) = validate_edits(&out.edits) {
                out = outcome(p, Err(p.invalid_answer(Hook::Data, why)));
            }
            for edit in &out.edits {
                match edit {
                    Edit::AddHeader(n, v) => message.add_header(n, v),
                    Edit::RemoveHeader(n) => message.remove_header(n),
                    Edit::ReplaceHeader(n, v) => {
                        message.remove_header(n);
                        message.add_header(n, v);
                    }
                    Edit::SetFolder(f) => folder = Some(f.clone()),
                    Edit::AddRecipient(_) | Edit::RemoveRecipient(_) => {}
                }
            }
            apply_envelope_edits(envelope, &out.edits);
            if out.verdict.ends_chain() {
                return DataDecision {
                    verdict: out.verdict,
                    by: Some(p.name().to_string()),
                    folder,
                };
            }
        }
        DataDecision {
            verdict: Verdict::Accept,
            by: None,
            folder,
        }
    }

    /// Where `recipient`'s copy goes, after `data` accepted. Call once per
    /// recipient with the message as `data` left it.
    pub async fn route(
        &self,
        session: &SessionInfo,
        envelope: &Envelope,
        recipient: &RecipientInfo,
        message: &MessageView,
    ) -> RouteDecision {
        let mut plan = vec![RouteAction::Deliver(Default::default())];
        if !self.wants(Hook::Route) {
            return RouteDecision {
                actions: plan,
                by: None,
            };
        }
        let s: bindings::mailgate::policy::types::Session = session.into();
        let e: bindings::mailgate::policy::types::Envelope = envelope.into();
        let r: bindings::mailgate::policy::types::Recipient = recipient.into();
        let view = Arc::new(message.clone());
        for p in self.plugins.iter().filter(|p| p.wants(Hook::Route)) {
            let current: Vec<on_route::Action> = plan.iter().map(Into::into).collect();
            let call = Call::Route(s.clone(), e.clone(), r.clone(), view.clone(), current);
            let answer = match p.call(call).await {
                Ok(Answer::Route(new)) => new.map(|actions| {
                    let actions: Vec<RouteAction> = actions.into_iter().map(Into::into).collect();
                    match validate_plan(&actions) {
                        Ok(()) => Ok(actions),
                        Err(why) => Err(p.invalid_answer(Hook::Route, why)),
                    }
                }),
                Ok(_) => Some(Err(
                    p.invalid_answer(Hook::Route, "wrong answer type".into())
                )),
                Err(f) => Some(Err(f)),
            };
            match answer {
                None => {}
                Some(Ok(actions)) => plan = actions,
                Some(Err(_)) => match p.failure_mode() {
                    FailureMode::FailOpen => {}
                    FailureMode::FailClosed => {
                        plan = vec![RouteAction::Tempfail(Reply::policy_failure())]
                    }
                },
            }
            if plan
                .iter()
                .any(|a| matches!(a, RouteAction::Reject(_) | RouteAction::Tempfail(_)))
            {
                return RouteDecision {
                    actions: plan,
                    by: Some(p.name().to_string()),
                };
            }
        }
        RouteDecision {
            actions: plan,
            by: None,
        }
    }
}

fn ended(p: &LoadedPlugin, verdict: Verdict) -> Decision {
    Decision {
        verdict,
        by: Some(p.name().to_string()),
    }
}

/// A call's answer as an outcome, the failure mode applied to failures.
fn outcome(p: &LoadedPlugin, answer: Result<Answer, PluginFailure>) -> RawOutcome {
    match answer {
        Ok(Answer::Outcome(o)) => o.into(),
        Ok(_) | Err(_) => match p.failure_mode() {
            FailureMode::FailOpen => RawOutcome {
                verdict: Verdict::Accept,
                edits: Vec::new(),
            },
            FailureMode::FailClosed => RawOutcome {
                verdict: Verdict::Tempfail(Reply::policy_failure()),
                edits: Vec::new(),
            },
        },
    }
}

fn apply_envelope_edits(envelope: &mut Envelope, edits: &[Edit]) {
    for edit in edits {
        match edit {
            Edit::AddRecipient(a) => {
                let a = a.to_lowercase();
                if !envelope.recipients.contains(&a) {
                    envelope.recipients.push(a);
                }
            }
            Edit::RemoveRecipient(a) => envelope.recipients.retain(|r| !r.eq_ignore_ascii_case(a)),
            _ => {}
        }
    }
}

fn valid_header_name(n: &str) -> bool {
    (1..=76).contains(&n.len()) && n.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// An address a plugin may add or forward to: `local@domain`, no spaces,
/// brackets or control characters, at most 254 bytes.
pub fn valid_address(a: &str) -> bool {
    a.len() <= 254
        && a.rfind('@').is_some_and(|i| i > 0 && i + 1 < a.len())
        && !a
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ',' | '"'))
}

fn valid_folder(f: &str) -> bool {
    (1..=255).contains(&f.len()) && !f.chars().any(|c| c.is_control())
}

/// Checks a plugin's edits against the limits above.
pub(crate) fn validate_edits(edits: &[Edit]) -> Result<(), String> {
    if edits.len() > MAX_EDITS {
        return Err(format!("{} edits (at most {MAX_EDITS})", edits.len()));
    }
    let mut added = 0usize;
    for edit in edits {
        match edit {
            Edit::AddHeader(n, v) | Edit::ReplaceHeader(n, v) => {
                if !valid_header_name(n) {
                    return Err(format!("invalid header name {:?}", truncate(n)));
                }
                if v.len() > MAX_HEADER_VALUE {
                    return Err(format!(
                        "header {n}: value of {} bytes (at most {MAX_HEADER_VALUE})",
                        v.len()
                    ));
                }
                if v.chars().any(|c| c.is_control() && c != '\t') {
                    return Err(format!("header {n}: control characters in value"));
                }
                if v.split(' ').any(|w| w.len() > MAX_UNFOLDABLE_RUN) {
                    return Err(format!("header {n}: value cannot be folded"));
                }
                added += n.len() + v.len() + 4;
                if added > MAX_ADDED_HEADER_BYTES {
                    return Err(format!(
                        "more than {MAX_ADDED_HEADER_BYTES} header bytes added"
                    ));
                }
            }
            Edit::RemoveHeader(n) => {
                if !valid_header_name(n) {
                    return Err(format!("invalid header name {:?}", truncate(n)));
                }
            }
            Edit::AddRecipient(a) | Edit::RemoveRecipient(a) => {
                if !valid_address(a) {
                    return Err(format!("invalid address {:?}", truncate(a)));
                }
            }
            Edit::SetFolder(f) => {
                if !valid_folder(f) {
                    return Err(format!("invalid folder {:?}", truncate(f)));
                }
            }
        }
    }
    Ok(())
}

/// Checks a route plan.
pub(crate) fn validate_plan(plan: &[RouteAction]) -> Result<(), String> {
    if plan.len() > MAX_ROUTE_ACTIONS {
        return Err(format!(
            "{} actions (at most {MAX_ROUTE_ACTIONS})",
            plan.len()
        ));
    }
    for a in plan {
        match a {
            RouteAction::Deliver(d) => {
                if let Some(acc) = &d.account {
                    if !valid_address(acc) {
                        return Err(format!("invalid account {:?}", truncate(acc)));
                    }
                }
                if let Some(f) = &d.folder {
                    if !valid_folder(f) {
                        return Err(format!("invalid folder {:?}", truncate(f)));
                    }
                }
                if d.flags.len() > 32 || d.flags.iter().any(|f| !valid_header_name(f)) {
                    return Err("invalid flags".into());
                }
            }
            RouteAction::Forward(to) => {
                if to.is_empty() || to.len() > MAX_FORWARD || !to.iter().all(|t| valid_address(t)) {
                    return Err("invalid forward addresses".into());
                }
            }
            RouteAction::Relay(h) => {
                if h.is_empty()
                    || h.len() > 261
                    || h.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(format!("invalid relay host {:?}", truncate(h)));
                }
            }
            RouteAction::Quarantine(r) => {
                if r.len() > 1024 {
                    return Err("quarantine reason too long".into());
                }
            }
            RouteAction::Discard | RouteAction::Reject(_) | RouteAction::Tempfail(_) => {}
        }
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_are_bounded() {
        assert!(validate_edits(&[Edit::AddHeader("X-Ok".into(), "fine value".into())]).is_ok());
        assert!(validate_edits(&[Edit::AddHeader("Bad Name".into(), "v".into())]).is_err());
        assert!(validate_edits(&[Edit::AddHeader("X".into(), "a\r\nInjected: 1".into())]).is_err());
        assert!(validate_edits(&[Edit::AddHeader("X".into(), "A".repeat(1000))]).is_err());
        assert!(validate_edits(&[Edit::AddHeader(
            "X".into(),
            "A".repeat(MAX_HEADER_VALUE + 1)
        )])
        .is_err());
        let many = vec![Edit::RemoveHeader("X".into()); MAX_EDITS + 1];
        assert!(validate_edits(&many).is_err());
        assert!(validate_edits(&[Edit::AddRecipient("no-at-sign".into())]).is_err());
        assert!(validate_edits(&[Edit::AddRecipient("a@b.example".into())]).is_ok());
        assert!(validate_edits(&[Edit::SetFolder("".into())]).is_err());
    }

    #[test]
    fn envelope_edits() {
        let mut e = Envelope {
            recipients: vec!["a@x".into()],
            ..Default::default()
        };
        apply_envelope_edits(
            &mut e,
            &[
                Edit::AddRecipient("B@x".into()),
                Edit::AddRecipient("b@x".into()),
                Edit::RemoveRecipient("A@X".into()),
            ],
        );
        assert_eq!(e.recipients, vec!["b@x"]);
    }
}
