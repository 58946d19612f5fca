//! Next hops chosen per recipient (a routing plugin's `relay(host)`), the
//! plain-text retry after a failed opportunistic TLS handshake, domains of
//! one message delivered at once, and DSNs per attempt.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mailgate_relay::testing::peer::{PeerScript, ScriptedPeer};
use mailgate_store::queue::{OutboundQueue, QueueStore};

#[tokio::test]
async fn next_hops_replace_mx_routing_with_tls_and_dkim() {
    let (_dir, store) = sender_store(&["alice@a.test", "local@a.test"]).await;
    // The plugin's next hop, an address literal with a port.
    let (hop, _) = tls_peer("127.0.0.5", &["relay.internal"]).await;
    // A next hop by name with MX lookup: relay.test's MX is 127.0.0.6.
    let by_mx = peer("127.0.0.6", PeerScript::default()).await;
    // b.test's own MX (plain MX routing for the recipient without a hop).
    let mx = peer("127.0.0.3", PeerScript::default()).await;
    let dns = dns_with_mx(&[("b.test", "127.0.0.3"), ("relay.test", "127.0.0.6")]).await;
    // c.test and d.test do not exist in DNS: only the next hop can reach them.
    let (_, signer) = dkim_signer("a.test", "s1");
    let (relay, _) = sender_relay(&store, &dns, mx.addr().port(), Some(signer), |_| {});
    let hop_text = hop_to(&hop);
    let mx_text = format!("relay.test:{}", by_mx.addr().port());
    let id = relay
        .enqueue(routed(
            "alice@a.test",
            &[
                ("bob@b.test", None),
                ("carol@c.test", Some(&hop_text)),
                // A local recipient relayed elsewhere is not stored here.
                ("local@a.test", Some(&hop_text)),
                ("dave@d.test", Some(&mx_text)),
            ],
            T0,
        ))
        .await
        .unwrap();
    let e = store.queue_entry(id).await.unwrap().unwrap();
    assert_eq!(e.recipients[1].next_hop.as_deref(), Some(hop_text.as_str()));
    relay.run_once().await.unwrap();
    let got = hop.messages();
    assert_eq!(got.len(), 1, "one transaction for both via the hop");
    let mut rcpts = got[0].rcpts.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["carol@c.test", "local@a.test"]);
    assert!(got[0].tls, "opportunistic STARTTLS with the next hop");
    let data = String::from_utf8_lossy(&got[0].data);
    assert!(data.starts_with("DKIM-Signature:"), "{data}");
    assert!(data.contains("d=a.test") && data.contains("s=s1"));
    assert_eq!(by_mx.messages().len(), 1);
    assert_eq!(by_mx.messages()[0].rcpts, ["dave@d.test"]);
    assert_eq!(mx.messages().len(), 1);
    assert_eq!(mx.messages()[0].rcpts, ["bob@b.test"]);
    assert!(inbox(&store, "local@a.test").await.is_empty());
    assert!(store.queue_entry(id).await.unwrap().is_none());
    assert!(
        store.queue_list().await.unwrap().is_empty(),
        "no bounce owed"
    );
    relay.close_idle().await;
}

#[tokio::test]
async fn unreachable_next_hop_is_retried_not_rerouted() {
    let (_dir, store) = sender_store(&["alice@a.test"]).await;
    let mx = peer("127.0.0.3", PeerScript::default()).await;
    let dns = dns_with_mx(&[("b.test", "127.0.0.3")]).await;
    let (relay, _) = sender_relay(&store, &dns, mx.addr().port(), None, |_| {});
    // Nothing listens at the hop: the recipient waits, b.test's MX (which
    // would take it) is not used instead.
    let id = send(
        &relay,
        routed("alice@a.test", &[("bob@b.test", Some("[127.0.0.9]:9"))], T0),
    )
    .await;
    assert!(mx.messages().is_empty());
    let reply = pending_reply(&store, id, 0).await;
    assert!(reply.starts_with("451 4.4.1 127.0.0.9"), "{reply}");
}

#[tokio::test]
async fn failed_handshake_is_retried_in_plain_text_unless_tls_is_required() {
    let (_dir, store) = sender_store(&["alice@a.test"]).await;
    let script = PeerScript {
        broken_tls: true,
        ..PeerScript::default()
    };
    let peer = peer("127.0.0.3", script).await;
    let dns = dns_with_mx(&[("b.test", "127.0.0.3")]).await;
    dns.add_mx("bank.test", 10, "mx.b.test");
    let (relay, _) = sender_relay(&store, &dns, peer.addr().port(), None, |c| {
        c.require_tls.insert("bank.test".into());
        c.idle_reuse = Duration::ZERO;
    });
    send(&relay, message("alice@a.test", &["bob@b.test"], T0)).await;
    let msgs = peer.messages();
    assert_eq!(msgs.len(), 1, "delivered on the second connection");
    assert!(!msgs[0].tls);
    assert_eq!(msgs[0].connection, 2);
    let starttls = |p: &ScriptedPeer| p.commands().iter().filter(|c| *c == "STARTTLS").count();
    assert_eq!(starttls(&peer), 1, "no STARTTLS on the plain-text retry");

    // TLS required: never in plain text, deferred.
    let before = peer.connections();
    let id = send(&relay, message("alice@a.test", &["teller@bank.test"], T0)).await;
    assert_eq!(peer.messages().len(), 1, "nothing more was sent");
    assert_eq!(peer.connections(), before + 1, "one connection, no retry");
    let reply = pending_reply(&store, id, 0).await;
    assert!(
        reply.starts_with("451 4.4.1") && reply.contains("TLS handshake failed"),
        "{reply}"
    );
}

