//! Extensions and limits over the real SQLite store: CONDSTORE/QRESYNC,
//! QUOTA, UTF-8 names, SORT/THREAD, UID EXPUNGE, the clear-text password
//! policy, and the error limit.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condstore_and_qresync() {
    let f = fixture().await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    assert_eq!(c.ok("ENABLE QRESYNC").await[0], "ENABLED QRESYNC");
    let r = c.ok("SELECT INBOX").await;
    let modseq: u64 = r
        .iter()
        .find_map(|l| {
            l.strip_prefix("OK [HIGHESTMODSEQ ")
                .and_then(|l| l.split(']').next())
        })
        .unwrap()
        .parse()
        .unwrap();
    let validity = r
        .iter()
        .find_map(|l| {
            l.strip_prefix("OK [UIDVALIDITY ")
                .and_then(|l| l.split(']').next())
        })
        .unwrap()
        .to_string();
    let r = c
        .ok(&format!(
            "STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Seen)"
        ))
        .await;
    assert_eq!(
        r[0],
        format!("1 FETCH (FLAGS (\\Seen) MODSEQ ({}))", modseq + 1)
    );
    let r = c
        .ok(&format!(
            "STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Flagged)"
        ))
        .await;
    assert_eq!(r, ["OK [MODIFIED 1] Some messages were modified meanwhile"]);
    c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.ok("EXPUNGE").await;
    assert_eq!(r[0], "VANISHED 2");
    let r = c
        .ok(&format!(
            "UID FETCH 1:* FLAGS (CHANGEDSINCE {modseq} VANISHED)"
        ))
        .await;
    assert_eq!(r[0], "VANISHED (EARLIER) 2");
    assert_eq!(
        r[1],
        format!("1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ ({}))", modseq + 1)
    );
    c.ok("UNSELECT").await;
    let r = c
        .ok(&format!("SELECT INBOX (QRESYNC ({validity} {modseq}))"))
        .await;
    assert!(r.contains(&"VANISHED (EARLIER) 2".to_string()), "{r:?}");
    assert!(
        r.contains(&format!(
            "1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ ({}))",
            modseq + 1
        )),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_and_utf8() {
    let f = fixture().await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    let r = c.ok("GETQUOTAROOT INBOX").await;
    assert_eq!(r[0], "QUOTAROOT \"INBOX\"");
    c.ok("ENABLE IMAP4rev2").await;
    c.ok("CREATE \"Caf\u{e9}\"").await;
    let r = c.ok("LIST \"\" Caf*").await;
    assert_eq!(r[0], "LIST (\\HasNoChildren) \"/\" \"Caf\u{e9}\"");
    let r = c.ok("SELECT INBOX").await;
    assert!(r.contains(&"LIST () \"/\" \"INBOX\"".to_string()));
    assert!(!r.iter().any(|l| l.contains("RECENT")));
    let r = c.ok("SEARCH SUBJECT one").await;
    assert_eq!(r[0], "ESEARCH (TAG \"t7\") ALL 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_thread_uid_expunge() {
    let f = fixture().await;
    deliver(
        &f.store,
        f.alice,
        "INBOX",
        b"From: z@x.example\r\nSubject: Re: one\r\nDate: Tue, 8 Feb 1994 10:00:00 +0000\r\nMessage-ID: <2@x>\r\nIn-Reply-To: <1@x>\r\n\r\nreply\r\n",
    )
    .await;
    deliver(
        &f.store,
        f.alice,
        "INBOX",
        b"From: y@x.example\r\nSubject: Re: Re: one\r\nDate: Wed, 9 Feb 1994 10:00:00 +0000\r\nMessage-ID: <3@x>\r\nReferences: <1@x> <2@x>\r\n\r\nreply 2\r\n",
    )
    .await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.ok("SELECT INBOX").await;
    assert_eq!(c.ok("SORT (SUBJECT) UTF-8 ALL").await[0], "SORT 1 4 5 3 2");
    assert_eq!(
        c.ok("SORT (REVERSE SIZE) UTF-8 ALL").await[0],
        "SORT 2 1 5 4 3"
    );
    assert_eq!(
        c.ok("UID SORT (FROM) US-ASCII NOT SUBJECT one").await[0],
        "SORT 2 3"
    );
    assert_eq!(c.ok("SORT (DATE) UTF-8 SUBJECT one").await[0], "SORT 1 4 5");
    assert_eq!(
        c.ok("THREAD ORDEREDSUBJECT UTF-8 ALL").await[0],
        "THREAD (1 (4)(5))(2)(3)"
    );
    assert_eq!(
        c.ok("THREAD REFERENCES UTF-8 ALL").await[0],
        "THREAD (1 4 5)(2)(3)"
    );
    assert!(c.cmd("THREAD FOO UTF-8 ALL").await[0].starts_with("BAD"));

    c.ok("STORE 1:2 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.ok("UID EXPUNGE 2:10").await;
    assert_eq!(r, ["2 EXPUNGE", "OK EXPUNGE completed"]);
    assert_eq!(c.ok("SEARCH DELETED").await[0], "SEARCH 1");
    let r = c.ok("CLOSE").await;
    assert_eq!(r, ["OK CLOSE completed"]);
    let r = c.ok("STATUS INBOX (MESSAGES)").await;
    assert_eq!(r[0], "STATUS \"INBOX\" (MESSAGES 3)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_clear_text_passwords_unless_allowed() {
    let f = fixture().await;
    let auth = mailgate_auth::Authenticator::new(f.ctx.store.clone(), fast_limits())
        .with_plaintext_policy(mailgate_auth::PlaintextPolicy {
            allow_plaintext: false,
            trust_loopback: false,
        });
    let ctx = std::sync::Arc::new(mailgate_imap::ImapContext::new(
        "imap.example.org",
        f.ctx.store.clone(),
        std::sync::Arc::new(auth),
        f.shutdown.subscribe(),
    ));
    let (mut c, greeting) = Client::connect(&ctx).await;
    assert!(greeting.contains(" LOGINDISABLED"), "{greeting}");
    assert!(!greeting.contains("AUTH=PLAIN"));
    let r = c.cmd(&format!("LOGIN {ALICE} \"{PASSWORD}\"")).await;
    assert_eq!(
        r,
        ["NO [PRIVACYREQUIRED] Passwords are not accepted without TLS"]
    );
    let r = c.cmd("AUTHENTICATE PLAIN").await;
    assert_eq!(
        r,
        ["NO [PRIVACYREQUIRED] Passwords are not accepted without TLS"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_bad_commands_end_the_session() {
    let f = fixture().await;
    let (mut c, _) = Client::connect(&f.ctx).await;
    for _ in 0..19 {
        assert!(c.cmd("FROB").await[0].starts_with("BAD"));
    }
    c.send("x FROB").await;
    assert!(c.line().await.starts_with("x BAD"));
    assert_eq!(c.line().await, "* BYE Too many errors, closing connection");
    assert_eq!(c.line().await, "");
}
