//! `mailgate import`: moving an account's mail in from another server
//! (Dovecot's Maildir, an mbox file, another IMAP server); `export.rs`
//! writes it out again.
//!
//! A source is read into [`SourceFolder`]s (names, UIDVALIDITY, messages
//! with their flags, UIDs, dates and POP3 UIDLs, bodies still on disk);
//! [`import`] then writes each folder through the store in batches, so
//! that it works while the server runs: the store's group commit shares
//! each fsync with the server's deliveries, and the server's IMAP sessions
//! are told of the new mail ([`mailgate_store::Backend::announce_to_other_processes`]).
//!
//! What clients must not notice: when a target mailbox is empty and the
//! source knows its UIDVALIDITY, the mailbox takes that UIDVALIDITY and
//! every message keeps its UID (gaps included) and its POP3 UIDL; the
//! bytes are those the old server served (a Maildir file's bare LF line
//! ends become CRLF, as Dovecot sends them). A message already in the
//! target folder (the same bytes, hence the same Message-ID) is not
//! imported again, so an interrupted or repeated run is safe.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Subcommand, ValueEnum};
use mailgate_store::{
    AccountId, ImportMessage, MessageStructure, NewMessage, RawPart, SpecialUse, Store, Uid,
};
use sha2::{Digest, Sha256};

use super::{maildir, mbox};
use crate::config::Config;

