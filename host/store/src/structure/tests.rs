//! Tests of the structure parser on constructed messages. Byte ranges are
//! checked by slicing the raw message, as FETCH will.

use super::*;

fn text(raw: &[u8], range: ByteRange) -> &str {
    std::str::from_utf8(range.slice(raw)).unwrap()
}

fn addr(name: Option<&str>, mailbox: &str, host: &str) -> Address {
    Address {
        name: name.map(str::to_owned),
        adl: None,
        mailbox: Some(mailbox.to_owned()),
        host: Some(host.to_owned()),
    }
}

fn group_start(name: &str) -> Address {
    Address {
        mailbox: Some(name.to_owned()),
        ..Address::default()
    }
}

/// Checks the invariants every structure must keep, whatever the input:
/// ranges inside the message, header followed by body, children inside
/// their parent's body, and the section lookup agreeing with the tree.
fn check_invariants(raw: &[u8], s: &MessageStructure) {
    fn walk(raw: &[u8], part: &BodyPart, outer: ByteRange) {
        let len = raw.len() as u64;
        assert!(part.header.start <= part.header.end);
        assert_eq!(part.header.end, part.body.start);
        assert!(part.body.start <= part.body.end && part.body.end <= len);
        assert!(part.header.start >= outer.start && part.body.end <= outer.end);
        match &part.kind {
            PartKind::Single => {}
            PartKind::Multipart(children) => {
                assert!(!children.is_empty());
                let mut prev = part.body.start;
                for child in children {
                    assert!(child.header.start >= prev);
                    prev = child.body.end;
                    walk(raw, child, part.body);
                }
            }
            PartKind::Message(m) => {
                assert_eq!(m.root.header.start, part.body.start);
                assert_eq!(m.root.body.end, part.body.end);
                walk(raw, &m.root, part.body);
            }
        }
    }
    let whole = ByteRange {
        start: 0,
        end: raw.len() as u64,
    };
    assert_eq!(s.root.header.start, 0);
    assert_eq!(s.root.body.end, raw.len() as u64);
    walk(raw, &s.root, whole);
    assert_eq!(s.section(&[], SectionText::Full), Some(whole));
}

#[test]
fn simple_text_plain() {
    let raw = b"From: Alice <alice@example.org>\r\n\
        To: bob@example.com\r\n\
        Subject: Hello\r\n\
        \tthere\r\n\
        Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
        Message-ID: <1@example.org>\r\n\
        \r\n\
        Line 1\r\nLine 2\r\n";
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    let env = &s.envelope;
    // Folding removed, the rest kept as written.
    assert_eq!(env.subject.as_deref(), Some("Hello\tthere"));
    assert_eq!(env.date.as_deref(), Some("Mon, 7 Feb 1994 21:52:25 -0800"));
    assert_eq!(env.message_id.as_deref(), Some("<1@example.org>"));
    assert_eq!(env.in_reply_to, None);
    assert_eq!(env.from, vec![addr(Some("Alice"), "alice", "example.org")]);
    assert_eq!(env.to, vec![addr(None, "bob", "example.com")]);
    assert!(env.cc.is_empty() && env.bcc.is_empty());

    let root = &s.root;
    assert!(root.is_type("text", Some("plain")));
    assert_eq!(root.media_type, "TEXT");
    assert_eq!(root.param("charset"), Some("US-ASCII"));
    assert_eq!(root.encoding, "7BIT");
    assert_eq!(root.size(), 16);
    assert_eq!(root.lines, 2);
    assert!(text(raw, root.header).starts_with("From: Alice"));
    assert!(text(raw, root.header).ends_with("-0800\r\nMessage-ID: <1@example.org>\r\n\r\n"));
    assert_eq!(s.header_len(), root.header.len());
    assert_eq!(text(raw, root.body), "Line 1\r\nLine 2\r\n");

    // RFC 9051 §6.4.5: a non-multipart message has a part 1, its body.
    assert_eq!(s.part(&[1]), Some(root));
    assert_eq!(s.part(&[]), Some(root));
    assert_eq!(s.part(&[0]), None);
    assert_eq!(s.part(&[2]), None);
    assert_eq!(s.part(&[1, 1]), None);
    let body = s.section(&[1], SectionText::Full).unwrap();
    assert_eq!(text(raw, body), "Line 1\r\nLine 2\r\n");
    assert_eq!(
        text(raw, s.section(&[], SectionText::Text).unwrap()),
        "Line 1\r\nLine 2\r\n"
    );
    assert_eq!(s.section(&[], SectionText::Mime), None);
    assert_eq!(s.section(&[1], SectionText::Header), None);
    // Partial fetch.
    assert_eq!(text(raw, body.partial(5, Some(4))), "1\r\nL");
    assert_eq!(text(raw, body.partial(10, None)), "ne 2\r\n");
    assert_eq!(text(raw, body.partial(100, Some(4))), "");
}

