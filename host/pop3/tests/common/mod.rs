//! Test helpers: an in-memory store, a context, and a line-based client
//! over `tokio::io::duplex`.
#![allow(dead_code)] // each test file uses a different part

pub mod memstore;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailgate_auth::PlaintextPolicy;
use mailgate_auth::{Authenticator, LimiterSettings};
use mailgate_pop3::{serve_connection, Pop3Context};
use mailgate_store::Store;
use tokio::io::{
    AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use memstore::MemStore;

pub const ALICE: &str = "alice@example.org";
pub const BOB: &str = "bob@example.org";
pub const PASSWORD: &str = "correct horse";

/// Fast failure delays so tests do not wait seconds.
pub fn fast_limits() -> LimiterSettings {
    LimiterSettings {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_failures: 1000,
        window: Duration::from_secs(60),
    }
}

/// A context over `store`, with the shutdown sender.
pub fn context(
    store: Arc<dyn Store>,
    limits: LimiterSettings,
) -> (Pop3Context, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    // These tests are about the protocol, over a plain duplex stream from
    // a non-loopback address: allow passwords without TLS. The TLS tests
    // (tests/tls.rs) build their own strict context.
    let auth = Arc::new(
        Authenticator::new(Arc::clone(&store), limits).with_plaintext_policy(PlaintextPolicy {
            allow_plaintext: true,
            trust_loopback: false,
        }),
    );
    (Pop3Context::new("pop.example.org", store, auth, rx), tx)
}

/// The usual fixture: alice with three messages, bob with none.
pub struct Fixture {
    pub store: Arc<MemStore>,
    pub ctx: Arc<Pop3Context>,
    pub shutdown: watch::Sender<bool>,
    pub alice: i64,
}

pub const MSG1: &[u8] = b"From: a@x\r\nSubject: one\r\n\r\nHello\r\n";
pub const MSG2: &[u8] =
    b"From: b@x\r\nSubject: two\r\n\r\n.starts with dot\r\n..two dots\r\n.\r\nend\r\n";
pub const MSG3: &[u8] = b"From: c@x\r\nSubject: three\r\n\r\nl1\r\nl2\r\nl3\r\nl4\r\n";

pub fn fixture() -> Fixture {
    fixture_with(|_| {})
}

pub fn fixture_with(tune: impl FnOnce(&mut Pop3Context)) -> Fixture {
    let store = MemStore::new();
    let alice = store.add_account(ALICE, PASSWORD);
    store.add_account(BOB, PASSWORD);
    for m in [MSG1, MSG2, MSG3] {
        store.add_message(alice, m);
    }
    let (mut ctx, shutdown) = context(store.clone(), fast_limits());
    tune(&mut ctx);
    Fixture {
        store,
        ctx: Arc::new(ctx),
        shutdown,
        alice,
    }
}

/// A client talking to one `serve_connection` task.
pub struct Client {
    rd: BufReader<ReadHalf<DuplexStream>>,
    wr: WriteHalf<DuplexStream>,
    pub task: JoinHandle<()>,
}

pub fn peer() -> SocketAddr {
    "192.0.2.7:41000".parse().unwrap()
}

impl Client {
    /// Connects and returns the client with the greeting line.
    pub async fn connect(ctx: &Arc<Pop3Context>) -> (Client, String) {
        let (client, server) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(serve_connection(server, peer(), Arc::clone(ctx)));
        let (rd, wr) = tokio::io::split(client);
        let mut c = Client {
            rd: BufReader::new(rd),
            wr,
            task,
        };
        let greeting = c.line().await;
        (c, greeting)
    }

    /// Connects and logs in as `user` with USER/PASS, asserting success.
    pub async fn login(ctx: &Arc<Pop3Context>, user: &str) -> Client {
        let (mut c, _) = Client::connect(ctx).await;
        assert!(c.cmd(&format!("USER {user}")).await.starts_with("+OK"));
        let answer = c.cmd(&format!("PASS {PASSWORD}")).await;
        assert!(answer.starts_with("+OK"), "{answer}");
        c
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
    }

    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
    }

    /// One line, CRLF included; panics on timeout, "" on EOF.
    pub async fn raw_line(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), self.rd.read_until(b'\n', &mut v))
            .await
            .expect("server did not answer in time")
            .unwrap();
        v
    }

    /// One line without its CRLF (which must be there).
    pub async fn line(&mut self) -> String {
        let v = self.raw_line().await;
        assert!(
            v.ends_with(b"\r\n"),
            "line without CRLF: {:?}",
            String::from_utf8_lossy(&v)
        );
        String::from_utf8(v[..v.len() - 2].to_vec()).unwrap()
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        self.line().await
    }

    /// The raw bytes of a multi-line body up to and including `.\r\n`.
    pub async fn body_raw(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let line = self.raw_line().await;
            assert!(!line.is_empty(), "EOF inside a multi-line answer");
            all.extend_from_slice(&line);
            if line == b".\r\n" {
                return all;
            }
        }
    }

    /// The lines of a multi-line body, still stuffed, without the end.
    pub async fn body(&mut self) -> Vec<String> {
        let raw = self.body_raw().await;
        let text = String::from_utf8(raw).unwrap();
        let mut lines: Vec<String> = text.split("\r\n").map(str::to_string).collect();
        lines.truncate(lines.len() - 2); // "." and the empty rest
        lines
    }

    /// Waits until the server closes the connection (EOF), returning any
    /// bytes it sent first.
    pub async fn until_eof(&mut self) -> String {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), self.rd.read_to_end(&mut rest))
            .await
            .expect("server did not close")
            .unwrap();
        String::from_utf8_lossy(&rest).into_owned()
    }

    /// Drops the connection and waits for the server task to end.
    pub async fn hang_up(self) {
        let Client { rd, wr, task } = self;
        drop(rd);
        drop(wr);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
}
