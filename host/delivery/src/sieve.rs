//! Users' Sieve scripts at delivery (docs/sieve.md, *At delivery*).
//!
//! After the operator's plugins planned the message, each local account
//! among the copies that has an active script gets it run once, in the
//! system Sieve plugin ([`mailgate_policy::SieveFilter`], the wasm
//! sandbox). The plugin only answers with actions; this module carries
//! them out in the room:
//! - `keep` / `fileinto`: the account's copies become one per folder with
//!   the script's flags; `fileinto` without `:create` into a missing folder
//!   keeps the copy in INBOX instead (logged as an error);
//! - `discard`: no copy for the account;
//! - `redirect`: one outbound queue entry (the sender kept, or rewritten
//!   with SRS, `crate::srs`, when its domain is not local);
//! - `reject` / `ereject`: with one envelope recipient reaching one account,
//!   the message is refused at SMTP time (`550 5.7.1` with the reason);
//!   otherwise a non-delivery report goes to the sender;
//! - `vacation`: an auto-reply from `<>` through the outbound queue,
//!   unless [`mailgate_sieve::vacation::should_reply`] says no or one went
//!   to that sender within the period ([`SieveMemory`]);
//! - `addheader` / `deleteheader` (`editheader`): applied, in the script's
//!   order, to this account's copies and redirects only
//!   ([`MessageView::apply_sieve_edit`], the view plugins' edits use): the
//!   copies of the actions after an edit carry their own message.
//!
//! The time zone of `currentdate` and of `date` without `:zone` is the
//! server's (`TZ`, else `/etc/localtime`, as Pigeonhole), unless `[sieve]
//! time_zone` fixes one ([`SieveDelivery::time_zone`]).
//!
//! A failing script (compile error, limit, runtime error, the sandbox
//! stopping it) never loses the message: the copies stay as planned (the
//! implicit keep), the failure is logged, and the user gets one report
//! message in INBOX per version of the script.

use std::sync::Arc;

use async_trait::async_trait;
use mailgate_policy::{
    MessageView, NamedScript, Reply, SieveAction, SieveError, SieveFilter, SieveHeaderEdit,
    SieveRequest, SieveVacation,
};
use mailgate_sieve::vacation::{default_subject, should_reply};
use mailgate_store::queue::{NewQueued, NewQueuedRecipient};
use mailgate_store::{AccountId, DeliveryTarget, SieveMemory, StoreResult};

use crate::plan::{Copy, QUARANTINE_FOLDER};
use crate::room::Replies;
use crate::{Envelope, Refusal};

/// Where an account's scripts come from (the store's Sieve scripts).
#[async_trait]
pub trait ScriptSource: Send + Sync {
    /// The active script: (name, text).
    async fn active(&self, account: AccountId) -> StoreResult<Option<(String, String)>>;
    /// Every script of the account: (name, text).
    async fn all(&self, account: AccountId) -> StoreResult<Vec<(String, String)>>;
}

/// What the room needs to run users' scripts.
pub struct SieveDelivery {
    /// The loaded system plugin.
    pub filter: Arc<SieveFilter>,
    /// The accounts' scripts.
    pub scripts: Arc<dyn ScriptSource>,
    /// Vacation, duplicate and failure-report memory.
    pub memory: Arc<dyn SieveMemory>,
    /// The interpreter's limits.
    pub settings: mailgate_sieve::Settings,
    /// The server's name (Message-IDs, the reports' `From:`).
    pub hostname: String,
    /// The administrator's scripts for `include :global` (`[sieve]
    /// global_dir`).
    pub global: Arc<Vec<NamedScript>>,
    /// The zone of `currentdate` and of `date` without `:zone`, minutes
    /// east of UTC; `None`: the server's local zone at the time of each
    /// delivery ([`local_zone`]).
    pub time_zone: Option<i32>,
}

/// The server's local zone at `now` (seconds since the epoch), minutes
/// east of UTC: `TZ`, else `/etc/localtime` (read by chrono); UTC when
/// neither gives one.
pub fn local_zone(now: i64) -> i32 {
    use chrono::{Offset, TimeZone};
    chrono::Local
        .timestamp_opt(now, 0)
        .single()
        .map_or(0, |t| t.offset().fix().local_minus_utc() / 60)
}

