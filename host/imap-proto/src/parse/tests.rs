//! Known-answer tests of the parser, and a pseudo-random no-panic loop.

use super::*;
use crate::command::*;
use crate::sequence::{SeqNumber, SequenceSet};

fn ok(s: &str) -> CommandBody {
    match parse_command(s.as_bytes()) {
        Ok(c) => c.body,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

fn bad(s: &[u8]) -> ParseError {
    match parse_command(s) {
        Ok(c) => panic!("{:?} parsed as {c:?}", String::from_utf8_lossy(s)),
        Err(e) => e,
    }
}

#[test]
fn simple_commands() {
    assert_eq!(ok("a CAPABILITY"), CommandBody::Capability);
    assert_eq!(ok("a noop"), CommandBody::Noop);
    assert_eq!(ok("A001 LOGOUT"), CommandBody::Logout);
    assert_eq!(
        ok("a LOGIN alice@example.org \"pa ss\\\"\""),
        CommandBody::Login {
            user: b"alice@example.org".to_vec(),
            password: b"pa ss\"".to_vec()
        }
    );
    assert_eq!(
        ok("a LOGIN {5}\r\nalice {2+}\r\npw"),
        CommandBody::Login {
            user: b"alice".to_vec(),
            password: b"pw".to_vec()
        }
    );
    assert_eq!(
        ok("a AUTHENTICATE plain AGFsaWNlAHB3"),
        CommandBody::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some("AGFsaWNlAHB3".into())
        }
    );
    assert_eq!(
        ok("a ENABLE QRESYNC utf8=accept"),
        CommandBody::Enable(vec!["QRESYNC".into(), "UTF8=ACCEPT".into()])
    );
    assert_eq!(
        ok("a ID (\"name\" \"x\" \"version\" NIL)"),
        CommandBody::Id(Some(vec![
            ("name".into(), Some("x".into())),
            ("version".into(), None)
        ]))
    );
    assert_eq!(ok("a ID NIL"), CommandBody::Id(None));
    assert_eq!(ok("a UID EXPUNGE 1:3").name(), "EXPUNGE");
}

#[test]
fn mailbox_commands() {
    assert_eq!(
        ok("a SELECT INBOX (CONDSTORE)"),
        CommandBody::Select {
            mailbox: b"INBOX".to_vec(),
            read_only: false,
            condstore: true,
            qresync: None
        }
    );
    assert_eq!(
        ok("a EXAMINE \"a b\" (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1,3 2,4)))"),
        CommandBody::Select {
            mailbox: b"a b".to_vec(),
            read_only: true,
            condstore: false,
            qresync: Some(QresyncParams {
                uid_validity: 67890007,
                modseq: 20050715194045000,
                known_uids: SequenceSet::parse(b"41,43:211,214:541"),
            })
        }
    );
    assert_eq!(
        ok("a CREATE Stuff (USE (\\Drafts))"),
        CommandBody::Create {
            mailbox: b"Stuff".to_vec(),
            special_use: vec!["\\Drafts".into()]
        }
    );
    let CommandBody::List(l) =
        ok("a LIST (SUBSCRIBED) \"\" (\"%\" Foo*) RETURN (CHILDREN STATUS (MESSAGES SIZE))")
    else {
        panic!()
    };
    assert_eq!(l.select, ["SUBSCRIBED"]);
    assert_eq!(l.patterns, [b"%".to_vec(), b"Foo*".to_vec()]);
    assert_eq!(l.ret, ["CHILDREN"]);
    assert_eq!(l.status, Some(vec![StatusItem::Messages, StatusItem::Size]));
    let CommandBody::List(l) = ok("a LIST \"\" *") else {
        panic!()
    };
    assert!(!l.extended);
    assert_eq!(
        ok("a STATUS blurdybloop (UIDNEXT MESSAGES)"),
        CommandBody::Status {
            mailbox: b"blurdybloop".to_vec(),
            items: vec![StatusItem::UidNext, StatusItem::Messages]
        }
    );
    assert_eq!(
        ok("a APPEND saved-messages (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {3+}\r\nabc"),
        CommandBody::Append {
            mailbox: b"saved-messages".to_vec(),
            messages: vec![AppendMessage {
                flags: vec!["\\Seen".into()],
                date: Some(760_686_745),
                message: b"abc".to_vec(),
                utf8: false,
            }]
        }
    );
}

#[test]
fn multiappend_and_utf8_append() {
    // RFC 3502 §6.3.11: several messages, each with its own options.
    let CommandBody::Append { mailbox, messages } = ok(
        "a APPEND Drafts (\\Seen) {3}\r\nabc \" 7-Feb-1994 21:52:25 -0800\" {2+}\r\nde {1}\r\nf",
    ) else {
        panic!()
    };
    assert_eq!(mailbox, b"Drafts");
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0].flags, ["\\Seen"]);
    assert_eq!(messages[0].message, b"abc");
    assert_eq!(messages[1].flags, Vec::<String>::new());
    assert_eq!(messages[1].date, Some(760_686_745));
    assert_eq!(messages[1].message, b"de");
    assert_eq!(
        (messages[2].date, &messages[2].message[..]),
        (None, &b"f"[..])
    );
    // RFC 6855 §4: UTF8 (literal8); RFC 3516: a bare literal8.
    let CommandBody::Append { messages, .. } =
        ok("a APPEND INBOX (\\Seen) UTF8 (~{4+}\r\n\u{e9}\u{e9}) ~{2}\r\nxy")
    else {
        panic!()
    };
    assert!(messages[0].utf8);
    assert_eq!(messages[0].message, "\u{e9}\u{e9}".as_bytes());
    assert!(!messages[1].utf8);
    assert_eq!(messages[1].message, b"xy");
    for s in [
        &b"a APPEND INBOX UTF8 ({3}\r\nabc)"[..],
        b"a APPEND INBOX UTF8 (~{3}\r\nabc",
        b"a APPEND INBOX UTF8 ~{3}\r\nabc",
        b"a APPEND INBOX {3}\r\nabc ",
        b"a APPEND INBOX {3}\r\nabc  {1}\r\nx",
        b"a APPEND INBOX {3}\r\nabc(\\Seen) {1}\r\nx",
        b"a APPEND INBOX {3}\r\nabc \"bad date\" {1}\r\nx",
    ] {
        assert_eq!(
            bad(s).tag.as_deref(),
            Some("a"),
            "{:?}",
            String::from_utf8_lossy(s)
        );
    }
    let many = format!(
        "a APPEND INBOX{}",
        " {1}\r\nx".repeat(MAX_APPEND_MESSAGES + 1)
    );
    bad(many.as_bytes());
}