#[test]
fn no_headers_at_all() {
    let raw = b"\r\nJust a body\r\n";
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    assert_eq!(text(raw, s.root.header), "\r\n");
    assert_eq!(text(raw, s.root.body), "Just a body\r\n");
    assert_eq!(s.envelope, HeaderEnvelope::default());

    // Text that does not start like a header field is all body.
    let raw = b"Hello world, no header here\r\nsecond line";
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    assert!(s.root.header.is_empty());
    assert_eq!(s.root.size(), raw.len() as u64);
    assert_eq!(s.root.lines, 2);
}

#[test]
fn header_without_body() {
    for raw in [
        &b"Subject: only a header\r\nFrom: a@b.example\r\n"[..],
        &b"Subject: only a header\r\nFrom: a@b.example"[..],
    ] {
        let s = MessageStructure::parse(raw);
        check_invariants(raw, &s);
        assert_eq!(s.root.header.len(), raw.len() as u64);
        assert!(s.root.body.is_empty());
        assert_eq!(s.root.lines, 0);
        assert_eq!(s.envelope.subject.as_deref(), Some("only a header"));
        assert_eq!(s.envelope.from, vec![addr(None, "a", "b.example")]);
    }
}

const MIXED: &[u8] = b"From: a@example.org\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
This is the preamble.\r\n\
--outer\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Language: en, de (comment)\r\n\
\r\n\
Hello,\r\nsee attachment.\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"doc.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment;\r\n filename=\"doc.pdf\"; size=12\r\n\
Content-ID: <part2@example.org>\r\n\
Content-Description: The doc\r\n\
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n\
Content-Location: http://example.org/doc.pdf\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--outer--\r\n\
This is the epilogue.\r\n";

#[test]
fn multipart_mixed_text_and_attachment() {
    let raw = MIXED;
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    let root = &s.root;
    assert!(root.is_type("multipart", Some("mixed")));
    assert_eq!(
        root.params,
        vec![("boundary".to_owned(), "outer".to_owned())]
    );
    assert_eq!(root.children().len(), 2);
    assert!(text(raw, root.body).starts_with("This is the preamble."));
    assert!(text(raw, root.body).ends_with("epilogue.\r\n"));

    let p1 = s.part(&[1]).unwrap();
    assert_eq!(
        (p1.media_type.as_str(), p1.media_subtype.as_str()),
        ("text", "plain")
    );
    assert_eq!(p1.param("CHARSET"), Some("utf-8"));
    assert_eq!(p1.language, vec!["en", "de"]);
    // The CRLF before the delimiter belongs to the delimiter.
    assert_eq!(text(raw, p1.body), "Hello,\r\nsee attachment.");
    assert_eq!(p1.lines, 2);
    assert_eq!(
        text(raw, s.section(&[1], SectionText::Mime).unwrap()),
        "Content-Type: text/plain; charset=utf-8\r\nContent-Language: en, de (comment)\r\n\r\n"
    );

    let p2 = s.part(&[2]).unwrap();
    assert!(p2.is_type("application", Some("PDF")));
    assert_eq!(p2.params, vec![("name".to_owned(), "doc.pdf".to_owned())]);
    assert_eq!(p2.encoding, "base64");
    assert_eq!(p2.id.as_deref(), Some("<part2@example.org>"));
    assert_eq!(p2.description.as_deref(), Some("The doc"));
    assert_eq!(p2.md5.as_deref(), Some("Q2hlY2sgSW50ZWdyaXR5IQ=="));
    assert_eq!(p2.location.as_deref(), Some("http://example.org/doc.pdf"));
    let d = p2.disposition.as_ref().unwrap();
    assert_eq!(d.kind, "attachment");
    assert_eq!(
        d.params,
        vec![
            ("filename".to_owned(), "doc.pdf".to_owned()),
            ("size".to_owned(), "12".to_owned())
        ]
    );
    assert_eq!(text(raw, p2.body), "JVBERi0xLjQK");
    assert_eq!(p2.size(), 12);
    assert!(text(raw, p2.header).starts_with("Content-Type: application/pdf"));
    assert!(text(raw, p2.header).ends_with("doc.pdf\r\n\r\n"));
    assert_eq!(s.part(&[3]), None);
    assert_eq!(s.part(&[2, 1]), None);
}

