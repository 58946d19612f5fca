//! Shared pieces of the relay's integration tests: stores, a relay wired
//! to the in-process DNS server, and the real mailgate SMTP server as the
//! receiving side.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailgate_delivery::LocalDelivery;
use mailgate_relay::client::tls::{CertificateDer, TlsClients};
use mailgate_relay::dkim::DkimSigner;
use mailgate_relay::testing::TestDnsServer;
use mailgate_relay::{HickoryDns, ManualClock, Relay, RelayConfig, RelayParts, Router};
use mailgate_smtp::{SmtpContext, SmtpLimits};
use mailgate_store::queue::{NewQueued, NewQueuedRecipient};
use mailgate_store::{Directory, MailStore, SqliteStore, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The clock the tests start at.
pub const T0: i64 = 1_700_000_000;

/// A store with `domain` and accounts for `users`.
pub async fn store_with(dir: &std::path::Path, domain: &str, users: &[&str]) -> Arc<SqliteStore> {
    let store = SqliteStore::open(dir).unwrap();
    store.add_domain(domain).await.unwrap();
    for u in users {
        store.create_account(u, "x").await.unwrap();
    }
    store
}

/// The raw messages in `address`'s INBOX.
pub async fn inbox(store: &SqliteStore, address: &str) -> Vec<String> {
    let account = store.account(address).await.unwrap().unwrap();
    let mailbox = store.mailbox(account.id, "INBOX").await.unwrap().unwrap();
    let mut out = Vec::new();
    for m in store.list_messages(mailbox.id).await.unwrap() {
        let raw = store.message_raw(mailbox.id, m.uid).await.unwrap().unwrap();
        out.push(String::from_utf8_lossy(&raw).into_owned());
    }
    out
}

/// The real mailgate SMTP server for `store` on `ip` (free port).
pub async fn smtp_server(
    ip: &str,
    hostname: &str,
    store: Arc<SqliteStore>,
    domains: &[String],
) -> (SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(false);
    let dyn_store: Arc<dyn Store> = store;
    let delivery = Arc::new(LocalDelivery::new(dyn_store, domains));
    let ctx = Arc::new(SmtpContext::new(
        hostname,
        delivery,
        SmtpLimits::default(),
        rx,
    ));
    tokio::spawn(mailgate_smtp::serve(listener, ctx));
    (addr, tx)
}

/// A relay over `store` (queue and local delivery for `local_domains`),
/// resolving through `dns`, sending to `port`, on a manual clock.
pub fn relay(
    store: Arc<SqliteStore>,
    local_domains: &[String],
    dns: &TestDnsServer,
    port: u16,
    clock: Arc<ManualClock>,
    roots: Vec<CertificateDer<'static>>,
    tweak: impl FnOnce(&mut RelayConfig),
) -> Arc<Relay> {
    relay_with_dkim(store, local_domains, dns, port, clock, roots, None, tweak)
}

/// [`relay`] with a DKIM signer.
#[allow(clippy::too_many_arguments)]
pub fn relay_with_dkim(
    store: Arc<SqliteStore>,
    local_domains: &[String],
    dns: &TestDnsServer,
    port: u16,
    clock: Arc<ManualClock>,
    roots: Vec<CertificateDer<'static>>,
    dkim: Option<Arc<DkimSigner>>,
    tweak: impl FnOnce(&mut RelayConfig),
) -> Arc<Relay> {
    let mut config = RelayConfig {
        hostname: "mx.a.test".into(),
        nameservers: vec![dns.addr()],
        port,
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(10),
        ..RelayConfig::default()
    };
    config.retry.steps = vec![Duration::from_secs(60), Duration::from_secs(120)];
    config.retry.max_age = Duration::from_secs(600);
    tweak(&mut config);
    let resolver = HickoryDns::new(&config.nameservers, Duration::from_secs(2)).unwrap();
    let dyn_store: Arc<dyn Store> = store.clone();
    let local = Arc::new(LocalDelivery::new(dyn_store, local_domains));
    Relay::new(RelayParts {
        store,
        local: Some(local),
        router: Router::with_seed(Arc::new(resolver), 7),
        tls: TlsClients::new(&roots, false).unwrap(),
        config,
        clock,
        dkim,
    })
}

/// A message from `sender` to `rcpts`.
pub fn message(sender: &str, rcpts: &[&str], created: i64) -> NewQueued {
    NewQueued {
        sender: sender.into(),
        recipients: rcpts.iter().map(|r| NewQueuedRecipient::new(*r)).collect(),
        raw: Arc::new(
            format!(
                "From: <{sender}>\r\nTo: <{}>\r\nSubject: relay test\r\nMessage-ID: <t{created}@a.test>\r\n\r\nHello from a.test.\r\n.leading dot\r\n",
                rcpts.join(">, <")
            )
            .into_bytes(),
        ),
        created,
        envid: None,
        ret_full: None,
        smtputf8: false,
        eight_bit: false,
    }
}
