//! Extensions and limits over the real SQLite store: CONDSTORE/QRESYNC
//! (with `UNCHANGEDSINCE` checked atomically in the store), QUOTA, UTF-8
//! names, SORT/THREAD (THREAD=REFERENCES through a whole session), UID
//! EXPUNGE, MULTIAPPEND and `UTF8 (literal8)` APPEND, LIST-EXTENDED
//! `\NonExistent` and `CHILDINFO`, SEARCH BODY/TEXT on decoded text, the
//! clear-text password policy, and the error limit.

mod common;

use common::*;
use mailgate_store::{Directory, MailStore, StoreEvent};

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

/// RFC 7162 §3.1.3: the MODSEQ compared is the store's, at the moment of
/// the change, not the one the session last saw. Session A has not seen
/// B's change yet (nothing was announced to it) when it stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_since_sees_another_sessions_change() {
    let f = fixture().await;
    let mut a = Client::login(&f.ctx, ALICE).await;
    let mut b = Client::login(&f.ctx, ALICE).await;
    a.ok("SELECT INBOX (CONDSTORE)").await;
    b.ok("SELECT INBOX").await;
    let r = a.ok("FETCH 1:3 (MODSEQ)").await;
    let modseq = |line: &str| -> u64 {
        let start = line.find("MODSEQ (").unwrap() + 8;
        line[start..line[start..].find(')').unwrap() + start]
            .parse()
            .unwrap()
    };
    let highest = r[..3].iter().map(|l| modseq(l)).max().unwrap();
    b.ok("STORE 2 +FLAGS.SILENT (\\Flagged)").await;
    let r = a
        .ok(&format!(
            "STORE 1:3 (UNCHANGEDSINCE {highest}) +FLAGS (\\Seen)"
        ))
        .await;
    let tagged = r.last().unwrap();
    assert!(tagged.starts_with("OK [MODIFIED 2]"), "{r:?}");
    // 1 and 3 were changed and announced with their new MODSEQ; 2 was not
    // changed by this STORE (its \Flagged from B is announced by the sync).
    assert!(
        r.iter()
            .any(|l| l.starts_with("1 FETCH (FLAGS (\\Seen) MODSEQ (")),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|l| l.starts_with("3 FETCH (FLAGS (\\Seen) MODSEQ (")),
        "{r:?}"
    );
    let inbox = f.store.mailbox(f.alice, "INBOX").await.unwrap().unwrap();
    let metas = f.store.list_messages(inbox.id).await.unwrap();
    assert_eq!(metas[1].flags, ["\\Flagged"], "B's change was kept");
    // UID STORE answers UIDs in MODIFIED.
    let r = b
        .cmd("UID STORE 1:3 (UNCHANGEDSINCE 1) -FLAGS (\\Seen)")
        .await;
    assert!(r.last().unwrap().starts_with("OK [MODIFIED 1:3]"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiappend_is_atomic_and_utf8_append_is_accepted() {
    let f = fixture().await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    let caps = c.ok("CAPABILITY").await;
    assert!(
        caps[0].contains(" MULTIAPPEND") && caps[0].contains(" UTF8=ACCEPT"),
        "{caps:?}"
    );
    let drafts = f.store.mailbox(f.alice, "Drafts").await.unwrap().unwrap();
    let mut events = f.store.subscribe();
    let m1 = "Subject: first\r\n\r\none\r\n";
    let m2 = "Subject: second\r\n\r\ntwo\r\n";
    c.send_raw(
        format!(
            "a1 APPEND Drafts (\\Seen) {{{}+}}\r\n{m1} \"7-Feb-1994 21:52:25 -0800\" {{{}+}}\r\n{m2}\r\n",
            m1.len(),
            m2.len()
        )
        .as_bytes(),
    )
    .await;
    let r = c.until_tagged("a1").await;
    assert_eq!(
        r.last().unwrap(),
        &format!(
            "OK [APPENDUID {} 1:2] APPEND completed",
            drafts.uid_validity
        )
    );
    let metas = f.store.list_messages(drafts.id).await.unwrap();
    assert_eq!(metas.len(), 2);
    assert_eq!(metas[0].flags, ["\\Seen"]);
    assert!(metas[1].flags.is_empty());
    assert_eq!(metas[1].internal_date, 760_686_745);
    assert!(matches!(events.try_recv(), Ok(StoreEvent::Appended { .. })));
    // One bad message (empty, or asking for \Recent): none is stored.
    for bad in ["{0+}\r\n", "(\\Recent) {3+}\r\nx\r\n"] {
        c.send_raw(format!("a2 APPEND Drafts {{{}+}}\r\n{m1} {bad}\r\n", m1.len()).as_bytes())
            .await;
        let r = c.until_tagged("a2").await;
        assert!(!r.last().unwrap().starts_with("OK"), "{r:?}");
        assert_eq!(f.store.list_messages(drafts.id).await.unwrap().len(), 2);
    }
    // Too many messages for the mailbox's account quota: none stored.
    let used: u64 = f
        .store
        .list_mailboxes(f.alice)
        .await
        .unwrap()
        .iter()
        .map(|m| m.size)
        .sum();
    f.store.set_quota(ALICE, Some(used + 2_000)).await.unwrap();
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(900));
    c.send_raw(
        format!(
            "a3 APPEND Drafts {{{n}+}}\r\n{big} {{{n}+}}\r\n{big} {{{n}+}}\r\n{big}\r\n",
            n = big.len()
        )
        .as_bytes(),
    )
    .await;
    let r = c.until_tagged("a3").await;
    assert!(r.last().unwrap().starts_with("NO [OVERQUOTA]"), "{r:?}");
    assert_eq!(f.store.list_messages(drafts.id).await.unwrap().len(), 2);
    f.store.set_quota(ALICE, None).await.unwrap();
    // RFC 6855 §4: UTF8 (literal8) with UTF-8 in the header.
    let m3 = "Subject: Grüße\r\nFrom: Jürgen <j@x.example>\r\n\r\nHallo\r\n";
    c.send_raw(format!("a4 APPEND Drafts UTF8 (~{{{}+}}\r\n{m3})\r\n", m3.len()).as_bytes())
        .await;
    let r = c.until_tagged("a4").await;
    assert!(r.last().unwrap().starts_with("OK [APPENDUID"), "{r:?}");
    let metas = f.store.list_messages(drafts.id).await.unwrap();
    let raw = f
        .store
        .message_raw(drafts.id, metas[2].uid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw, m3.as_bytes());
    c.ok("SELECT Drafts").await;
    let r = c.ok("FETCH 3 (ENVELOPE)").await;
    assert!(r[0].contains("Grüße"), "{r:?}");
    // UTF8 needs a literal8.
    let r = c.cmd("APPEND Drafts UTF8 ({3+}\r\nabc)").await;
    assert!(r.last().unwrap().starts_with("BAD"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_nonexistent_subscriptions_and_superiors() {
    let f = fixture().await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.ok("CREATE Old").await;
    c.ok("SUBSCRIBE Old").await;
    c.ok("DELETE Old").await;
    // Subscribing a name without a mailbox is allowed (as in Dovecot).
    c.ok("SUBSCRIBE Ghost/Child").await;
    c.ok("CREATE Top/Sub").await;
    c.ok("UNSUBSCRIBE Top").await;
    let r = c.ok("LIST (SUBSCRIBED) \"\" *").await;
    assert!(
        r.contains(&"LIST (\\NonExistent \\Subscribed) \"/\" \"Old\"".into()),
        "{r:?}"
    );
    assert!(
        r.contains(&"LIST (\\NonExistent \\Subscribed) \"/\" \"Ghost/Child\"".into()),
        "{r:?}"
    );
    assert!(
        r.contains(&"LIST (\\HasNoChildren \\Subscribed) \"/\" \"Top/Sub\"".into()),
        "{r:?}"
    );
    assert!(
        !r.iter()
            .any(|l| l.ends_with(" \"Top\"") || l.ends_with(" \"Ghost\"")),
        "{r:?}"
    );
    // RECURSIVEMATCH: superiors of subscribed names the pattern does not
    // reach, with CHILDINFO (RFC 5258 §3.5).
    let r = c.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %").await;
    assert!(
        r.contains(&"LIST (\\NonExistent) \"/\" \"Ghost\" (\"CHILDINFO\" (\"SUBSCRIBED\"))".into()),
        "{r:?}"
    );
    assert!(
        r.contains(&"LIST (\\HasChildren) \"/\" \"Top\" (\"CHILDINFO\" (\"SUBSCRIBED\"))".into()),
        "{r:?}"
    );
    assert!(
        r.contains(&"LIST (\\NonExistent \\Subscribed) \"/\" \"Old\"".into()),
        "{r:?}"
    );
    assert!(
        r.contains(&"LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"".into()),
        "{r:?}"
    );
    let r = c.cmd("LIST (RECURSIVEMATCH) \"\" %").await;
    assert!(r.last().unwrap().starts_with("BAD"), "{r:?}");
    // Without SUBSCRIBED, deleted mailboxes are not listed.
    let r = c.ok("LIST \"\" *").await;
    assert!(
        !r.iter()
            .any(|l| l.ends_with(" \"Old\"") || l.contains("Ghost")),
        "{r:?}"
    );
    // RETURN (SUBSCRIBED) marks existing mailboxes only.
    let r = c.ok("LIST \"\" % RETURN (SUBSCRIBED)").await;
    assert!(
        r.contains(&"LIST (\\HasChildren) \"/\" \"Top\"".into()),
        "{r:?}"
    );
    // LSUB (RFC 3501) lists the gone one as \Noselect.
    let r = c.ok("LSUB \"\" *").await;
    assert!(
        r.contains(&"LSUB (\\Noselect) \"/\" \"Old\"".into()),
        "{r:?}"
    );
    // A mailbox whose superior does not exist (made through the store):
    // `%` answers the superior; `*` does not.
    f.store
        .create_mailbox(f.alice, "Loose/Leaf", None)
        .await
        .unwrap();
    let r = c.ok("LIST \"\" %").await;
    assert!(
        r.contains(&"LIST (\\Noselect \\HasChildren) \"/\" \"Loose\"".into()),
        "{r:?}"
    );
    let r = c.ok("LIST \"\" (%)").await;
    assert!(
        r.contains(&"LIST (\\NonExistent \\HasChildren) \"/\" \"Loose\"".into()),
        "{r:?}"
    );
    let r = c.ok("LIST \"\" *").await;
    assert!(!r.iter().any(|l| l.ends_with(" \"Loose\"")), "{r:?}");
    assert!(
        r.contains(&"LIST (\\HasNoChildren) \"/\" \"Loose/Leaf\"".into()),
        "{r:?}"
    );
    // STATUS is not returned for a name that is no mailbox.
    let r = c.ok("LIST \"\" (%) RETURN (STATUS (MESSAGES))").await;
    assert!(
        !r.iter().any(|l| l.starts_with("STATUS \"Loose\"")),
        "{r:?}"
    );
    assert!(r.iter().any(|l| l.starts_with("STATUS \"INBOX\"")), "{r:?}");
    // Unsubscribing the gone name removes it.
    c.ok("UNSUBSCRIBE Old").await;
    let r = c.ok("LIST (SUBSCRIBED) \"\" *").await;
    assert!(!r.iter().any(|l| l.ends_with(" \"Old\"")), "{r:?}");
    let r = c.cmd("UNSUBSCRIBE Old").await;
    assert!(r.last().unwrap().starts_with("NO"), "{r:?}");
}

const B64: &[u8] = b"From: a@x.example\r\nSubject: b64\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZSBhdXMgS8O2bG4K\r\n";
const QP: &[u8] = b"From: a@x.example\r\nSubject: qp\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nUn caf=C3=A9 cr=\r\n=C3=A8me br=C3=BBl=C3=A9e\r\n";
const LATIN1: &[u8] = b"From: a@x.example\r\nSubject: latin1\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHerr M\xfcller aus D\xfcsseldorf\r\n";
const ATTACHED: &[u8] = b"From: a@x.example\r\nSubject: attached\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nsee attachment\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nU2VjcmV0V29yZA==\r\n--b--\r\n";

const NESTED: &[u8] = b"From: a@x.example\r\nSubject: nested\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nUn caf=E9 noir\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: =?UTF-8?Q?Inner_=C3=A9t=C3=A9?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nRGVlcGx5IGhpZGRlbgo=\r\n--o--\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_body_and_text_on_decoded_text() {
    let f = fixture().await;
    for m in [B64, QP, LATIN1, ATTACHED, NESTED] {
        deliver(&f.store, f.alice, "Archive", m).await;
    }
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.ok("SELECT Archive").await;
    let mut search = async |key: &str, value: &str| -> String {
        let r = c
            .ok(&format!(
                "SEARCH CHARSET UTF-8 {key} {{{}+}}\r\n{value}",
                value.len()
            ))
            .await;
        r[0].clone()
    };
    // base64, in any case.
    assert_eq!(search("BODY", "GRÜSSE").await, "SEARCH");
    assert_eq!(search("BODY", "grüße aus köln").await, "SEARCH 1");
    assert_eq!(search("TEXT", "KÖLN").await, "SEARCH 1");
    assert_eq!(search("BODY", "R3LDvMOf").await, "SEARCH");
    // quoted-printable, soft line break included.
    assert_eq!(search("BODY", "crème brûlée").await, "SEARCH 2");
    assert_eq!(search("BODY", "caf=C3").await, "SEARCH");
    // ISO-8859-1 to UTF-8.
    assert_eq!(search("BODY", "müller").await, "SEARCH 3");
    assert_eq!(search("TEXT", "DÜSSELDORF").await, "SEARCH 3");
    // A binary attachment is not text; the text part is.
    assert_eq!(search("BODY", "secretword").await, "SEARCH");
    assert_eq!(search("BODY", "U2VjcmV0").await, "SEARCH");
    assert_eq!(search("BODY", "SEE ATTACHMENT").await, "SEARCH 4");
    // TEXT still covers the header; BODY does not.
    assert_eq!(search("TEXT", "latin1").await, "SEARCH 3");
    assert_eq!(search("BODY", "latin1").await, "SEARCH");
    // An attached message: its header (decoded) and its decoded text are
    // part of the body.
    assert_eq!(search("BODY", "CAFÉ NOIR").await, "SEARCH 5");
    assert_eq!(search("BODY", "inner été").await, "SEARCH 5");
    assert_eq!(search("BODY", "deeply hidden").await, "SEARCH 5");
    // The fast path (7bit, UTF-8) is unchanged.
    c.ok("SELECT INBOX").await;
    let r = c.ok("SEARCH BODY \"HELLO WORLD\"").await;
    assert_eq!(r[0], "SEARCH 1");
    let r = c.ok("SEARCH TEXT \"part one\"").await;
    assert_eq!(r[0], "SEARCH 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_references_through_a_session() {
    let f = fixture().await;
    let msgs: [&[u8]; 5] = [
        b"Subject: plan\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <p1@x>\r\n\r\n.\r\n",
        b"Subject: Re: plan\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\nMessage-ID: <p3@x>\r\nReferences: <p1@x> <lost@x>\r\n\r\n.\r\n",
        b"Subject: Re: plan\r\nDate: Mon, 1 Jan 2024 11:00:00 +0000\r\nMessage-ID: <p4@x>\r\nIn-Reply-To: <lost@x>\r\n\r\n.\r\n",
        b"Subject: other\r\nDate: Mon, 1 Jan 2024 09:00:00 +0000\r\nMessage-ID: <o1@x>\r\n\r\n.\r\n",
        b"Subject: Fwd: other\r\nDate: Mon, 1 Jan 2024 13:00:00 +0000\r\nMessage-ID: <o2@x>\r\n\r\n.\r\n",
    ];
    for m in msgs {
        deliver(&f.store, f.alice, "Junk", m).await;
    }
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.ok("SELECT Junk").await;
    // p1 <- lost (dummy) <- {p3, p4}: the dummy is pruned, p4 (11:00)
    // before p3 (12:00); o2 joins o1 by subject (a forward).
    let r = c.ok("THREAD REFERENCES UTF-8 ALL").await;
    assert_eq!(r[0], "THREAD (4 5)(1 (3)(2))");
    let r = c.ok("UID THREAD REFERENCES UTF-8 NOT SUBJECT other").await;
    assert_eq!(r[0], "THREAD (1 (3)(2))");
    let r = c.ok("THREAD ORDEREDSUBJECT UTF-8 ALL").await;
    assert_eq!(r[0], "THREAD (4 5)(1 (3)(2))");
}
