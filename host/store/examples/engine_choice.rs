//! The measurement behind the store's engine choice (docs/architecture.md):
//! durable deliveries of 10 KB messages from 50 concurrent writers,
//! (a) bodies as blobs inside SQLite with the store's group commit, against
//! (b) bodies as one file each, written and fsynced (file and directory)
//! before the index commit, as Maildir-style stores do.
//!
//! Run: `cargo run --release -p mailgate-store --example engine_choice`

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use mailgate_store::*;

const MESSAGES: usize = 2000;
const WRITERS: usize = 50;
const SIZE: usize = 10 * 1024;

fn body(i: usize) -> Vec<u8> {
    let mut raw = format!("Subject: m{i}\r\n\r\n").into_bytes();
    while raw.len() < SIZE {
        raw.extend_from_slice(
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n",
        );
    }
    raw
}

async fn sqlite_blobs() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let account = store.create_account("a@x.org", "h").await.unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..MESSAGES).step_by(WRITERS) {
                let raw = body(i);
                let structure = MessageStructure::parse(&raw);
                let m = NewMessage {
                    raw: Arc::new(raw),
                    internal_date: 0,
                    structure,
                };
                let t = DeliveryTarget {
                    account,
                    mailbox: "INBOX".into(),
                    flags: vec![],
                };
                store.deliver(m, &[t]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

async fn files_then_index() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("index")).unwrap();
    let account = store.create_account("a@x.org", "h").await.unwrap();
    let bodies = Arc::new(dir.path().join("bodies"));
    std::fs::create_dir_all(&*bodies).unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let bodies = bodies.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..MESSAGES).step_by(WRITERS) {
                let raw = body(i);
                let path = bodies.join(format!("{i}"));
                let data = raw.clone();
                let dir = bodies.clone();
                tokio::task::spawn_blocking(move || {
                    let mut f = std::fs::File::create(&path).unwrap();
                    f.write_all(&data).unwrap();
                    f.sync_all().unwrap();
                    std::fs::File::open(&*dir).unwrap().sync_all().unwrap();
                })
                .await
                .unwrap();
                // The index entry (no body inside the database).
                let m = NewMessage {
                    raw: Arc::new(Vec::new()),
                    internal_date: 0,
                    structure: MessageStructure::parse(&raw),
                };
                let t = DeliveryTarget {
                    account,
                    mailbox: "INBOX".into(),
                    flags: vec![],
                };
                store.deliver(m, &[t]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let a = sqlite_blobs().await;
    let b = files_then_index().await;
    println!("{MESSAGES} durable deliveries of {SIZE} bytes, {WRITERS} concurrent writers:");
    println!("  sqlite blobs, group commit : {a:>8.0} msg/s");
    println!("  file + fsync, then index   : {b:>8.0} msg/s");
    println!("  ratio                      : {:>8.2}x", a / b);
}
