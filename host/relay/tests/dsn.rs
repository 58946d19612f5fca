//! Delivery status notifications as the recipients' NOTIFY asks (RFC 3461),
//! and the DSN parameters passed on to next hops that offer DSN, with
//! scripted SMTP peers as the next hops and the sender's mailbox on the
//! sending side.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mailgate_relay::testing::peer::{PeerScript, ScriptedPeer};
use mailgate_relay::testing::TestDnsServer;
use mailgate_store::queue::{NewQueued, QueueStore};

/// A peer that offers DSN (`dsn`) or not, refusing RCPT for addresses
/// starting with `bad` (550) and `slow` (451).
async fn next_hop(dsn: bool) -> ScriptedPeer {
    let mut script = PeerScript {
        rcpt: Arc::new(|a: &str| {
            if a.starts_with("bad") {
                "550 5.1.1 No such user".into()
            } else if a.starts_with("slow") {
                "451 4.2.0 Try later".into()
            } else {
                "250 2.1.5 Ok".into()
            }
        }),
        ..PeerScript::default()
    };
    if dsn {
        script.capabilities.push("DSN".into());
    }
    ScriptedPeer::start("127.0.0.3", script).await.unwrap()
}

/// `message` from alice@a.test to each `(address, notify, next hop)`,
/// with ORCPT `rfc822;<address>` and the given ENVID and RET.
fn with_dsn(
    rcpts: &[(&str, Option<&str>, &ScriptedPeer)],
    envid: Option<&str>,
    ret_full: Option<bool>,
) -> NewQueued {
    let hops: Vec<String> = rcpts.iter().map(|(_, _, p)| hop_to(p)).collect();
    let routed_rcpts: Vec<(&str, Option<&str>)> = rcpts
        .iter()
        .zip(&hops)
        .map(|((a, _, _), h)| (*a, Some(h.as_str())))
        .collect();
    let mut m = routed("alice@a.test", &routed_rcpts, T0);
    for (r, (addr, notify, _)) in m.recipients.iter_mut().zip(rcpts) {
        r.notify = notify.map(String::from);
        r.orcpt = Some(format!("rfc822;{addr}"));
    }
    m.envid = envid.map(String::from);
    m.ret_full = ret_full;
    m
}

/// The reports in alice's mailbox, each with its `Action:` lines' words
/// and the recipients it names.
async fn reports(store: &mailgate_store::SqliteStore) -> Vec<String> {
    let mut mail = inbox(store, "alice@a.test").await;
    mail.sort_by_key(|m| action_of(m));
    mail
}

fn action_of(report: &str) -> String {
    report
        .lines()
        .find_map(|l| l.strip_prefix("Action: "))
        .unwrap_or("")
        .to_string()
}

fn names(report: &str, address: &str) -> bool {
    report.contains(&format!("Final-Recipient: rfc822; {address}\r\n"))
}

#[tokio::test]
async fn dsn_parameters_go_only_to_a_hop_that_offers_dsn() {
    let (_dir, store) = sender_store(&["alice@a.test"]).await;
    let dns = TestDnsServer::start().await.unwrap();
    let with = next_hop(true).await;
    let without = next_hop(false).await;
    let (relay, _clock) = sender_relay(&store, &dns, 25, None, |_| {});
    let m = with_dsn(
        &[
            ("bob@b.test", Some("SUCCESS,FAILURE"), &with),
            ("carol@c.test", Some("success"), &without),
        ],
        Some("QQ314159+2B1"),
        Some(false),
    );
    send(&relay, m).await;
    let mail: Vec<String> = with
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("MAIL") || c.starts_with("RCPT"))
        .collect();
    assert_eq!(mail.len(), 2, "{mail:?}");
    assert!(
        mail[0].starts_with("MAIL FROM:<alice@a.test>")
            && mail[0].ends_with(" RET=HDRS ENVID=QQ314159+2B1"),
        "{mail:?}"
    );
    assert_eq!(
        mail[1],
        "RCPT TO:<bob@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@b.test"
    );
    for c in without.commands() {
        for p in ["RET=", "ENVID=", "NOTIFY=", "ORCPT="] {
            assert!(!c.contains(p), "{p} sent to a hop without DSN: {c}");
        }
    }
    assert_eq!(with.messages().len(), 1);
    assert_eq!(without.messages().len(), 1);
    // The reports: `relayed` for carol (her hop does not do DSN), none
    // for bob (his hop does, and was asked to).
    relay.run_once().await.unwrap();
    let got = reports(&store).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(action_of(r), "relayed");
    assert!(names(r, "carol@c.test") && !names(r, "bob@b.test"), "{r}");
    assert!(r.contains("Original-Envelope-Id: QQ314159+1\r\n"), "{r}");
    assert!(r.contains("Original-Recipient: rfc822; carol@c.test\r\n"));
    assert!(r.contains("Status: 2.0.0\r\n"));
    assert!(r.contains("Content-Type: text/rfc822-headers\r\n"));
    assert!(!r.contains("Hello from a.test."), "headers only");
    assert!(store.queue_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn stored_parameters_that_are_not_xtext_are_encoded_or_left_out() {
    let (_dir, store) = sender_store(&["alice@a.test"]).await;
    let dns = TestDnsServer::start().await.unwrap();
    let with = next_hop(true).await;
    let (relay, _clock) = sender_relay(&store, &dns, 25, None, |_| {});
    let mut m = with_dsn(
        &[
            ("bob@b.test", Some("SUCCESS,BOGUS"), &with),
            ("dave@b.test", Some("never"), &with),
        ],
        Some("has space+x"),
        Some(true),
    );
    m.recipients[0].orcpt = Some("rfc822;odd name=@b.test".into());
    m.recipients[1].orcpt = Some("no addr-type".into());
    send(&relay, m).await;
    let cmds: Vec<String> = with
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("MAIL") || c.starts_with("RCPT"))
        .collect();
    assert!(
        cmds[0].ends_with(" RET=FULL ENVID=has+20space+2Bx"),
        "{cmds:?}"
    );
    assert_eq!(
        cmds[1], "RCPT TO:<bob@b.test> ORCPT=rfc822;odd+20name+3D@b.test",
        "an invalid NOTIFY is left out"
    );
    assert_eq!(cmds[2], "RCPT TO:<dave@b.test> NOTIFY=NEVER");
}