#[test]
fn nested_alternative_inside_mixed() {
    let raw = b"Content-Type: multipart/mixed; boundary=mix\r\n\
\r\n\
--mix\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
\r\n\
--alt\r\n\
Content-Type: text/plain\r\n\
\r\n\
plain\r\n\
--alt\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>html</p>\r\n\
--alt--\r\n\
\r\n\
--mix\r\n\
Content-Type: image/png\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
iVBORw0KGgo=\r\n\
--mix--\r\n";
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    assert_eq!(s.root.children().len(), 2);
    let alt = s.part(&[1]).unwrap();
    assert!(alt.is_type("multipart", Some("alternative")));
    assert_eq!(alt.children().len(), 2);
    // BODY[1] of a multipart part: its body, delimiters included.
    assert!(text(raw, alt.body).starts_with("--alt\r\n"));
    assert!(text(raw, alt.body).ends_with("--alt--\r\n"));
    assert_eq!(text(raw, s.part(&[1, 1]).unwrap().body), "plain");
    assert_eq!(text(raw, s.part(&[1, 2]).unwrap().body), "<p>html</p>");
    assert_eq!(
        text(raw, s.section(&[1, 2], SectionText::Mime).unwrap()),
        "Content-Type: text/html\r\n\r\n"
    );
    assert!(s.part(&[1, 2]).unwrap().is_type("TEXT", Some("HTML")));
    assert_eq!(text(raw, s.part(&[2]).unwrap().body), "iVBORw0KGgo=");
    assert_eq!(s.part(&[1, 3]), None);
}

