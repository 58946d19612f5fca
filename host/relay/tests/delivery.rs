//! The relay against real peers: the in-process DNS server, the real
//! mailgate SMTP server (with its own store) and scripted SMTP peers.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mailgate_relay::testing::peer::{self_signed_tls, PeerScript, ScriptedPeer};
use mailgate_relay::testing::TestDnsServer;
use mailgate_relay::{Dns, ManualClock};
use mailgate_store::queue::{OutboundQueue, QueueStore, RecipientStatus};

#[tokio::test]
async fn hickory_resolver_reads_the_test_zone() {
    let dns = TestDnsServer::start().await.unwrap();
    dns.add_mx("b.test", 10, "mx.b.test");
    dns.add_ip("mx.b.test", "127.0.0.3".parse().unwrap());
    dns.add_ip("mx.b.test", "::1".parse().unwrap());
    dns.add_mx("null.test", 0, ".");
    dns.add_ip("plain.test", "127.0.0.4".parse().unwrap());
    dns.fail("broken.test", true);
    let r = resolver(&dns);
    let mx = r.mx("b.test").await.unwrap();
    assert_eq!(
        (mx[0].preference, mx[0].exchange.as_str()),
        (10, "mx.b.test")
    );
    let ips = r.ips("mx.b.test").await.unwrap();
    assert_eq!(ips.len(), 2, "A and AAAA: {ips:?}");
    assert_eq!(r.mx("null.test").await.unwrap()[0].exchange, "");
    assert!(r.mx("plain.test").await.unwrap().is_empty(), "NODATA");
    assert!(matches!(
        r.mx("nowhere.test").await,
        Err(mailgate_relay::DnsError::NoSuchDomain(_))
    ));
    assert!(matches!(
        r.mx("broken.test").await,
        Err(mailgate_relay::DnsError::Temporary { .. })
    ));
    // Answers are cached for their TTL: asking again costs no query.
    let before = dns.queries();
    r.mx("b.test").await.unwrap();
    assert_eq!(dns.queries(), before);
}

