//! Whole sessions through `tokio::io::duplex` over the real SQLite store.

mod common;

use std::time::Duration;

use common::*;
use mailgate_auth::sasl::encode_base64;
use mailgate_store::MailStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_capability_logout() {
    let f = fixture().await;
    let (mut c, greeting) = Client::connect(&f.ctx).await;
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2 "),
        "{greeting}"
    );
    assert!(greeting.contains("AUTH=PLAIN"));
    let r = c.cmd("SELECT INBOX").await;
    assert_eq!(r, ["BAD SELECT needs authentication first"]);
    let r = c.cmd(&format!("LOGIN {ALICE} wrong")).await;
    assert_eq!(r, ["NO [AUTHENTICATIONFAILED] Authentication failed"]);
    let r = c.cmd(&format!("LOGIN {ALICE} \"{PASSWORD}\"")).await;
    assert!(
        r[0].starts_with("OK [CAPABILITY IMAP4rev1 IMAP4rev2"),
        "{r:?}"
    );
    assert!(r[0].contains(" IDLE ") && r[0].contains(" MOVE ") && r[0].contains("APPENDLIMIT="));
    let r = c.cmd("LOGIN x y").await;
    assert_eq!(r, ["BAD LOGIN is not allowed now"]);
    let r = c.cmd("CAPABILITY").await;
    assert!(r[0].starts_with("CAPABILITY IMAP4rev1"));
    let r = c.cmd("FETCH 1 FLAGS").await;
    assert_eq!(r, ["BAD FETCH needs a selected mailbox"]);
    assert_eq!(
        c.cmd("LOGOUT").await,
        ["BYE Logging out", "OK LOGOUT completed"]
    );
    assert_eq!(c.line().await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_plain() {
    let f = fixture().await;
    let creds = encode_base64(format!("\0{ALICE}\0{PASSWORD}").as_bytes());
    let (mut c, _) = Client::connect(&f.ctx).await;
    let r = c.cmd(&format!("AUTHENTICATE PLAIN {creds}")).await;
    assert!(r[0].starts_with("OK [CAPABILITY"), "{r:?}");

    // Without SASL-IR: continuation, then the response line.
    let (mut c, _) = Client::connect(&f.ctx).await;
    c.send("a AUTHENTICATE PLAIN").await;
    assert_eq!(c.line().await, "+ ");
    c.send(&creds).await;
    let r = c.until_tagged("a").await;
    assert!(r[0].starts_with("OK [CAPABILITY"), "{r:?}");

    let (mut c, _) = Client::connect(&f.ctx).await;
    c.send("b AUTHENTICATE PLAIN").await;
    assert_eq!(c.line().await, "+ ");
    c.send("*").await;
    assert_eq!(c.until_tagged("b").await, ["BAD Authentication cancelled"]);
    let bad = encode_base64(format!("\0{ALICE}\0nope").as_bytes());
    let r = c.cmd(&format!("AUTHENTICATE PLAIN {bad}")).await;
    assert_eq!(r, ["NO [AUTHENTICATIONFAILED] Authentication failed"]);
    let r = c.cmd("AUTHENTICATE CRAM-MD5").await;
    assert_eq!(r, ["NO Unsupported authentication mechanism CRAM-MD5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_login() {
    let f = fixture().await;
    // The two base64 prompts of the LOGIN mechanism, then the answers.
    let (mut c, _) = Client::connect(&f.ctx).await;
    c.send("a AUTHENTICATE LOGIN").await;
    assert_eq!(c.line().await, format!("+ {}", encode_base64(b"Username:")));
    c.send(&encode_base64(ALICE.as_bytes())).await;
    assert_eq!(c.line().await, format!("+ {}", encode_base64(b"Password:")));
    c.send(&encode_base64(PASSWORD.as_bytes())).await;
    let r = c.until_tagged("a").await;
    assert!(r[0].starts_with("OK [CAPABILITY"), "{r:?}");

    // With the user name as initial response (SASL-IR), a wrong password.
    let (mut c, _) = Client::connect(&f.ctx).await;
    c.send(&format!(
        "b AUTHENTICATE login {}",
        encode_base64(ALICE.as_bytes())
    ))
    .await;
    assert_eq!(c.line().await, format!("+ {}", encode_base64(b"Password:")));
    c.send(&encode_base64(b"nope")).await;
    assert_eq!(
        c.until_tagged("b").await,
        ["NO [AUTHENTICATIONFAILED] Authentication failed"]
    );
    // Cancelled after the first prompt.
    c.send("c AUTHENTICATE LOGIN").await;
    assert_eq!(c.line().await, format!("+ {}", encode_base64(b"Username:")));
    c.send("*").await;
    assert_eq!(c.until_tagged("c").await, ["BAD Authentication cancelled"]);
    let caps = c.cmd("CAPABILITY").await;
    assert!(caps[0].contains("AUTH=PLAIN AUTH=LOGIN"), "{caps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailboxes() {
    let f = fixture().await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    let r = c.ok("LIST \"\" *").await;
    assert_eq!(
        r,
        [
            "LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
            "LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
            "LIST (\\HasNoChildren) \"/\" \"INBOX\"",
            "LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
            "LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
            "LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"",
            "OK LIST completed"
        ]
    );
    assert_eq!(
        c.ok("LIST \"\" \"\"").await[0],
        "LIST (\\Noselect) \"/\" \"\""
    );
    c.ok("CREATE Projects/2024/Q1").await;
    assert_eq!(
        c.cmd("CREATE Projects").await,
        ["NO [ALREADYEXISTS] mailbox Projects already exists"]
    );
    let r = c.ok("LIST \"\" Projects/%").await;
    assert_eq!(r[0], "LIST (\\HasChildren) \"/\" \"Projects/2024\"");
    assert_eq!(r.len(), 2);
    // Modified UTF-7 for a rev1 client.
    c.ok("CREATE Caf&AOk-").await;
    let r = c.ok("LIST \"\" Caf*").await;
    assert_eq!(r[0], "LIST (\\HasNoChildren) \"/\" \"Caf&AOk-\"");
    // Names that must not get through.
    for bad in ["\"a/../b\"", "\"..\"", "\"x*\"", "\"/abs\"", "\"a//b\""] {
        let r = c.cmd(&format!("CREATE {bad}")).await;
        assert!(r[0].starts_with("NO [CANNOT]"), "{bad}: {r:?}");
    }
    assert!(c.cmd("CREATE \"caf\u{e9}\"").await[0].starts_with("BAD"));
    // RENAME moves inferiors; DELETE refuses a parent.
    c.ok("RENAME Projects Work").await;
    let r = c.ok("LIST \"\" Work*").await;
    assert_eq!(r.len(), 4, "{r:?}");
    assert!(c.cmd("DELETE Work").await[0].starts_with("NO [INUSE]"));
    c.ok("DELETE Work/2024/Q1").await;
    assert!(c.cmd("DELETE INBOX").await[0].starts_with("NO"));
    assert!(c.cmd("DELETE Nope").await[0].starts_with("NO [NONEXISTENT]"));
    // Subscriptions and LIST-EXTENDED.
    c.ok("UNSUBSCRIBE Junk").await;
    let r = c.ok("LSUB \"\" J*").await;
    assert_eq!(r, ["OK LSUB completed"]);
    let r = c.ok("LIST (SPECIAL-USE) \"\" * RETURN (SUBSCRIBED)").await;
    assert_eq!(r.len(), 6, "{r:?}");
    assert!(r.contains(&"LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"".to_string()));
    assert!(r.contains(&"LIST (\\HasNoChildren \\Subscribed \\Sent) \"/\" \"Sent\"".to_string()));
    let r = c
        .ok("LIST \"\" INBOX RETURN (STATUS (MESSAGES UNSEEN SIZE))")
        .await;
    let size = MSG1.len() + MSG2.len() + MSG3.len();
    assert_eq!(
        r[1],
        format!("STATUS \"INBOX\" (MESSAGES 3 UNSEEN 3 SIZE {size})")
    );
    let r = c.ok("STATUS inbox (MESSAGES UIDNEXT DELETED)").await;
    assert_eq!(r[0], "STATUS \"INBOX\" (MESSAGES 3 UIDNEXT 4 DELETED 0)");
    // CREATE-SPECIAL-USE.
    c.ok("CREATE Old (USE (\\Archive))").await;
    assert!(c.cmd("CREATE X (USE (\\Bogus))").await[0].starts_with("NO [USEATTR]"));
    assert_eq!(
        c.ok("NAMESPACE").await[0],
        "NAMESPACE ((\"\" \"/\")) NIL NIL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_isolated() {
    let f = fixture().await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    let r = c.ok("LIST \"\" *").await;
    assert!(!r.iter().any(|l| l.contains("bob")));
    for name in [
        "bob@example.org/INBOX",
        "../bob@example.org/INBOX",
        "\"~bob/INBOX\"",
    ] {
        let r = c.cmd(&format!("SELECT {name}")).await;
        assert!(r.last().unwrap().starts_with("NO"), "{name}: {r:?}");
    }
    let r = c.ok("SELECT INBOX").await;
    assert!(r.contains(&"3 EXISTS".to_string()));
    let r = c.ok("SEARCH TEXT secret").await;
    assert_eq!(r[0], "SEARCH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_fetch_store_expunge() {
    let f = fixture().await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    let r = c.ok("SELECT INBOX").await;
    assert_eq!(r[0], "3 EXISTS");
    assert_eq!(r[1], "0 RECENT");
    assert!(r.iter().any(|l| l.starts_with("OK [UIDVALIDITY ")));
    assert!(r.contains(&"OK [UIDNEXT 4] Predicted next UID".to_string()));
    assert!(r.contains(&"OK [UNSEEN 1] First unseen".to_string()));
    assert_eq!(r.last().unwrap(), "OK [READ-WRITE] SELECT completed");

    let r = c
        .ok("FETCH 1 (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)")
        .await;
    assert_eq!(
        r[0],
        format!(
            "1 FETCH (UID 1 FLAGS () RFC822.SIZE {} INTERNALDATE \"14-Nov-2023 22:13:20 +0000\" ENVELOPE (\"Mon, 7 Feb 1994 21:52:25 -0800\" \"one\" ((\"Ann\" NIL \"a\" \"x.example\")) ((\"Ann\" NIL \"a\" \"x.example\")) ((\"Ann\" NIL \"a\" \"x.example\")) ((NIL NIL \"alice\" \"example.org\")) NIL NIL NIL \"<1@x>\"))",
            MSG1.len()
        )
    );
    let r = c.ok("FETCH 2 BODYSTRUCTURE").await;
    assert_eq!(
        r[0],
        "2 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 8 1 NIL NIL NIL NIL)(\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 8 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL))"
    );
    let r = c.ok("FETCH 2 BODY").await;
    assert!(r[0].starts_with(
        "2 FETCH (BODY ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 8 1)("
    ));
    // PEEK does not set \Seen; sections and partials.
    let r = c
        .ok("FETCH 2 (BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2])")
        .await;
    assert_eq!(
        r[0],
        "2 FETCH (BODY[1] {8}\r\npart one BODY[2.MIME] {77}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n BINARY[2] ~{4}\r\n\u{0}\u{1}\u{2}\u{3} BINARY.SIZE[2] 4)"
    );
    let r = c
        .ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (subject from)] BODY.PEEK[TEXT]<6.100>)")
        .await;
    assert_eq!(
        r[0],
        "1 FETCH (BODY[HEADER.FIELDS (subject from)] {41}\r\nFrom: Ann <a@x.example>\r\nSubject: one\r\n\r\n BODY[TEXT]<6> {7}\r\nworld\r\n)"
    );
    let r = c.ok("FETCH 1 FLAGS").await;
    assert_eq!(r[0], "1 FETCH (FLAGS ())");
    // Non-peek sets \Seen and reports it.
    let r = c.ok("FETCH 3 BODY[]").await;
    assert_eq!(
        r[0],
        format!(
            "3 FETCH (BODY[] {{{}}}\r\n{} FLAGS (\\Seen))",
            MSG3.len(),
            String::from_utf8_lossy(MSG3)
        )
    );
    assert!(c.cmd("FETCH 4 FLAGS").await[0].starts_with("BAD"));
    assert_eq!(
        c.ok("UID FETCH 4:* FLAGS").await[0],
        "3 FETCH (UID 3 FLAGS (\\Seen))"
    );

    let r = c.ok("STORE 1:2 +FLAGS (\\Deleted $Work)").await;
    assert_eq!(
        r[0],
        "FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)"
    );
    assert!(r[1].starts_with("OK [PERMANENTFLAGS ("));
    assert_eq!(r[2], "1 FETCH (FLAGS ($Work \\Deleted))");
    assert_eq!(r[3], "2 FETCH (FLAGS ($Work \\Deleted))");
    let r = c.ok("UID STORE 2 -FLAGS.SILENT (\\Deleted)").await;
    assert_eq!(r, ["OK STORE completed"]);
    let r = c.ok("SEARCH DELETED").await;
    assert_eq!(r[0], "SEARCH 1");
    let r = c.ok("EXPUNGE").await;
    assert_eq!(r, ["1 EXPUNGE", "OK EXPUNGE completed"]);
    let r = c.ok("FETCH 1:* UID").await;
    assert_eq!(r[..2], ["1 FETCH (UID 2)", "2 FETCH (UID 3)"]);
    // EXAMINE is read-only.
    let r = c.ok("EXAMINE INBOX").await;
    assert_eq!(r[0], "OK [CLOSED] Previous mailbox closed");
    assert_eq!(r.last().unwrap(), "OK [READ-ONLY] EXAMINE completed");
    assert!(c.cmd("STORE 1 +FLAGS (\\Seen)").await[0].starts_with("NO [READ-ONLY]"));
    c.ok("FETCH 1 BODY[TEXT]").await;
    assert_eq!(c.ok("FETCH 1 FLAGS").await[0], "1 FETCH (FLAGS ($Work))");
    c.ok("UNSELECT").await;
    assert!(c.cmd("FETCH 1 FLAGS").await[0].starts_with("BAD"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_move_append() {
    let f = fixture().await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    let r = c.ok("SELECT INBOX").await;
    let validity = r
        .iter()
        .find_map(|l| {
            l.strip_prefix("OK [UIDVALIDITY ")
                .and_then(|l| l.split(']').next())
        })
        .unwrap()
        .to_string();
    let r = c.cmd("COPY 1 Nowhere").await;
    assert_eq!(r, ["NO [TRYCREATE] No such mailbox"]);
    let r = c.ok("COPY 1:2 Archive").await;
    let archive = f.store.mailbox(f.alice, "Archive").await.unwrap().unwrap();
    assert_eq!(
        r[0],
        format!(
            "OK [COPYUID {} 1:2 1:2] COPY completed",
            archive.uid_validity
        )
    );
    let r = c.ok("UID MOVE 3 Archive").await;
    assert_eq!(
        r,
        [
            format!("OK [COPYUID {} 3 3] Moved", archive.uid_validity),
            "3 EXPUNGE".to_string(),
            "OK MOVE completed".to_string()
        ]
    );
    assert_eq!(archive.messages, 2);
    assert_eq!(
        f.store
            .mailbox(f.alice, "Archive")
            .await
            .unwrap()
            .unwrap()
            .messages,
        3
    );

    // APPEND with a synchronizing literal, flags and date.
    let msg = "Subject: appended\r\n\r\nbody\r\n";
    c.send(&format!(
        "a1 APPEND INBOX (\\Seen $Sent) \"05-Jan-2024 10:00:00 +0100\" {{{}}}",
        msg.len()
    ))
    .await;
    assert_eq!(c.line().await, "+ Ready for literal data");
    c.send(msg).await;
    let r = c.until_tagged("a1").await;
    assert_eq!(
        r,
        [
            // The new keyword is announced first (RFC 9051 §7.3.5).
            "FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Sent)".to_string(),
            "OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Sent \\*)] Flags permitted"
                .to_string(),
            "3 EXISTS".to_string(),
            format!("OK [APPENDUID {validity} 4] APPEND completed")
        ]
    );
    let r = c.ok("FETCH 3 (FLAGS INTERNALDATE)").await;
    assert_eq!(
        r[0],
        "3 FETCH (FLAGS ($Sent \\Seen) INTERNALDATE \"05-Jan-2024 09:00:00 +0000\")"
    );
    // LITERAL+ and APPEND to a missing mailbox.
    let r = c
        .cmd(&format!("APPEND Nope {{{}+}}\r\n{msg}", msg.len()))
        .await;
    assert_eq!(r, ["NO [TRYCREATE] No such mailbox"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_keys() {
    let f = fixture().await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.ok("SELECT INBOX").await;
    c.ok("STORE 2 +FLAGS (\\Flagged)").await;
    let cases = [
        ("SEARCH ALL", "SEARCH 1 2 3"),
        ("SEARCH FLAGGED", "SEARCH 2"),
        ("SEARCH UNFLAGGED", "SEARCH 1 3"),
        ("SEARCH SUBJECT TWO", "SEARCH 2"),
        ("SEARCH FROM ann", "SEARCH 1"),
        ("SEARCH HEADER Message-ID <1@x>", "SEARCH 1"),
        ("SEARCH BODY \"part one\"", "SEARCH 2"),
        ("SEARCH TEXT l2", "SEARCH 3"),
        ("SEARCH OR SUBJECT one SUBJECT three", "SEARCH 1 3"),
        ("SEARCH NOT 1:2", "SEARCH 3"),
        ("SEARCH LARGER 200", "SEARCH 2"),
        ("SEARCH SENTON 7-Feb-1994", "SEARCH 1"),
        ("SEARCH SENTBEFORE 1-Jan-2000", "SEARCH 1"),
        ("SEARCH ON 14-Nov-2023", "SEARCH 1 2 3"),
        ("SEARCH SINCE 15-Nov-2023", "SEARCH"),
        ("UID SEARCH UID 2:*", "SEARCH 2 3"),
        ("SEARCH (SEEN)", "SEARCH"),
        (
            "SEARCH RETURN (MIN MAX COUNT) ALL",
            "ESEARCH (TAG \"t21\") MIN 1 MAX 3 COUNT 3",
        ),
        (
            "UID SEARCH RETURN () ALL",
            "ESEARCH (TAG \"t22\") UID ALL 1:3",
        ),
        ("SEARCH MODSEQ 1", "SEARCH 1 2 3 (MODSEQ 5)"),
    ];
    for (cmd, want) in cases {
        let r = c.ok(cmd).await;
        assert_eq!(r[0], want, "{cmd}");
    }
    assert!(c.cmd("SEARCH CHARSET KOI8-R ALL").await[0].starts_with("BAD [BADCHARSET"));
    assert!(c.cmd("SEARCH FROB").await[0].starts_with("BAD"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_and_idle() {
    let f = fixture().await;
    let mut a = Client::login(&f.ctx, ALICE).await;
    let mut b = Client::login(&f.ctx, ALICE).await;
    a.ok("SELECT INBOX").await;
    b.ok("SELECT INBOX").await;

    // b changes flags and expunges; a hears of it at its next command,
    // but no EXPUNGE during a FETCH by sequence number.
    b.ok("STORE 1 +FLAGS (\\Deleted)").await;
    b.ok("EXPUNGE").await;
    let r = a.ok("FETCH 1:* UID").await;
    assert!(!r.iter().any(|l| l.contains("EXPUNGE")), "{r:?}");
    let r = a.ok("NOOP").await;
    assert_eq!(r, ["1 EXPUNGE", "OK NOOP completed"]);
    b.ok("STORE 1 +FLAGS (\\Answered)").await;
    let r = a.ok("NOOP").await;
    assert_eq!(
        r,
        ["1 FETCH (UID 2 FLAGS (\\Answered))", "OK NOOP completed"]
    );

    // IDLE: new mail is announced within a second of its delivery.
    a.send("i1 IDLE").await;
    assert_eq!(a.line().await, "+ idling");
    let start = std::time::Instant::now();
    deliver(&f.store, f.alice, "INBOX", b"Subject: new\r\n\r\nnew\r\n").await;
    assert_eq!(a.line().await, "* 3 EXISTS");
    assert!(start.elapsed() < Duration::from_secs(1));
    // An expunge (as POP3 would do) also shows during IDLE.
    let uid = mailgate_store::Uid::new(3).unwrap();
    f.store
        .expunge(
            f.store.mailbox(f.alice, "INBOX").await.unwrap().unwrap().id,
            &[uid],
        )
        .await
        .unwrap();
    assert_eq!(a.line().await, "* 2 EXPUNGE");
    a.send("DONE").await;
    assert_eq!(a.until_tagged("i1").await, ["OK IDLE terminated"]);
    let r = b.ok("NOOP").await;
    // uid 3 (seq 2) went, uid 4 came: expunge first, then the count.
    assert_eq!(r, ["2 EXPUNGE", "2 EXISTS", "OK NOOP completed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input() {
    let f = fixture_with(|ctx| ctx.login_limits.max_literal = 100).await;
    let (mut c, _) = Client::connect(&f.ctx).await;
    // A refused synchronizing literal: no continuation, NO [TOOBIG].
    c.send("x1 LOGIN {1000}").await;
    assert_eq!(c.line().await, "x1 NO [TOOBIG] Literal too large");
    // A refused non-synchronizing literal is read and thrown away.
    c.send_raw(format!("x2 LOGIN {{200+}}\r\n{} pw\r\n", "a".repeat(200)).as_bytes())
        .await;
    assert_eq!(c.line().await, "x2 BAD [TOOBIG] Literal too large");
    assert_eq!(c.cmd("NOOP").await, ["OK NOOP completed"]);
    c.send_raw(b"\x00\xff garbage\r\n").await;
    assert!(c.line().await.starts_with("* BAD"));
    assert!(c.cmd("FETCH (((").await[0].starts_with("BAD"));
    let r = c.cmd("LOGIN \"unterminated").await;
    assert_eq!(r, ["BAD Error in IMAP command: unterminated quoted string"]);
    assert_eq!(c.cmd("NOOP").await, ["OK NOOP completed"]);
}

/// FETCH loads messages from the store in batches; one expunged by
/// another session, not yet announced, is left out (RFC 9051 §7.5.1) and
/// the others come in order, whichever items are asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_in_batches_skips_unannounced_expunges() {
    let f = fixture().await;
    for n in 0..300 {
        let raw = format!("Subject: m{n}\r\nFrom: a@x.example\r\n\r\nbody {n}\r\n");
        deliver(&f.store, f.alice, "INBOX", raw.as_bytes()).await;
    }
    let mut c = Client::login(&f.ctx, ALICE).await;
    let r = c.ok("SELECT INBOX").await;
    assert_eq!(r[0], "303 EXISTS");
    let inbox = f.store.mailbox(f.alice, "INBOX").await.unwrap().unwrap().id;
    let gone = [
        mailgate_store::Uid::new(2).unwrap(),
        mailgate_store::Uid::new(200).unwrap(),
    ];
    f.store.expunge(inbox, &gone).await.unwrap();
    for items in [
        "BODY.PEEK[]",
        "(ENVELOPE BODYSTRUCTURE)",
        "(UID BODY.PEEK[HEADER])",
    ] {
        let r = c.ok(&format!("FETCH 1:* {items}")).await;
        let seqs: Vec<u32> = r
            .iter()
            .filter_map(|l| l.split_once(" FETCH ("))
            .map(|(n, _)| n.parse().unwrap())
            .collect();
        let want: Vec<u32> = (1..=303).filter(|&n| n != 2 && n != 200).collect();
        assert_eq!(seqs, want, "{items}");
        let last = r.iter().find(|l| l.starts_with("303 FETCH")).unwrap();
        assert!(
            last.contains("m299") || last.contains("body 299"),
            "{items}: {last}"
        );
    }
}

/// Header searches read header blocks in batches, body searches whole
/// messages; the results are the same as message by message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_body_searches_in_batches() {
    let f = fixture().await;
    for n in 0..600 {
        let raw = format!(
            "Subject: =?UTF-8?Q?caf=C3=A9?= m{n}\r\nFrom: S{n} <s{n}@x.example>\r\nDate: 7 Feb 1994 21:52:25 -0800\r\n\r\nbody {n} Subject: m{n}x\r\n"
        );
        deliver(&f.store, f.alice, "INBOX", raw.as_bytes()).await;
    }
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.ok("SELECT INBOX").await;
    // The fixture's three messages come first: m{n} is sequence n + 4.
    let seqs = |ns: &[u32]| {
        let s: Vec<String> = ns.iter().map(|n| (n + 4).to_string()).collect();
        format!("SEARCH {}", s.join(" "))
    };
    assert_eq!(
        c.ok("SEARCH SUBJECT m59").await[0],
        seqs(&[59, 590, 591, 592, 593, 594, 595, 596, 597, 598, 599])
    );
    assert_eq!(c.ok("SEARCH FROM \"s300@\"").await[0], seqs(&[300]));
    assert_eq!(c.ok("SEARCH HEADER From S599").await[0], seqs(&[599]));
    // Decoded encoded words; the body's "Subject:" line is not a header.
    assert_eq!(
        c.ok("SEARCH CHARSET UTF-8 SUBJECT \"café m42\"").await[0],
        seqs(&[42, 420, 421, 422, 423, 424, 425, 426, 427, 428, 429])
    );
    assert_eq!(c.ok("SEARCH SUBJECT m7x").await[0], "SEARCH");
    assert_eq!(c.ok("SEARCH BODY m7x").await[0], seqs(&[7]));
    assert_eq!(
        c.ok("SEARCH OR SUBJECT m511 BODY \"body 512 \"").await[0],
        seqs(&[511, 512])
    );
    let not = c.ok("SEARCH NOT FROM x.example").await;
    assert!(
        !not[0].contains(" 4 ") && !not[0].ends_with(" 603"),
        "{not:?}"
    );
    assert_eq!(
        c.ok("SEARCH SENTON 7-Feb-1994 FROM s1@").await[0],
        seqs(&[1])
    );
}
