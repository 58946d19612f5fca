//! `store migrate` (`mailgate_store::migrate`): a SQLite store filled
//! through the store's own calls goes into a private PostgreSQL server and
//! back, and every table comes back as it was; every PostgreSQL table is
//! copied or listed as not copied; a target with data, or a database a
//! node runs on, is refused.

mod support;

use std::sync::Arc;

use mailgate_store::migrate::{self, Direction, Migration};
use mailgate_store::*;
use rusqlite::types::Value;
use support::contract::{message, target};
use support::pg::PgServer;

type Rows = Vec<Vec<Value>>;

/// Every row of `sql` on the SQLite store in `dir`.
fn dump(dir: &std::path::Path, sql: &str) -> Rows {
    let c = rusqlite::Connection::open(dir.join(sqlite::DB_FILE)).unwrap();
    let mut st = c.prepare(sql).unwrap();
    let n = st.column_count();
    st.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap()
        .collect::<Result<Rows, _>>()
        .unwrap()
}

/// What must survive a move, table by table (bodies by content, since
/// PostgreSQL keeps equal bodies once).
fn snapshot(dir: &std::path::Path) -> Vec<(&'static str, Rows)> {
    let mut out = Vec::new();
    for t in migrate::TABLES {
        let rows = match t.name {
            "blobs" => dump(
                dir,
                "SELECT DISTINCT b.data, b.structure, b.size FROM blobs b ORDER BY 1",
            ),
            "messages" => dump(
                dir,
                "SELECT m.mailbox, m.uid, m.flags, m.internal_date, m.size, m.modseq, b.data \
                 FROM messages m JOIN blobs b ON b.id = m.blob ORDER BY 1, 2",
            ),
            name => dump(dir, &format!("SELECT * FROM {name} ORDER BY 1, 2")),
        };
        out.push((t.name, rows));
    }
    out
}