#[tokio::test]
async fn delivers_to_the_real_smtp_server_found_by_mx() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let store_a = store_with(dir_a.path(), "a.test", &["alice@a.test"]).await;
    let store_b = store_with(dir_b.path(), "b.test", &["bob@b.test", "carol@b.test"]).await;
    let (addr, _stop) = smtp_server(
        "127.0.0.3",
        "mx.b.test",
        store_b.clone(),
        &domains(&["b.test"]),
    )
    .await;
    let dns = TestDnsServer::start().await.unwrap();
    dns.add_mx("b.test", 10, "mx.b.test");
    dns.add_ip("mx.b.test", "127.0.0.3".parse().unwrap());
    let clock = Arc::new(ManualClock::new(T0));
    let relay = relay(
        store_a.clone(),
        &domains(&["a.test"]),
        &dns,
        addr.port(),
        clock,
        Vec::new(),
        |_| {},
    );
    let id = relay
        .enqueue(message(
            "alice@a.test",
            &["bob@b.test", "carol@b.test", "nobody@b.test"],
            T0,
        ))
        .await
        .unwrap();
    relay.run_once().await.unwrap();
    let bob = inbox(&store_b, "bob@b.test").await;
    assert_eq!(bob.len(), 1);
    assert!(bob[0].contains("Subject: relay test"));
    assert!(
        bob[0].contains("\r\n.leading dot\r\n"),
        "dot-stuffing undone by the peer"
    );
    assert!(bob[0].starts_with("Return-Path: <alice@a.test>"));
    assert_eq!(inbox(&store_b, "carol@b.test").await.len(), 1);
    // nobody@b.test was refused (550): the message is done, and alice has
    // a bounce for that recipient only, delivered locally on the next run.
    assert!(store_a.queue_entry(id).await.unwrap().is_none());
    relay.run_once().await.unwrap();
    let bounces = inbox(&store_a, "alice@a.test").await;
    assert_eq!(bounces.len(), 1, "{bounces:?}");
    assert!(bounces[0].starts_with("Return-Path: <>"));
    assert!(bounces[0].contains("Final-Recipient: rfc822; nobody@b.test"));
    assert!(bounces[0].contains("Action: failed"));
    assert!(!bounces[0].contains("Final-Recipient: rfc822; bob@b.test"));
    assert!(store_a.queue_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn temporary_failures_retry_with_backoff_then_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "a.test", &["alice@a.test"]).await;
    let accept = Arc::new(AtomicBool::new(false));
    let flag = accept.clone();
    let peer = ScriptedPeer::start(
        "127.0.0.3",
        PeerScript {
            rcpt: Arc::new(move |a: &str| {
                if a.starts_with("bad") {
                    "550 5.1.1 No such user".into()
                } else if a.starts_with("slow") && !flag.load(Ordering::SeqCst) {
                    "451 4.2.0 Try later".into()
                } else {
                    "250 2.1.5 Ok".into()
                }
            }),
            ..PeerScript::default()
        },
    )
    .await
    .unwrap();
    let dns = TestDnsServer::start().await.unwrap();
    dns.add_mx("b.test", 10, "mx.b.test");
    dns.add_ip("mx.b.test", "127.0.0.3".parse().unwrap());
    let clock = Arc::new(ManualClock::new(T0));
    let relay = relay(
        store.clone(),
        &domains(&["a.test"]),
        &dns,
        peer.addr().port(),
        clock.clone(),
        Vec::new(),
        |_| {},
    );
    let id = relay
        .enqueue(message(
            "alice@a.test",
            &["good@b.test", "slow@b.test", "bad@b.test"],
            T0,
        ))
        .await
        .unwrap();
    relay.run_once().await.unwrap();
    let e = store.queue_entry(id).await.unwrap().unwrap();
    let status: Vec<_> = e.recipients.iter().map(|r| r.status).collect();
    assert_eq!(
        status,
        [
            RecipientStatus::Delivered,
            RecipientStatus::Pending,
            RecipientStatus::Failed
        ]
    );
    assert_eq!(e.next_attempt, T0 + 60, "first retry step");
    assert_eq!(peer.messages().len(), 1);
    assert_eq!(peer.messages()[0].rcpts, vec!["good@b.test"]);
    // Not due yet: nothing happens.
    clock.advance(30);
    relay.run_once().await.unwrap();
    assert_eq!(store.queue_entry(id).await.unwrap().unwrap().attempts, 1);
    // Second attempt, still refused: the next wait is the second step.
    clock.advance(30);
    relay.run_once().await.unwrap();
    let e = store.queue_entry(id).await.unwrap().unwrap();
    assert_eq!((e.attempts, e.next_attempt), (2, T0 + 60 + 120));
    // Third attempt succeeds; only slow@ is sent (no duplicate to good@).
    accept.store(true, Ordering::SeqCst);
    clock.advance(120);
    relay.run_once().await.unwrap();
    let msgs = peer.messages();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1].rcpts, vec!["slow@b.test"]);
    assert!(store.queue_entry(id).await.unwrap().is_none());
    // The bounce for bad@ reaches alice.
    relay.run_once().await.unwrap();
    let mail = inbox(&store, "alice@a.test").await;
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("Final-Recipient: rfc822; bad@b.test"));
    assert!(mail[0].contains("Status: 5.1.1"));
}