/// A message built once and shared by the copies and redirects that take it.
type SharedMessage = Arc<Vec<u8>>;

/// One account's message as its script's header edits left it, built
/// once per state of the edits (RFC 5293 section 3: each action sees the
/// edits made before it).
struct Edited<'a> {
    original: &'a Arc<MessageView>,
    view: Option<MessageView>,
    /// The message now, without and with `Return-Path:` (for the queue
    /// and for the store); reset by each edit.
    plain: Option<Arc<Vec<u8>>>,
    stored: Option<Arc<Vec<u8>>>,
}

impl<'a> Edited<'a> {
    fn new(original: &'a Arc<MessageView>) -> Edited<'a> {
        Edited {
            original,
            view: None,
            plain: None,
            stored: None,
        }
    }

    fn apply(&mut self, edit: &SieveHeaderEdit) -> bool {
        let view = self.view.get_or_insert_with(|| (**self.original).clone());
        let changed = view.apply_sieve_edit(edit);
        if changed {
            self.plain = None;
            self.stored = None;
        }
        changed
    }

    /// The edited message for the queue; `None` while unedited.
    fn plain(&mut self) -> Option<Arc<Vec<u8>>> {
        let view = self.view.as_ref().filter(|v| v.is_edited())?;
        Some(
            self.plain
                .get_or_insert_with(|| {
                    let mut out = Vec::new();
                    view.write_to(&mut out);
                    Arc::new(out)
                })
                .clone(),
        )
    }

    /// The edited message for the store (`Return-Path:` first); `None`
    /// while unedited.
    fn stored(&mut self, mail_from: &str) -> Option<Arc<Vec<u8>>> {
        let view = self.view.as_ref().filter(|v| v.is_edited())?;
        Some(
            self.stored
                .get_or_insert_with(|| {
                    let mut out = crate::return_path(mail_from).into_bytes();
                    view.write_to(&mut out);
                    Arc::new(out)
                })
                .clone(),
        )
    }
}

/// What a run leaves to do once the copies are stored.
#[derive(Default)]
pub(crate) struct Afterwards {
    /// Messages for the outbound queue (redirects, vacation replies,
    /// non-delivery reports of `reject`).
    pub(crate) queue: Vec<(String, NewQueued)>,
    /// Failure reports for INBOXes: (account, message).
    pub(crate) reports: Vec<(AccountId, Vec<u8>)>,
}

/// The envelope sender a redirected copy goes out with: a sender in
/// another domain is rewritten with SRS (so that SPF at the next hop sees
/// our domain, and a bounce comes back to us); a local one, `<>`, or no
/// SRS configured keeps the sender.
pub(crate) fn forward_sender(
    srs: Option<&crate::srs::Srs>,
    sender: &str,
    sender_is_local: bool,
) -> String {
    match srs {
        Some(srs) if !sender_is_local && !sender.is_empty() => srs.forward(sender),
        _ => sender.to_string(),
    }
}

/// A reason or subject made safe for one line of a reply or a header:
/// printable ASCII (others become `?`), at most `max` bytes.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.len() >= max {
            break;
        }
        out.push(match c {
            ' '..='~' => c,
            '\t' | '\r' | '\n' => ' ',
            _ => '?',
        });
    }
    let collapsed: Vec<&str> = out.split_whitespace().collect();
    collapsed.join(" ")
}

/// A header value as RFC 2047 encoded words when it is not ASCII.
fn header_text(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim().to_string();
    if line.is_ascii() {
        return line;
    }
    use base64::Engine;
    let mut out = Vec::new();
    let mut chunk = String::new();
    for c in line.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            out.push(format!(
                "=?utf-8?b?{}?=",
                base64::engine::general_purpose::STANDARD.encode(&chunk)
            ));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        out.push(format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(&chunk)
        ));
    }
    out.join("\r\n ")
}

fn message_id(hostname: &str) -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!(
        "<sieve.{}.{n:016x}@{hostname}>",
        chrono::Utc::now().timestamp()
    )
}