#[test]
fn fetch_store_search() {
    assert_eq!(
        ok("a FETCH 2:4 (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From \"To\")]<0.100> BINARY.SIZE[1])"),
        CommandBody::Fetch {
            uid: false,
            set: SequenceSet(vec![(SeqNumber::Value(2), SeqNumber::Value(4))]),
            items: vec![
                FetchAttr::Flags,
                FetchAttr::Section {
                    peek: true,
                    section: Section {
                        part: vec![1, 2],
                        text: Some(SectionSpec::HeaderFields {
                            not: false,
                            fields: vec!["From".into(), "To".into()]
                        })
                    },
                    partial: Some((0, 100))
                },
                FetchAttr::BinarySize(vec![1]),
            ],
            changed_since: None,
            vanished: false,
        }
    );
    let CommandBody::Fetch { items, .. } = ok("a UID FETCH 1:* fast") else {
        panic!()
    };
    assert_eq!(items.len(), 3);
    let CommandBody::Fetch {
        items,
        changed_since,
        vanished,
        ..
    } = ok("a UID FETCH 1:* (BODY[] BODY RFC822.SIZE BODY[3.MIME]) (CHANGEDSINCE 12 VANISHED)")
    else {
        panic!()
    };
    assert_eq!(items[1], FetchAttr::Body);
    assert_eq!((changed_since, vanished), (Some(12), true));
    assert_eq!(
        ok("a STORE 1 +FLAGS.SILENT (\\Deleted $Junk)"),
        CommandBody::Store {
            uid: false,
            set: SequenceSet(vec![(SeqNumber::Value(1), SeqNumber::Value(1))]),
            unchanged_since: None,
            mode: StoreMode::Add,
            silent: true,
            flags: vec!["\\Deleted".into(), "$Junk".into()]
        }
    );
    let CommandBody::Search { key, ret, uid } = ok(
        "a UID SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR FROM alice (NOT SEEN) SINCE 1-Feb-1994 1:5",
    ) else {
        panic!()
    };
    assert!(uid);
    assert_eq!(ret, Some(vec![SearchReturn::Min, SearchReturn::Count]));
    let SearchKey::And(keys) = key else { panic!() };
    assert_eq!(keys.len(), 3);
    assert!(matches!(keys[0], SearchKey::Or(..)));
}

