//! The outbound queue's contract ([`QueueStore`]), written once and run
//! against both backends (SQLite in a temporary directory, PostgreSQL in
//! a private server: `support/pg.rs`), and the PostgreSQL queue's claims
//! across nodes: two stores on one database never take the same message
//! at once, and a lease that runs out lets another node take it over.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use mailgate_store::postgres::queue::QUEUE_LEASE_SECS;
use mailgate_store::queue::{
    AttemptRecord, LocalTarget, NewQueued, NewQueuedRecipient, OutboundQueue, QueueStore,
    RecipientStatus, RecipientUpdate,
};
use mailgate_store::{PgConfig, PgStore, SqliteStore, StoreError};
use support::pg::PgServer;

fn message(sender: &str, rcpts: &[&str], created: i64) -> NewQueued {
    NewQueued {
        msg_id: None,
        sender: sender.into(),
        recipients: rcpts.iter().map(|r| NewQueuedRecipient::new(*r)).collect(),
        raw: Arc::new(b"Subject: hi\r\n\r\nbody\r\n".to_vec()),
        created,
        envid: Some("env-1".into()),
        ret_full: Some(false),
        smtputf8: false,
        eight_bit: true,
    }
}

fn update(index: u32, status: RecipientStatus, reply: Option<&str>) -> RecipientUpdate {
    RecipientUpdate {
        index,
        status,
        reply: reply.map(str::to_string),
        remote_host: None,
    }
}

async fn enqueue_and_due<S: QueueStore + ?Sized>(s: Arc<S>) {
    let id = s
        .enqueue(message("a@a.test", &["x@B.test.", "y@c.test"], 100))
        .await
        .unwrap();
    assert_eq!(s.queue_next_due().await.unwrap(), Some(100));
    assert!(s.queue_due(99, 10).await.unwrap().is_empty());
    let due = s.queue_due(100, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let e = &due[0];
    assert_eq!(e.id, id);
    assert_eq!(e.attempts, 0);
    assert_eq!(e.recipients.len(), 2);
    assert_eq!(e.recipients[0].domain, "b.test");
    assert_eq!(e.recipients[0].status, RecipientStatus::Pending);
    assert_eq!(e.recipients[1].index, 1);
    assert_eq!(e.envid.as_deref(), Some("env-1"));
    assert_eq!(e.ret_full, Some(false));
    assert!(e.eight_bit && !e.smtputf8);
    assert_eq!(e.size, 21);
    assert_eq!(e.msg_id.len(), 18, "a queue id was made: {}", e.msg_id);
    assert_eq!(s.queue_find(&e.msg_id).await.unwrap(), Some(id));
    assert_eq!(s.queue_find("0663A0B1C2D3E40002").await.unwrap(), None);
    assert_eq!(
        s.queue_body(id).await.unwrap().unwrap(),
        b"Subject: hi\r\n\r\nbody\r\n"
    );
    assert_eq!(
        s.queue_entry(id).await.unwrap().unwrap().recipients.len(),
        2
    );
    assert_eq!(s.queue_body(id + 1000).await.unwrap(), None);
    assert_eq!(s.queue_entry(id + 1000).await.unwrap(), None);
}

async fn attempts_are_per_recipient_and_final_states_stick<S: QueueStore + ?Sized>(s: Arc<S>) {
    let id = s
        .enqueue(message("a@a.test", &["x@b.test", "y@b.test"], 0))
        .await
        .unwrap();
    assert_eq!(s.queue_due(0, 10).await.unwrap().len(), 1);
    let e = s
        .queue_record_attempt(
            id,
            AttemptRecord {
                at: 5,
                updates: vec![
                    RecipientUpdate {
                        remote_host: Some("mx.b.test".into()),
                        ..update(0, RecipientStatus::Delivered, Some("250 ok"))
                    },
                    update(1, RecipientStatus::Pending, Some("451 later")),
                ],
                next_attempt: 60,
                warned: false,
                notices: Vec::new(),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.attempts, e.next_attempt), (1, 60));
    assert_eq!(e.pending().count(), 1);
    assert_eq!(e.recipients[0].remote_host.as_deref(), Some("mx.b.test"));
    assert_eq!(e.recipients[0].updated, Some(5));
    assert_eq!(e.recipients[1].last_reply.as_deref(), Some("451 later"));
    assert!(s.queue_due(59, 10).await.unwrap().is_empty());
    // Due again at its next attempt (the attempt ended any claim).
    assert_eq!(s.queue_due(60, 10).await.unwrap().len(), 1);
    // A final state is never overwritten by a later update.
    let e = s
        .queue_record_attempt(
            id,
            AttemptRecord {
                at: 61,
                updates: vec![
                    update(0, RecipientStatus::Failed, None),
                    update(1, RecipientStatus::Failed, Some("550 no")),
                ],
                next_attempt: 120,
                warned: true,
                notices: vec![message("", &["a@a.test"], 125)],
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.recipients[0].status, RecipientStatus::Delivered);
    assert_eq!(e.recipients[1].status, RecipientStatus::Failed);
    assert!(e.is_finished() && e.warned);
    // The attempt's notice entered the queue with it; the finished
    // message is not due any more.
    let due = s.queue_due(1000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].sender.as_str(), due[0].created), ("", 125));
    let bounce = s
        .queue_complete(id, Some(message("", &["a@a.test"], 130)))
        .await
        .unwrap();
    let list = s.queue_list().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(Some(list[1].id), bounce);
    assert_eq!(list[1].sender, "");
    // Completing again (already gone) enqueues nothing; recording an
    // attempt on a message that is gone says so.
    assert_eq!(
        s.queue_complete(id, Some(message("", &["a@a.test"], 130)))
            .await
            .unwrap(),
        None
    );
    let gone = AttemptRecord {
        at: 0,
        updates: Vec::new(),
        next_attempt: 0,
        warned: false,
        notices: vec![message("", &["a@a.test"], 1)],
    };
    assert_eq!(s.queue_record_attempt(id, gone).await.unwrap(), None);
    assert_eq!(s.queue_list().await.unwrap().len(), 2);
}

