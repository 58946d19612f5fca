//! The room without sockets: a real store in a temporary directory, a
//! queue and a notice builder that record what they are given.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mailgate_delivery::{
    Arrival, Envelope, HandOff, LocalDelivery, MissingTarget, Recipient, RecipientCheck, Refusal,
    Replies, Report, Room, Trace,
};
use mailgate_policy::SessionInfo;
use mailgate_store::queue::{
    DeliveryReports, FailedRecipient, LocalTarget, NewQueued, NewQueuedRecipient, OutboundQueue,
    QueueId,
};
use mailgate_store::{Directory, MailStore, SqliteStore, Store, StoreResult};

const DOMAIN: &str = "example.org";

#[derive(Default)]
struct Queue(Mutex<Vec<NewQueued>>);

#[async_trait]
impl OutboundQueue for Queue {
    async fn enqueue(&self, message: NewQueued) -> StoreResult<QueueId> {
        let mut q = self.0.lock().unwrap();
        q.push(message);
        Ok(q.len() as QueueId)
    }
}

/// Records what it is asked to report and returns a marker message:
/// the `delivered` reports in `.0`, the `failed` ones in `.1`.
#[derive(Default)]
struct Reports(
    Mutex<Vec<Vec<NewQueuedRecipient>>>,
    Mutex<Vec<Vec<FailedRecipient>>>,
);

impl DeliveryReports for Reports {
    fn delivered(
        &self,
        message: &NewQueued,
        recipients: &[NewQueuedRecipient],
        now: i64,
    ) -> Option<NewQueued> {
        assert!(
            message.raw.ends_with(b"\r\n\r\n"),
            "the header section only"
        );
        self.0.lock().unwrap().push(recipients.to_vec());
        Some(NewQueued {
            msg_id: None,
            sender: String::new(),
            recipients: vec![NewQueuedRecipient::new(message.sender.clone())],
            raw: Arc::new(b"Subject: delivered\r\n\r\nok\r\n".to_vec()),
            created: now,
            envid: message.envid.clone(),
            ret_full: None,
            smtputf8: false,
            eight_bit: false,
        })
    }

    fn failed(
        &self,
        message: &NewQueued,
        recipients: &[FailedRecipient],
        now: i64,
    ) -> Option<NewQueued> {
        self.1.lock().unwrap().push(recipients.to_vec());
        let mut report = self.delivered(message, &[], now)?;
        report.raw = Arc::new(b"Subject: failed\r\n\r\nno\r\n".to_vec());
        self.0.lock().unwrap().pop();
        Some(report)
    }
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    delivery: Arc<LocalDelivery>,
    queue: Arc<Queue>,
    reports: Arc<Reports>,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        for user in ["alice", "bob", "carol"] {
            store
                .create_account(&format!("{user}@{DOMAIN}"), "x")
                .await
                .unwrap();
        }
        let dyn_store: Arc<dyn Store> = store.clone();
        World {
            _dir: dir,
            delivery: Arc::new(LocalDelivery::new(dyn_store, &[DOMAIN.to_string()])),
            store,
            queue: Arc::default(),
            reports: Arc::default(),
        }
    }

    fn room(&self) -> Room {
        let queue: Arc<dyn OutboundQueue> = self.queue.clone();
        let reports: Arc<dyn DeliveryReports> = self.reports.clone();
        Room::new(self.delivery.clone(), Some(queue)).with_reports(Some(reports))
    }

    async fn recipient(&self, address: &str) -> Recipient {
        match self.delivery.check_recipient(address).await.unwrap() {
            RecipientCheck::Local(l) => Recipient::new(l.address.clone(), Some(l)),
            RecipientCheck::NotLocal => Recipient::new(address, None),
            RecipientCheck::UnknownUser => panic!("{address}: unknown"),
        }
    }

    async fn envelope(&self, from: &str, to: &[&str]) -> Envelope {
        let mut e = Envelope {
            mail_from: from.into(),
            ..Envelope::default()
        };
        for t in to {
            e.add(self.recipient(t).await);
        }
        e
    }

    /// The messages in `user`'s `mailbox`.
    async fn count(&self, user: &str, mailbox: &str) -> u32 {
        let account = self
            .store
            .account(&format!("{user}@{DOMAIN}"))
            .await
            .unwrap()
            .unwrap();
        self.store
            .mailbox(account.id, mailbox)
            .await
            .unwrap()
            .map_or(0, |m| m.messages)
    }

    async fn quota(&self, user: &str, bytes: u64) {
        assert!(self
            .store
            .set_quota(&format!("{user}@{DOMAIN}"), Some(bytes))
            .await
            .unwrap());
    }

    /// Delivers a message of `size` bytes to `env` through the room.
    async fn send(&self, env: Envelope, size: usize, replies: Replies) -> Report {
        self.room()
            .deliver(arrival(env, &message(size), replies))
            .await
    }

    fn queued(&self) -> Vec<NewQueued> {
        self.queue.0.lock().unwrap().clone()
    }
}

