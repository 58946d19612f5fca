//! doveadm-like account tools: `mailgate user show` and `mailgate mailbox
//! list|create|delete|rename|expunge`.
//!
//! Every change goes through the store's trait methods, as an IMAP session
//! would make it, and is announced to the running server
//! ([`mailgate_store::Backend::announce_to_other_processes`]) so that
//! its IMAP sessions (IDLE, NOOP) see it at once.

use std::collections::BTreeSet;
use std::sync::Arc;

use clap::Subcommand;
use mailgate_store::{Account, MailboxInfo, Store, StoreError};
use serde_json::json;

use crate::config::Config;

/// `mailgate mailbox ...`
#[derive(Debug, Subcommand)]
pub enum MailboxCommand {
    /// List an account's mailboxes: name, messages, unseen, size in bytes.
    List {
        /// The account's address.
        account: String,
        /// One JSON array instead: objects with name, messages, unseen,
        /// size, special_use (the RFC 6154 attribute, e.g. `\Sent`) and
        /// subscribed.
        #[arg(long)]
        json: bool,
    },
    /// Create a mailbox (`/` separates levels: `Archive/2024`) and
    /// subscribe the account to it, so that clients show it.
    Create {
        /// The account's address.
        account: String,
        /// The mailbox name.
        name: String,
    },
    /// Delete a mailbox with all its messages (not the mailboxes below
    /// it). INBOX cannot be deleted.
    Delete {
        /// The account's address.
        account: String,
        /// The mailbox name.
        name: String,
    },
    /// Rename a mailbox and the mailboxes below it. Renaming INBOX moves
    /// its messages to the new name and leaves INBOX empty (as IMAP does).
    Rename {
        /// The account's address.
        account: String,
        /// The current name.
        from: String,
        /// The new name (must not exist).
        to: String,
    },
    /// Remove messages from a mailbox for good. At least one selector is
    /// required; `--before` and `--seen` together select the messages
    /// matching both. Prints how many were expunged.
    Expunge {
        /// The account's address.
        account: String,
        /// The mailbox name.
        mailbox: String,
        /// Messages that arrived before this day (YYYY-MM-DD, 00:00 UTC),
        /// by their arrival time (IMAP INTERNALDATE).
        #[arg(long, value_name = "DATE")]
        before: Option<String>,
        /// Messages with the \Seen flag (read).
        #[arg(long)]
        seen: bool,
        /// Every message in the mailbox.
        #[arg(long, conflicts_with_all = ["before", "seen"])]
        all: bool,
    },
}

fn err(e: StoreError) -> String {
    e.to_string()
}

async fn open(config: &Config) -> Result<Arc<dyn Store>, String> {
    let store = super::open_store(config).await?;
    // The running server's IMAP sessions hear of the changes made here.
    store.announce_to_other_processes();
    Ok(store)
}

async fn account(store: &Arc<dyn Store>, address: &str) -> Result<Account, String> {
    let address = address.trim().to_lowercase();
    store
        .account(&address)
        .await
        .map_err(err)?
        .ok_or_else(|| format!("no account {address}"))
}

async fn mailbox(
    store: &Arc<dyn Store>,
    account: &Account,
    name: &str,
) -> Result<MailboxInfo, String> {
    store
        .mailbox(account.id, name)
        .await
        .map_err(err)?
        .ok_or_else(|| format!("no mailbox {name:?} in {}", account.address))
}