async fn local_copies_and_next_hops_are_kept<S: QueueStore + ?Sized>(s: Arc<S>) {
    let mut m = message(
        "a@a.test",
        &["bob@example.org", "carol@example.org", "dan@d.test"],
        1000,
    );
    m.msg_id = Some("0663A0B1C2D3E40001".into());
    m.recipients[0].local = Some(LocalTarget {
        folder: "Lists/rust".into(),
        flags: vec!["\\Flagged".into(), "$Label1".into()],
    });
    m.recipients[2].next_hop = Some(" [MX.Relay.test]:2525 ".into());
    m.recipients[2].orcpt = Some("rfc822;dan@d.test".into());
    m.recipients[2].notify = Some("SUCCESS,FAILURE".into());
    let id = s.enqueue(m).await.unwrap();
    let e = s.queue_entry(id).await.unwrap().unwrap();
    assert_eq!(e.msg_id, "0663A0B1C2D3E40001");
    assert_eq!(s.queue_find("0663A0B1C2D3E40001").await.unwrap(), Some(id));
    let local = &e.recipients[0].local;
    assert_eq!(
        local.as_ref().map(|l| (l.folder.as_str(), l.flags.clone())),
        Some(("Lists/rust", vec!["\\Flagged".into(), "$Label1".into()]))
    );
    assert_eq!(e.recipients[1].local, None, "INBOX: nothing kept");
    let r = &e.recipients[2];
    assert_eq!(r.next_hop.as_deref(), Some("[mx.relay.test]:2525"));
    assert_eq!(r.orcpt.as_deref(), Some("rfc822;dan@d.test"));
    assert_eq!(r.notify.as_deref(), Some("SUCCESS,FAILURE"));

    let mut bad = message("a@a.test", &["y@c.test"], 20);
    bad.recipients[0].next_hop = Some("mx.test:0".into());
    assert!(matches!(s.enqueue(bad).await, Err(StoreError::Invalid(_))));
    assert!(matches!(
        s.enqueue(message("a@a.test", &[], 0)).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        s.queue_list().await.unwrap().len(),
        1,
        "nothing half-stored"
    );
}

async fn hold_release_flush_delete<S: QueueStore + ?Sized>(s: Arc<S>) {
    let id = s
        .enqueue(message("a@a.test", &["x@b.test"], 1000))
        .await
        .unwrap();
    assert!(s.queue_set_held(id, true).await.unwrap());
    assert!(s.queue_entry(id).await.unwrap().unwrap().held);
    assert!(s.queue_due(5000, 10).await.unwrap().is_empty());
    assert_eq!(s.queue_next_due().await.unwrap(), None);
    assert_eq!(s.queue_flush(None, 10).await.unwrap(), 0);
    assert!(s.queue_set_held(id, false).await.unwrap());
    assert_eq!(s.queue_flush(Some(id), 10).await.unwrap(), 1);
    assert_eq!(s.queue_entry(id).await.unwrap().unwrap().next_attempt, 10);
    assert_eq!(s.queue_due(10, 10).await.unwrap().len(), 1);
    assert!(s.queue_delete(id).await.unwrap());
    assert!(!s.queue_delete(id).await.unwrap());
    assert!(!s.queue_set_held(id, true).await.unwrap());
    assert!(s.queue_entry(id).await.unwrap().is_none());
    assert_eq!(s.queue_next_due().await.unwrap(), None);
}

async fn due_is_oldest_first_and_limited<S: QueueStore + ?Sized>(s: Arc<S>) {
    let mut ids = Vec::new();
    for created in [30, 10, 20] {
        ids.push(
            s.enqueue(message("a@a.test", &["x@b.test"], created))
                .await
                .unwrap(),
        );
    }
    let due = s.queue_due(100, 2).await.unwrap();
    let order: Vec<i64> = due.iter().map(|e| e.created).collect();
    assert_eq!(order, vec![10, 20]);
    let list: Vec<i64> = s
        .queue_list()
        .await
        .unwrap()
        .iter()
        .map(|e| e.created)
        .collect();
    assert_eq!(list, vec![10, 20, 30]);
}

async fn sqlite() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    (dir, store)
}

