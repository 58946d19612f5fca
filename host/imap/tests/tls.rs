//! STARTTLS (RFC 9051 §6.2.1) and implicit TLS over `tokio::io::duplex`:
//! capabilities before and after, LOGINDISABLED, and the injection rule
//! (bytes pipelined after STARTTLS are never executed).

mod common;

use std::sync::Arc;

use common::*;
use mailgate_auth::{Authenticator, PlaintextPolicy};
use mailgate_imap::{serve_connection, ImapContext, TlsMode};
use mailgate_tls::{Acceptor, Alpn, Certificates};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

fn certs(dir: &std::path::Path) -> Arc<Certificates> {
    let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
    mailgate_tls::ensure_self_signed("imap.example.org", &c, &k).unwrap();
    Certificates::load(&c, &k).unwrap()
}

/// A context with clear-text passwords refused and `mode` for TLS.
fn strict(ctx: &mut ImapContext, mode: TlsMode) {
    ctx.auth = Arc::new(
        Authenticator::new(Arc::clone(&ctx.store), fast_limits())
            .with_plaintext_policy(PlaintextPolicy::default()),
    );
    ctx.tls = mode;
}

async fn line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> String {
    let mut s = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), r.read_line(&mut s))
        .await
        .expect("no answer")
        .unwrap();
    s.trim_end().to_string()
}

#[tokio::test]
async fn starttls_discards_injected_commands_and_enables_login() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let acceptor = Acceptor::new(&certs, Alpn::Imap).unwrap();
    let f = fixture_with(|c| strict(c, TlsMode::StartTls(acceptor))).await;
    let (client, server) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(serve_connection(server, peer(), Arc::clone(&f.ctx)));
    let mut plain = BufReader::new(client);
    let greeting = line(&mut plain).await;
    assert!(greeting.contains("STARTTLS"), "{greeting}");
    assert!(greeting.contains("LOGINDISABLED"), "{greeting}");
    assert!(!greeting.contains("AUTH=PLAIN"), "{greeting}");
    plain
        .get_mut()
        .write_all(format!("a LOGIN {ALICE} \"{PASSWORD}\"\r\n").as_bytes())
        .await
        .unwrap();
    assert!(line(&mut plain).await.starts_with("a NO [PRIVACYREQUIRED]"));
    // The injection: one write, STARTTLS and a command after it.
    plain
        .get_mut()
        .write_all(b"b STARTTLS\r\nc CAPABILITY\r\n")
        .await
        .unwrap();
    assert_eq!(line(&mut plain).await, "b OK Begin TLS negotiation now");
    let tls = mailgate_tls::testing::connect(&certs, "imap.example.org", &[b"imap"], plain)
        .await
        .unwrap();
    let mut tls = BufReader::new(tls);
    tls.get_mut().write_all(b"d CAPABILITY\r\n").await.unwrap();
    let caps = line(&mut tls).await;
    assert!(
        caps.starts_with("* CAPABILITY "),
        "c must not be answered: {caps}"
    );
    assert!(
        !caps.contains("STARTTLS") && !caps.contains("LOGINDISABLED"),
        "{caps}"
    );
    assert!(caps.contains("AUTH=PLAIN"), "{caps}");
    assert_eq!(line(&mut tls).await, "d OK CAPABILITY completed");
    tls.get_mut().write_all(b"e STARTTLS\r\n").await.unwrap();
    assert!(line(&mut tls).await.starts_with("e BAD"));
    tls.get_mut()
        .write_all(format!("f LOGIN {ALICE} \"{PASSWORD}\"\r\ng LOGOUT\r\n").as_bytes())
        .await
        .unwrap();
    assert!(line(&mut tls).await.starts_with("f OK [CAPABILITY "));
    assert_eq!(line(&mut tls).await, "* BYE Logging out");
    assert_eq!(line(&mut tls).await, "g OK LOGOUT completed");
    task.await.unwrap();
}

#[tokio::test]
async fn implicit_tls_greets_inside_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let acceptor = Acceptor::new(&certs, Alpn::Imap).unwrap();
    let f = fixture_with(|c| strict(c, TlsMode::Implicit(acceptor))).await;
    let (client, server) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(serve_connection(server, peer(), Arc::clone(&f.ctx)));
    let tls = mailgate_tls::testing::connect(&certs, "imap.example.org", &[b"imap"], client)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"imap"[..]));
    let mut tls = BufReader::new(tls);
    let greeting = line(&mut tls).await;
    assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
    assert!(!greeting.contains("STARTTLS") && !greeting.contains("LOGINDISABLED"));
    tls.get_mut()
        .write_all(format!("a LOGIN {ALICE} \"{PASSWORD}\"\r\nb SELECT INBOX\r\n").as_bytes())
        .await
        .unwrap();
    assert!(line(&mut tls).await.starts_with("a OK"));
    loop {
        let l = line(&mut tls).await;
        if l.starts_with("b ") {
            assert!(l.starts_with("b OK [READ-WRITE]"), "{l}");
            break;
        }
    }
    drop(tls);
    task.await.unwrap();
}

#[tokio::test]
async fn starttls_without_tls_configured_is_refused() {
    let f = fixture().await;
    let (mut c, greeting) = Client::connect(&f.ctx).await;
    assert!(!greeting.contains("STARTTLS"));
    let r = c.cmd("STARTTLS").await;
    assert!(r[0].starts_with("BAD"), "{r:?}");
    c.ok("CAPABILITY").await;
}
