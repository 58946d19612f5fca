//! Shared pieces of the relay's integration tests: stores, a relay wired
//! to the in-process DNS server, and the real mailgate SMTP server as the
//! receiving side.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailgate_delivery::LocalDelivery;
use mailgate_relay::client::tls::{CertificateDer, TlsClients};
use mailgate_relay::dkim::{DkimSigner, GeneratedKey};
use mailgate_relay::testing::peer::{self_signed_tls, PeerScript, ScriptedPeer};
use mailgate_relay::testing::TestDnsServer;
use mailgate_relay::{HickoryDns, ManualClock, Relay, RelayConfig, RelayParts, Router};
use mailgate_smtp::{SmtpContext, SmtpLimits};
use mailgate_store::queue::{
    NewQueued, NewQueuedRecipient, OutboundQueue, QueueStore, RecipientStatus,
};
use mailgate_store::{Directory, MailStore, SqliteStore, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The clock the tests start at.
pub const T0: i64 = 1_700_000_000;

/// Owned domain names.
pub fn domains(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The sending side's store (domain a.test with accounts for `users`) in
/// a fresh directory, kept alive by the returned guard.
pub async fn sender_store(users: &[&str]) -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "a.test", users).await;
    (dir, store)
}

/// A scripted SMTP peer on `ip`.
pub async fn peer(ip: &str, script: PeerScript) -> ScriptedPeer {
    ScriptedPeer::start(ip, script).await.unwrap()
}

/// A scripted SMTP peer on `ip` offering STARTTLS with a self-signed
/// certificate for `names`; also returns the certificate.
pub async fn tls_peer(ip: &str, names: &[&str]) -> (ScriptedPeer, CertificateDer<'static>) {
    let (tls, cert) = self_signed_tls(names);
    let script = PeerScript {
        tls: Some(tls),
        ..PeerScript::default()
    };
    (peer(ip, script).await, cert)
}

/// The in-process DNS server where each `(domain, ip)` has the MX
/// `mx.<domain>` (preference 10) at `ip`.
pub async fn dns_with_mx(mx: &[(&str, &str)]) -> TestDnsServer {
    let dns = TestDnsServer::start().await.unwrap();
    for (domain, ip) in mx {
        let host = format!("mx.{domain}");
        dns.add_mx(domain, 10, &host);
        dns.add_ip(&host, ip.parse().unwrap());
    }
    dns
}

/// A DKIM key for `domain` and `selector` and a signer holding it.
pub fn dkim_signer(domain: &str, selector: &str) -> (GeneratedKey, DkimSigner) {
    let key = mailgate_relay::dkim::generate(domain, selector, 1024).unwrap();
    let mut signer = DkimSigner::new();
    signer
        .add_pem(domain, selector, key.private_pem.as_bytes())
        .unwrap();
    (key, signer)
}

/// The relay of a.test (local delivery for a.test, no extra TLS roots)
/// over `store`, at [`T0`] on the returned clock.
pub fn sender_relay(
    store: &Arc<SqliteStore>,
    dns: &TestDnsServer,
    port: u16,
    dkim: Option<DkimSigner>,
    tweak: impl FnOnce(&mut RelayConfig),
) -> (Arc<Relay>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let relay = relay_with_dkim(
        store.clone(),
        &domains(&["a.test"]),
        dns,
        port,
        clock.clone(),
        Vec::new(),
        dkim.map(Arc::new),
        tweak,
    );
    (relay, clock)
}

/// The last reply of recipient `index` of queue entry `id`, which must
/// still be pending.
pub async fn pending_reply(store: &SqliteStore, id: i64, index: usize) -> String {
    let e = store.queue_entry(id).await.unwrap().unwrap();
    let r = &e.recipients[index];
    assert_eq!(r.status, RecipientStatus::Pending, "{r:?}");
    r.last_reply.clone().unwrap()
}

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
    let resolver = resolver(dns);
    let dyn_store: Arc<dyn Store> = store.clone();
    let local = Arc::new(LocalDelivery::new(dyn_store, local_domains));
    let mta_sts_cache: Arc<dyn mailgate_store::MtaStsCache> = store.clone();
    Relay::new(RelayParts {
        store,
        local: Some(local),
        router: Router::with_seed(Arc::new(resolver), 7),
        tls: TlsClients::new(&roots, false).unwrap(),
        config,
        clock,
        dkim,
        mta_sts_cache: Some(mta_sts_cache),
    })
}

/// A message from `sender` to `rcpts`.
pub fn message(sender: &str, rcpts: &[&str], created: i64) -> NewQueued {
    NewQueued {
        msg_id: None,
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

/// [`message`] with a next hop per recipient (`None`: MX routing).
pub fn routed(sender: &str, rcpts: &[(&str, Option<&str>)], created: i64) -> NewQueued {
    let addrs: Vec<&str> = rcpts.iter().map(|(a, _)| *a).collect();
    let mut m = message(sender, &addrs, created);
    for (r, (_, hop)) in m.recipients.iter_mut().zip(rcpts) {
        r.next_hop = hop.map(String::from);
    }
    m
}

/// `peer` as a next hop: `[ip]:port`.
pub fn hop_to(peer: &ScriptedPeer) -> String {
    format!("[{}]:{}", peer.addr().ip(), peer.addr().port())
}

/// A hickory resolver asking only `dns`.
pub fn resolver(dns: &TestDnsServer) -> HickoryDns {
    HickoryDns::new(&[dns.addr()], Duration::from_secs(2)).unwrap()
}

/// Queues `message` with `relay` and runs one pass of its queue; the
/// message's queue id.
pub async fn send(relay: &Arc<Relay>, message: NewQueued) -> i64 {
    let id = relay.enqueue(message).await.unwrap();
    relay.run_once().await.unwrap();
    id
}