async fn postgres() -> (PgServer, Arc<PgStore>) {
    let server = PgServer::start();
    let url = server.create_database("queue").await;
    let store = PgStore::connect(&PgConfig::new(url)).await.unwrap();
    (server, store)
}

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let (_dir, store) = super::sqlite().await;
                    super::$case(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_server, store) = super::postgres().await;
                    super::$case(store).await;
                }
            )*
        }
    };
}

on_both_backends!(
    enqueue_and_due,
    attempts_are_per_recipient_and_final_states_stick,
    local_copies_and_next_hops_are_kept,
    hold_release_flush_delete,
    due_is_oldest_first_and_limited,
    a_finished_message_left_behind_is_claimed_for_removal,
);

/// Two nodes on one database claim at the same time, in small batches,
/// until nothing is left: every message is claimed by exactly one of them.
/// Their leases keep the messages from both until the leases run out;
/// then another node takes them over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_claim_each_message_once_and_take_over_expired_leases() {
    let server = PgServer::start();
    let url = server.create_database("claims").await;
    let cfg = PgConfig::new(url);
    let a = PgStore::connect(&cfg).await.unwrap();
    let b = PgStore::connect(&cfg).await.unwrap();
    const N: usize = 60;
    let mut all = HashSet::new();
    for i in 0..N {
        all.insert(
            a.enqueue(message("s@a.test", &["r@b.test"], i as i64))
                .await
                .unwrap(),
        );
    }
    let now = 1000;
    async fn drain(s: Arc<PgStore>, now: i64) -> Vec<i64> {
        let mut got = Vec::new();
        loop {
            let batch = s.queue_due(now, 7).await.unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.iter().map(|e| e.id));
            tokio::task::yield_now().await;
        }
    }
    let (ga, gb) = tokio::join!(
        tokio::spawn(drain(a.clone(), now)),
        tokio::spawn(drain(b.clone(), now))
    );
    let (ga, gb) = (ga.unwrap(), gb.unwrap());
    let mut seen = HashSet::new();
    for id in ga.iter().chain(&gb) {
        assert!(seen.insert(*id), "message {id} was claimed twice");
    }
    assert_eq!(seen, all, "every message was claimed");
    eprintln!("node a claimed {}, node b {}", ga.len(), gb.len());

    // While the leases hold, nobody gets them again, and the runner is
    // told to wait for the end of the lease.
    assert!(a.queue_due(now, 100).await.unwrap().is_empty());
    assert!(b
        .queue_due(now + QUEUE_LEASE_SECS - 1, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        b.queue_next_due().await.unwrap(),
        Some(now + QUEUE_LEASE_SECS)
    );

    // Node a records an attempt on one of its messages: its lease ends
    // and the message is due for anyone at its next attempt.
    let mine = ga[0];
    a.queue_record_attempt(
        mine,
        AttemptRecord {
            at: now,
            updates: vec![update(0, RecipientStatus::Pending, Some("451 later"))],
            next_attempt: now + 5,
            warned: false,
            notices: Vec::new(),
        },
    )
    .await
    .unwrap()
    .unwrap();
    let again = b.queue_due(now + 5, 100).await.unwrap();
    assert_eq!(again.iter().map(|e| e.id).collect::<Vec<_>>(), vec![mine]);

    // Node a dies holding the rest: once their leases have run out, node
    // b takes every one of them over, once.
    drop(a);
    let taken = drain(b.clone(), now + QUEUE_LEASE_SECS).await;
    let taken: HashSet<i64> = taken.into_iter().collect();
    let expected: HashSet<i64> = all.iter().copied().filter(|id| *id != mine).collect();
    assert_eq!(taken, expected);
}