/// `mailgate mailbox ...`
pub async fn run(config: &Config, command: MailboxCommand) -> Result<(), String> {
    let store = open(config).await?;
    match command {
        MailboxCommand::List { account: a, json } => {
            let acct = account(&store, &a).await?;
            let boxes = store.list_mailboxes(acct.id).await.map_err(err)?;
            if json {
                let list: Vec<_> = boxes.iter().map(mailbox_json).collect();
                println!("{:#}", serde_json::Value::Array(list));
            } else {
                for m in &boxes {
                    println!(
                        "{}\t{}\t{}\t{}",
                        printable(&m.name),
                        m.messages,
                        m.unseen,
                        m.size
                    );
                }
            }
        }
        MailboxCommand::Create { account: a, name } => {
            let acct = account(&store, &a).await?;
            if name.trim().is_empty() {
                return Err("the mailbox name is empty".into());
            }
            store
                .create_mailbox(acct.id, &name, None)
                .await
                .map_err(err)?;
            store
                .set_subscribed(acct.id, &name, true)
                .await
                .map_err(err)?;
            println!("created {name:?} in {}", acct.address);
        }
        MailboxCommand::Delete { account: a, name } => {
            let acct = account(&store, &a).await?;
            let m = mailbox(&store, &acct, &name).await?;
            store.delete_mailbox(acct.id, &m.name).await.map_err(err)?;
            // A name left subscribed would show in clients as a ghost.
            let _ = store.set_subscribed(acct.id, &m.name, false).await;
            println!(
                "deleted {:?} in {} ({} messages)",
                m.name, acct.address, m.messages
            );
        }
        MailboxCommand::Rename {
            account: a,
            from,
            to,
        } => {
            let acct = account(&store, &a).await?;
            let m = mailbox(&store, &acct, &from).await?;
            if to.trim().is_empty() {
                return Err("the new mailbox name is empty".into());
            }
            store
                .rename_mailbox(acct.id, &m.name, &to)
                .await
                .map_err(err)?;
            println!("renamed {:?} to {to:?} in {}", m.name, acct.address);
        }
        MailboxCommand::Expunge {
            account: a,
            mailbox: name,
            before,
            seen,
            all,
        } => {
            if before.is_none() && !seen && !all {
                return Err("say which messages to expunge: --before DATE, --seen or --all".into());
            }
            let cutoff = before.as_deref().map(parse_day).transpose()?;
            let acct = account(&store, &a).await?;
            let m = mailbox(&store, &acct, &name).await?;
            let uids: Vec<_> = store
                .list_messages(m.id)
                .await
                .map_err(err)?
                .into_iter()
                .filter(|msg| {
                    all || (cutoff.is_none_or(|c| msg.internal_date < c)
                        && (!seen || msg.has_flag("\\Seen")))
                })
                .map(|msg| msg.uid)
                .collect();
            let removed = if uids.is_empty() {
                Vec::new()
            } else {
                store.expunge(m.id, &uids).await.map_err(err)?
            };
            println!(
                "expunged {} message(s) from {:?} in {}",
                removed.len(),
                m.name,
                acct.address
            );
        }
    }
    Ok(())
}

