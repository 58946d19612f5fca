//! `mailgate sieve test ACCOUNT FILE [--mailbox INBOX] [--last N] [--apply]`:
//! runs a script (with the interpreter delivery uses, `[sieve]` settings)
//! on the last N stored messages of a mailbox and prints, per message,
//! what it would do. Nothing changes without `--apply`.
//!
//! With `--apply` the mailbox actions are carried out on those messages:
//! `fileinto` copies the message into the folder (creating it with
//! `:create`; a missing folder without `:create` is left alone, as
//! delivery would keep the message instead), flags are added to the copy
//! they belong to, and a message the script does not keep leaves the
//! mailbox tested (after its copies are made). `discard` marks it
//! `\Deleted` instead of removing it, so that a mistake can be undone
//! (the user's client, or `mailgate mailbox expunge`, removes it).
//! `redirect`, `reject`/`ereject` and `vacation` are printed but never
//! sent: these messages arrived long ago, their senders would get
//! answers to old mail and the recipients of a redirect mail they may
//! already have; SMTP-time refusal is no longer possible either.
//!
//! "Keep" means "stays in the mailbox tested" (INBOX at delivery).
//! `duplicate` answers "not seen" and records nothing; `include` reads the
//! account's stored scripts.

use std::collections::HashSet;
use std::path::PathBuf;

use mailgate_sieve::{
    compile, execute, printable, Action, Envelope, Environment, Location, MessageData, Settings,
};
use mailgate_store::{Backend, FlagChange, Uid};

/// The most messages one `sieve test` runs on.
pub const MAX_TEST_MESSAGES: usize = 1000;

/// `mailgate sieve test ...`
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The account's address.
    account: String,
    /// The script; `-` reads standard input.
    file: PathBuf,
    /// The mailbox whose messages are tested.
    #[arg(long, default_value = "INBOX")]
    mailbox: String,
    /// How many of its most recent messages (by arrival, at most 1000).
    #[arg(long, default_value_t = 10)]
    last: usize,
    /// Carry out fileinto, flags, keep and discard on those messages
    /// (redirect, reject and vacation are never sent for old mail).
    #[arg(long)]
    apply: bool,
}

/// What the script may ask while it runs: the account's folders and
/// scripts, read before the run.
struct TestEnvironment {
    folders: HashSet<String>,
    scripts: Vec<(String, String)>,
    /// `[sieve] time_zone`: minutes east of UTC; `None` for the local zone.
    zone: Option<i32>,
}

impl Environment for TestEnvironment {
    fn now(&self) -> (i64, i32) {
        // The zone delivery uses (docs/sieve.md, *Dates*).
        let now = chrono::Utc::now().timestamp();
        let zone = self
            .zone
            .unwrap_or_else(|| mailgate_delivery::sieve::local_zone(now));
        (now, zone)
    }
    fn script(&self, location: Location, name: &str) -> Option<String> {
        if location != Location::Personal {
            return None;
        }
        self.scripts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    }
    fn mailbox_exists(&self, name: &str) -> bool {
        self.folders.contains(name) || (name.eq_ignore_ascii_case("INBOX"))
    }
}

/// Runs `sieve test`.
pub async fn run(
    store: &dyn Backend,
    settings: &Settings,
    zone: Option<i32>,
    args: TestArgs,
) -> Result<(), String> {
    if args.last == 0 || args.last > MAX_TEST_MESSAGES {
        return Err(format!("--last must be between 1 and {MAX_TEST_MESSAGES}"));
    }
    let acct = super::sieve::account(store, &args.account).await?;
    let text = super::sieve::read_script(&args.file, settings)?;
    let script = compile(&text, settings).map_err(|e| e.to_string())?;
    let e = |e: mailgate_store::StoreError| e.to_string();
    let source = store
        .mailbox(acct.id, &args.mailbox)
        .await
        .map_err(e)?
        .ok_or_else(|| {
            format!(
                "no mailbox {} in {}",
                printable(&args.mailbox),
                acct.address
            )
        })?;
    let mut env = TestEnvironment {
        zone,
        folders: store
            .list_mailboxes(acct.id)
            .await
            .map_err(e)?
            .into_iter()
            .map(|m| m.name)
            .collect(),
        scripts: Vec::new(),
    };
    for info in store.sieve_list(acct.id).await.map_err(e)? {
        if let Some(t) = store.sieve_get(acct.id, &info.name).await.map_err(e)? {
            env.scripts.push((info.name, t));
        }
    }
    let messages = store.list_messages(source.id).await.map_err(e)?;
    let start = messages.len().saturating_sub(args.last);
    let envelope_to = acct.address.clone();
    for meta in &messages[start..] {
        let Some(raw) = store.message_raw(source.id, meta.uid).await.map_err(e)? else {
            continue;
        };
        let message = MessageData::new(raw);
        let envelope = Envelope {
            from: return_path(&message),
            to: envelope_to.clone(),
        };
        println!("uid {}: {}", meta.uid, summary(&message));
        let outcome = match execute(&script, &message, &envelope, &env, settings) {
            Ok(o) => o,
            Err(err) => {
                // Delivery keeps the message in INBOX when a run fails.
                println!(
                    "  error: {} (delivery would keep the message)",
                    printable(&err.to_string())
                );
                continue;
            }
        };
        for action in &outcome.actions {
            println!("  {}", describe(action));
        }
        if args.apply {
            apply(
                store,
                &mut env,
                source.id,
                meta.uid,
                &outcome.actions,
                acct.id,
            )
            .await?;
        }
    }
    Ok(())
}