/// A node whose lease ran out and was taken over cannot end the new
/// holder's lease by recording its late attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_attempt_does_not_end_another_nodes_lease() {
    let server = PgServer::start();
    let url = server.create_database("late").await;
    let cfg = PgConfig::new(url);
    let a = PgStore::connect(&cfg).await.unwrap();
    let b = PgStore::connect(&cfg).await.unwrap();
    let id = a
        .enqueue(message("s@a.test", &["r@b.test", "q@b.test"], 0))
        .await
        .unwrap();
    assert_eq!(a.queue_due(0, 10).await.unwrap().len(), 1);
    let later = QUEUE_LEASE_SECS;
    assert_eq!(b.queue_due(later, 10).await.unwrap().len(), 1, "taken over");
    // a finally records: the outcome counts, b's lease stays.
    let e = a
        .queue_record_attempt(
            id,
            AttemptRecord {
                at: later,
                updates: vec![update(0, RecipientStatus::Delivered, Some("250 ok"))],
                next_attempt: later,
                warned: false,
                notices: Vec::new(),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.recipients[0].status, RecipientStatus::Delivered);
    assert!(
        a.queue_due(later, 10).await.unwrap().is_empty(),
        "b holds it"
    );
    assert!(b.queue_due(later, 10).await.unwrap().is_empty());
}