#[test]
fn message_rfc822_attachment_with_multipart() {
    let raw = b"From: outer@example.org\r\n\
Subject: Fwd: inner\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
\r\n\
See the forwarded message.\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
Content-Disposition: inline\r\n\
\r\n\
From: Inner Sender <inner@example.net>\r\n\
To: Someone <someone@example.com>\r\n\
Subject: inner\r\n\
Message-ID: <inner@example.net>\r\n\
In-Reply-To: <older@example.net>\r\n\
Content-Type: multipart/alternative; boundary=\"b2\"\r\n\
\r\n\
--b2\r\n\
Content-Type: text/plain\r\n\
\r\n\
inner plain\r\n\
--b2\r\n\
Content-Type: text/html\r\n\
\r\n\
<b>inner</b>\r\n\
--b2--\r\n\
--b1--\r\n";
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    assert_eq!(s.envelope.subject.as_deref(), Some("Fwd: inner"));

    // A part without a header is text/plain (RFC 2045 §5.2).
    let p1 = s.part(&[1]).unwrap();
    assert!(p1.is_type("text", Some("plain")));
    assert_eq!(text(raw, p1.header), "\r\n");
    assert_eq!(text(raw, p1.body), "See the forwarded message.");

    let p2 = s.part(&[2]).unwrap();
    assert!(p2.is_type("message", Some("rfc822")));
    let inner = p2.message().expect("encapsulated message");
    assert_eq!(inner.envelope.subject.as_deref(), Some("inner"));
    assert_eq!(
        inner.envelope.message_id.as_deref(),
        Some("<inner@example.net>")
    );
    assert_eq!(
        inner.envelope.in_reply_to.as_deref(),
        Some("<older@example.net>")
    );
    assert_eq!(
        inner.envelope.from,
        vec![addr(Some("Inner Sender"), "inner", "example.net")]
    );
    assert_eq!(inner.envelope.sender, inner.envelope.from);
    assert!(inner.root.is_type("multipart", Some("alternative")));

    // BODY[2] is the whole encapsulated message; BODY[2.MIME] the part's
    // header; BODY[2.HEADER] / BODY[2.TEXT] the inner message's.
    let full = text(raw, s.section(&[2], SectionText::Full).unwrap());
    assert!(full.starts_with("From: Inner Sender"));
    assert!(full.ends_with("--b2--"));
    assert_eq!(p2.lines, full.lines().count() as u64);
    assert_eq!(
        text(raw, s.section(&[2], SectionText::Mime).unwrap()),
        "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
    );
    let header = text(raw, s.section(&[2], SectionText::Header).unwrap());
    assert!(header.starts_with("From: Inner Sender"));
    assert!(header.ends_with("boundary=\"b2\"\r\n\r\n"));
    let body = text(raw, s.section(&[2], SectionText::Text).unwrap());
    assert!(body.starts_with("--b2\r\n") && body.ends_with("--b2--"));

    // Numbering continues into the encapsulated message.
    assert_eq!(
        text(raw, s.section(&[2, 1], SectionText::Full).unwrap()),
        "inner plain"
    );
    assert_eq!(
        text(raw, s.section(&[2, 2], SectionText::Full).unwrap()),
        "<b>inner</b>"
    );
    assert_eq!(
        text(raw, s.section(&[2, 2], SectionText::Mime).unwrap()),
        "Content-Type: text/html\r\n\r\n"
    );
    assert_eq!(s.part(&[2, 3]), None);
    assert_eq!(s.section(&[2, 1], SectionText::Header), None);
}

#[test]
fn message_rfc822_with_single_part_body() {
    let raw = b"Content-Type: message/rfc822\r\n\
\r\n\
Subject: inner\r\n\
\r\n\
inner body\r\n";
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    // Part 1 is the body of the (non-multipart) outer message: the
    // message/rfc822 itself; 1.1 is the body of the inner message.
    assert_eq!(s.part(&[1]), Some(&s.root));
    let inner = s.root.message().unwrap();
    assert_eq!(s.part(&[1, 1]), Some(&inner.root));
    assert_eq!(
        text(raw, s.section(&[1, 1], SectionText::Full).unwrap()),
        "inner body\r\n"
    );
    assert_eq!(
        text(raw, s.section(&[1], SectionText::Header).unwrap()),
        "Subject: inner\r\n\r\n"
    );
    assert_eq!(s.part(&[1, 2]), None);
}

#[test]
fn encoded_message_rfc822_stays_a_leaf() {
    let raw = b"Content-Type: message/rfc822\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
U3ViamVjdDogeA0KDQp5DQo=\r\n";
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    assert_eq!(s.root.kind, PartKind::Single);
    assert_eq!(s.section(&[1], SectionText::Header), None);
}

#[test]
fn digest_parts_default_to_message_rfc822() {
    let raw = b"Content-Type: multipart/digest; boundary=d\r\n\
\r\n\
--d\r\n\
\r\n\
Subject: one\r\n\
\r\n\
first\r\n\
--d--\r\n";
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    let p1 = s.part(&[1]).unwrap();
    assert!(p1.is_type("message", Some("rfc822")));
    assert!(p1.params.is_empty());
    assert_eq!(
        p1.message().unwrap().envelope.subject.as_deref(),
        Some("one")
    );
    assert_eq!(
        text(raw, s.section(&[1, 1], SectionText::Full).unwrap()),
        "first"
    );
}

