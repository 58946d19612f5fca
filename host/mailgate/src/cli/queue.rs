//! `mailgate queue ...`: look at and steer the outbound queue.
//!
//! These commands change the store, so they work the same whether or not
//! a server runs; `queue flush` then wakes the running server through its
//! socket (`crate::wake`). The formatting lives in `mailgate_relay::admin`.

use std::sync::Arc;

use clap::Subcommand;
use mailgate_relay::admin;
use mailgate_store::queue::QueueStore;

use crate::config::Config;
use crate::wake::{self, Poke};

/// `mailgate queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List the messages waiting for delivery to other domains (like
    /// `mailq`): id (`!` after it when held), size, arrival, sender, and
    /// each recipient still pending with the last reply about it.
    List {
        /// One JSON document instead (`count`, `total_size`, `messages`;
        /// every recipient with its status; fields in docs/operations.md).
        #[arg(long)]
        json: bool,
    },
    /// Show one message: its state, every recipient's status and last
    /// reply, and the message header (`--body`: the whole message).
    Show {
        /// The number from `queue list`, or the queue id (`queue_id=` in
        /// the log, the id of the `250`).
        id: String,
        /// Print the whole message, not only its header.
        #[arg(long)]
        body: bool,
        /// One JSON document instead: the fields of `queue list --json`
        /// plus `header` (and `body` with --body), as text.
        #[arg(long)]
        json: bool,
    },
    /// Try now: make one message (or every message not held) due at once,
    /// ignoring the retry schedule, and wake the running server, which
    /// starts delivering at once (without a server: at its next start).
    Flush {
        /// The number from `queue list` or the queue id; without it, every message not held.
        id: Option<String>,
    },
    /// Remove messages from the queue for good (like `postsuper -d`): no
    /// bounce is sent, the sender is not told. A message being delivered
    /// at that moment is not stopped: that attempt ends (the remote server
    /// may get the message), but its outcome is not recorded, no further
    /// attempt is made and no bounce is sent. Held messages are included.
    #[command(group(clap::ArgGroup::new("which").required(true).multiple(true)
        .args(["id", "all", "from", "to_domain"])))]
    Delete {
        /// The number from `queue list` or the queue id.
        #[arg(conflicts_with_all = ["all", "from", "to_domain"])]
        id: Option<String>,
        /// Every message in the queue (`postsuper -d ALL`).
        #[arg(long, conflicts_with_all = ["from", "to_domain"])]
        all: bool,
        /// The messages from this envelope sender (any case; `<>` for
        /// bounces). With --to-domain: messages matching both.
        #[arg(long, value_name = "ADDR")]
        from: Option<String>,
        /// The messages whose recipients still pending are all in this
        /// domain (exactly; not its subdomains). A message that also has
        /// pending recipients elsewhere is left alone and named, so that no
        /// other recipient's copy is dropped: delete it by id if you mean to.
        #[arg(long, value_name = "DOMAIN")]
        to_domain: Option<String>,
    },
    /// Stop delivery attempts for a message until `queue release` (it
    /// keeps its age: once released, a failure past `[queue] max_age`
    /// bounces it).
    Hold {
        /// The number from `queue list` or the queue id.
        id: String,
    },
    /// Let a held message be delivered again, at its next scheduled
    /// attempt (add `queue flush ID` to try at once).
    Release {
        /// The number from `queue list` or the queue id.
        id: String,
    },
}

async fn open(config: &Config) -> Result<Arc<dyn QueueStore>, String> {
    Ok(super::open_store(config).await?)
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
    let store = open(config).await?;
    let store_ref = store.as_ref();
    let id = |s: String| async move {
        admin::resolve_id(store_ref, &s)
            .await
            .map_err(|e| e.to_string())
    };
    match command {
        QueueCommand::List { json } => {
            let entries = store.queue_list().await.map_err(|e| e.to_string())?;
            if json {
                println!("{:#}", admin::list_json(&entries));
            } else {
                print!("{}", admin::format_list(&entries));
            }
        }
        QueueCommand::Show { id: i, body, json } => {
            let (entry, raw) = admin::show(store.as_ref(), id(i).await?)
                .await
                .map_err(|e| e.to_string())?;
            if json {
                let mut doc = admin::entry_json(&entry);
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                doc["header"] = text(header_part(&raw)).into();
                if body {
                    doc["body"] = text(&raw).into();
                }
                println!("{doc:#}");
                return Ok(());
            }
            print!("{}", admin::format_entry(&entry));
            println!();
            let shown = if body { &raw[..] } else { header_part(&raw) };
            print!("{}", String::from_utf8_lossy(shown));
        }
        QueueCommand::Flush { id: i } => {
            let target = match i {
                Some(i) => Some(id(i).await?),
                None => None,
            };
            let now = unix_now();
            let n = admin::flush(store.as_ref(), target, now)
                .await
                .map_err(|e| e.to_string())?;
            if let (Some(i), 0) = (target, n) {
                return Err(format!("queue entry {i} does not exist or is held"));
            }
            if n == 0 {
                println!("0 messages due now");
                return Ok(());
            }
            let plural = if n == 1 { "" } else { "s" };
            match wake::poke(&config.data_dir) {
                Ok(Poke::Woken) => {
                    println!("{n} message{plural} due now; the server is delivering")
                }
                Ok(Poke::NotRunning) => println!(
                    "{n} message{plural} due now; no server is running: delivered when it starts"
                ),
                Err(e) => println!(
                    "{n} message{plural} due now; {e}: the server delivers within [queue] poll_interval"
                ),
            }
        }
        QueueCommand::Delete { id: Some(i), .. } => {
            let i = id(i).await?;
            admin::delete(store.as_ref(), i)
                .await
                .map_err(|e| e.to_string())?;
            println!("deleted {i}");
        }
        QueueCommand::Delete {
            id: None,
            all,
            from,
            to_domain,
        } => {
            let selector = if all {
                admin::Selector::All
            } else {
                admin::Selector::Matching { from, to_domain }
            };
            let report = admin::delete_matching(store.as_ref(), &selector)
                .await
                .map_err(|e| e.to_string())?;
            let ids = |v: &[i64]| {
                v.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            match report.deleted.len() {
                0 => println!("deleted 0 messages"),
                n => println!(
                    "deleted {n} message{}: {}",
                    if n == 1 { "" } else { "s" },
                    ids(&report.deleted)
                ),
            }
            if !report.mixed.is_empty() {
                println!(
                    "left alone (also pending for other domains; delete by id if you mean to): {}",
                    ids(&report.mixed)
                );
            }
        }
        QueueCommand::Hold { id: i } => {
            let i = id(i).await?;
            admin::set_held(store.as_ref(), i, true)
                .await
                .map_err(|e| e.to_string())?;
            println!("held {i}");
        }
        QueueCommand::Release { id: i } => {
            let i = id(i).await?;
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