/// The last UIDVALIDITY the SQLite store in `dir` handed out.
fn last_uid_validity(dir: &std::path::Path) -> i64 {
    match &dump(
        dir,
        "SELECT value FROM meta WHERE key = 'last_uid_validity'",
    )[..]
    {
        [row] => match &row[0] {
            Value::Text(t) => t.parse().unwrap(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

async fn fill(s: &Arc<SqliteStore>) {
    s.add_domain("example.org").await.unwrap();
    let alice = s
        .create_account("alice@example.org", "$argon2id$hash-a")
        .await
        .unwrap();
    let bob = s
        .create_account("bob@example.org", "$argon2id$hash-b")
        .await
        .unwrap();
    s.set_catch_all("example.org", Some("alice@example.org"))
        .await
        .unwrap();
    s.set_quota("bob@example.org", Some(10 << 20))
        .await
        .unwrap();
    s.set_alias(
        "team@example.org",
        &["alice@example.org".into(), "bob@example.org".into()],
    )
    .await
    .unwrap();
    s.record_login("alice@example.org", 1_700_000_100, "imap 127.0.0.1")
        .await
        .unwrap();
    s.create_mailbox(alice, "Projects/2026", None)
        .await
        .unwrap();
    s.set_subscribed(alice, "Gone/Folder", true).await.unwrap();
    // One delivery to two accounts (one body), then the same body again
    // (a second copy in SQLite, one row in PostgreSQL).
    let d = s
        .deliver(
            message("one"),
            &[
                target(alice, "INBOX", &["\\Seen"]),
                target(bob, "INBOX", &[]),
            ],
        )
        .await
        .unwrap();
    s.deliver(
        message("one"),
        &[target(alice, "Projects/2026", &["$Label1", "\\Flagged"])],
    )
    .await
    .unwrap();
    let two = s
        .deliver(message("two"), &[target(alice, "INBOX", &[])])
        .await
        .unwrap();
    s.deliver(message("three"), &[target(alice, "INBOX", &[])])
        .await
        .unwrap();
    s.store_flags(
        d[0].mailbox,
        &[d[0].uid],
        FlagChange::Add(vec!["\\Answered".into()]),
    )
    .await
    .unwrap();
    s.expunge(two[0].mailbox, &[two[0].uid]).await.unwrap();
    s.sieve_put(
        alice,
        "main",
        "require \"fileinto\";\nfileinto \"Projects/2026\";\n",
    )
    .await
    .unwrap();
    s.sieve_set_active(alice, Some("main")).await.unwrap();
    // A vacation key holds a NUL (text in SQLite, bytea in PostgreSQL).
    assert!(s
        .sieve_vacation_due(alice, "Someone@Remote.example", "h", 86_400, 1_700_000_000)
        .await
        .unwrap());
    s.kv_set(
        "greylist",
        "k1",
        b"\x00\x01binary".to_vec(),
        Some(4_000_000_000),
        1_700_000_000,
    )
    .await
    .unwrap();
    s.mta_sts_put(
        "remote.example",
        MtaStsEntry {
            id: "20260101".into(),
            expires: 4_000_000_000,
            policy: "version: STSv1\nmode: enforce\nmx: mx.remote.example\nmax_age: 86400\n".into(),
        },
        1_700_000_000,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_goes_to_postgres_and_back_unchanged() {
    let server = PgServer::start();
    let url = server.create_database("migrate").await;
    let src = tempfile::tempdir().unwrap();
    {
        let s = SqliteStore::open(src.path()).unwrap();
        fill(&s).await;
    }
    let before = snapshot(src.path());
    let mut seen = Vec::new();
    let report = migrate::migrate(
        &Migration {
            data_dir: src.path().to_path_buf(),
            pg: PgConfig::new(url.clone()),
            direction: Direction::ToPostgres,
            force: false,
        },
        &mut |p| {
            if let migrate::Progress::Table { table, .. } = p {
                seen.push(table)
            }
        },
    )
    .await
    .unwrap();
    assert!(
        report.committed && report.problems.is_empty(),
        "{:?}",
        report.problems
    );
    assert_eq!(seen.len(), migrate::TABLES.len());
    let blobs = report.tables.iter().find(|t| t.table == "blobs").unwrap();
    assert_eq!(
        (blobs.source, blobs.target),
        (3, 2),
        "equal bodies are kept once"
    );

    // Every PostgreSQL table is copied or listed as not copied.
    let client = server.connect("migrate").await;
    for row in client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap()
    {
        let name: String = row.get(0);
        assert!(
            migrate::accounted_for(&name),
            "PostgreSQL table {name} is neither in migrate::TABLES nor in PG_NOT_COPIED"
        );
    }

    // The PostgreSQL store serves what was there.
    let new_validity = {
        let pg = PgStore::connect(&PgConfig::new(url.clone())).await.unwrap();
        assert!(pg.check().await.unwrap().is_empty());
        let alice = pg.account("alice@example.org").await.unwrap().unwrap();
        let inbox = pg.mailbox(alice.id, "INBOX").await.unwrap().unwrap();
        let sq = SqliteStore::open(src.path()).unwrap();
        let sq_inbox = sq.mailbox(alice.id, "INBOX").await.unwrap().unwrap();
        assert_eq!(inbox.uid_validity, sq_inbox.uid_validity);
        assert_eq!(inbox.uid_next, sq_inbox.uid_next);
        let metas: Vec<_> = pg.list_messages(inbox.id).await.unwrap();
        let sq_metas: Vec<_> = sq.list_messages(sq_inbox.id).await.unwrap();
        assert_eq!(
            metas
                .iter()
                .map(|m| (m.uid, m.flags.clone(), m.modseq))
                .collect::<Vec<_>>(),
            sq_metas
                .iter()
                .map(|m| (m.uid, m.flags.clone(), m.modseq))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            pg.subscriptions(alice.id).await.unwrap(),
            sq.subscriptions(alice.id).await.unwrap()
        );
        // A mailbox made now gets a new UIDVALIDITY, above every old one.
        pg.create_mailbox(alice.id, "New", None).await.unwrap();
        let new = pg.mailbox(alice.id, "New").await.unwrap().unwrap();
        assert!(i64::from(new.uid_validity) > last_uid_validity(src.path()));
        pg.delete_mailbox(alice.id, "New").await.unwrap();
        // Subscriptions outlive their mailbox: drop this one too.
        pg.set_subscribed(alice.id, "New", false).await.unwrap();

        // A running node (its change listener connected) refuses the move
        // back.
        for _ in 0..100 {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE application_name LIKE 'mailgate-listener%'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if n > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let e = migrate::migrate(
            &Migration {
                data_dir: tempfile::tempdir().unwrap().path().to_path_buf(),
                pg: PgConfig::new(url.clone()),
                direction: Direction::FromPostgres,
                force: false,
            },
            &mut |_| {},
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("running"), "{e}");
        new.uid_validity
    };

    // A second copy into the same database is refused without --force.
    let e = migrate::migrate(
        &Migration {
            data_dir: src.path().to_path_buf(),
            pg: PgConfig::new(url.clone()),
            direction: Direction::ToPostgres,
            force: false,
        },
        &mut |_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("not empty") && e.contains("--force"), "{e}");

    // And back into a new SQLite store: the same rows.
    let back = tempfile::tempdir().unwrap();
    let report = migrate::migrate(
        &Migration {
            data_dir: back.path().to_path_buf(),
            pg: PgConfig::new(url.clone()),
            direction: Direction::FromPostgres,
            force: false,
        },
        &mut |_| {},
    )
    .await
    .unwrap();
    assert!(report.committed, "{:?}", report.problems);
    let after = snapshot(back.path());
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "table {name} differs after the round trip");
    }
    // The UIDVALIDITY handed out on PostgreSQL is not handed out again.
    assert_eq!(last_uid_validity(back.path()), i64::from(new_validity));
    let s = SqliteStore::open(back.path()).unwrap();
    assert!(s.check().await.unwrap().is_empty());

    // Over a store with data: refused, then moved aside with --force.
    let e = migrate::migrate(
        &Migration {
            data_dir: back.path().to_path_buf(),
            pg: PgConfig::new(url.clone()),
            direction: Direction::FromPostgres,
            force: false,
        },
        &mut |_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("not empty"), "{e}");
    drop(s);
    let report = migrate::migrate(
        &Migration {
            data_dir: back.path().to_path_buf(),
            pg: PgConfig::new(url),
            direction: Direction::FromPostgres,
            force: true,
        },
        &mut |_| {},
    )
    .await
    .unwrap();
    let aside = report.set_aside.expect("the old store is kept");
    assert!(aside.join(sqlite::DB_FILE).is_file());
    assert_eq!(snapshot(back.path()), after);
}