#[tokio::test]
async fn notify_decides_which_reports_are_sent() {
    let (_dir, store) = sender_store(&["alice@a.test"]).await;
    let dns = TestDnsServer::start().await.unwrap();
    let hop = next_hop(false).await;
    let (relay, clock) = sender_relay(&store, &dns, 25, None, |c| {
        c.retry.delay_warning = Some(Duration::ZERO);
    });
    let m = with_dsn(
        &[
            ("ok-s@b.test", Some("SUCCESS"), &hop),
            ("ok-d@b.test", None, &hop),
            ("bad-f@b.test", Some("FAILURE"), &hop),
            ("bad-n@b.test", Some("NEVER"), &hop),
            ("bad-s@b.test", Some("SUCCESS"), &hop),
            ("bad-d@b.test", None, &hop),
            ("slow-d@b.test", Some("DELAY"), &hop),
            ("slow-f@b.test", Some("FAILURE"), &hop),
            ("slow-x@b.test", None, &hop),
        ],
        Some("ENV1"),
        None,
    );
    let id = send(&relay, m).await;
    relay.run_once().await.unwrap();
    let got = reports(&store).await;
    let actions: Vec<String> = got.iter().map(|r| action_of(r)).collect();
    assert_eq!(actions, ["delayed", "failed", "relayed"], "one per event");
    let (delayed, failed, relayed) = (&got[0], &got[1], &got[2]);
    let only = |report: &str, wanted: &[&str]| {
        for a in [
            "ok-s", "ok-d", "bad-f", "bad-n", "bad-s", "bad-d", "slow-d", "slow-f", "slow-x",
        ] {
            let address = format!("{a}@b.test");
            assert_eq!(
                names(report, &address),
                wanted.contains(&a),
                "{a} in {report}"
            );
        }
    };
    only(failed, &["bad-f", "bad-d"]);
    only(relayed, &["ok-s"]);
    only(delayed, &["slow-d", "slow-x"]);
    assert!(failed.contains("Status: 5.1.1\r\n"));
    assert!(delayed.contains("Status: 4.2.0\r\n") && delayed.contains("Will-Retry-Until: "));
    for r in &got {
        assert!(r.contains("Original-Envelope-Id: ENV1\r\n"));
        assert!(!r.contains("Hello from a.test."), "no RET: headers only");
    }
    // The warning is sent once; at max_age the slow ones fail, and only
    // those whose NOTIFY wants failures are reported.
    clock.advance(60);
    relay.run_once().await.unwrap();
    relay.run_once().await.unwrap();
    assert_eq!(reports(&store).await.len(), 3, "no second delay warning");
    clock.advance(600);
    relay.run_once().await.unwrap();
    relay.run_once().await.unwrap();
    assert!(store.queue_entry(id).await.unwrap().is_none());
    let got = reports(&store).await;
    assert_eq!(got.len(), 4);
    let last_failure = got
        .iter()
        .find(|r| action_of(r) == "failed" && names(r, "slow-f@b.test"))
        .expect("the expiry report");
    only(last_failure, &["slow-f", "slow-x"]);
    assert!(last_failure.contains("gave up after"));
    assert!(store.queue_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn ret_full_returns_the_message_in_a_failure_report_hdrs_only_headers() {
    let (_dir, store) = sender_store(&["alice@a.test"]).await;
    let dns = TestDnsServer::start().await.unwrap();
    let hop = next_hop(true).await;
    let (relay, _clock) = sender_relay(&store, &dns, 25, None, |_| {});
    for (envid, ret) in [("FULL", Some(true)), ("HDRS", Some(false)), ("NONE", None)] {
        let m = with_dsn(&[("bad@b.test", None, &hop)], Some(envid), ret);
        send(&relay, m).await;
    }
    relay.run_once().await.unwrap();
    let got = inbox(&store, "alice@a.test").await;
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(action_of(r), "failed");
        let full = r.contains("Original-Envelope-Id: FULL\r\n");
        assert_eq!(r.contains("Hello from a.test."), full, "{r}");
        assert_eq!(r.contains("Content-Type: message/rfc822\r\n"), full);
        assert_eq!(r.contains("Content-Type: text/rfc822-headers\r\n"), !full);
        assert!(r.contains("Subject: relay test\r\n"), "headers in any case");
    }
}

#[tokio::test]
async fn local_recipients_get_a_delivered_report_when_they_ask() {
    let (_dir, store) = sender_store(&["alice@a.test", "bob@a.test", "carol@a.test"]).await;
    let dns = TestDnsServer::start().await.unwrap();
    let (relay, _clock) = sender_relay(&store, &dns, 25, None, |_| {});
    let mut m = message("alice@a.test", &["bob@a.test", "carol@a.test"], T0);
    m.recipients[0].notify = Some("SUCCESS".into());
    m.recipients[0].orcpt = Some("rfc822;Bob+2BNews@a.test".into());
    m.envid = Some("L1".into());
    send(&relay, m).await;
    relay.run_once().await.unwrap();
    assert_eq!(inbox(&store, "bob@a.test").await.len(), 1);
    assert_eq!(inbox(&store, "carol@a.test").await.len(), 1);
    let got = inbox(&store, "alice@a.test").await;
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(action_of(r), "delivered");
    assert!(names(r, "bob@a.test") && !names(r, "carol@a.test"));
    assert!(r.contains("Status: 2.0.0\r\n"));
    assert!(r.contains("Original-Recipient: rfc822; Bob+News@a.test\r\n"));
    assert!(r.contains("Original-Envelope-Id: L1\r\n"));
    assert!(r.contains("Return-Path: <>"), "sent from <>: {r}");
}

#[tokio::test]
async fn an_alias_target_gone_is_reported_once_by_the_attempt_that_delivers_the_others() {
    use mailgate_store::Directory;
    let (_dir, store) = sender_store(&["alice@a.test", "bob@a.test"]).await;
    store
        .set_alias("team@a.test", &["bob@a.test".into(), "gone@a.test".into()])
        .await
        .unwrap();
    let dns = TestDnsServer::start().await.unwrap();
    let (relay, clock) = sender_relay(&store, &dns, 25, None, |_| {});
    // Bob full: the list waits whole, and nothing is reported yet.
    assert!(store.set_quota("bob@a.test", Some(10)).await.unwrap());
    let id = send(&relay, message("alice@a.test", &["team@a.test"], T0)).await;
    relay.run_once().await.unwrap();
    assert!(pending_reply(&store, id, 0).await.starts_with("452 4.2.2"));
    assert!(reports(&store).await.is_empty());

    // Room again: bob's copy, and one failure report for the lost one.
    assert!(store.set_quota("bob@a.test", None).await.unwrap());
    clock.advance(61);
    relay.run_once().await.unwrap();
    relay.run_once().await.unwrap();
    assert_eq!(inbox(&store, "bob@a.test").await.len(), 1);
    let got = reports(&store).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(action_of(r), "failed");
    assert!(names(r, "gone@a.test") && !names(r, "team@a.test"), "{r}");
    assert!(
        r.contains("Original-Recipient: rfc822; team@a.test\r\n"),
        "{r}"
    );
    assert!(r.contains("Status: 5.1.1\r\n"), "{r}");
    assert!(
        r.contains("550 5.1.1 <gone@a.test>: no such user here; alias <team@a.test> names it"),
        "{r}"
    );
    assert!(store.queue_entry(id).await.unwrap().is_none(), "finished");
    clock.advance(600);
    relay.run_once().await.unwrap();
    assert_eq!(reports(&store).await.len(), 1, "reported once");

    // Never a report to `<>`.
    send(&relay, message("", &["team@a.test"], T0 + 661)).await;
    relay.run_once().await.unwrap();
    assert_eq!(inbox(&store, "bob@a.test").await.len(), 2);
    assert_eq!(reports(&store).await.len(), 1);
    assert!(
        store.queue_list().await.unwrap().is_empty(),
        "nothing queued for <>"
    );
}