fn version_of(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The first value of header `name` in a header block.
fn first_header(head: &[(String, String)], name: &str) -> Option<String> {
    head.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.replace("\r\n", "").trim().to_string())
}

/// One account whose script runs.
struct Target {
    account: AccountId,
    address: String,
    owner: String,
    /// The planned copy's folder (INBOX, or an operator plugin's).
    folder: String,
    flags: Vec<String>,
    limit: Option<crate::Limit>,
}

impl crate::Room {
    /// Runs the scripts of the accounts among `copies` and returns the
    /// new copies. `Err` refuses the whole message (an `ereject`/`reject`
    /// at SMTP time); `refused` gets per-recipient refusals (LMTP).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_sieve(
        &self,
        sieve: &SieveDelivery,
        id: &str,
        envelope: &Envelope,
        replies: Replies,
        copies: Vec<Copy>,
        message: &[u8],
        refused: &mut Vec<(String, Refusal)>,
        after: &mut Afterwards,
    ) -> Result<Vec<Copy>, Refusal> {
        let store = self.delivery.store().clone();
        // Accounts, in order, with their first planned copy.
        let mut targets: Vec<Target> = Vec::new();
        for c in &copies {
            if c.target.mailbox == QUARANTINE_FOLDER
                || targets.iter().any(|t| t.account == c.target.account)
            {
                continue;
            }
            targets.push(Target {
                account: c.target.account,
                address: String::new(),
                owner: c.owner.clone(),
                folder: c.target.mailbox.clone(),
                flags: c.target.flags.clone(),
                limit: c.limit.clone(),
            });
        }
        let mut out: Vec<Copy> = Vec::with_capacity(copies.len());
        let mut done: Vec<AccountId> = Vec::new();
        let mut view: Option<Arc<MessageView>> = None;
        let settings_json = serde_json::to_string(&sieve.settings).unwrap_or_default();
        let head_len = mailgate_store::structure::header_block_len(message);
        let head = mailgate_sieve::MessageData::new(message[..head_len].to_vec());
        let one_recipient = envelope.recipients.len() == 1
            && envelope.recipients[0]
                .local
                .as_ref()
                .is_some_and(|l| l.accounts.len() == 1);
        for mut t in targets {
            let script = match sieve.scripts.active(t.account).await {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(queue_id = %id, account = t.account, error = %e, "sieve: cannot read the active script; message kept");
                    continue;
                }
            };
            t.address = match store.account_by_id(t.account).await {
                Ok(Some(a)) => a.address,
                _ => continue,
            };
            let now = chrono::Utc::now().timestamp();
            let mailboxes = match store.list_mailboxes(t.account).await {
                Ok(list) => list.into_iter().map(|m| m.name).collect(),
                Err(_) => Vec::new(),
            };
            let personal = if script.1.contains("include") {
                sieve
                    .scripts
                    .all(t.account)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, text)| NamedScript { name, text })
                    .collect()
            } else {
                Vec::new()
            };
            let seen = if script.1.contains("duplicate") {
                sieve
                    .memory
                    .sieve_duplicates(t.account, now)
                    .await
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let request = SieveRequest {
                account: t.address.clone(),
                envelope_to: t.owner.clone(),
                envelope_from: envelope.mail_from.clone(),
                script: NamedScript {
                    name: script.0.clone(),
                    text: script.1.clone(),
                },
                personal,
                global: if script.1.contains("include") {
                    sieve.global.as_ref().clone()
                } else {
                    Vec::new()
                },
                mailboxes: mailboxes.clone(),
                seen,
                now,
                zone: sieve.time_zone.unwrap_or_else(|| local_zone(now)),
                settings: settings_json.clone(),
            };
            let v = view
                .get_or_insert_with(|| Arc::new(MessageView::new(message.to_vec())))
                .clone();
            let original = v.clone();
            let started = std::time::Instant::now();
            let response = match sieve.filter.run(request, v).await {
                Ok(r) => r,
                Err(e) => {
                    self.sieve_failed(sieve, id, &t, &script, &e, after).await;
                    continue;
                }
            };
            tracing::info!(queue_id = %id, account = %t.address, script = %mailgate_sieve::printable(&script.0), steps = response.steps, elapsed_us = started.elapsed().as_micros() as u64, actions = response.actions.len(), "sieve: script ran");
            if !response.duplicates.is_empty() {
                let keys: Vec<(String, u64)> = response
                    .duplicates
                    .iter()
                    .map(|d| (d.key.clone(), d.period))
                    .collect();
                if let Err(e) = sieve
                    .memory
                    .sieve_remember_duplicates(t.account, &keys, now)
                    .await
                {
                    tracing::warn!(queue_id = %id, account = %t.address, error = %e, "sieve: cannot record duplicate ids");
                }
            }
            done.push(t.account);
            let mut edited = Edited::new(&original);
            let copy = |mailbox: &str, flags: &[String], edited: Option<Arc<Vec<u8>>>| {
                let mut all = t.flags.clone();
                for f in flags {
                    if !all.iter().any(|a| a.eq_ignore_ascii_case(f)) {
                        all.push(f.clone());
                    }
                }
                Copy {
                    target: DeliveryTarget {
                        account: t.account,
                        mailbox: mailbox.to_string(),
                        flags: all,
                    },
                    owner: t.owner.clone(),
                    limit: t.limit.clone(),
                    edited,
                }
            };
            // Addresses, grouped by the message they get (edited or not).
            let mut redirects: Vec<(Option<SharedMessage>, Vec<String>)> = Vec::new();
            for action in response.actions {
                match action {
                    SieveAction::Keep(flags) => {
                        out.push(copy(&t.folder, &flags, edited.stored(&envelope.mail_from)))
                    }
                    SieveAction::FileInto {
                        mailbox,
                        create,
                        flags,
                    } => {
                        let exists =
                            mailbox.eq_ignore_ascii_case("INBOX") || mailboxes.contains(&mailbox);
                        if exists || create {
                            tracing::info!(queue_id = %id, account = %t.address, folder = %mailgate_sieve::printable(&mailbox), "sieve: fileinto");
                            out.push(copy(&mailbox, &flags, edited.stored(&envelope.mail_from)));
                        } else {
                            tracing::error!(queue_id = %id, account = %t.address, folder = %mailgate_sieve::printable(&mailbox), "sieve: fileinto a folder that does not exist (no :create); kept in INBOX");
                            out.push(copy("INBOX", &flags, edited.stored(&envelope.mail_from)));
                        }
                    }
                    SieveAction::Discard => {
                        tracing::info!(queue_id = %id, account = %t.address, "sieve: discarded");
                    }
                    SieveAction::Redirect(to) => {
                        let message = edited.plain();
                        let same = redirects.iter_mut().find(|(m, _)| match (m, &message) {
                            (None, None) => true,
                            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                            _ => false,
                        });
                        match same {
                            Some((_, list)) => list.push(to),
                            None => redirects.push((message, vec![to])),
                        }
                    }
                    SieveAction::EditHeader(edit) => {
                        if !sieve.settings.editheader {
                            tracing::warn!(queue_id = %id, account = %t.address, "sieve: header edit while [sieve] editheader is off; ignored");
                        } else if !edited.apply(&edit) {
                            tracing::info!(queue_id = %id, account = %t.address, "sieve: header edit refused (protected field, bad name or no such field)");
                        }
                    }
                    SieveAction::Reject { reason, extended } => {
                        let text = one_line(&reason, 200);
                        let reply = Reply {
                            code: 550,
                            enhanced: "5.7.1".into(),
                            text: if text.is_empty() {
                                "Rejected by the recipient's filter".into()
                            } else {
                                text
                            },
                        };
                        tracing::info!(queue_id = %id, account = %t.address, extended, reason = %reply.text, "sieve: rejected");
                        match replies {
                            Replies::One if one_recipient => {
                                return Err(Refusal::Policy(reply));
                            }
                            Replies::PerRecipient => {
                                refused.push((t.owner.clone(), Refusal::Policy(reply)));
                                out.retain(|c| c.target.account != t.account);
                            }
                            Replies::One => {
                                if let Some(dsn) = self.reject_report(
                                    sieve,
                                    envelope,
                                    &t.owner,
                                    &reply.text,
                                    &message[..head_len],
                                ) {
                                    after.queue.push(("reject report".into(), dsn));
                                }
                            }
                        }
                    }
                    SieveAction::Vacation(v) => {
                        self.vacation(sieve, id, envelope, &t, &v, &head, after)
                            .await;
                    }
                }
            }
            for (edited, to) in redirects {
                let raw = edited.as_deref().map_or(message, Vec::as_slice);
                self.redirect(id, envelope, &t, to, raw, after).await;
            }
        }
        for c in copies {
            if !done.contains(&c.target.account) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Logs a failed run and, once per script version, leaves a report for
    /// the user's INBOX. The planned copies stay (the message is kept).
    async fn sieve_failed(
        &self,
        sieve: &SieveDelivery,
        id: &str,
        t: &Target,
        script: &(String, String),
        error: &SieveError,
        after: &mut Afterwards,
    ) {
        let name = mailgate_sieve::printable(&script.0);
        let why = mailgate_sieve::printable(&error.to_string());
        tracing::warn!(queue_id = %id, account = %t.address, script = %name, error = %why, "sieve: the script failed; message kept");
        let version = version_of(&script.1);
        match sieve.memory.sieve_failure_is_new(t.account, &version).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(queue_id = %id, account = %t.address, error = %e, "sieve: cannot record the failure report");
                return;
            }
        }
        let text = format!(
            "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
             To: <{to}>\r\n\
             Subject: {subject}\r\n\
             Date: {date}\r\n\
             Message-ID: {mid}\r\n\
             Auto-Submitted: auto-generated\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             \r\n\
             Your active Sieve script \"{name}\" could not be run on a message\r\n\
             delivered to you:\r\n\
             \r\n    {why}\r\n\r\n\
             The message was kept in your INBOX, and so will every message be\r\n\
             while the script fails. Fix the script (your mail client's filter\r\n\
             settings, or ManageSieve) or deactivate it.\r\n\
             \r\n\
             This report is sent once for each version of the script.\r\n",
            host = sieve.hostname,
            to = t.address,
            subject = header_text(&format!("Your Sieve script \"{}\" failed", script.0)),
            date = chrono::Utc::now().to_rfc2822(),
            mid = message_id(&sieve.hostname),
        );
        after.reports.push((t.account, text.into_bytes()));
    }

    /// Stores the copies [`Self::run_sieve`] gave a message of their own
    /// (`editheader`): one store call per edited message, all of its
    /// copies at once. Returns, per message, the envelope recipients of
    /// its copies and the number stored or the error.
    pub(crate) async fn store_sieve_edited(
        &self,
        copies: &[Copy],
    ) -> Vec<(Vec<String>, StoreResult<usize>)> {
        let mut groups: Vec<(&Arc<Vec<u8>>, Vec<&Copy>)> = Vec::new();
        for c in copies {
            let Some(raw) = &c.edited else { continue };
            match groups.iter_mut().find(|(r, _)| Arc::ptr_eq(r, raw)) {
                Some((_, list)) => list.push(c),
                None => groups.push((raw, vec![c])),
            }
        }
        let mut out = Vec::with_capacity(groups.len());
        for (raw, list) in groups {
            let targets: Vec<DeliveryTarget> = list.iter().map(|c| c.target.clone()).collect();
            let mut owners: Vec<String> = Vec::new();
            for c in &list {
                if !owners.contains(&c.owner) {
                    owners.push(c.owner.clone());
                }
            }
            let stored = self
                .delivery
                .deliver_prepared(&targets, raw.clone())
                .await
                .map(|d| d.len());
            out.push((owners, stored));
        }
        out
    }

    /// Queues the redirected copies: one queue entry, sender kept or
    /// rewritten ([`forward_sender`]).
    async fn redirect(
        &self,
        id: &str,
        envelope: &Envelope,
        t: &Target,
        to: Vec<String>,
        message: &[u8],
        after: &mut Afterwards,
    ) {
        if self.outbound.is_none() {
            tracing::error!(queue_id = %id, account = %t.address, "sieve: redirect but there is no outbound queue; not sent");
            return;
        }
        let sender_local = match crate::split_address(&envelope.mail_from) {
            Some((_, domain)) => self
                .delivery
                .is_local_domain(&domain)
                .await
                .unwrap_or(false),
            None => true,
        };
        let sender = forward_sender(self.srs.as_deref(), &envelope.mail_from, sender_local);
        tracing::info!(queue_id = %id, account = %t.address, to = %mailgate_log::list(to.iter().map(String::as_str)), "sieve: redirected");
        let recipients = to
            .into_iter()
            .map(|address| NewQueuedRecipient {
                address,
                orcpt: Some(format!("rfc822;{}", t.owner)),
                notify: None,
                next_hop: None,
                local: None,
            })
            .collect::<Vec<_>>();
        let smtputf8 = !sender.is_ascii()
            || recipients.iter().any(|r| !r.address.is_ascii())
            || envelope.smtputf8;
        after.queue.push((
            "redirect".into(),
            NewQueued {
                msg_id: Some(id.to_string()),
                sender,
                recipients,
                raw: Arc::new(message.to_vec()),
                created: chrono::Utc::now().timestamp(),
                envid: None,
                ret_full: None,
                smtputf8,
                eight_bit: envelope.eight_bit || !message.is_ascii(),
            },
        ));
    }

    /// Queues a vacation reply if one is owed (RFC 5230 §4.5, RFC 3834).
    #[allow(clippy::too_many_arguments)]
    async fn vacation(
        &self,
        sieve: &SieveDelivery,
        id: &str,
        envelope: &Envelope,
        t: &Target,
        v: &SieveVacation,
        head: &mailgate_sieve::MessageData,
        after: &mut Afterwards,
    ) {
        let env = mailgate_sieve::Envelope {
            from: envelope.mail_from.clone(),
            to: t.owner.clone(),
        };
        let mut own = vec![t.address.clone()];
        own.extend(v.addresses.iter().cloned());
        if let Err(why) = should_reply(head, &env, &own) {
            tracing::info!(queue_id = %id, account = %t.address, reason = why.as_str(), "sieve: no vacation reply");
            return;
        }
        if self.outbound.is_none() {
            tracing::warn!(queue_id = %id, account = %t.address, "sieve: vacation reply but there is no outbound queue; not sent");
            return;
        }
        let now = chrono::Utc::now().timestamp();
        match sieve
            .memory
            .sieve_vacation_due(t.account, &envelope.mail_from, &v.handle, v.period, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(queue_id = %id, account = %t.address, "sieve: vacation reply already sent to this sender within the period");
                return;
            }
            Err(e) => {
                tracing::warn!(queue_id = %id, account = %t.address, error = %e, "sieve: cannot check the vacation memory; no reply");
                return;
            }
        }
        let headers = mailgate_sieve::Message::headers(head);
        let original_subject = first_header(&headers, "subject")
            .map(|s| mailgate_sieve::decode_header(&s))
            .unwrap_or_default();
        let subject = match &v.subject {
            Some(s) => s.clone(),
            None => default_subject(&original_subject),
        };
        let from = v
            .from
            .as_deref()
            .map(header_text)
            .unwrap_or_else(|| format!("<{}>", t.address));
        let mut text = format!(
            "From: {from}\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: {mid}\r\nAuto-Submitted: auto-replied (vacation)\r\n",
            to = envelope.mail_from,
            subject = header_text(&subject),
            date = chrono::Utc::now().to_rfc2822(),
            mid = message_id(&sieve.hostname),
        );
        if let Some(orig) = first_header(&headers, "message-id") {
            let orig = one_line(&orig, 900);
            let refs = first_header(&headers, "references")
                .map(|r| one_line(&r, 900))
                .unwrap_or_default();
            text.push_str(&format!("In-Reply-To: {orig}\r\n"));
            let refs = if refs.is_empty() {
                orig
            } else {
                format!("{refs} {orig}")
            };
            text.push_str(&format!("References: {refs}\r\n"));
        }
        text.push_str("MIME-Version: 1.0\r\n");
        if v.mime {
            // The reason is a MIME entity: its own header, then its body.
            text.push_str(&v.reason.replace("\r\n", "\n").replace('\n', "\r\n"));
        } else {
            text.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
            text.push_str(&v.reason.replace("\r\n", "\n").replace('\n', "\r\n"));
        }
        if !text.ends_with("\r\n") {
            text.push_str("\r\n");
        }
        tracing::info!(queue_id = %id, account = %t.address, to = %envelope.mail_from, "sieve: vacation reply queued");
        after.queue.push((
            "vacation reply".into(),
            NewQueued {
                msg_id: None,
                sender: String::new(),
                recipients: vec![NewQueuedRecipient::new(envelope.mail_from.clone())],
                eight_bit: !text.is_ascii(),
                raw: Arc::new(text.into_bytes()),
                created: now,
                envid: None,
                ret_full: None,
                smtputf8: !envelope.mail_from.is_ascii(),
            },
        ));
    }

    /// The non-delivery report of a `reject` that could not be said at
    /// SMTP time (RFC 5429 §2.1, RFC 3464): to the sender, from `<>`.
    fn reject_report(
        &self,
        sieve: &SieveDelivery,
        envelope: &Envelope,
        rcpt: &str,
        reason: &str,
        original_head: &[u8],
    ) -> Option<NewQueued> {
        if envelope.mail_from.is_empty() {
            return None;
        }
        let boundary = format!("sieve-reject-{}", chrono::Utc::now().timestamp_micros());
        let host = &sieve.hostname;
        let mut text = format!(
            "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
             To: <{to}>\r\n\
             Subject: Rejected: your message to {rcpt}\r\n\
             Date: {date}\r\n\
             Message-ID: {mid}\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\
             \r\n\
             Your message to <{rcpt}> was rejected by the recipient's filter:\r\n\
             \r\n    {reason}\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; {host}\r\n\
             \r\n\
             Final-Recipient: rfc822; {rcpt}\r\n\
             Action: failed\r\n\
             Status: 5.7.1\r\n\
             Diagnostic-Code: smtp; 550 5.7.1 {reason}\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n",
            to = envelope.mail_from,
            date = chrono::Utc::now().to_rfc2822(),
            mid = message_id(host),
        )
        .into_bytes();
        text.extend_from_slice(original_head);
        text.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        Some(NewQueued {
            msg_id: None,
            sender: String::new(),
            recipients: vec![NewQueuedRecipient::new(envelope.mail_from.clone())],
            eight_bit: !text.is_ascii(),
            raw: Arc::new(text),
            created: chrono::Utc::now().timestamp(),
            envid: None,
            ret_full: None,
            smtputf8: !envelope.mail_from.is_ascii(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_is_safe() {
        assert_eq!(one_line("go\r\naway\u{7}  now", 100), "go away? now");
        assert_eq!(one_line("x".repeat(500).as_str(), 200).len(), 200);
        assert_eq!(one_line("caf\u{e9}", 10), "caf?");
    }

    #[test]
    fn redirect_sender_uses_srs_for_other_domains() {
        let srs = crate::srs::Srs::new(b"secret".to_vec(), "example.org", &[]);
        assert_eq!(forward_sender(None, "a@other.test", false), "a@other.test");
        assert_eq!(
            forward_sender(Some(&srs), "a@example.org", true),
            "a@example.org"
        );
        assert_eq!(forward_sender(Some(&srs), "", false), "");
        let rewritten = forward_sender(Some(&srs), "a@other.test", false);
        assert!(rewritten.starts_with("SRS0="), "{rewritten}");
        assert!(rewritten.ends_with("@example.org"), "{rewritten}");
    }

    #[test]
    fn header_text_encodes() {
        assert_eq!(header_text("Away\r\nBcc: x"), "Away  Bcc: x");
        assert!(header_text("Abwesenheit \u{fc}").starts_with("=?utf-8?b?"));
    }
}