/// A mailbox name (chosen by an IMAP client) for a terminal: control
/// characters (a tab, an escape sequence) are escaped, so that they can
/// neither break the columns nor drive the terminal.
fn printable(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn mailbox_json(m: &MailboxInfo) -> serde_json::Value {
    json!({
        "name": m.name,
        "messages": m.messages,
        "unseen": m.unseen,
        "size": m.size,
        "special_use": m.special_use.map(|s| s.attribute()),
        "subscribed": m.subscribed,
    })
}

/// `YYYY-MM-DD` as seconds since the Unix epoch at 00:00 UTC that day.
fn parse_day(text: &str) -> Result<i64, String> {
    let bad = || format!("bad date {text:?}: use YYYY-MM-DD, e.g. 2024-01-31");
    let parts: Vec<&str> = text.trim().split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let num = |s: &str| -> Result<i64, String> {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<i64>().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (y, m, d) = (num(y)?, num(m)?, num(d)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if d < 1 || d > days_in_month {
        return Err(bad());
    }
    // Days from civil (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok((era * 146_097 + doe - 719_468) * 86_400)
}

/// Seconds since the Unix epoch as an RFC 3339 time in UTC.
fn rfc3339(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| at.to_string())
}

/// `mailgate user show ADDRESS [--json]`
pub async fn user_show(store: &Arc<dyn Store>, address: &str, json: bool) -> Result<(), String> {
    let acct = account(store, address).await?;
    let boxes = store.list_mailboxes(acct.id).await.map_err(err)?;
    let used: u64 = boxes.iter().map(|m| m.size).sum();
    let messages: u64 = boxes.iter().map(|m| u64::from(m.messages)).sum();
    let (aliases, catch_alls) = reached_by(store, &acct.address).await?;
    let last_login = store.last_login(&acct.address).await.map_err(err)?;
    if json {
        let doc = json!({
            "address": acct.address,
            "quota_bytes": acct.quota_bytes,
            "used_bytes": used,
            "messages": messages,
            "last_login": last_login.as_ref().map(|l| json!({
                "at": rfc3339(l.at),
                "client": l.client,
            })),
            "mailboxes": boxes.iter().map(mailbox_json).collect::<Vec<_>>(),
            "aliases": aliases,
            "catch_alls": catch_alls,
        });
        println!("{doc:#}");
        return Ok(());
    }
    println!("address: {}", acct.address);
    match acct.quota_bytes {
        Some(q) if q > 0 => println!(
            "quota: {q} bytes, used {used} bytes ({}%)",
            used.saturating_mul(100) / q
        ),
        Some(q) => println!("quota: {q} bytes, used {used} bytes"),
        None => println!("quota: none, used {used} bytes"),
    }
    println!("messages: {messages}");
    match &last_login {
        Some(l) => println!(
            "last login: {} from {}",
            rfc3339(l.at),
            printable(&l.client)
        ),
        None => println!("last login: never"),
    }
    println!("mailboxes:");
    for m in &boxes {
        println!(
            "  {}\t{} messages\t{} bytes",
            printable(&m.name),
            m.messages,
            m.size
        );
    }
    println!(
        "aliases: {}",
        if aliases.is_empty() {
            "none".to_string()
        } else {
            aliases.join(", ")
        }
    );
    println!(
        "catch-all of: {}",
        if catch_alls.is_empty() {
            "none".to_string()
        } else {
            catch_alls.join(", ")
        }
    );
    Ok(())
}

/// The aliases (directly or through other aliases) and the domains'
/// catch-alls whose mail reaches `address`.
async fn reached_by(
    store: &Arc<dyn Store>,
    address: &str,
) -> Result<(Vec<String>, Vec<String>), String> {
    let all = store.list_aliases().await.map_err(err)?;
    let mut reach: BTreeSet<String> = BTreeSet::from([address.to_string()]);
    let mut aliases = BTreeSet::new();
    loop {
        let before = aliases.len();
        for a in &all {
            if !aliases.contains(&a.alias)
                && a.targets
                    .iter()
                    .any(|t| reach.iter().any(|r| super::admin::names(t, r)))
            {
                aliases.insert(a.alias.clone());
                reach.insert(a.alias.clone());
            }
        }
        if aliases.len() == before {
            break;
        }
    }
    let mut catch_alls = Vec::new();
    for d in store.list_domains().await.map_err(err)? {
        if d.catch_all
            .as_deref()
            .is_some_and(|c| reach.iter().any(|r| super::admin::names(c, r)))
        {
            catch_alls.push(d.name);
        }
    }
    Ok((aliases.into_iter().collect(), catch_alls))
}

#[cfg(test)]
mod tests {
    use super::{parse_day, printable};

    #[test]
    fn names_for_a_terminal() {
        assert_eq!(printable("Sent/2024 ünï"), "Sent/2024 ünï");
        assert_eq!(printable("a\tb\x1b[2J"), "a\\tb\\u{1b}[2J");
    }

    #[test]
    fn days() {
        assert_eq!(parse_day("1970-01-01"), Ok(0));
        assert_eq!(parse_day("2024-03-01"), Ok(1_709_251_200));
        assert_eq!(parse_day("2000-02-29"), Ok(951_782_400));
        assert!(parse_day("2023-02-29").is_err());
        assert!(parse_day("2024-13-01").is_err());
        assert!(parse_day("2024-1-01").is_err());
        assert!(parse_day("+024-01-01").is_err());
        assert!(parse_day("").is_err());
        assert!(parse_day("2024-01-01-").is_err());
    }
}
