//! `mailgate export`: an account's mail written out as a Maildir++ tree
//! that Dovecot reads with the same UIDVALIDITY and UIDs, or as mboxrd
//! files (docs/migration.md). The store is only read; the target
//! directory must be new or empty.

use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;
use mailgate_store::{MailboxInfo, RawPart, Store, Uid};

use super::{maildir, mbox};
use crate::config::Config;

/// Messages read from the store at once.
const READ_CHUNK: usize = 200;

/// `mailgate export ...`
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write every folder of an account as a Maildir++ tree that Dovecot
    /// reads with UIDVALIDITY, UIDs, flags and keywords kept.
    Maildir {
        /// The account.
        account: String,
        /// The directory to write (created; must be empty if it exists).
        dir: PathBuf,
    },
    /// Write every folder of an account as one mboxrd file (readable by
    /// mutt), with flags in Status/X-Status and keywords in X-Keywords.
    Mbox {
        /// The account.
        account: String,
        /// The directory to write the files to (created; must be empty if
        /// it exists). Folder `a/b` becomes the file `a.b`.
        dir: PathBuf,
    },
}

/// `mailgate export ...`
pub async fn run_export(config: &Config, command: ExportCommand) -> Result<(), String> {
    let store: std::sync::Arc<dyn Store> = super::open_store(config).await?;
    let (address, dir, maildir) = match command {
        ExportCommand::Maildir { account, dir } => (account, dir, true),
        ExportCommand::Mbox { account, dir } => (account, dir, false),
    };
    let account = store
        .account(&address)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no account {address}"))?;
    prepare_empty_dir(&dir)?;
    let started = Instant::now();
    let mut total = 0usize;
    let mailboxes = store
        .list_mailboxes(account.id)
        .await
        .map_err(|e| e.to_string())?;
    let subscriptions = store
        .subscriptions(account.id)
        .await
        .map_err(|e| e.to_string())?;
    let mut writer: Box<dyn ExportWriter> = if maildir {
        Box::new(maildir::Writer::new(&dir, subscriptions)?)
    } else {
        Box::new(mbox::Writer::new(&dir))
    };
    for mb in &mailboxes {
        let metas = store
            .list_messages(mb.id)
            .await
            .map_err(|e| e.to_string())?;
        writer.begin(mb)?;
        for chunk in metas.chunks(READ_CHUNK) {
            let uids: Vec<Uid> = chunk.iter().map(|m| m.uid).collect();
            let fetched = store
                .fetch_messages(mb.id, &uids, RawPart::Whole, false)
                .await
                .map_err(|e| e.to_string())?;
            for (meta, f) in chunk.iter().zip(fetched) {
                if let Some(raw) = f.raw {
                    writer.message(meta, &raw)?;
                }
            }
        }
        writer.end()?;
        println!("{}: {} messages", mb.name, metas.len());
        total += metas.len();
    }
    writer.finish()?;
    println!(
        "exported {total} messages in {} folders to {} in {:.1} s",
        mailboxes.len(),
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The target of an export: one folder after the other.
pub trait ExportWriter {
    /// A folder starts.
    fn begin(&mut self, mailbox: &MailboxInfo) -> Result<(), String>;
    /// One of its messages, in UID order.
    fn message(&mut self, meta: &mailgate_store::MessageMeta, raw: &[u8]) -> Result<(), String>;
    /// The folder is done.
    fn end(&mut self) -> Result<(), String>;
    /// Every folder is done.
    fn finish(&mut self) -> Result<(), String>;
}

fn prepare_empty_dir(dir: &std::path::Path) -> Result<(), String> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        if entries.next().is_some() {
            return Err(format!(
                "{} is not empty; export writes into a new or empty directory",
                dir.display()
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}