#[test]
fn broken_multiparts() {
    // No boundary parameter: the default text/plain.
    let raw = b"Content-Type: multipart/mixed\r\n\r\n--x\r\nhello\r\n--x--\r\n";
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    assert!(s.root.is_type("TEXT", Some("PLAIN")));
    assert_eq!(s.root.kind, PartKind::Single);

    // A boundary that never appears: same.
    let raw = b"Content-Type: multipart/mixed; boundary=nope\r\n\r\nhello\r\n";
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    assert!(s.root.is_type("text", Some("plain")));

    // No close delimiter: the last part runs to the end. A boundary that
    // only starts like ours (`--xyz`) is no delimiter; unquoted `=` in the
    // boundary is tolerated.
    let raw = b"Content-Type: multipart/mixed; boundary=----=_x\r\n\r\n\
------=_x\r\n\r\none\r\n------=_xyz\r\n------=_x  \r\n\r\ntwo\r\n";
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    assert_eq!(s.root.param("boundary"), Some("----=_x"));
    assert_eq!(s.root.children().len(), 2);
    assert_eq!(text(raw, s.part(&[1]).unwrap().body), "one\r\n------=_xyz");
    assert_eq!(text(raw, s.part(&[2]).unwrap().body), "two\r\n");

    // Unusable Content-Type values fall back to the default.
    for ct in ["", "text", "/plain", "text/", ";;;", "\"quoted\"/x"] {
        let raw = format!("Content-Type: {ct}\r\n\r\nx");
        let s = MessageStructure::parse(raw.as_bytes());
        assert!(s.root.is_type("text", Some("plain")), "{ct:?}");
        assert_eq!(s.root.param("charset"), Some("US-ASCII"));
    }

    // Parameters: comments, quoted pairs, garbage between them, RFC 2231
    // left as written.
    let raw = b"Content-Type: Text/Plain (c) ; garbage ; charset = \"utf\\-8\" (x);\r\n\
\tname*0*=utf-8''%E2%82%AC; =x; bad\r\n\r\n";
    let s = MessageStructure::parse(raw);
    assert_eq!(s.root.media_type, "Text");
    assert_eq!(s.root.media_subtype, "Plain");
    assert_eq!(
        s.root.params,
        vec![
            ("charset".to_owned(), "utf-8".to_owned()),
            ("name*0*".to_owned(), "utf-8''%E2%82%AC".to_owned())
        ]
    );
}

#[test]
fn encoded_words_are_kept_encoded() {
    let raw = b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= =?UTF-8?B?w6A=?=\r\n\
From: =?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@example.dk>\r\n\
To: \"=?utf-8?q?Andr=C3=A9?= Pirard\" <PIRARD@example.be>,\r\n \"Doe, John\" <john@example.com>\r\n\
Content-Type: application/octet-stream; name=\"=?UTF-8?B?w6Autxt?=\"\r\n\
\r\n";
    let s = MessageStructure::parse(raw);
    let env = &s.envelope;
    assert_eq!(
        env.subject.as_deref(),
        Some("=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= =?UTF-8?B?w6A=?=")
    );
    assert_eq!(
        env.from,
        vec![addr(
            Some("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?="),
            "keld",
            "example.dk"
        )]
    );
    assert_eq!(
        env.to,
        vec![
            addr(
                Some("=?utf-8?q?Andr=C3=A9?= Pirard"),
                "PIRARD",
                "example.be"
            ),
            addr(Some("Doe, John"), "john", "example.com"),
        ]
    );
    assert_eq!(s.root.param("name"), Some("=?UTF-8?B?w6Autxt?="));
}

