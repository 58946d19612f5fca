//! Test helpers: the real SQLite store in a temporary directory, a
//! context, and a client over `tokio::io::duplex` that reads responses
//! with their literals.
#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailgate_auth::{Authenticator, LimiterSettings, PlaintextPolicy};
use mailgate_imap::{serve_connection, ImapContext};
use mailgate_store::{
    password, DeliveryTarget, Directory, MailStore, MessageStructure, NewMessage, SqliteStore,
    Store,
};
use tokio::io::{
    AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const ALICE: &str = "alice@example.org";
pub const BOB: &str = "bob@example.org";
pub const PASSWORD: &str = "correct horse";

pub const MSG1: &[u8] = b"From: Ann <a@x.example>\r\nTo: alice@example.org\r\nSubject: one\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <1@x>\r\n\r\nHello world\r\n";
pub const MSG2: &[u8] = b"From: b@x.example\r\nSubject: two\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\npre\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\npart one\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n";
pub const MSG3: &[u8] = b"From: c@x.example\r\nSubject: three\r\n\r\nl1\r\nl2\r\n";

pub fn fast_limits() -> LimiterSettings {
    LimiterSettings {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_failures: 1000,
        window: Duration::from_secs(60),
    }
}

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
    pub ctx: Arc<ImapContext>,
    pub shutdown: watch::Sender<bool>,
    pub alice: i64,
    pub bob: i64,
}

pub async fn deliver(store: &SqliteStore, account: i64, mailbox: &str, raw: &[u8]) {
    let message = NewMessage {
        raw: Arc::new(raw.to_vec()),
        internal_date: 1_700_000_000,
        structure: MessageStructure::parse(raw),
    };
    let target = DeliveryTarget {
        account,
        mailbox: mailbox.into(),
        flags: Vec::new(),
    };
    store.deliver(message, &[target]).await.unwrap();
}

pub async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

pub async fn fixture_with(tune: impl FnOnce(&mut ImapContext)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.add_domain("example.org").await.unwrap();
    let hash = password::hash_password(PASSWORD);
    let alice = store.create_account(ALICE, &hash).await.unwrap();
    let bob = store.create_account(BOB, &hash).await.unwrap();
    for m in [MSG1, MSG2, MSG3] {
        deliver(&store, alice, "INBOX", m).await;
    }
    deliver(
        &store,
        bob,
        "INBOX",
        b"Subject: bob's secret\r\n\r\nsecret\r\n",
    )
    .await;
    let (tx, rx) = watch::channel(false);
    let dyn_store: Arc<dyn Store> = store.clone();
    // Clear-text passwords from anywhere: these tests run without TLS.
    let policy = PlaintextPolicy {
        allow_plaintext: true,
        trust_loopback: true,
    };
    let auth = Arc::new(
        Authenticator::new(Arc::clone(&dyn_store), fast_limits()).with_plaintext_policy(policy),
    );
    let mut ctx = ImapContext::new("imap.example.org", dyn_store, auth, rx);
    tune(&mut ctx);
    Fixture {
        _dir: dir,
        store,
        ctx: Arc::new(ctx),
        shutdown: tx,
        alice,
        bob,
    }
}

pub fn peer() -> SocketAddr {
    "192.0.2.7:41000".parse().unwrap()
}

pub struct Client {
    rd: BufReader<ReadHalf<DuplexStream>>,
    wr: WriteHalf<DuplexStream>,
    pub task: JoinHandle<()>,
    next: u32,
}

impl Client {
    pub async fn connect(ctx: &Arc<ImapContext>) -> (Client, String) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let task = tokio::spawn(serve_connection(server, peer(), Arc::clone(ctx)));
        let (rd, wr) = tokio::io::split(client);
        let mut c = Client {
            rd: BufReader::new(rd),
            wr,
            task,
            next: 1,
        };
        let greeting = c.line().await;
        (c, greeting)
    }

    pub async fn login(ctx: &Arc<ImapContext>, user: &str) -> Client {
        let (mut c, _) = Client::connect(ctx).await;
        let r = c.cmd(&format!("LOGIN {user} \"{PASSWORD}\"")).await;
        assert!(r.last().unwrap().starts_with("OK"), "{r:?}");
        c
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
    }

    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
    }

    /// One response line with its literals inline; "" on EOF.
    pub async fn line(&mut self) -> String {
        let mut all = Vec::new();
        loop {
            let mut v = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), self.rd.read_until(b'\n', &mut v))
                .await
                .expect("server did not answer in time")
                .unwrap();
            if v.is_empty() {
                break;
            }
            assert!(
                v.ends_with(b"\r\n"),
                "line without CRLF: {:?}",
                String::from_utf8_lossy(&v)
            );
            v.truncate(v.len() - 2);
            all.extend_from_slice(&v);
            // A literal follows?
            let Some(open) = v.iter().rposition(|&b| b == b'{') else {
                break;
            };
            let Some(n) = v.strip_suffix(b"}").and_then(|d| {
                std::str::from_utf8(&d[open + 1..])
                    .ok()?
                    .parse::<usize>()
                    .ok()
            }) else {
                break;
            };
            all.extend_from_slice(b"\r\n");
            let mut lit = vec![0; n];
            self.rd.read_exact(&mut lit).await.unwrap();
            all.extend_from_slice(&lit);
        }
        String::from_utf8_lossy(&all).into_owned()
    }

    /// Sends a command with a fresh tag; returns the untagged lines (without
    /// `* `) and the tagged one (without the tag) last.
    pub async fn cmd(&mut self, command: &str) -> Vec<String> {
        let tag = format!("t{}", self.next);
        self.next += 1;
        self.send(&format!("{tag} {command}")).await;
        self.until_tagged(&tag).await
    }

    pub async fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            assert!(!l.is_empty(), "connection closed; so far {out:?}");
            if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
                out.push(rest.to_string());
                return out;
            }
            out.push(l.strip_prefix("* ").unwrap_or(&l).to_string());
        }
    }

    /// The last line of `cmd`: the tagged status.
    pub async fn ok(&mut self, command: &str) -> Vec<String> {
        let r = self.cmd(command).await;
        assert!(r.last().unwrap().starts_with("OK"), "{command}: {r:?}");
        r
    }
}
