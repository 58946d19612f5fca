//! `mailgate queue ...`: look at and steer the outbound queue.
//!
//! These commands change the store only; the running server's relay sees
//! the change at its next look at the queue (at most `[queue]
//! poll_interval` later), so they work the same whether or not a server
//! runs. The formatting lives in `mailgate_relay::admin`.

use std::sync::Arc;

use clap::Subcommand;
use mailgate_relay::admin;
use mailgate_store::queue::QueueStore;
use mailgate_store::SqliteStore;

use crate::config::Config;

/// `mailgate queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List the messages waiting for delivery to other domains (like
    /// `mailq`): id (`!` after it when held), size, arrival, sender, and
    /// each recipient still pending with the last reply about it.
    List,
    /// Show one message: its state, every recipient's status and last
    /// reply, and the message header (`--body`: the whole message).
    Show {
        /// The queue id (from `queue list`).
        id: String,
        /// Print the whole message, not only its header.
        #[arg(long)]
        body: bool,
    },
    /// Try now: make one message (or every message not held) due at once,
    /// ignoring the retry schedule. The server picks it up within
    /// `[queue] poll_interval`.
    Flush {
        /// The queue id; without it, every message not held.
        id: Option<String>,
    },
    /// Remove a message from the queue for good, without telling the
    /// sender.
    Delete {
        /// The queue id.
        id: String,
    },
    /// Stop delivery attempts for a message until `queue release` (it
    /// keeps its age: once released, a failure past `[queue] max_age`
    /// bounces it).
    Hold {
        /// The queue id.
        id: String,
    },
    /// Let a held message be delivered again, at its next scheduled
    /// attempt (add `queue flush ID` to try at once).
    Release {
        /// The queue id.
        id: String,
    },
}

fn open(config: &Config) -> Result<Arc<dyn QueueStore>, String> {
    let store: Arc<SqliteStore> = SqliteStore::open(&config.data_dir).map_err(|e| {
        format!(
            "cannot open the store in {}: {e}",
            config.data_dir.display()
        )
    })?;
    Ok(store)
}

/// The message's header section (up to and including the blank line).
fn header_part(body: &[u8]) -> &[u8] {
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(body.len());
    &body[..end]
}

/// Runs one `queue` command.
pub async fn queue(config: &Config, command: QueueCommand) -> Result<(), String> {
    let store = open(config)?;
    let id = |s: &str| admin::parse_id(s).map_err(|e| e.to_string());
    match command {
        QueueCommand::List => {
            let entries = store.queue_list().await.map_err(|e| e.to_string())?;
            print!("{}", admin::format_list(&entries));
        }
        QueueCommand::Show { id: i, body } => {
            let (entry, raw) = admin::show(store.as_ref(), id(&i)?)
                .await
                .map_err(|e| e.to_string())?;
            print!("{}", admin::format_entry(&entry));
            println!();
            let shown = if body { &raw[..] } else { header_part(&raw) };
            print!("{}", String::from_utf8_lossy(shown));
        }
        QueueCommand::Flush { id: i } => {
            let target = i.as_deref().map(id).transpose()?;
            let now = unix_now();
            let n = admin::flush(store.as_ref(), target, now)
                .await
                .map_err(|e| e.to_string())?;
            if let (Some(i), 0) = (target, n) {
                return Err(format!("queue entry {i} does not exist or is held"));
            }
            println!(
                "{n} message{} due now; the server delivers within [queue] poll_interval",
                if n == 1 { "" } else { "s" }
            );
        }
        QueueCommand::Delete { id: i } => {
            let i = id(&i)?;
            admin::delete(store.as_ref(), i)
                .await
                .map_err(|e| e.to_string())?;
            println!("deleted {i}");
        }
        QueueCommand::Hold { id: i } => {
            let i = id(&i)?;
            admin::set_held(store.as_ref(), i, true)
                .await
                .map_err(|e| e.to_string())?;
            println!("held {i}");
        }
        QueueCommand::Release { id: i } => {
            let i = id(&i)?;
            admin::set_held(store.as_ref(), i, false)
                .await
                .map_err(|e| e.to_string())?;
            println!("released {i}");
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch, the queue's time base.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
