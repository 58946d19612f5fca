//! A test double of the store and a scripted SMTP client over
//! `tokio::io::duplex`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mailgate_delivery::LocalDelivery;
use mailgate_smtp::{serve_connection, SmtpContext, SmtpLimits};
use mailgate_store::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// In-memory store: a few accounts, aliases and domains; records
/// deliveries; can be told to fail.
pub struct MemStore {
    pub domains: Vec<String>,
    pub accounts: HashMap<String, AccountId>,
    pub aliases: HashMap<String, Vec<String>>,
    pub delivered: Mutex<Vec<(Vec<u8>, Vec<DeliveryTarget>)>>,
    pub fail: AtomicBool,
    events: broadcast::Sender<StoreEvent>,
}

impl MemStore {
    pub fn new() -> Arc<MemStore> {
        let accounts = [
            ("alice@example.org", 1),
            ("bob@example.org", 2),
            ("postmaster@example.org", 3),
            ("jöran@bücher.example", 4),
        ]
        .into_iter()
        .map(|(a, id)| (a.to_string(), id))
        .collect();
        let aliases = [(
            "team@example.org".to_string(),
            vec![
                "alice@example.org".to_string(),
                "bob@example.org".to_string(),
            ],
        )]
        .into_iter()
        .collect();
        Arc::new(MemStore {
            domains: vec!["example.org".into(), "bücher.example".into()],
            accounts,
            aliases,
            delivered: Mutex::new(Vec::new()),
            fail: AtomicBool::new(false),
            events: broadcast::channel(16).0,
        })
    }

    pub fn messages(&self) -> Vec<(String, Vec<AccountId>)> {
        self.delivered
            .lock()
            .unwrap()
            .iter()
            .map(|(raw, t)| {
                (
                    String::from_utf8_lossy(raw).into_owned(),
                    t.iter().map(|t| t.account).collect(),
                )
            })
            .collect()
    }

    fn check_fail(&self) -> StoreResult<()> {
        if self.fail.load(Ordering::SeqCst) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }
}

fn unsupported<T>() -> StoreResult<T> {
    Err(StoreError::Invalid(
        "not supported by the test double".into(),
    ))
}

#[async_trait]
impl Directory for MemStore {
    async fn list_domains(&self) -> StoreResult<Vec<DomainInfo>> {
        self.check_fail()?;
        Ok(self
            .domains
            .iter()
            .map(|d| DomainInfo {
                name: d.clone(),
                catch_all: None,
            })
            .collect())
    }
    async fn add_domain(&self, _: &str) -> StoreResult<()> {
        unsupported()
    }
    async fn delete_domain(&self, _: &str) -> StoreResult<bool> {
        unsupported()
    }
    async fn set_catch_all(&self, _: &str, _: Option<&str>) -> StoreResult<()> {
        unsupported()
    }
    async fn create_account(&self, _: &str, _: &str) -> StoreResult<AccountId> {
        unsupported()
    }
    async fn set_password_hash(&self, _: &str, _: &str) -> StoreResult<bool> {
        unsupported()
    }
    async fn delete_account(&self, _: &str) -> StoreResult<bool> {
        unsupported()
    }
    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        unsupported()
    }
    async fn account(&self, address: &str) -> StoreResult<Option<Account>> {
        self.check_fail()?;
        Ok(self.accounts.get(address).map(|&id| Account {
            id,
            address: address.to_string(),
            password_hash: String::new(),
            quota_bytes: None,
        }))
    }
    async fn account_by_id(&self, _: AccountId) -> StoreResult<Option<Account>> {
        unsupported()
    }
    async fn set_alias(&self, _: &str, _: &[String]) -> StoreResult<()> {
        unsupported()
    }
    async fn delete_alias(&self, _: &str) -> StoreResult<bool> {
        unsupported()
    }
    async fn list_aliases(&self) -> StoreResult<Vec<Alias>> {
        unsupported()
    }
    async fn alias(&self, alias: &str) -> StoreResult<Option<Vec<String>>> {
        self.check_fail()?;
        Ok(self.aliases.get(alias).cloned())
    }
}