#[test]
fn address_groups() {
    let raw = b"From: Pete <pete@silly.example>\r\n\
To: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;\r\n\
Cc: Undisclosed recipients:;\r\n\
Bcc: \"My Group\": x@y.test, \r\n\
\r\n";
    let s = MessageStructure::parse(raw);
    let env = &s.envelope;
    assert_eq!(
        env.to,
        vec![
            group_start("A Group"),
            addr(Some("Ed Jones"), "c", "a.test"),
            addr(None, "joe", "where.test"),
            addr(Some("John"), "jdoe", "one.test"),
            Address::default(),
        ]
    );
    assert!(env.to[0].is_group_start() && !env.to[0].is_group_end());
    assert!(env.to[4].is_group_end());
    assert_eq!(
        env.cc,
        vec![group_start("Undisclosed recipients"), Address::default()]
    );
    // An unterminated group is closed at the end.
    assert_eq!(
        env.bcc,
        vec![
            group_start("My Group"),
            addr(None, "x", "y.test"),
            Address::default()
        ]
    );
}

#[test]
fn address_oddities() {
    let parse = |v: &str| {
        let raw = format!("To: {v}\r\n\r\n");
        MessageStructure::parse(raw.as_bytes()).envelope.to
    };
    // Source route (obs-route) goes to adl.
    assert_eq!(
        parse("Joe <@relay1.test,@relay2.test:joe@example.test>"),
        vec![Address {
            name: Some("Joe".to_owned()),
            adl: Some("@relay1.test,@relay2.test".to_owned()),
            mailbox: Some("joe".to_owned()),
            host: Some("example.test".to_owned()),
        }]
    );
    // Comment as name; obsolete spacing and comments in the addr-spec.
    assert_eq!(
        parse("john . doe (John Doe) @ example . com"),
        vec![addr(Some("John Doe"), "john.doe", "example.com")]
    );
    // Quoted local part is unquoted; domain literal kept.
    assert_eq!(
        parse("\"john q\"@[192.0.2.1]"),
        vec![addr(None, "john q", "[192.0.2.1]")]
    );
    // Dots and whitespace in the phrase as written.
    assert_eq!(
        parse("John Q. Public  <jqp@example.com>"),
        vec![addr(Some("John Q. Public"), "jqp", "example.com")]
    );
    // Missing domain and local part are not sent as NIL.
    assert_eq!(
        parse("undisclosed-recipients"),
        vec![addr(None, "undisclosed-recipients", MISSING_HOST)]
    );
    assert_eq!(
        parse("Nobody <>, <>, , \"Only\" <@x.test>"),
        vec![
            addr(Some("Nobody"), MISSING_MAILBOX, MISSING_HOST),
            addr(Some("Only"), MISSING_MAILBOX, "x.test"),
        ]
    );
    assert_eq!(parse(""), Vec::<Address>::new());
    assert_eq!(parse(" , ;; <"), Vec::<Address>::new());
}

#[test]
fn sender_and_reply_to_default_to_from() {
    let raw = b"From: a@example.org, b@example.org\r\nSender:  \r\n\r\n";
    let s = MessageStructure::parse(raw);
    let env = &s.envelope;
    assert_eq!(env.from.len(), 2);
    // Absent (Reply-To) and present but empty (Sender) both default.
    assert_eq!(env.sender, env.from);
    assert_eq!(env.reply_to, env.from);

    let raw = b"From: a@example.org\r\nSender: s@example.org\r\n\
Reply-To: r@example.org\r\nreply-to: second@example.org\r\n\r\n";
    let env = MessageStructure::parse(raw).envelope;
    assert_eq!(env.sender, vec![addr(None, "s", "example.org")]);
    // The first of repeated fields, names matched case-insensitively.
    assert_eq!(env.reply_to, vec![addr(None, "r", "example.org")]);

    // No From at all: everything NIL. A present but empty Subject is the
    // empty string, an absent Date NIL.
    let env = MessageStructure::parse(b"Subject:\r\n\r\n").envelope;
    assert!(env.from.is_empty() && env.sender.is_empty() && env.reply_to.is_empty());
    assert_eq!(env.subject.as_deref(), Some(""));
    assert_eq!(env.date, None);
}