#[tokio::test]
async fn domains_of_one_message_go_out_at_once_within_the_limits() {
    let slow = || PeerScript {
        greeting_delay: Duration::from_millis(800),
        ..PeerScript::default()
    };
    for (max_concurrent, concurrent) in [(32, true), (1, false)] {
        let (_dir, store) = sender_store(&["alice@a.test"]).await;
        let peers = [
            peer("127.0.0.3", slow()).await,
            peer("127.0.0.4", slow()).await,
            peer("127.0.0.5", slow()).await,
        ];
        let dns = dns_with_mx(&[]).await;
        let (relay, _) = sender_relay(&store, &dns, 25, None, |c| {
            c.max_concurrent = max_concurrent
        });
        let hops: Vec<String> = peers.iter().map(hop_to).collect();
        relay
            .enqueue(routed(
                "alice@a.test",
                &[
                    ("x@b.test", Some(&hops[0])),
                    ("y@c.test", Some(&hops[1])),
                    ("z@d.test", Some(&hops[2])),
                ],
                T0,
            ))
            .await
            .unwrap();
        let started = Instant::now();
        relay.run_once().await.unwrap();
        let took = started.elapsed();
        for p in &peers {
            assert_eq!(p.messages().len(), 1);
        }
        if concurrent {
            assert!(took < Duration::from_millis(2000), "took {took:?}");
        } else {
            assert!(
                took >= Duration::from_millis(2400),
                "max_concurrent = 1 keeps them one after another: {took:?}"
            );
        }
        relay.close_idle().await;
    }
}

#[tokio::test]
async fn permanent_failures_bounce_at_the_attempt_not_after_the_retries() {
    let (_dir, store) = sender_store(&["alice@a.test"]).await;
    let refusing = PeerScript {
        rcpt: Arc::new(|_| "550 5.1.1 No such user".into()),
        ..PeerScript::default()
    };
    let refusing = peer("127.0.0.3", refusing).await;
    let accept = Arc::new(AtomicBool::new(false));
    let flag = accept.clone();
    let later = PeerScript {
        rcpt: Arc::new(move |a: &str| {
            if a.starts_with("gone") {
                "550 5.1.1 Gone".into()
            } else if flag.load(Ordering::SeqCst) {
                "250 2.1.5 Ok".into()
            } else {
                "451 4.2.0 Try later".into()
            }
        }),
        ..PeerScript::default()
    };
    let later = peer("127.0.0.4", later).await;
    let dns = dns_with_mx(&[]).await;
    let (relay, clock) = sender_relay(&store, &dns, 25, None, |_| {});
    let to_refusing = hop_to(&refusing);
    let to_later = hop_to(&later);
    let rcpts = [
        ("bad@b.test", Some(to_refusing.as_str())),
        ("slow@c.test", Some(to_later.as_str())),
        ("gone@c.test", Some(to_later.as_str())),
    ];
    let id = send(&relay, routed("alice@a.test", &rcpts, T0)).await;
    // bad@ and gone@ failed for good; slow@ waits. The DSN is out now.
    pending_reply(&store, id, 1).await;
    relay.run_once().await.unwrap(); // delivers the DSN locally
    let mail = inbox(&store, "alice@a.test").await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].contains("Final-Recipient: rfc822; bad@b.test"));
    assert!(mail[0].contains("Final-Recipient: rfc822; gone@c.test"));
    assert!(!mail[0].contains("Final-Recipient: rfc822; slow@c.test"));
    // The retry succeeds: the message is done, and no second bounce
    // repeats bad@ or gone@.
    accept.store(true, Ordering::SeqCst);
    clock.advance(60);
    relay.run_once().await.unwrap();
    assert_eq!(later.messages().len(), 1);
    assert_eq!(later.messages()[0].rcpts, ["slow@c.test"]);
    assert!(store.queue_entry(id).await.unwrap().is_none());
    relay.run_once().await.unwrap();
    assert_eq!(inbox(&store, "alice@a.test").await.len(), 1);
    assert!(store.queue_list().await.unwrap().is_empty());

    // A second message (bad@ and slow@ only): two attempts with
    // permanent failures give two DSNs, each about its own recipients.
    accept.store(false, Ordering::SeqCst);
    let id = send(&relay, routed("alice@a.test", &rcpts[..2], T0 + 60)).await;
    relay.run_once().await.unwrap();
    assert_eq!(inbox(&store, "alice@a.test").await.len(), 2);
    clock.advance(601); // past max_age: the temporary failure becomes final
    relay.run_once().await.unwrap();
    assert!(store.queue_entry(id).await.unwrap().is_none());
    relay.run_once().await.unwrap();
    let mail = inbox(&store, "alice@a.test").await;
    assert_eq!(mail.len(), 3);
    assert!(mail[2].contains("Final-Recipient: rfc822; slow@c.test"));
    assert!(
        !mail[2].contains("Final-Recipient: rfc822; bad@b.test"),
        "bad@ was reported already"
    );
}