#[test]
fn malformed_commands() {
    assert_eq!(bad(b"").tag, None);
    assert_eq!(bad(b"+ NOOP").tag, None);
    let e = bad(b"a1 FROB");
    assert_eq!(e.tag.as_deref(), Some("a1"));
    assert_eq!(e.message, "unknown command FROB");
    for s in [
        &b"a NOOP extra"[..],
        b"a LOGIN onlyuser",
        b"a LOGIN {10}\r\nshort",
        b"a FETCH 0 FLAGS",
        b"a FETCH 1 BODY[0]",
        b"a FETCH 1 BODY[MIME]",
        b"a FETCH 1 (FLAGS",
        b"a FETCH 1 BODY[]<1.0>",
        b"a STORE 1 FLAGS",
        b"a SEARCH",
        b"a SEARCH CHARSET KOI8-R FROM x",
        b"a SEARCH SINCE 31-Feb-2020",
        b"a SELECT",
        b"a APPEND INBOX",
        b"a LOGIN \"unterminated",
        b"a LOGIN \"bad\rchar\" x",
    ] {
        let e = bad(s);
        assert_eq!(
            e.tag.as_deref(),
            Some("a"),
            "{:?}",
            String::from_utf8_lossy(s)
        );
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = format!("a SEARCH {}ALL{}", "(".repeat(10_000), ")".repeat(10_000));
    bad(deep.as_bytes());
    let deep = format!("a SEARCH {}ALL", "NOT ".repeat(10_000));
    bad(deep.as_bytes());
}

/// Pseudo-random input, and mutations of valid commands: the parser must
/// return, never panic.
#[test]
fn never_panics() {
    let seeds: &[&[u8]] = &[
        b"a FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100> BINARY[1] UID)",
        b"a UID SEARCH RETURN (MIN) OR FROM x (NOT SEEN) UID 1:* HEADER X y SENTON 1-Jan-2000",
        b"a LIST (SUBSCRIBED) \"\" (% *) RETURN (STATUS (MESSAGES))",
        b"a APPEND INBOX (\\Seen) \"1-Jan-2000 00:00:00 +0000\" {3}\r\nabc",
        b"a APPEND INBOX (\\Seen) {3}\r\nabc UTF8 (~{2}\r\nxy) \"1-Jan-2000 00:00:00 +0000\" ~{1+}\r\nz",
        b"a SELECT x (QRESYNC (1 2 1:3 (1 2)))",
        b"a STORE 1 (UNCHANGEDSINCE 3) -FLAGS.SILENT (\\Seen)",
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..20_000 {
        let mut input: Vec<u8> = seeds[round % seeds.len()].to_vec();
        let edits = next() % 6;
        for _ in 0..=edits {
            let r = next();
            let pos = (r as usize >> 8) % (input.len() + 1);
            let byte = match r % 5 {
                0 => b' ',
                1 => b'(',
                2 => b'{',
                _ => (r >> 32) as u8,
            };
            match r % 3 {
                0 if pos < input.len() => input[pos] = byte,
                1 if pos < input.len() => {
                    input.remove(pos);
                }
                _ => input.insert(pos, byte),
            }
        }
        let _ = parse_command(&input);
        let random: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
        let _ = parse_command(&random);
    }
}

#[test]
fn saved_result_dollar() {
    // RFC 5182: `$` stands for a whole sequence set, in commands and in
    // search keys.
    match ok("a FETCH $ FLAGS") {
        CommandBody::Fetch {
            set, uid: false, ..
        } => assert!(set.is_saved()),
        other => panic!("{other:?}"),
    }
    match ok("a UID COPY $ Trash") {
        CommandBody::Copy { set, uid: true, .. } => assert!(set.is_saved()),
        other => panic!("{other:?}"),
    }
    match ok("a SEARCH RETURN (SAVE MIN) UID $ $") {
        CommandBody::Search { ret, key, .. } => {
            assert_eq!(ret, Some(vec![SearchReturn::Save, SearchReturn::Min]));
            assert_eq!(
                key,
                SearchKey::And(vec![
                    SearchKey::Uid(SequenceSet::saved()),
                    SearchKey::Seq(SequenceSet::saved())
                ])
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(parse_command(b"a FETCH $1 FLAGS").is_err());
    assert_eq!(
        SequenceSet::from_numbers([1, 2, 3, 7, 9, 10]),
        SequenceSet(vec![
            (SeqNumber::Value(1), SeqNumber::Value(3)),
            (SeqNumber::Value(7), SeqNumber::Value(7)),
            (SeqNumber::Value(9), SeqNumber::Value(10)),
        ])
    );
}