#[test]
fn utf8_headers() {
    let raw = "From: Jörg Müller <jörg@bücher.example>\r\n\
Subject: Grüße aus Köln ☕\r\n\
Content-Type: text/plain; charset=utf-8; name=\"résumé.txt\"\r\n\
\r\n\
Grüße\r\n"
        .as_bytes();
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    assert_eq!(s.envelope.subject.as_deref(), Some("Grüße aus Köln ☕"));
    assert_eq!(
        s.envelope.from,
        vec![addr(Some("Jörg Müller"), "jörg", "bücher.example")]
    );
    assert_eq!(s.root.param("name"), Some("résumé.txt"));
    assert_eq!(s.root.size(), "Grüße\r\n".len() as u64);

    // Latin-1 bytes are not UTF-8: replaced, never a panic.
    let raw = b"Subject: caf\xe9\r\n\r\n";
    let s = MessageStructure::parse(raw);
    assert_eq!(s.envelope.subject.as_deref(), Some("caf\u{FFFD}"));
}

#[test]
fn bare_lf_line_ends() {
    let raw = b"From: a@example.org\n\
Subject: bare\n  LF\n\
Content-Type: multipart/mixed; boundary=b\n\
\n\
--b\n\
Content-Type: text/plain\n\
\n\
one\n\
two\n\
--b\n\
\n\
three\n\
--b--\n";
    let s = MessageStructure::parse(raw);
    check_invariants(raw, &s);
    assert_eq!(s.envelope.subject.as_deref(), Some("bare  LF"));
    assert!(text(raw, s.root.header).ends_with("boundary=b\n\n"));
    assert_eq!(text(raw, s.part(&[1]).unwrap().body), "one\ntwo");
    assert_eq!(s.part(&[1]).unwrap().lines, 2);
    assert_eq!(
        text(raw, s.part(&[1]).unwrap().header),
        "Content-Type: text/plain\n\n"
    );
    assert_eq!(text(raw, s.part(&[2]).unwrap().body), "three");
}

#[test]
fn empty_input() {
    let s = MessageStructure::parse(b"");
    check_invariants(b"", &s);
    assert!(s.root.header.is_empty() && s.root.body.is_empty());
    assert!(s.root.is_type("text", Some("plain")));
    assert_eq!(s.envelope, HeaderEnvelope::default());
    assert_eq!(s.part(&[1]), Some(&s.root));
    assert_eq!(ByteRange { start: 5, end: 9 }.slice(b""), b"");
}

#[test]
fn header_fields_for_header_fields_fetch() {
    let raw = b"Subject: one\r\n  two\r\nX-Empty:\r\nno colon line\r\nTo : x@y.test\r\n\r\nbody";
    let s = MessageStructure::parse(raw);
    let block = s.root.header.slice(raw);
    let fields = header_fields(block);
    let names: Vec<&[u8]> = fields.iter().map(|f| f.name).collect();
    assert_eq!(names, vec![&b"Subject"[..], b"X-Empty", b"", b"To"]);
    assert_eq!(fields[0].value, b" one\r\n  two");
    assert_eq!(
        &block[fields[0].range.clone()],
        b"Subject: one\r\n  two\r\n"
    );
    assert!(fields[3].is("to"));
    assert_eq!(&block[fields[3].range.clone()], b"To : x@y.test\r\n");
    assert_eq!(s.envelope.to, vec![addr(None, "x", "y.test")]);
    // HEADER.FIELDS (SUBJECT): the matching fields, then the blank line.
    let mut out: Vec<u8> = fields
        .iter()
        .filter(|f| f.is("subject"))
        .flat_map(|f| block[f.range.clone()].to_vec())
        .collect();
    out.extend_from_slice(b"\r\n");
    assert_eq!(out, b"Subject: one\r\n  two\r\n\r\n");
}