#[tokio::test]
async fn gives_up_after_max_age_and_never_bounces_a_bounce() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "a.test", &["alice@a.test"]).await;
    let dns = TestDnsServer::start().await.unwrap();
    dns.add_mx("down.test", 10, "mx.down.test");
    // 127.0.0.9 on a port nobody listens on: connection refused.
    dns.add_ip("mx.down.test", "127.0.0.9".parse().unwrap());
    let clock = Arc::new(ManualClock::new(T0));
    let relay = relay(
        store.clone(),
        &domains(&["a.test"]),
        &dns,
        9,
        clock.clone(),
        Vec::new(),
        |_| {},
    );
    let id = relay
        .enqueue(message("alice@a.test", &["x@down.test"], T0))
        .await
        .unwrap();
    let null = relay
        .enqueue(message("", &["y@down.test"], T0))
        .await
        .unwrap();
    relay.run_once().await.unwrap();
    let e = store.queue_entry(id).await.unwrap().unwrap();
    assert_eq!(e.recipients[0].status, RecipientStatus::Pending);
    assert!(e.recipients[0]
        .last_reply
        .as_deref()
        .unwrap()
        .starts_with("451 4.4.1"));
    clock.advance(601);
    relay.run_once().await.unwrap();
    assert!(store.queue_entry(id).await.unwrap().is_none());
    assert!(store.queue_entry(null).await.unwrap().is_none());
    relay.run_once().await.unwrap();
    let mail = inbox(&store, "alice@a.test").await;
    assert_eq!(mail.len(), 1, "one bounce, for alice's message only");
    assert!(mail[0].contains("Final-Recipient: rfc822; x@down.test"));
    assert!(mail[0].contains("gave up after 2 attempts"));
    assert!(store.queue_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn null_mx_and_unknown_domains_bounce_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "a.test", &["alice@a.test"]).await;
    let dns = TestDnsServer::start().await.unwrap();
    dns.add_mx("null.test", 0, ".");
    let clock = Arc::new(ManualClock::new(T0));
    let relay = relay(
        store.clone(),
        &domains(&["a.test"]),
        &dns,
        25,
        clock,
        Vec::new(),
        |_| {},
    );
    relay
        .enqueue(message(
            "alice@a.test",
            &["x@null.test", "y@nowhere.test"],
            T0,
        ))
        .await
        .unwrap();
    relay.run_once().await.unwrap();
    relay.run_once().await.unwrap();
    let mail = inbox(&store, "alice@a.test").await;
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("Status: 5.1.10"), "{}", mail[0]);
    assert!(mail[0].contains("Status: 5.1.2"));
}

#[tokio::test]
async fn starttls_opportunistic_and_required() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "a.test", &["alice@a.test"]).await;
    let (tls, cert) = self_signed_tls(&["mx.b.test"]);
    let peer = ScriptedPeer::start(
        "127.0.0.3",
        PeerScript {
            tls: Some(tls),
            ..PeerScript::default()
        },
    )
    .await
    .unwrap();
    let plain = ScriptedPeer::start("127.0.0.4", PeerScript::default())
        .await
        .unwrap();
    let dns = TestDnsServer::start().await.unwrap();
    dns.add_mx("b.test", 10, "mx.b.test");
    dns.add_ip("mx.b.test", "127.0.0.3".parse().unwrap());
    dns.add_mx("c.test", 10, "mx.c.test");
    dns.add_ip("mx.c.test", "127.0.0.4".parse().unwrap());
    // The relay sends to one port; c.test's peer has its own, so it gets
    // its own relay below.
    let clock = Arc::new(ManualClock::new(T0));
    let relay_b = relay(
        store.clone(),
        &domains(&["a.test"]),
        &dns,
        peer.addr().port(),
        clock.clone(),
        vec![cert.clone()],
        |c| {
            c.require_tls.insert("b.test".into());
        },
    );
    relay_b
        .enqueue(message("alice@a.test", &["bob@b.test"], T0))
        .await
        .unwrap();
    relay_b.run_once().await.unwrap();
    let msgs = peer.messages();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].tls, "verified TLS with the trusted certificate");
    // Opportunistic with an untrusted certificate still encrypts.
    let relay_o = relay(
        store.clone(),
        &domains(&["a.test"]),
        &dns,
        peer.addr().port(),
        clock.clone(),
        Vec::new(),
        |_| {},
    );
    relay_o
        .enqueue(message("alice@a.test", &["bob@b.test"], T0))
        .await
        .unwrap();
    relay_o.run_once().await.unwrap();
    assert!(peer.messages()[1].tls);
    // Required TLS but the peer offers none: nothing is sent, retried later.
    let relay_c = relay(
        store.clone(),
        &domains(&["a.test"]),
        &dns,
        plain.addr().port(),
        clock,
        Vec::new(),
        |c| {
            c.require_tls.insert("c.test".into());
        },
    );
    let id = relay_c
        .enqueue(message("alice@a.test", &["carol@c.test"], T0))
        .await
        .unwrap();
    relay_c.run_once().await.unwrap();
    assert!(plain.messages().is_empty());
    let e = store.queue_entry(id).await.unwrap().unwrap();
    assert_eq!(e.recipients[0].status, RecipientStatus::Pending);
    assert!(e.recipients[0]
        .last_reply
        .as_deref()
        .unwrap()
        .contains("STARTTLS"));
}