/// The relay's `[queue] lease`: a claim made with `queue_claim` lasts the
/// lease asked for, renewing it keeps the message from the other nodes
/// for as long as the holder renews, and recording the attempt ends it at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lease_holds_and_a_recorded_attempt_ends_it_at_once() {
    use std::time::Duration;
    let server = PgServer::start();
    let url = server.create_database("renew").await;
    let cfg = PgConfig::new(url);
    let a = PgStore::connect(&cfg).await.unwrap();
    let b = PgStore::connect(&cfg).await.unwrap();
    let lease = Duration::from_secs(6);
    let id = a
        .enqueue(message("s@a.test", &["r@b.test"], 0))
        .await
        .unwrap();
    let now = 100;
    assert_eq!(a.queue_claim(now, 10, lease).await.unwrap().len(), 1);
    assert_eq!(b.queue_next_due().await.unwrap(), Some(now + 6));
    // Renewed every third of the lease for a minute: never free for b.
    for t in (now + 2..now + 60).step_by(2) {
        assert_eq!(a.queue_renew(&[id], t, lease).await.unwrap(), vec![id]);
        assert!(
            b.queue_claim(t + 1, 10, lease).await.unwrap().is_empty(),
            "b took a renewed lease at {t}"
        );
    }
    // A renewal never shortens a lease (a late renewal with an old `now`).
    assert_eq!(a.queue_renew(&[id], now, lease).await.unwrap(), vec![id]);
    assert_eq!(b.queue_next_due().await.unwrap(), Some(now + 58 + 6));
    // The attempt is recorded: b may take the message at its next attempt
    // at once, without waiting for the lease.
    a.queue_record_attempt(
        id,
        AttemptRecord {
            at: now + 60,
            updates: vec![update(0, RecipientStatus::Pending, Some("451 later"))],
            next_attempt: now + 60,
            warned: false,
            notices: Vec::new(),
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(b.queue_claim(now + 60, 10, lease).await.unwrap().len(), 1);
    // a no longer holds it: its renewal says so and changes nothing.
    assert!(a
        .queue_renew(&[id], now + 61, lease)
        .await
        .unwrap()
        .is_empty());
    assert!(a.queue_claim(now + 65, 10, lease).await.unwrap().is_empty());
    assert_eq!(
        b.queue_renew(&[id], now + 61, lease).await.unwrap(),
        vec![id]
    );
    // Renewing nothing, or a message that is gone, keeps nothing.
    assert!(b.queue_renew(&[], now, lease).await.unwrap().is_empty());
    assert!(b.queue_delete(id).await.unwrap());
    assert!(b.queue_renew(&[id], now, lease).await.unwrap().is_empty());
}

/// A node that stops renewing (it died) loses its claims once the lease
/// runs out: another node takes them, and the dead node's late renewal
/// cannot take them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrenewed_lease_is_taken_over_and_cannot_be_renewed_back() {
    use std::time::Duration;
    let server = PgServer::start();
    let url = server.create_database("takeover").await;
    let cfg = PgConfig::new(url);
    let a = PgStore::connect(&cfg).await.unwrap();
    let b = PgStore::connect(&cfg).await.unwrap();
    let lease = Duration::from_secs(3);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            a.enqueue(message("s@a.test", &["r@b.test"], i))
                .await
                .unwrap(),
        );
    }
    assert_eq!(a.queue_claim(10, 100, lease).await.unwrap().len(), 5);
    assert!(b.queue_claim(12, 100, lease).await.unwrap().is_empty());
    let taken = b.queue_claim(13, 100, lease).await.unwrap();
    assert_eq!(taken.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert!(a.queue_renew(&ids, 13, lease).await.unwrap().is_empty());
    let mut kept = b.queue_renew(&ids, 14, lease).await.unwrap();
    kept.sort_unstable();
    assert_eq!(kept, ids);
    // A sub-second lease still lasts a whole second.
    let c = PgStore::connect(&cfg).await.unwrap();
    assert!(c
        .queue_claim(16, 100, Duration::from_millis(10))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        c.queue_claim(17, 100, Duration::from_millis(10))
            .await
            .unwrap()
            .len(),
        5
    );
    assert!(b.queue_claim(17, 100, lease).await.unwrap().is_empty());
    assert_eq!(c.queue_claim(18, 100, lease).await.unwrap().len(), 5);
}

/// A node that died between recording a message's last outcomes and
/// removing it leaves a row with no pending recipient: `queue_due` does
/// not return it, `queue_claim` (the runner's) does, so that it is removed.
async fn a_finished_message_left_behind_is_claimed_for_removal<S: QueueStore + ?Sized>(a: Arc<S>) {
    use std::time::Duration;
    let lease = Duration::from_secs(3);
    let id = a
        .enqueue(message("s@a.test", &["r@b.test"], 0))
        .await
        .unwrap();
    assert_eq!(a.queue_claim(0, 10, lease).await.unwrap().len(), 1);
    a.queue_record_attempt(
        id,
        AttemptRecord {
            at: 1,
            updates: vec![update(0, RecipientStatus::Delivered, Some("250 ok"))],
            next_attempt: 1,
            warned: false,
            notices: Vec::new(),
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert!(a.queue_due(5, 10).await.unwrap().is_empty());
    let left = a.queue_claim(5, 10, lease).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].is_finished());
}