fn arrival(envelope: Envelope, body: &[u8], replies: Replies) -> Arrival {
    Arrival {
        id: "Q1".into(),
        envelope,
        body: body.to_vec(),
        trace: Trace {
            fields: "Received: from client.test by mx.example.org; now\r\n".into(),
            count: 1,
            auth: None,
            tls: None,
        },
        session: SessionInfo {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            client_port: 2525,
            reverse_name: None,
            tls: false,
            helo: Some("client.test".into()),
            auth_user: None,
            listener: "mx".into(),
            session_id: "S1".into(),
        },
        policy: None,
        replies,
        sent_copy: None,
    }
}

fn message(size: usize) -> Vec<u8> {
    let mut m = b"Subject: test\r\n\r\n".to_vec();
    m.resize(size, b'x');
    m.extend_from_slice(b"\r\n");
    m
}

#[tokio::test]
async fn every_local_recipient_gets_one_copy_with_the_trace_on_top() {
    let w = World::new().await;
    let env = w
        .envelope(
            "sender@remote.test",
            &["alice@example.org", "bob@example.org"],
        )
        .await;
    let report = w.send(env, 100, Replies::One).await;
    assert_eq!(report.whole, None);
    assert!(report.refused.is_empty());
    assert_eq!(w.count("alice", "INBOX").await, 1);
    assert_eq!(w.count("bob", "INBOX").await, 1);
    let alice = w.store.account("alice@example.org").await.unwrap().unwrap();
    let inbox = w.store.mailbox(alice.id, "INBOX").await.unwrap().unwrap();
    let meta = w.store.list_messages(inbox.id).await.unwrap();
    let raw = w
        .store
        .message_raw(inbox.id, meta[0].uid)
        .await
        .unwrap()
        .unwrap();
    assert!(raw.starts_with(
        b"Return-Path: <sender@remote.test>\r\nReceived: from client.test by mx.example.org; now\r\nSubject: test\r\n"
    ));
    assert!(w.queued().is_empty());
}

#[tokio::test]
async fn one_reply_all_over_quota_refuses_the_whole_message() {
    let w = World::new().await;
    w.quota("bob", 1000).await;
    w.quota("carol", 1000).await;
    let env = w
        .envelope("s@remote.test", &["bob@example.org", "carol@example.org"])
        .await;
    let report = w.send(env, 2000, Replies::One).await;
    assert_eq!(report.whole, Some(Refusal::MailboxFull));
    assert_eq!(w.count("bob", "INBOX").await, 0);
    assert!(w.queued().is_empty(), "nothing kept: the sender keeps it");
}

#[tokio::test]
async fn one_reply_some_over_quota_keeps_their_copies_in_the_queue() {
    let w = World::new().await;
    w.quota("bob", 1000).await;
    let mut env = w
        .envelope("s@remote.test", &["alice@example.org", "bob@example.org"])
        .await;
    env.recipients[1].notify = Some("FAILURE".into());
    let report = w.send(env, 2000, Replies::One).await;
    assert_eq!(report.whole, None);
    assert_eq!(w.count("alice", "INBOX").await, 1);
    assert_eq!(w.count("bob", "INBOX").await, 0);
    let [q] = w.queued().try_into().unwrap();
    assert_eq!(q.sender, "s@remote.test");
    assert_eq!(q.recipients.len(), 1);
    assert_eq!(q.recipients[0].address, "bob@example.org");
    assert_eq!(q.recipients[0].notify.as_deref(), Some("FAILURE"));
    assert!(
        q.raw.starts_with(b"Received: "),
        "no Return-Path in the queue"
    );
}

#[tokio::test]
async fn per_recipient_replies_refuse_only_the_full_one() {
    let w = World::new().await;
    w.quota("bob", 1000).await;
    let env = w
        .envelope("s@remote.test", &["alice@example.org", "bob@example.org"])
        .await;
    let report = w.send(env, 2000, Replies::PerRecipient).await;
    assert_eq!(report.whole, None);
    assert_eq!(report.refusal_of("alice@example.org"), None);
    assert_eq!(
        report.refusal_of("bob@example.org"),
        Some(&Refusal::MailboxFull)
    );
    assert_eq!(w.count("alice", "INBOX").await, 1);
    assert!(w.queued().is_empty());
}

