//! COMPRESS=DEFLATE (RFC 4978) end to end: the client side uses the same
//! adapter (raw DEFLATE is symmetric).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mailgate_imap::compress::Deflate;
use mailgate_imap::serve_connection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

async fn line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> String {
    let mut v = String::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut v))
        .await
        .expect("no answer")
        .unwrap();
    v.trim_end().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_both_ways() {
    let f = fixture().await;
    let (client, server) = tokio::io::duplex(1 << 16);
    tokio::spawn(serve_connection(server, peer(), Arc::clone(&f.ctx)));
    let mut plain = BufReader::new(client);
    assert!(line(&mut plain).await.starts_with("* OK"));
    plain
        .write_all(format!("a LOGIN {ALICE} \"{PASSWORD}\"\r\n").as_bytes())
        .await
        .unwrap();
    assert!(line(&mut plain).await.starts_with("a OK"));
    plain.write_all(b"b COMPRESS DEFLATE\r\n").await.unwrap();
    assert_eq!(line(&mut plain).await, "b OK DEFLATE active");
    assert!(plain.buffer().is_empty());
    let mut z = BufReader::new(Deflate::new(plain.into_inner(), Vec::new()));
    z.write_all(b"c SELECT INBOX\r\n").await.unwrap();
    z.flush().await.unwrap();
    let mut lines = Vec::new();
    loop {
        let l = line(&mut z).await;
        let done = l.starts_with("c ");
        lines.push(l);
        if done {
            break;
        }
    }
    assert_eq!(lines[0], "* 3 EXISTS");
    assert_eq!(lines.last().unwrap(), "c OK [READ-WRITE] SELECT completed");
    z.write_all(b"d FETCH 3 BODY.PEEK[TEXT]\r\ne COMPRESS DEFLATE\r\nf LOGOUT\r\n")
        .await
        .unwrap();
    z.flush().await.unwrap();
    assert_eq!(line(&mut z).await, "* 3 FETCH (BODY[TEXT] {8}");
    assert_eq!(line(&mut z).await, "l1");
    assert_eq!(line(&mut z).await, "l2");
    assert_eq!(line(&mut z).await, ")");
    assert_eq!(line(&mut z).await, "d OK FETCH completed");
    assert_eq!(
        line(&mut z).await,
        "e NO [COMPRESSIONACTIVE] Compression is already active"
    );
    assert_eq!(line(&mut z).await, "* BYE Logging out");
    assert_eq!(line(&mut z).await, "f OK LOGOUT completed");
}
