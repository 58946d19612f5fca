//! The policy plugins in the session: the state a session keeps for them,
//! and the call sites of the early hooks (connect, helo, auth, mail-from,
//! rcpt-to). The end of the message (data, route) is delivery's
//! (`mailgate_delivery::Room`).
//!
//! # Which chain
//! The chain serving at connect answers `connect`, `helo` and `auth`; each
//! MAIL FROM takes the chain serving then for its whole transaction
//! (`mail-from`, `rcpt-to`, `data`, `route`), so a reload never changes
//! the plugins in the middle of a transaction.
//!
//! # Cost
//! Without `SmtpContext::policy` none of this runs: no snapshot, no
//! argument is built. With a manager but no plugin wanting a hook, the
//! hook costs one `Chain::wants` check.
//!
//! # Verdicts before the end of the message
//! Reject and tempfail answer the command (at connect: the greeting, then
//! the connection closes). Discard and quarantine cannot drop anything
//! yet: they mark the session (connect, helo, auth) or the transaction
//! (mail-from, rcpt-to), and the message is dropped or quarantined once
//! received, after a normal `250`.

use std::sync::Arc;

use mailgate_delivery::{recipient_info, Hold, LocalRecipient, TxPolicy};
use mailgate_policy::{AuthAttempt, Chain, Hook, Param, SessionInfo, Verdict};
use mailgate_smtp_proto::{Body, EnhancedCode, MailParams, RcptParams, Reply, Ret, ReversePath};

use crate::cmd::{notify_text, orcpt_text};

use crate::context::{Role, TlsMode};
use crate::session::{Session, Transaction};

/// What a session keeps for the plugins, from connect on.
pub(crate) struct SessionPolicy {
    /// The chain for connect, helo and auth.
    chain: Arc<Chain>,
    /// A discard or quarantine decided at connect, helo or auth.
    pub(crate) hold: Option<Hold>,
}

/// The policy reply for a refusal, as an SMTP reply.
pub(crate) fn smtp_reply(r: &mailgate_policy::Reply) -> Reply {
    let enhanced = parse_enhanced(&r.enhanced);
    Reply::new(r.code, enhanced, r.text.clone())
}