/// The message's `Return-Path`, the sender delivery saw; empty if none.
fn return_path(message: &MessageData) -> String {
    use mailgate_sieve::Message;
    message
        .headers()
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Return-Path"))
        .map(|(_, v)| {
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .unwrap_or_default()
}

/// `From` and `Subject`, for the line naming a message.
fn summary(message: &MessageData) -> String {
    use mailgate_sieve::Message;
    let headers = message.headers();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| printable(&mailgate_sieve::decode_header(v.trim())))
            .unwrap_or_default()
    };
    format!("from {:?} subject {:?}", get("From"), get("Subject"))
}

fn flags(f: &[String]) -> String {
    if f.is_empty() {
        String::new()
    } else {
        format!(" flags {}", f.join(" "))
    }
}

/// One action, one line.
fn describe(action: &Action) -> String {
    match action {
        Action::Keep { flags: f, implicit } => {
            let kind = if *implicit { "keep (implicit)" } else { "keep" };
            format!("{kind}{}", flags(f))
        }
        Action::FileInto {
            mailbox,
            create,
            flags: f,
            copy,
        } => format!(
            "fileinto {:?}{}{}{}",
            printable(mailbox),
            if *create { " :create" } else { "" },
            if *copy { " :copy" } else { "" },
            flags(f)
        ),
        Action::Redirect { address, copy } => format!(
            "redirect to {}{} (not sent for stored mail)",
            printable(address),
            if *copy { " :copy" } else { "" }
        ),
        Action::Discard => "discard".to_string(),
        Action::Reject { reason, extended } => format!(
            "{} {:?} (not sent for stored mail)",
            if *extended { "ereject" } else { "reject" },
            printable(reason)
        ),
        Action::Vacation(v) => format!(
            "vacation, once per {}s{} (not sent for stored mail)",
            v.period,
            v.subject
                .as_deref()
                .map(|s| format!(", subject {:?}", printable(s)))
                .unwrap_or_default()
        ),
    }
}

/// `--apply` for one message: copies, flags, then leaving the mailbox.
async fn apply(
    store: &dyn Backend,
    env: &mut TestEnvironment,
    source: mailgate_store::MailboxId,
    uid: Uid,
    actions: &[Action],
    account: mailgate_store::AccountId,
) -> Result<(), String> {
    let e = |e: mailgate_store::StoreError| e.to_string();
    let mut stored_elsewhere = false;
    // A fileinto the mailbox tested, or into a missing folder without
    // :create (delivery keeps the message then): it stays.
    let mut stays = actions.iter().any(|a| matches!(a, Action::Keep { .. }));
    for action in actions {
        match action {
            Action::Keep { flags: f, .. } if !f.is_empty() => {
                store
                    .store_flags(source, &[uid], FlagChange::Add(f.clone()))
                    .await
                    .map_err(e)?;
            }
            Action::FileInto {
                mailbox,
                create,
                flags: f,
                ..
            } => {
                let target = match store.mailbox(account, mailbox).await.map_err(e)? {
                    Some(m) => m.id,
                    None if *create => {
                        let id = store
                            .create_mailbox(account, mailbox, None)
                            .await
                            .map_err(e)?;
                        env.folders.insert(mailbox.clone());
                        println!("  applied: created folder {:?}", printable(mailbox));
                        id
                    }
                    None => {
                        println!(
                            "  applied: folder {:?} does not exist (no :create): message left in place",
                            printable(mailbox)
                        );
                        stays = true;
                        continue;
                    }
                };
                if target == source {
                    stays = true;
                    if !f.is_empty() {
                        store
                            .store_flags(source, &[uid], FlagChange::Add(f.clone()))
                            .await
                            .map_err(e)?;
                    }
                    continue;
                }
                let copied = store
                    .copy_messages(source, &[uid], target)
                    .await
                    .map_err(e)?;
                if let (Some((_, new)), false) = (copied.first(), f.is_empty()) {
                    store
                        .store_flags(target, &[*new], FlagChange::Add(f.clone()))
                        .await
                        .map_err(e)?;
                }
                stored_elsewhere = true;
                println!("  applied: copied to {:?}", printable(mailbox));
            }
            _ => {}
        }
    }
    if stays {
        return Ok(());
    }
    if stored_elsewhere {
        store.expunge(source, &[uid]).await.map_err(e)?;
        println!("  applied: removed from this mailbox (filed elsewhere)");
    } else if actions.iter().any(|a| matches!(a, Action::Discard)) {
        store
            .store_flags(source, &[uid], FlagChange::Add(vec!["\\Deleted".into()]))
            .await
            .map_err(e)?;
        println!("  applied: discard: marked \\Deleted (not expunged; undo by removing the flag)");
    }
    Ok(())
}