#[tokio::test]
async fn dsn_parameters_go_with_each_recipient_into_the_queue() {
    let w = World::new().await;
    let mut env = w.envelope("alice@example.org", &["far@remote.test"]).await;
    env.envid = Some("ENV+2B1".into());
    env.ret_full = Some(false);
    env.recipients[0].notify = Some("SUCCESS,FAILURE".into());
    env.recipients[0].orcpt = Some("rfc822;far@remote.test".into());
    let report = w.send(env, 10, Replies::One).await;
    assert_eq!(report.whole, None);
    let [q] = w.queued().try_into().unwrap();
    assert_eq!(q.envid.as_deref(), Some("ENV+2B1"));
    assert_eq!(q.ret_full, Some(false));
    assert_eq!(q.recipients[0].notify.as_deref(), Some("SUCCESS,FAILURE"));
    assert_eq!(
        q.recipients[0].orcpt.as_deref(),
        Some("rfc822;far@remote.test")
    );
    assert!(
        w.reports.0.lock().unwrap().is_empty(),
        "relayed, not delivered here"
    );
}

#[tokio::test]
async fn notify_success_queues_a_delivered_notice_for_those_who_asked() {
    let w = World::new().await;
    let mut env = w
        .envelope(
            "carol@example.org",
            &["alice@example.org", "bob@example.org"],
        )
        .await;
    env.recipients[0].notify = Some("SUCCESS".into());
    env.recipients[1].notify = Some("NEVER".into());
    w.send(env, 100, Replies::One).await;
    let asked = w.reports.0.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].len(), 1);
    assert_eq!(asked[0][0].address, "alice@example.org");
    let [dsn] = w.queued().try_into().unwrap();
    assert_eq!(dsn.sender, "");
    assert_eq!(dsn.recipients[0].address, "carol@example.org");

    // A null sender is never told anything.
    let mut env = w.envelope("", &["alice@example.org"]).await;
    env.recipients[0].notify = Some("SUCCESS".into());
    w.send(env, 100, Replies::One).await;
    assert_eq!(w.reports.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_sent_copy_respects_the_senders_quota() {
    let w = World::new().await;
    let alice = w.store.account("alice@example.org").await.unwrap().unwrap();
    let env = w.envelope("alice@example.org", &["bob@example.org"]).await;
    let mut a = arrival(env, &message(500), Replies::One);
    a.sent_copy = Some(alice.clone());
    w.room().deliver(a).await;
    assert_eq!(w.count("alice", "Sent").await, 1);

    w.quota("alice", 800).await;
    let alice = w.store.account("alice@example.org").await.unwrap().unwrap();
    let env = w.envelope("alice@example.org", &["bob@example.org"]).await;
    let mut a = arrival(env, &message(500), Replies::One);
    a.sent_copy = Some(alice);
    let report = w.room().deliver(a).await;
    assert_eq!(report.whole, None, "the message itself is delivered");
    assert_eq!(w.count("bob", "INBOX").await, 2);
    assert_eq!(w.count("alice", "Sent").await, 1, "no copy past the quota");
}

#[tokio::test]
async fn the_queue_hand_off_applies_the_quota_per_recipient() {
    let w = World::new().await;
    w.quota("bob", 1000).await;
    let outcomes = w
        .delivery
        .deliver_each(
            "",
            &[
                "alice@example.org".into(),
                "bob@example.org".into(),
                "nobody@example.org".into(),
            ],
            &message(2000),
        )
        .await;
    assert_eq!(
        outcomes,
        vec![
            Ok(vec![]),
            Err(Refusal::MailboxFull),
            Err(Refusal::UnknownUser)
        ]
    );
    assert_eq!(w.count("alice", "INBOX").await, 1);
    assert_eq!(w.count("bob", "INBOX").await, 0);
}

#[tokio::test]
async fn the_queue_hand_off_delivers_into_the_folder_kept_with_the_copy() {
    let w = World::new().await;
    let into = LocalTarget {
        folder: "Lists".into(),
        flags: vec!["\\Flagged".into()],
    };
    let outcomes = w
        .delivery
        .deliver_each(
            "",
            &[
                HandOff {
                    address: "bob@example.org".into(),
                    into: Some(into),
                },
                "carol@example.org".into(),
            ],
            &message(200),
        )
        .await;
    assert_eq!(outcomes, vec![Ok(vec![]), Ok(vec![])]);
    assert_eq!(w.count("bob", "Lists").await, 1, "the folder, created");
    assert_eq!(w.count("bob", "INBOX").await, 0);
    assert_eq!(w.count("carol", "INBOX").await, 1, "no folder kept: INBOX");
}

#[tokio::test]
async fn two_deliveries_at_once_cannot_both_take_the_last_bytes() {
    let w = World::new().await;
    w.quota("bob", 1000).await;
    let a = w.envelope("s@remote.test", &["bob@example.org"]).await;
    let b = a.clone();
    let (ra, rb) = tokio::join!(
        w.send(a, 600, Replies::PerRecipient),
        w.send(b, 600, Replies::PerRecipient)
    );
    let refused = [ra, rb]
        .iter()
        .filter(|r| r.refusal_of("bob@example.org") == Some(&Refusal::MailboxFull))
        .count();
    assert_eq!(refused, 1, "one fits, the other does not");
    assert_eq!(w.count("bob", "INBOX").await, 1);
}

#[tokio::test]
async fn a_missing_alias_target_is_reported_and_the_others_delivered() {
    let w = World::new().await;
    let targets: Vec<String> = ["bob@example.org", "gone@example.org", "carol@example.org"]
        .iter()
        .map(|t| t.to_string())
        .collect();
    w.store
        .set_alias("team@example.org", &targets)
        .await
        .unwrap();
    let env = w.envelope("alice@example.org", &["team@example.org"]).await;
    let local = env.recipients[0].local.clone().unwrap();
    assert_eq!(local.accounts.len(), 2);
    assert_eq!(local.missing.len(), 1);
    assert_eq!(
        (
            local.missing[0].alias.as_str(),
            local.missing[0].target.as_str()
        ),
        ("team@example.org", "gone@example.org")
    );
    let report = w.send(env, 100, Replies::One).await;
    assert_eq!(report.whole, None);
    assert_eq!(w.count("bob", "INBOX").await, 1);
    assert_eq!(w.count("carol", "INBOX").await, 1);
    let failed = w.reports.1.lock().unwrap().clone();
    let [one] = failed.try_into().unwrap();
    let [f] = one.try_into().unwrap();
    assert_eq!(f.recipient.address, "gone@example.org");
    assert_eq!(
        f.recipient.orcpt.as_deref(),
        Some("rfc822;team@example.org")
    );
    assert!(
        f.reply.starts_with("550 5.1.1 ") && f.reply.contains("team@example.org"),
        "{}",
        f.reply
    );
    let [dsn] = w.queued().try_into().unwrap();
    assert_eq!(dsn.sender, "");
    assert_eq!(dsn.recipients[0].address, "alice@example.org");

    // A null sender is never told; every target there: nothing to tell.
    let env = w.envelope("", &["team@example.org"]).await;
    w.send(env, 100, Replies::One).await;
    w.store
        .set_alias("team@example.org", &targets[..1])
        .await
        .unwrap();
    let env = w.envelope("alice@example.org", &["team@example.org"]).await;
    assert!(env.recipients[0].local.as_ref().unwrap().missing.is_empty());
    w.send(env, 100, Replies::One).await;
    assert_eq!(w.queued().len(), 1);
}

#[tokio::test]
async fn the_queue_hand_off_returns_the_missing_alias_targets_once_delivered() {
    let w = World::new().await;
    let targets: Vec<String> = ["bob@example.org", "gone@example.org"]
        .iter()
        .map(|t| t.to_string())
        .collect();
    w.store
        .set_alias("team@example.org", &targets)
        .await
        .unwrap();
    // Bob over quota: the list waits whole, and nothing is reported yet
    // (the lost copy is reported by the attempt that delivers the others).
    w.quota("bob", 1000).await;
    let team = [HandOff::from("team@example.org")];
    let outcomes = w
        .delivery
        .deliver_each("alice@example.org", &team, &message(2000))
        .await;
    assert_eq!(outcomes, vec![Err(Refusal::MailboxFull)]);
    assert_eq!(w.count("bob", "INBOX").await, 0);

    w.quota("bob", 100_000).await;
    let outcomes = w
        .delivery
        .deliver_each("alice@example.org", &team, &message(2000))
        .await;
    let [Ok(missing)] = <[_; 1]>::try_from(outcomes).unwrap() else {
        panic!("delivered");
    };
    assert_eq!(
        missing,
        vec![MissingTarget {
            alias: "team@example.org".into(),
            target: "gone@example.org".into(),
        }]
    );
    assert_eq!(
        missing[0].reply(),
        "550 5.1.1 <gone@example.org>: no such user here; alias <team@example.org> names it"
    );
    assert_eq!(w.count("bob", "INBOX").await, 1);
    assert!(
        w.queued().is_empty(),
        "the queue runner reports them, not the hand-off"
    );
}