#[async_trait]
impl MailStore for MemStore {
    async fn list_mailboxes(&self, _: AccountId) -> StoreResult<Vec<MailboxInfo>> {
        unsupported()
    }
    async fn mailbox(&self, _: AccountId, _: &str) -> StoreResult<Option<MailboxInfo>> {
        unsupported()
    }
    async fn create_mailbox(
        &self,
        _: AccountId,
        _: &str,
        _: Option<SpecialUse>,
    ) -> StoreResult<MailboxId> {
        unsupported()
    }
    async fn deliver(
        &self,
        message: NewMessage,
        targets: &[DeliveryTarget],
    ) -> StoreResult<Vec<Delivered>> {
        self.check_fail()?;
        let mut d = self.delivered.lock().unwrap();
        d.push((message.raw.to_vec(), targets.to_vec()));
        let uid = Uid::new(d.len() as u32).unwrap();
        Ok(targets
            .iter()
            .map(|t| Delivered {
                account: t.account,
                mailbox: t.account * 10,
                uid,
            })
            .collect())
    }
    async fn list_messages(&self, _: MailboxId) -> StoreResult<Vec<MessageMeta>> {
        unsupported()
    }
    async fn message_raw(&self, _: MailboxId, _: Uid) -> StoreResult<Option<Vec<u8>>> {
        unsupported()
    }
    async fn message_structure(
        &self,
        _: MailboxId,
        _: Uid,
    ) -> StoreResult<Option<MessageStructure>> {
        unsupported()
    }
    async fn store_flags(
        &self,
        _: MailboxId,
        _: &[Uid],
        _: FlagChange,
    ) -> StoreResult<Vec<MessageMeta>> {
        unsupported()
    }
    async fn expunge(&self, _: MailboxId, _: &[Uid]) -> StoreResult<Vec<Uid>> {
        unsupported()
    }
    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }
    async fn check(&self) -> StoreResult<Vec<String>> {
        Ok(vec![])
    }
}

/// A server under test: its store, its shutdown switch, and a way to
/// open sessions.
pub struct Harness {
    pub store: Arc<MemStore>,
    pub ctx: Arc<SmtpContext>,
    pub shutdown: watch::Sender<bool>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_limits(SmtpLimits::default())
    }

    pub fn with_limits(limits: SmtpLimits) -> Harness {
        let store = MemStore::new();
        let delivery = Arc::new(LocalDelivery::new(store.clone(), &[]));
        let (shutdown, rx) = watch::channel(false);
        let ctx = Arc::new(SmtpContext::new("mx.example.org", delivery, limits, rx));
        Harness {
            store,
            ctx,
            shutdown,
        }
    }

    /// Connects a client; returns it after reading the greeting.
    pub async fn connect(&self) -> Client {
        let (client, server) = tokio::io::duplex(1 << 20);
        let peer: SocketAddr = "192.0.2.10:40000".parse().unwrap();
        let task = tokio::spawn(serve_connection(server, peer, self.ctx.clone()));
        let (r, w) = tokio::io::split(client);
        let mut c = Client {
            reader: BufReader::new(r),
            writer: w,
            task: Some(task),
        };
        let greeting = c.reply().await;
        assert_eq!(greeting, "220 mx.example.org ESMTP mailgate\r\n");
        c
    }
}

pub struct Client {
    pub reader: BufReader<ReadHalf<DuplexStream>>,
    pub writer: WriteHalf<DuplexStream>,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Client {
    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    /// Reads one whole (possibly multi-line) reply; "" on EOF.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                .await
                .expect("reply timed out")
                .unwrap();
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    /// Sends a command and returns the reply's first line's code + text.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Asserts the next reply starts with `prefix`.
    pub async fn expect(&mut self, prefix: &str) -> String {
        let r = self.reply().await;
        assert!(r.starts_with(prefix), "expected {prefix:?}, got {r:?}");
        r
    }

    /// Asserts the server closed the connection.
    pub async fn expect_closed(&mut self) {
        let r = self.reply().await;
        assert_eq!(r, "", "expected EOF");
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }
}