#[test]
fn deep_nesting_is_bounded_and_serializable() {
    // Far more levels of message/rfc822 and multipart than are expanded.
    let mut raw = Vec::new();
    for i in 0..200 {
        if i % 2 == 0 {
            raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        } else {
            raw.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
    }
    raw.extend_from_slice(b"\r\nleaf\r\n");
    let s = MessageStructure::parse(&raw);
    check_invariants(&raw, &s);
    fn depth(part: &BodyPart) -> usize {
        match &part.kind {
            PartKind::Single => 0,
            PartKind::Multipart(children) => 1 + children.iter().map(depth).max().unwrap_or(0),
            PartKind::Message(m) => 1 + depth(&m.root),
        }
    }
    assert_eq!(depth(&s.root), MAX_DEPTH);
    let json = serde_json::to_string(&s).unwrap();
    let back: MessageStructure = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);

    // Many parts: capped.
    let mut raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..(MAX_PARTS + 100) {
        raw.extend_from_slice(b"--b\r\n\r\nx\r\n");
    }
    let s = MessageStructure::parse(&raw);
    check_invariants(&raw, &s);
    assert!(s.root.children().len() < MAX_PARTS);
}

#[test]
fn serde_round_trip() {
    for raw in [MIXED, b"", b"To: g:;\r\n\r\n"] {
        let s = MessageStructure::parse(raw);
        let json = serde_json::to_string(&s).unwrap();
        let back: MessageStructure = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}

/// Tiny xorshift generator, so that the no-panic test needs no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn garbage_never_panics() {
    // Pieces that steer random input into the interesting paths.
    const PIECES: &[&[u8]] = &[
        b"\r\n",
        b"\n",
        b"\r",
        b"\r\n\r\n",
        b": ",
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: multipart/digest; boundary=\"b\"\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Disposition: attachment; filename=\"",
        b"Content-Language: en,",
        b"From: ",
        b"To: g: a@b, <@r:c@d>;",
        b"Sender: ",
        b"--b\r\n",
        b"--b--\r\n",
        b"--b",
        b"\"",
        b"(",
        b")",
        b"\\",
        b"<",
        b">",
        b"@",
        b",",
        b";",
        b":",
        b"[",
        b"=?utf-8?q?x?=",
        b" ",
        b"\t",
        b"\xff\xfe",
        b"\xc3",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..3000 {
        let mut raw = Vec::new();
        let pieces = rng.below(40);
        for _ in 0..pieces {
            if rng.below(3) == 0 {
                for _ in 0..rng.below(8) {
                    raw.push(rng.next() as u8);
                }
            } else {
                raw.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
        }
        let s = MessageStructure::parse(&raw);
        check_invariants(&raw, &s);
        for path in [&[1u32][..], &[1, 1], &[2, 1, 1], &[1, 2, 3]] {
            for t in [
                SectionText::Full,
                SectionText::Header,
                SectionText::Text,
                SectionText::Mime,
            ] {
                if let Some(range) = s.section(path, t) {
                    range.slice(&raw);
                }
            }
        }
        if round % 100 == 0 {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<MessageStructure>(&json).unwrap(), s);
        }
    }
    // Purely random bytes too.
    for _ in 0..2000 {
        let len = rng.below(300);
        let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let s = MessageStructure::parse(&raw);
        check_invariants(&raw, &s);
    }
}

/// `header_block_len` against the obvious definition (the first
/// `\r\n\r\n` or `\n\n`, whichever ends first), on every arrangement of a
/// few separators and letters.
#[test]
fn header_block_len_is_the_first_empty_line() {
    fn oracle(raw: &[u8]) -> usize {
        let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
        let lf = raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
        match (crlf, lf) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => raw.len(),
        }
    }
    let alphabet = [b'\r', b'\n', b'a'];
    for len in 0..=7u32 {
        for n in 0..3usize.pow(len) {
            let (mut k, mut raw) = (n, Vec::new());
            for _ in 0..len {
                raw.push(alphabet[k % 3]);
                k /= 3;
            }
            assert_eq!(header_block_len(&raw), oracle(&raw), "{raw:?}");
        }
    }
    let mut big = b"Subject: x\r\nFrom: y\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'z', 10_000));
    assert_eq!(header_block_len(&big), 23);
}