/// At most this many messages go to the store in one transaction.
pub const BATCH_MESSAGES: usize = 500;
/// At most this many bytes of messages go to the store in one transaction.
pub const BATCH_BYTES: usize = 32 * 1024 * 1024;
/// A message larger than this is skipped as broken (no mail server
/// accepts one this large; reading it whole would risk the memory).
pub const MAX_MESSAGE_BYTES: u64 = 256 * 1024 * 1024;
/// How often the progress line on a terminal is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// `mailgate import ...`
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a Maildir++ tree (Dovecot, Courier): INBOX in DIR, folders
    /// in DIR/.Name and DIR/.Name.Sub. Keeps Dovecot's UIDVALIDITY, UIDs
    /// and POP3 UIDLs (from dovecot-uidlist) when the target mailbox is
    /// empty, flags (the `:2,` suffix), keywords (dovecot-keywords),
    /// INTERNALDATE and subscriptions.
    Maildir {
        /// The account to import into (it must exist: `mailgate user add`).
        account: String,
        /// The Maildir: the directory holding cur/, new/ and the .Folders.
        dir: PathBuf,
        /// Where INTERNALDATE comes from: the file's modification time
        /// (what Dovecot shows) or the time in the file's name.
        #[arg(long, value_enum, default_value_t = DateSource::Mtime)]
        date_from: DateSource,
        /// How the POP3 UIDLs of INBOX were made on the old server, with
        /// %u (UID), %v (UIDVALIDITY), %f (file name), %g (GUID), each
        /// optionally with a width and X or x for hexadecimal (e.g.
        /// `%08Xu`); `none` gives imported mail mailgate's own UIDLs. A
        /// UIDL recorded in dovecot-uidlist wins.
        #[arg(long, default_value = "%08Xu%08Xv", value_name = "FORMAT")]
        pop3_uidl_format: String,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Import every folder of another IMAP server with flags, keywords
    /// and INTERNALDATE, keeping UIDVALIDITY and UIDs when the target
    /// folder is empty.
    Imap {
        /// The account to import into.
        account: String,
        #[command(flatten)]
        server: super::imap_source::ImapArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Import an mbox file (mboxrd or mboxo, `From ` lines), with flags
    /// from Status/X-Status and keywords from X-Keywords.
    Mbox {
        /// The account to import into.
        account: String,
        /// The mbox file.
        file: PathBuf,
        /// The folder to import into (created if missing).
        #[arg(long, default_value = "INBOX", value_name = "NAME")]
        mailbox: String,
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// Options every import takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Read the source and say what would be imported, per folder,
    /// without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// Where a Maildir message's INTERNALDATE comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DateSource {
    /// The file's modification time: Dovecot's INTERNALDATE of a Maildir
    /// message (a copy made without keeping times loses it).
    Mtime,
    /// The delivery time at the start of the file name (else the mtime).
    Filename,
}

/// A folder read from a source.
#[derive(Debug, Default)]
pub struct SourceFolder {
    /// Its name in mailgate (`/` between levels, `INBOX` for the inbox).
    pub name: String,
    /// Its UIDVALIDITY on the old server, if known.
    pub uid_validity: Option<u32>,
    /// Its UIDNEXT on the old server, if known.
    pub uid_next: Option<u32>,
    /// Whether it was subscribed there, if known.
    pub subscribed: Option<bool>,
    /// The special use the old server gave it, if it said.
    pub special_use: Option<SpecialUse>,
    /// Its messages: those with a known UID in UID order, then the others.
    pub messages: Vec<SourceMessage>,
    /// More messages, after `messages`, as a network source reads them.
    pub stream: Option<tokio::sync::mpsc::Receiver<Item>>,
    /// How many messages `stream` will bring (for the progress bar).
    pub expected: usize,
}

/// What a streaming source sends.
#[derive(Debug)]
pub enum Item {
    /// A message.
    Message(SourceMessage),
    /// A message that cannot be read.
    Broken(Broken),
    /// The source failed (e.g. the connection broke): the import stops.
    Fatal(String),
}

/// A message read from a source, its bytes not yet loaded.
#[derive(Debug)]
pub struct SourceMessage {
    /// Where it is, for reports: a path, or a file and a message number.
    pub origin: String,
    /// Its bytes.
    pub body: Body,
    /// Its UID on the old server.
    pub uid: Option<u32>,
    /// Flags and keywords.
    pub flags: Vec<String>,
    /// Its INTERNALDATE, seconds since the epoch (else: now).
    pub internal_date: Option<i64>,
    /// Its POP3 UIDL on the old server.
    pub pop3_uidl: Option<String>,
}

/// Where a source message's bytes are.
#[derive(Debug)]
pub enum Body {
    /// A whole file (Maildir).
    File(PathBuf),
    /// Already read (mbox).
    Bytes(Vec<u8>),
}

/// Something of the source that could not be imported, and why.
#[derive(Debug)]
pub struct Broken {
    /// Its path (and message number).
    pub origin: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A source read: its folders and what was broken already while reading.
#[derive(Debug, Default)]
pub struct Source {
    /// The folders.
    pub folders: Vec<SourceFolder>,
    /// Broken files found while reading.
    pub broken: Vec<Broken>,
}

/// `mailgate import ...`
pub async fn run_import(config: &Config, command: ImportCommand) -> Result<(), String> {
    let (account, source, common) = match command {
        ImportCommand::Maildir {
            account,
            dir,
            date_from,
            pop3_uidl_format,
            common,
        } => {
            let uidl = match pop3_uidl_format.as_str() {
                "none" => None,
                f => Some(maildir::UidlFormat::parse(f)?),
            };
            let source = tokio::task::spawn_blocking(move || maildir::read(&dir, date_from, uidl))
                .await
                .map_err(|e| e.to_string())??;
            (account, source, common)
        }
        ImportCommand::Imap {
            account,
            server,
            common,
        } => {
            let source = super::imap_source::read(server).await?;
            (account, source, common)
        }
        ImportCommand::Mbox {
            account,
            file,
            mailbox,
            common,
        } => {
            let source = tokio::task::spawn_blocking(move || mbox::read(&file, &mailbox))
                .await
                .map_err(|e| e.to_string())??;
            (account, source, common)
        }
    };
    let store = open(config).await?;
    let account = store
        .account(&account)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no account {account} (create it with `mailgate user add`)"))?;
    import(store, account.id, source, common.dry_run).await
}

async fn open(config: &Config) -> Result<Arc<dyn Store>, String> {
    let store = super::open_store(config).await?;
    // The running server's IMAP sessions hear of what we import.
    store.announce_to_other_processes();
    Ok(store)
}

/// What happened to one folder.
#[derive(Debug, Default)]
struct FolderReport {
    imported: usize,
    present: usize,
    broken: usize,
    uids_kept: bool,
}

/// Imports `source` into the account (or says what it would do).
pub async fn import(
    store: Arc<dyn Store>,
    account: AccountId,
    source: Source,
    dry_run: bool,
) -> Result<(), String> {
    let started = Instant::now();
    for b in &source.broken {
        report_broken(b);
    }
    let mut broken = source.broken.len();
    let mut imported = 0usize;
    let mut present = 0usize;
    let total: usize = source
        .folders
        .iter()
        .map(|f| f.messages.len() + f.expected)
        .sum();
    let mut progress = Progress::new(total);
    let folders = source.folders.len();
    for folder in source.folders {
        let name = folder.name.clone();
        let r = import_folder(&store, account, folder, dry_run, &mut progress)
            .await
            .map_err(|e| format!("{}: {e}", shown(&name)))?;
        progress.clear();
        let verb = if dry_run { "to import" } else { "imported" };
        println!(
            "{}: {} {verb}, {} already present, {} broken{}",
            shown(&name),
            r.imported,
            r.present,
            r.broken,
            if r.uids_kept {
                "; UIDVALIDITY and UIDs kept"
            } else {
                ""
            }
        );
        imported += r.imported;
        present += r.present;
        broken += r.broken;
    }
    progress.clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} {imported} messages in {folders} folders, {present} already present, {broken} broken, {secs:.1} s ({:.0} messages/s){}",
        if dry_run { "would import" } else { "imported" },
        imported as f64 / secs.max(0.001),
        if dry_run { "; nothing was changed (--dry-run)" } else { "" },
    );
    if broken > 0 {
        return Err(format!(
            "{broken} broken files or messages were skipped (listed above); everything else was {}",
            if dry_run { "read" } else { "imported" }
        ));
    }
    Ok(())
}

fn report_broken(b: &Broken) {
    eprintln!(
        "mailgate: skipped {}: {}",
        shown(&b.origin),
        shown(&b.reason)
    );
}

/// A name or path from the source, fit for a terminal: control
/// characters (which a file or folder name may hold) become `?`.
pub fn shown(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Reports a folder that cannot be created and consumes its messages (a
/// network source waits for them to be taken); returns how many.
async fn skip_folder(folder: SourceFolder, why: &str, progress: &mut Progress) -> usize {
    let mut n = folder.messages.len();
    if let Some(mut rx) = folder.stream {
        while let Some(item) = rx.recv().await {
            if matches!(item, Item::Fatal(_)) {
                break;
            }
            n += 1;
        }
    }
    for _ in 0..n {
        progress.tick();
    }
    eprintln!(
        "mailgate: skipped folder {} ({n} messages): {}",
        shown(&folder.name),
        shown(why)
    );
    n.max(1)
}

/// The names the folders of other servers use for the special-use
/// mailboxes (RFC 6154), lower-case: English and the common localised
/// names of Thunderbird, Outlook and Apple Mail.
const SPECIAL_NAMES: &[(SpecialUse, &[&str])] = &[
    (
        SpecialUse::Sent,
        &[
            "sent",
            "sent items",
            "sent messages",
            "sent mail",
            "gesendet",
            "gesendete objekte",
            "envoyés",
            "éléments envoyés",
            "enviados",
            "inviati",
            "posta inviata",
            "verzonden",
            "verzonden items",
        ],
    ),
    (
        SpecialUse::Drafts,
        &[
            "drafts",
            "draft",
            "entwürfe",
            "brouillons",
            "borradores",
            "bozze",
            "concepten",
        ],
    ),
    (
        SpecialUse::Junk,
        &[
            "junk",
            "spam",
            "junk e-mail",
            "junk email",
            "bulk mail",
            "unerwünscht",
            "indésirables",
            "correo no deseado",
            "posta indesiderata",
            "ongewenste e-mail",
        ],
    ),
    (
        SpecialUse::Trash,
        &[
            "trash",
            "deleted items",
            "deleted messages",
            "bin",
            "papierkorb",
            "gelöschte objekte",
            "corbeille",
            "éléments supprimés",
            "papelera",
            "cestino",
            "prullenbak",
            "verwijderde items",
        ],
    ),
    (
        SpecialUse::Archive,
        &[
            "archive", "archives", "archiv", "archivio", "archivo", "archief",
        ],
    ),
];

/// The special use a top-level folder's name suggests.
pub fn special_use_of(name: &str) -> Option<SpecialUse> {
    if name.contains('/') {
        return None;
    }
    let lower = name.to_lowercase();
    SPECIAL_NAMES
        .iter()
        .find(|(_, names)| names.contains(&lower.as_str()))
        .map(|(u, _)| *u)
}

async fn import_folder(
    store: &Arc<dyn Store>,
    account: AccountId,
    folder: SourceFolder,
    dry_run: bool,
    progress: &mut Progress,
) -> Result<FolderReport, String> {
    let mut report = FolderReport::default();
    let existing = store
        .mailbox(account, &folder.name)
        .await
        .map_err(|e| e.to_string())?;
    let created = existing.is_none();
    let mailbox = match existing {
        Some(m) => Some(m),
        None if dry_run => None,
        None => {
            // The special use goes to a new folder only if no mailbox of
            // the account has it yet (one \Sent per account).
            let mut usage = folder.special_use.or_else(|| special_use_of(&folder.name));
            if let Some(u) = usage {
                let all = store
                    .list_mailboxes(account)
                    .await
                    .map_err(|e| e.to_string())?;
                if all.iter().any(|m| m.special_use == Some(u)) {
                    usage = None;
                }
            }
            if let Err(e) = store.create_mailbox(account, &folder.name, usage).await {
                // A name mailgate cannot hold (an empty level, a control
                // character): the folder is skipped, the rest goes on.
                report.broken = skip_folder(folder, &e.to_string(), progress).await;
                return Ok(report);
            }
            store
                .mailbox(account, &folder.name)
                .await
                .map_err(|e| e.to_string())?
        }
    };
    let present_hashes = match &mailbox {
        Some(m) if m.messages > 0 => hashes_of(store, m.id).await?,
        _ => HashSet::new(),
    };
    let empty = mailbox.as_ref().is_none_or(|m| m.messages == 0);
    let mut keep_uids = empty && folder.uid_validity.is_some();
    if let (Some(mb), Some(v), false) = (&mailbox, folder.uid_validity, dry_run) {
        if keep_uids {
            if let Err(e) = store.adopt_uid_validity(mb.id, v).await {
                eprintln!(
                    "mailgate: {}: UIDs not kept: {e}",
                    folder.name.escape_debug()
                );
                keep_uids = false;
            }
        }
    }
    report.uids_kept = keep_uids;

    let mut writer = Writer::new(store, mailbox.as_ref().map(|m| m.id));
    let mut raised = false;
    let mut listed = folder.messages.into_iter();
    let mut stream = folder.stream;
    loop {
        let msg = match listed.next() {
            Some(m) => m,
            None => match stream.as_mut() {
                None => break,
                Some(rx) => match rx.recv().await {
                    None => break,
                    Some(Item::Message(m)) => m,
                    Some(Item::Broken(b)) => {
                        progress.tick();
                        report_broken(&b);
                        report.broken += 1;
                        continue;
                    }
                    Some(Item::Fatal(e)) => {
                        writer.finish().await?;
                        return Err(e);
                    }
                },
            },
        };
        progress.tick();
        // Messages the old server had not numbered yet come after its
        // UIDNEXT, as they would have there.
        if msg.uid.is_none() && keep_uids && !raised && !dry_run {
            raised = true;
            writer.finish().await?;
            if let (Some(mb), Some(n)) = (&mailbox, folder.uid_next) {
                store
                    .raise_uid_next(mb.id, n)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let raw = match load(&msg) {
            Ok(raw) => raw,
            Err(reason) => {
                report_broken(&Broken {
                    origin: msg.origin,
                    reason,
                });
                report.broken += 1;
                continue;
            }
        };
        if !present_hashes.is_empty() && present_hashes.contains(&digest(&raw)) {
            report.present += 1;
            continue;
        }
        if dry_run {
            report.imported += 1;
            continue;
        }
        let raw = Arc::new(raw);
        writer
            .push(ImportMessage {
                message: NewMessage {
                    structure: MessageStructure::default(),
                    internal_date: msg
                        .internal_date
                        .unwrap_or_else(|| chrono::Utc::now().timestamp()),
                    raw,
                },
                flags: msg.flags,
                uid: if keep_uids {
                    msg.uid.and_then(Uid::new)
                } else {
                    None
                },
                pop3_uidl: if keep_uids { msg.pop3_uidl } else { None },
            })
            .await?;
    }
    writer.finish().await?;
    report.imported += writer.imported;
    if let (Some(mb), true, false, Some(n)) = (&mailbox, keep_uids, dry_run, folder.uid_next) {
        if !raised {
            store
                .raise_uid_next(mb.id, n)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    // Subscriptions are added as the old server had them; one is removed
    // only from a folder this import created (a folder mailgate had
    // before keeps its own, e.g. Sent, which Dovecot may subscribe by
    // configuration instead of in its subscriptions file).
    if let (Some(mb), Some(sub), false) = (&mailbox, folder.subscribed, dry_run) {
        if (sub && !mb.subscribed) || (!sub && mb.subscribed && created) {
            store
                .set_subscribed(account, &mb.name, sub)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(report)
}

/// The messages of one folder on their way to the store, in batches of
/// at most [`BATCH_MESSAGES`] messages or [`BATCH_BYTES`] bytes. A batch is
/// parsed and written while the next is read: each send waits for the
/// previous batch first. Without a mailbox (a dry run of a folder that
/// does not exist yet) batches are dropped.
struct Writer<'a> {
    store: &'a Arc<dyn Store>,
    mailbox: Option<mailgate_store::MailboxId>,
    batch: Vec<ImportMessage>,
    bytes: usize,
    pending: Option<tokio::task::JoinHandle<Result<usize, String>>>,
    /// Messages the store has taken.
    imported: usize,
}

impl<'a> Writer<'a> {
    fn new(store: &'a Arc<dyn Store>, mailbox: Option<mailgate_store::MailboxId>) -> Self {
        Writer {
            store,
            mailbox,
            batch: Vec::new(),
            bytes: 0,
            pending: None,
            imported: 0,
        }
    }

    /// Adds a message; sends the batch once it is full.
    async fn push(&mut self, message: ImportMessage) -> Result<(), String> {
        self.bytes += message.message.raw.len();
        self.batch.push(message);
        if self.batch.len() >= BATCH_MESSAGES || self.bytes >= BATCH_BYTES {
            self.send().await?;
        }
        Ok(())
    }

    /// Sends what is batched and waits until the store has taken all of it.
    async fn finish(&mut self) -> Result<(), String> {
        self.send().await?;
        self.wait().await
    }

    async fn send(&mut self) -> Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let messages = std::mem::take(&mut self.batch);
        self.bytes = 0;
        let Some(id) = self.mailbox else {
            return Ok(());
        };
        self.wait().await?;
        let store = Arc::clone(self.store);
        self.pending = Some(tokio::spawn(async move {
            // Parsing costs CPU: off the async workers, in parallel with the
            // reading of the next batch.
            let messages = tokio::task::spawn_blocking(move || {
                messages
                    .into_iter()
                    .map(|mut m| {
                        m.message.structure = MessageStructure::parse(&m.message.raw);
                        m
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| e.to_string())?;
            let uids = store
                .import_messages(id, messages)
                .await
                .map_err(|e| e.to_string())?;
            Ok(uids.len())
        }));
        Ok(())
    }

    async fn wait(&mut self) -> Result<(), String> {
        if let Some(p) = self.pending.take() {
            self.imported += p.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    }
}

/// The digests of every message in a mailbox (for "already present").
async fn hashes_of(
    store: &Arc<dyn Store>,
    mailbox: mailgate_store::MailboxId,
) -> Result<HashSet<[u8; 32]>, String> {
    let metas = store
        .list_messages(mailbox)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = HashSet::with_capacity(metas.len());
    for chunk in metas.chunks(200) {
        let uids: Vec<Uid> = chunk.iter().map(|m| m.uid).collect();
        for f in store
            .fetch_messages(mailbox, &uids, RawPart::Whole, false)
            .await
            .map_err(|e| e.to_string())?
        {
            if let Some(raw) = f.raw {
                out.insert(digest(&raw));
            }
        }
    }
    Ok(out)
}

fn digest(raw: &[u8]) -> [u8; 32] {
    Sha256::digest(raw).into()
}

/// Reads a message's bytes, line ends as the old server served them
/// (CRLF), and checks that it looks like a message.
fn load(msg: &SourceMessage) -> Result<Vec<u8>, String> {
    let raw = match &msg.body {
        Body::File(path) => {
            let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
            if !meta.is_file() {
                return Err("not a regular file".into());
            }
            if meta.len() > MAX_MESSAGE_BYTES {
                return Err(format!(
                    "{} bytes, more than the {MAX_MESSAGE_BYTES} an import takes",
                    meta.len()
                ));
            }
            std::fs::read(path).map_err(|e| e.to_string())?
        }
        Body::Bytes(b) => {
            if b.len() as u64 > MAX_MESSAGE_BYTES {
                return Err(format!(
                    "{} bytes, more than the {MAX_MESSAGE_BYTES} an import takes",
                    b.len()
                ));
            }
            b.clone()
        }
    };
    check_message(&raw)?;
    Ok(to_crlf(raw))
}

/// A message must start with a header field (`Name: value`) and hold no
/// NUL byte in its header: anything else is not mail (a truncated copy,
/// an index file in the wrong place, binary garbage).
pub fn check_message(raw: &[u8]) -> Result<(), String> {
    if raw.is_empty() {
        return Err("empty file".into());
    }
    let header = &raw[..mailgate_store::structure::header_block_len(raw)];
    if header.contains(&0) {
        return Err("NUL byte in the header".into());
    }
    let first = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let colon = first.iter().position(|&b| b == b':');
    let ok = match colon {
        Some(i) if i > 0 => first[..i].iter().all(|&b| (33..=126).contains(&b)),
        _ => false,
    };
    if !ok {
        return Err("does not start with a header field".into());
    }
    Ok(())
}

/// Bare LF line ends become CRLF; CRLF stays.
pub fn to_crlf(raw: Vec<u8>) -> Vec<u8> {
    let bare = raw
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
        .count();
    if bare == 0 {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + bare);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Counts and rate: a line redrawn on a terminal, nothing otherwise (the
/// per-folder lines are the progress then).
struct Progress {
    tty: bool,
    total: usize,
    done: usize,
    started: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            tty: std::io::stdout().is_terminal(),
            total,
            done: 0,
            started: Instant::now(),
            drawn: None,
        }
    }

    fn tick(&mut self) {
        self.done += 1;
        if !self.tty || self.drawn.is_some_and(|d| d.elapsed() < PROGRESS_EVERY) {
            return;
        }
        self.drawn = Some(Instant::now());
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let width = 30;
        let filled = (self.done * width).checked_div(self.total).unwrap_or(0);
        let mut out = std::io::stdout().lock();
        let _ = write!(
            out,
            "\r[{}{}] {}/{} messages, {:.0}/s ",
            "#".repeat(filled),
            " ".repeat(width - filled.min(width)),
            self.done,
            self.total,
            self.done as f64 / secs
        );
        let _ = out.flush();
    }

    fn clear(&mut self) {
        if self.tty && self.drawn.take().is_some() {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r{}\r", " ".repeat(72));
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n".to_vec()), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_crlf(b"\n".to_vec()), b"\r\n");
        assert_eq!(to_crlf(b"a\r\n".to_vec()), b"a\r\n");
    }

    #[test]
    fn message_check() {
        assert!(check_message(b"Subject: x\n\nbody").is_ok());
        assert!(check_message(b"").is_err());
        assert!(check_message(b"\x00\x01garbage").is_err());
        assert!(check_message(b"no header here\n").is_err());
        assert!(check_message(b": x\n").is_err());
    }

    #[test]
    fn special_names() {
        assert_eq!(special_use_of("Sent Items"), Some(SpecialUse::Sent));
        assert_eq!(special_use_of("Papierkorb"), Some(SpecialUse::Trash));
        assert_eq!(special_use_of("Work/Sent"), None);
        assert_eq!(special_use_of("Projects"), None);
    }
}