fn parse_enhanced(s: &str) -> Option<EnhancedCode> {
    let mut parts = s.split('.').map(|p| p.parse::<u16>().ok());
    let (Some(Some(class)), Some(Some(subject)), Some(Some(detail)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(EnhancedCode::new(
        u8::try_from(class).ok()?,
        subject,
        detail,
    ))
}

fn mail_params(p: &MailParams) -> Vec<Param> {
    let param = |name: &str, value: Option<String>| Param {
        name: name.into(),
        value,
    };
    let mut out = Vec::new();
    if let Some(size) = p.size {
        out.push(param("SIZE", Some(size.to_string())));
    }
    if let Some(body) = p.body {
        // As written on the wire (RFC 6152, RFC 3030).
        let value = match body {
            Body::SevenBit => "7BIT",
            Body::EightBitMime => "8BITMIME",
            Body::BinaryMime => "BINARYMIME",
        };
        out.push(param("BODY", Some(value.into())));
    }
    if p.smtputf8 {
        out.push(param("SMTPUTF8", None));
    }
    if let Some(ret) = p.ret {
        let value = match ret {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        };
        out.push(param("RET", Some(value.into())));
    }
    if let Some(envid) = &p.envid {
        out.push(param("ENVID", Some(envid.clone())));
    }
    if let Some(auth) = &p.auth {
        out.push(param("AUTH", Some(auth.clone())));
    }
    out
}

/// The RCPT parameters as written on the wire (RFC 3461 §4.1, §4.2).
fn rcpt_params(p: &RcptParams) -> Vec<Param> {
    let mut out = Vec::new();
    if let Some(notify) = p.notify {
        out.push(Param {
            name: "NOTIFY".into(),
            value: Some(notify_text(notify)),
        });
    }
    if let Some(orcpt) = &p.orcpt {
        out.push(Param {
            name: "ORCPT".into(),
            value: Some(orcpt_text(orcpt)),
        });
    }
    out
}

impl Session {
    /// The connection as the hooks see it.
    pub(crate) fn session_info(&self) -> SessionInfo {
        let listener = match (self.ctx.role, &self.ctx.tls) {
            (Role::Lmtp, _) => "lmtp",
            (Role::Mx, _) => "mx",
            (Role::Submission, TlsMode::Implicit(_)) => "submissions",
            (Role::Submission, _) => "submission",
        };
        SessionInfo {
            client_ip: self.peer.ip(),
            client_port: self.peer.port(),
            reverse_name: self.reverse.name().map(str::to_string),
            tls: self.tls,
            helo: self.hello.as_ref().map(|h| h.name.clone()),
            auth_user: self.user.as_ref().map(|u| u.address.clone()),
            listener: listener.into(),
            // The id in the `smtp{session=...}` span of our log lines.
            session_id: self.id.clone(),
        }
    }

    /// Hook `connect`, before the greeting: `Some(reply)` refuses the
    /// connection (the caller sends it and closes).
    pub(crate) async fn policy_connect(&mut self) -> Option<Reply> {
        let manager = self.ctx.policy.clone()?;
        let chain = manager.snapshot();
        self.policy = Some(SessionPolicy {
            chain: chain.clone(),
            hold: None,
        });
        if !chain.wants(Hook::Connect) {
            return None;
        }
        self.reverse.settle().await;
        let decision = chain.connect(&self.session_info()).await;
        self.session_verdict(Hook::Connect, decision.verdict, decision.by)
    }

    /// Hook `helo`, after the host accepted HELO/EHLO (`self.hello` set):
    /// `Some(reply)` refuses the command.
    pub(crate) async fn policy_helo(&mut self) -> Option<Reply> {
        let chain = self.policy.as_ref()?.chain.clone();
        if !chain.wants(Hook::Helo) {
            return None;
        }
        let decision = chain.helo(&self.session_info()).await;
        self.session_verdict(Hook::Helo, decision.verdict, decision.by)
    }

    /// Hook `auth`, after the host checked the credentials (the account
    /// is not yet set): `Some(reply)` refuses the login.
    pub(crate) async fn policy_auth(
        &mut self,
        mechanism: &str,
        user: &str,
        success: bool,
    ) -> Option<Reply> {
        let chain = self.policy.as_ref()?.chain.clone();
        if !chain.wants(Hook::Auth) {
            return None;
        }
        let attempt = AuthAttempt {
            mechanism: mechanism.into(),
            user: user.into(),
            success,
        };
        let decision = chain.auth(&self.session_info(), &attempt).await;
        self.session_verdict(Hook::Auth, decision.verdict, decision.by)
    }

    /// A verdict of connect, helo or auth: refusals become the reply,
    /// holds stick to the session.
    fn session_verdict(
        &mut self,
        hook: Hook,
        verdict: Verdict,
        by: Option<String>,
    ) -> Option<Reply> {
        let client = self.peer.ip();
        let by = by.unwrap_or_default();
        if let Some(r) = verdict.reply() {
            tracing::info!(%client, %hook, plugin = %by, reply = %r, "smtp: refused by policy");
            return Some(smtp_reply(r));
        }
        if let (Some(hold), Some(p)) = (Hold::of(&verdict), self.policy.as_mut()) {
            let (action, reason) = match &hold {
                Hold::Discard => ("discard", ""),
                Hold::Quarantine(why) => ("quarantine", why.as_str()),
            };
            tracing::info!(%client, %hook, plugin = %by, action, reason, "smtp: session held by policy");
            p.hold = Hold::merge(p.hold.take(), Some(hold));
        }
        None
    }

    /// Hook `mail-from`, after the host's checks: takes the chain for the
    /// transaction. `Err(reply)` refuses MAIL; `Ok(None)` when no plugin
    /// is loaded (the transaction then runs without policy).
    pub(crate) async fn policy_mail(
        &mut self,
        from: &ReversePath,
        params: &MailParams,
    ) -> Result<Option<TxPolicy>, Reply> {
        let Some(manager) = self.ctx.policy.clone() else {
            return Ok(None);
        };
        let chain = manager.snapshot();
        let session_hold = self.policy.as_ref().and_then(|p| p.hold.clone());
        if chain.plugins().is_empty() && session_hold.is_none() {
            return Ok(None);
        }
        let mut tx = TxPolicy {
            mail_params: mail_params(params),
            chain: chain.clone(),
            params: Vec::new(),
            hold: session_hold,
        };
        if chain.wants(Hook::MailFrom) {
            let envelope = mailgate_delivery::Envelope {
                mail_from: from.address(),
                ..Default::default()
            };
            let d = chain
                .mail_from(&self.session_info(), &envelope.for_plugins(&tx.mail_params))
                .await;
            if let Some(r) = d.verdict.reply() {
                tracing::info!(client = %self.peer.ip(), hook = "mail-from", plugin = d.by.as_deref().unwrap_or(""), reply = %r, "smtp: refused by policy");
                return Err(smtp_reply(r));
            }
            tx.hold = Hold::merge(tx.hold, Hold::of(&d.verdict));
        }
        Ok(Some(tx))
    }

    /// Hook `rcpt-to`, for a recipient that passed the host's checks
    /// (`local` if it is ours). `Err(reply)` refuses this recipient;
    /// recipients the plugins added or removed are applied to the
    /// transaction here, checked as RCPT TO would check them.
    pub(crate) async fn policy_rcpt(
        &mut self,
        address: &str,
        params: &RcptParams,
        local: Option<&LocalRecipient>,
    ) -> Result<(), Reply> {
        let Some(mut tx) = self.tx.take() else {
            return Ok(());
        };
        let result = self.policy_rcpt_in(&mut tx, address, params, local).await;
        self.tx = Some(tx);
        result
    }

    async fn policy_rcpt_in(
        &self,
        tx: &mut Transaction,
        address: &str,
        params: &RcptParams,
        local: Option<&LocalRecipient>,
    ) -> Result<(), Reply> {
        let Some(p) = tx.policy.as_mut() else {
            return Ok(());
        };
        let params = rcpt_params(params);
        p.params.retain(|(a, _)| a != address);
        p.params.push((address.to_string(), params.clone()));
        let chain = p.chain.clone();
        if !chain.wants(Hook::RcptTo) {
            return Ok(());
        }
        let info = recipient_info(address, params, local);
        let session = self.session_info();
        // The recipients so far (this one is added after the hook).
        let mut penv = tx.envelope.for_plugins(&p.mail_params);
        let before = penv.recipients.clone();
        let d = chain.rcpt_to(&session, &mut penv, &info).await;
        if let Some(r) = d.verdict.reply() {
            tracing::info!(client = %self.peer.ip(), hook = "rcpt-to", rcpt = %address, plugin = d.by.as_deref().unwrap_or(""), reply = %r, "smtp: recipient refused by policy");
            return Err(smtp_reply(r));
        }
        p.hold = Hold::merge(p.hold.take(), Hold::of(&d.verdict));
        let mut after = penv.recipients;
        if !after.iter().any(|r| r == address) {
            after.push(address.to_string());
        }
        let outbound = self.ctx.outbound.is_some();
        tx.envelope
            .apply_edits(&self.ctx.delivery, outbound, &before, &after, address)
            .await
            .map_err(|why| crate::cmd::refusal_reply(&why, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_smtp_proto::{Notify, Orcpt};

    #[test]
    fn plugins_see_parameters_as_written_on_the_wire() {
        let mail = MailParams {
            body: Some(Body::EightBitMime),
            ret: Some(Ret::Hdrs),
            ..MailParams::default()
        };
        let values: Vec<_> = mail_params(&mail)
            .into_iter()
            .map(|p| (p.name, p.value.unwrap_or_default()))
            .collect();
        assert_eq!(
            values,
            [
                ("BODY".into(), "8BITMIME".into()),
                ("RET".into(), "HDRS".into())
            ]
        );
        let rcpt = RcptParams {
            notify: Some(Notify::On {
                success: true,
                failure: false,
                delay: true,
            }),
            orcpt: Some(Orcpt {
                addr_type: "rfc822".into(),
                address: "a+2Bb@example.org".into(),
            }),
        };
        let values: Vec<_> = rcpt_params(&rcpt)
            .into_iter()
            .map(|p| p.value.unwrap_or_default())
            .collect();
        assert_eq!(values, ["SUCCESS,DELAY", "rfc822;a+2Bb@example.org"]);
    }
}