#[tokio::test]
async fn missing_extensions_bounce_and_connections_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "a.test", &["alice@a.test"]).await;
    let peer = ScriptedPeer::start(
        "127.0.0.3",
        PeerScript {
            capabilities: vec!["SIZE 100000".into()],
            ..PeerScript::default()
        },
    )
    .await
    .unwrap();
    let dns = TestDnsServer::start().await.unwrap();
    dns.add_mx("b.test", 10, "mx.b.test");
    dns.add_ip("mx.b.test", "127.0.0.3".parse().unwrap());
    let clock = Arc::new(ManualClock::new(T0));
    let relay = relay(
        store.clone(),
        &domains(&["a.test"]),
        &dns,
        peer.addr().port(),
        clock,
        Vec::new(),
        |c| {
            c.max_per_destination = 1;
        },
    );
    let mut utf8 = message("alice@a.test", &["bob@b.test"], T0);
    utf8.smtputf8 = true;
    let mut eight = message("alice@a.test", &["bob@b.test"], T0);
    eight.eight_bit = true;
    relay.enqueue(utf8).await.unwrap();
    relay.enqueue(eight).await.unwrap();
    relay
        .enqueue(message("alice@a.test", &["bob@b.test"], T0))
        .await
        .unwrap();
    relay
        .enqueue(message("alice@a.test", &["carol@b.test"], T0))
        .await
        .unwrap();
    relay.run_once().await.unwrap();
    let msgs = peer.messages();
    assert_eq!(msgs.len(), 2, "only the plain messages went out");
    assert_eq!(peer.connections(), 1, "one session carried both");
    let mails = peer
        .commands()
        .iter()
        .filter(|c| c.starts_with("MAIL"))
        .count();
    assert_eq!(mails, 2, "no MAIL for messages the hop cannot take");
    relay.run_once().await.unwrap();
    let mail = inbox(&store, "alice@a.test").await;
    assert_eq!(mail.len(), 2, "two bounces");
    let all = mail.join("\n");
    assert!(all.contains("Status: 5.6.7"));
    assert!(all.contains("Status: 5.6.3"));
    relay.close_idle().await;
}

#[tokio::test]
async fn the_running_relay_picks_up_new_mail_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "a.test", &["alice@a.test"]).await;
    let peer = ScriptedPeer::start("127.0.0.3", PeerScript::default())
        .await
        .unwrap();
    let dns = TestDnsServer::start().await.unwrap();
    dns.add_mx("b.test", 10, "mx.b.test");
    dns.add_ip("mx.b.test", "127.0.0.3".parse().unwrap());
    let clock = Arc::new(ManualClock::new(T0));
    let relay = relay(
        store.clone(),
        &domains(&["a.test"]),
        &dns,
        peer.addr().port(),
        clock,
        Vec::new(),
        |_| {},
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(relay.clone().run(stopped));
    let id = relay
        .submit(
            "alice@a.test",
            &["bob@b.test".to_string()],
            b"Subject: x\r\n\r\nhi\r\n",
        )
        .await
        .unwrap();
    for _ in 0..100 {
        if !peer.messages().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(peer.messages().len(), 1);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .expect("the runner stops")
        .unwrap();
    assert!(store.queue_entry(id).await.unwrap().is_none());
}
