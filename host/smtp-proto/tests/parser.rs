//! Known-answer tables for the command parser.

use std::net::{Ipv4Addr, Ipv6Addr};

use mailgate_smtp_proto::*;

fn parse(line: &str) -> Result<Request, ParseError> {
    Request::parse(line.as_bytes())
}

fn dom(d: &str) -> Host {
    Host::Domain(d.to_string())
}

fn mailbox(local: &str, host: Host) -> Mailbox {
    Mailbox {
        local_part: local.to_string(),
        host,
    }
}

fn path(local: &str, domain: &str) -> Path {
    Path {
        route: vec![],
        mailbox: mailbox(local, dom(domain)),
    }
}

fn mail_from(line: &str) -> (ReversePath, MailParams) {
    match parse(line) {
        Ok(Request::Mail { from, params }) => (from, params),
        other => panic!("{line:?} gave {other:?}"),
    }
}

fn rcpt_to(line: &str) -> (ForwardPath, RcptParams) {
    match parse(line) {
        Ok(Request::Rcpt { to, params }) => (to, params),
        other => panic!("{line:?} gave {other:?}"),
    }
}

#[test]
fn simple_commands() {
    let table: &[(&str, Request)] = &[
        ("DATA", Request::Data),
        ("data", Request::Data),
        ("DaTa  ", Request::Data),
        ("RSET", Request::Rset),
        ("QUIT", Request::Quit),
        ("STARTTLS", Request::StartTls),
        ("NOOP", Request::Noop(None)),
        (
            "NOOP hello there",
            Request::Noop(Some("hello there".into())),
        ),
        ("HELP", Request::Help(None)),
        ("help MAIL", Request::Help(Some("MAIL".into()))),
        ("VRFY postmaster", Request::Vrfy("postmaster".into())),
        ("VRFY John Smith", Request::Vrfy("John Smith".into())),
        ("EXPN staff", Request::Expn("staff".into())),
        (
            "BDAT 0 LAST",
            Request::Bdat {
                size: 0,
                last: true,
            },
        ),
        (
            "BDAT 86",
            Request::Bdat {
                size: 86,
                last: false,
            },
        ),
        (
            "bdat 1000 last",
            Request::Bdat {
                size: 1000,
                last: true,
            },
        ),
        (
            "BDAT 18446744073709551615",
            Request::Bdat {
                size: u64::MAX,
                last: false,
            },
        ),
        (
            "AUTH PLAIN",
            Request::Auth {
                mechanism: "PLAIN".into(),
                initial_response: None,
            },
        ),
        (
            "auth plain dGVzdAB0ZXN0ADEyMzQ=",
            Request::Auth {
                mechanism: "PLAIN".into(),
                initial_response: Some("dGVzdAB0ZXN0ADEyMzQ=".into()),
            },
        ),
        (
            "AUTH EXTERNAL =",
            Request::Auth {
                mechanism: "EXTERNAL".into(),
                initial_response: Some("=".into()),
            },
        ),
        (
            "AUTH SCRAM-SHA-256",
            Request::Auth {
                mechanism: "SCRAM-SHA-256".into(),
                initial_response: None,
            },
        ),
    ];
    for (line, want) in table {
        assert_eq!(parse(line).as_ref(), Ok(want), "{line:?}");
        assert_eq!(parse(line).unwrap().verb(), want.verb());
    }
}

#[test]
fn hello_commands() {
    let table: &[(&str, Request)] = &[
        (
            "EHLO client.example.org",
            Request::Ehlo {
                host: dom("client.example.org"),
            },
        ),
        (
            "ehlo localhost",
            Request::Ehlo {
                host: dom("localhost"),
            },
        ),
        (
            "EHLO [192.0.2.1]",
            Request::Ehlo {
                host: Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)),
            },
        ),
        (
            "EHLO [IPv6:2001:db8::1]",
            Request::Ehlo {
                host: Host::Ipv6("2001:db8::1".parse::<Ipv6Addr>().unwrap()),
            },
        ),
        (
            "EHLO [ipv6:::1]",
            Request::Ehlo {
                host: Host::Ipv6(Ipv6Addr::LOCALHOST),
            },
        ),
        (
            "EHLO my_pc.lan",
            Request::Ehlo {
                host: dom("my_pc.lan"),
            },
        ),
        (
            "HELO relay.example.org",
            Request::Helo {
                host: dom("relay.example.org"),
            },
        ),
        (
            "HELO [10.0.0.1]",
            Request::Helo {
                host: Host::Ipv4(Ipv4Addr::new(10, 0, 0, 1)),
            },
        ),
        ("LHLO mx", Request::Lhlo { host: dom("mx") }),
        (
            "EHLO bücher.example",
            Request::Ehlo {
                host: dom("bücher.example"),
            },
        ),
        (
            "EHLO [x-tag:some-thing]",
            Request::Ehlo {
                host: Host::General {
                    tag: "x-tag".into(),
                    content: "some-thing".into(),
                },
            },
        ),
    ];
    for (line, want) in table {
        assert_eq!(parse(line).as_ref(), Ok(want), "{line:?}");
    }
}

#[test]
fn mail_from_variants() {
    let (from, params) = mail_from("MAIL FROM:<Smith@bar.com>");
    assert_eq!(from, ReversePath::Path(path("Smith", "bar.com")));
    assert_eq!(params, MailParams::default());
    assert_eq!(from.address(), "Smith@bar.com");

    assert_eq!(mail_from("MAIL FROM:<>").0, ReversePath::Null);
    assert_eq!(mail_from("MAIL FROM:<>").0.address(), "");
    // Tolerated: space after the colon, lower case, several spaces.
    assert_eq!(
        mail_from("mail from: <a@b.c>").0,
        ReversePath::Path(path("a", "b.c"))
    );
    assert_eq!(
        mail_from("MAIL  FROM:   <a@b.c>   SIZE=10").1.size,
        Some(10)
    );
    // Quoted local part with specials, dots, % and !.
    assert_eq!(
        mail_from(r#"MAIL FROM:<"John \"Q\" Public>"@example.org>"#).0,
        ReversePath::Path(path(r#""John \"Q\" Public>""#, "example.org"))
    );
    assert_eq!(
        mail_from("MAIL FROM:<a.b.c@x.y>").0,
        ReversePath::Path(path("a.b.c", "x.y"))
    );
    assert_eq!(
        mail_from("MAIL FROM:<user%other@x.y>").0,
        ReversePath::Path(path("user%other", "x.y"))
    );
    assert_eq!(
        mail_from("MAIL FROM:<host!user@x.y>").0,
        ReversePath::Path(path("host!user", "x.y"))
    );
    assert_eq!(
        mail_from("MAIL FROM:<\"\"@x.y>").0,
        ReversePath::Path(path("\"\"", "x.y"))
    );
    // Address literals.
    assert_eq!(
        mail_from("MAIL FROM:<u@[192.0.2.7]>").0,
        ReversePath::Path(Path {
            route: vec![],
            mailbox: mailbox("u", Host::Ipv4(Ipv4Addr::new(192, 0, 2, 7)))
        })
    );
    let (from, _) = mail_from("MAIL FROM:<u@[IPv6:::1]>");
    assert_eq!(from.address(), "u@[IPv6:::1]");
    // Source route (RFC 5321 §4.1.2 example).
    let (from, _) = mail_from("MAIL FROM:<@hosta.int,@jkl.org:userc@d.bar.org>");
    let ReversePath::Path(p) = from else { panic!() };
    assert_eq!(
        p.route,
        vec!["hosta.int".to_string(), "jkl.org".to_string()]
    );
    assert_eq!(p.mailbox.to_string(), "userc@d.bar.org");
}

#[test]
fn mail_parameters() {
    let (_, p) = mail_from(
        "MAIL FROM:<a@b.c> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159 AUTH=<>",
    );
    assert_eq!(
        p,
        MailParams {
            size: Some(1000),
            body: Some(Body::EightBitMime),
            smtputf8: true,
            ret: Some(Ret::Hdrs),
            envid: Some("QQ314159".into()),
            auth: Some("<>".into()),
        }
    );
    assert_eq!(
        mail_from("MAIL FROM:<a@b.c> body=7bit").1.body,
        Some(Body::SevenBit)
    );
    assert_eq!(
        mail_from("MAIL FROM:<a@b.c> BODY=BINARYMIME").1.body,
        Some(Body::BinaryMime)
    );
    assert_eq!(
        mail_from("MAIL FROM:<a@b.c> ret=full").1.ret,
        Some(Ret::Full)
    );
    assert_eq!(
        mail_from("MAIL FROM:<a@b.c> AUTH=e+3Dmc2@example.com")
            .1
            .auth
            .as_deref(),
        Some("e+3Dmc2@example.com")
    );
    assert_eq!(
        decode_xtext("e+3Dmc2@example.com").as_deref(),
        Some("e=mc2@example.com")
    );
}

#[test]
fn utf8_addresses_are_flagged() {
    let (from, p) = mail_from("MAIL FROM:<jöran@bücher.example> SMTPUTF8");
    assert!(!from.is_ascii());
    assert!(p.smtputf8);
    assert!(mail_from("MAIL FROM:<a@b.c>").0.is_ascii());
    let (to, _) = rcpt_to("RCPT TO:<用户@例子.广告>");
    assert!(!to.is_ascii());
    let (to, _) = rcpt_to("RCPT TO:<\"ü x\"@example.org>");
    assert!(!to.is_ascii());
}

#[test]
fn rcpt_to_variants() {
    assert_eq!(
        rcpt_to("RCPT TO:<Jones@XYZ.COM>").0,
        ForwardPath::Path(path("Jones", "XYZ.COM"))
    );
    assert_eq!(rcpt_to("RCPT TO:<Postmaster>").0, ForwardPath::Postmaster);
    assert_eq!(rcpt_to("rcpt to:<postmaster>").0, ForwardPath::Postmaster);
    assert_eq!(
        rcpt_to("RCPT TO:<Postmaster@example.org>").0,
        ForwardPath::Path(path("Postmaster", "example.org"))
    );
    assert_eq!(
        rcpt_to("RCPT TO: <a@b.c>").0,
        ForwardPath::Path(path("a", "b.c"))
    );
    let (to, p) = rcpt_to("RCPT TO:<a@b.c> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b.c");
    assert_eq!(to, ForwardPath::Path(path("a", "b.c")));
    assert_eq!(
        p.notify,
        Some(Notify::On {
            success: true,
            failure: true,
            delay: false
        })
    );
    assert_eq!(
        p.orcpt,
        Some(Orcpt {
            addr_type: "rfc822".into(),
            address: "a+40b.c".into()
        })
    );
    assert_eq!(
        rcpt_to("RCPT TO:<a@b.c> notify=never").1.notify,
        Some(Notify::Never)
    );
    let (to, _) = rcpt_to("RCPT TO:<@relay.example:u@d.example>");
    let ForwardPath::Path(p) = to else { panic!() };
    assert_eq!(
        (p.route.len(), p.mailbox.to_string()),
        (1, "u@d.example".to_string())
    );
}

#[test]
fn every_error_path() {
    use ParseError::*;
    let unrecognized = [
        "",
        "FOO",
        "MAILFROM:<a@b.c>",
        " NOOP",
        "EHLO\tx",
        "X-CUSTOM arg",
        "ÄÖÜ",
    ];
    for line in unrecognized {
        let want = if line.contains('\t') {
            InvalidCharacters
        } else {
            UnrecognizedCommand
        };
        assert_eq!(parse(line), Err(want), "{line:?}");
    }
    assert_eq!(Request::parse(b"NOOP \xff"), Err(InvalidCharacters));
    assert_eq!(Request::parse(b"NOOP \x00"), Err(InvalidCharacters));
    assert_eq!(Request::parse(b"NOOP a\rb"), Err(InvalidCharacters));
    assert_eq!(Request::parse(b"NOOP \x7f"), Err(InvalidCharacters));

    let syntax = [
        "EHLO",
        "EHLO ",
        "HELO",
        "EHLO -bad-.example",
        "EHLO a..b",
        "EHLO two words",
        "EHLO [300.1.1.1]",
        "EHLO [IPv6:zz]",
        "EHLO [1.2.3.4",
        "DATA now",
        "RSET x",
        "QUIT please",
        "STARTTLS x",
        "MAIL",
        "MAIL TO:<a@b.c>",
        "MAIL FROM",
        "RCPT FROM:<a@b.c>",
        "RCPT",
        "BDAT",
        "BDAT x",
        "BDAT -1",
        "BDAT 18446744073709551616",
        "BDAT 10 FIRST",
        "BDAT 10 LAST extra",
        "VRFY",
        "EXPN",
        "AUTH",
        "AUTH PL@IN",
        "AUTH ABCDEFGHIJKLMNOPQRSTU",
        "AUTH PLAIN not*base64",
        "AUTH PLAIN abc def",
        // Malformed parameters.
        "MAIL FROM:<a@b.c> SIZE=",
        "MAIL FROM:<a@b.c> SIZE=abc",
        "MAIL FROM:<a@b.c> SIZE=123456789012345678901",
        "MAIL FROM:<a@b.c> SIZE=99999999999999999999",
        "MAIL FROM:<a@b.c> SIZE",
        "MAIL FROM:<a@b.c> SIZE=1 SIZE=2",
        "MAIL FROM:<a@b.c> BODY=9BIT",
        "MAIL FROM:<a@b.c> SMTPUTF8=yes",
        "MAIL FROM:<a@b.c> SMTPUTF8 SMTPUTF8",
        "MAIL FROM:<a@b.c> RET=ALL",
        "MAIL FROM:<a@b.c> ENVID=a=b",
        "MAIL FROM:<a@b.c> ENVID=+zz",
        "MAIL FROM:<a@b.c> ENVID=+4",
        "MAIL FROM:<a@b.c> AUTH=",
        "MAIL FROM:<a@b.c> -SIZE=1",
        "MAIL FROM:<a@b.c> SI_ZE=1",
        "RCPT TO:<a@b.c> NOTIFY=SOMETIMES",
        "RCPT TO:<a@b.c> NOTIFY=NEVER,SUCCESS",
        "RCPT TO:<a@b.c> NOTIFY=DELAY,DELAY",
        "RCPT TO:<a@b.c> ORCPT=rfc822",
        "RCPT TO:<a@b.c> ORCPT=;a@b",
        "RCPT TO:<a@b.c> ORCPT=rfc822;",
        "RCPT TO:<a@b.c> NOTIFY",
    ];
    for line in syntax {
        let got = parse(line);
        assert!(matches!(got, Err(Syntax(_))), "{line:?} gave {got:?}");
        assert_eq!(got.unwrap_err().reply().code(), 501);
    }

    let bad_sender = [
        "MAIL FROM:",
        "MAIL FROM:a@b.c",
        "MAIL FROM:<a@b.c",
        "MAIL FROM:<a@b.c>SIZE=1",
        "MAIL FROM:<a>",
        "MAIL FROM:<@b.c>",
        "MAIL FROM:<a@>",
        "MAIL FROM:<a@b..c>",
        "MAIL FROM:<a..b@c.d>",
        "MAIL FROM:<.a@c.d>",
        "MAIL FROM:<a.@c.d>",
        "MAIL FROM:<a b@c.d>",
        "MAIL FROM:<\"unterminated@c.d>",
        "MAIL FROM:<\"a\\ü\"@c.d>",
        "MAIL FROM:<a@-b.c>",
        "MAIL FROM:<a@b_c.d>",
        "MAIL FROM:<a@[1.2.3]>",
        "MAIL FROM:<a@[IPv6:1:2]>",
        "MAIL FROM:<a@[foo]>",
        "MAIL FROM:<@a.b:>",
        "MAIL FROM:<@a.b,c.d:u@e.f>",
        "MAIL FROM:<@a.b u@e.f>",
        "MAIL FROM:<<a@b.c>>",
        "MAIL FROM:<a@b.c>>",
        "MAIL FROM:<>x",
    ];
    for line in bad_sender {
        let got = parse(line);
        assert!(matches!(got, Err(BadSender(_))), "{line:?} gave {got:?}");
        let r = got.unwrap_err().reply();
        assert_eq!(
            (r.code(), r.enhanced().unwrap().to_string()),
            (501, "5.1.7".to_string())
        );
    }
    // A second path where parameters belong is a parameter syntax error.
    assert!(matches!(parse("MAIL FROM:<> <>"), Err(Syntax(_))));

    let bad_recipient = [
        "RCPT TO:",
        "RCPT TO:a@b.c",
        "RCPT TO:<a@b.c",
        "RCPT TO:<postmaster",
        "RCPT TO:<a@b.c>x",
        "RCPT TO:<>",
    ];
    for line in bad_recipient {
        let got = parse(line);
        assert!(matches!(got, Err(BadRecipient(_))), "{line:?} gave {got:?}");
        let r = got.unwrap_err().reply();
        assert_eq!(
            (r.code(), r.enhanced().unwrap().to_string()),
            (501, "5.1.3".to_string())
        );
    }

    let unknown = [
        ("MAIL FROM:<a@b.c> FOO=bar", "FOO"),
        ("MAIL FROM:<a@b.c> SIZE=1 x-custom", "X-CUSTOM"),
        ("MAIL FROM:<a@b.c> NOTIFY=NEVER", "NOTIFY"),
        ("RCPT TO:<a@b.c> SIZE=10", "SIZE"),
        ("RCPT TO:<a@b.c> XYZ", "XYZ"),
    ];
    for (line, kw) in unknown {
        assert_eq!(parse(line), Err(UnknownParameter(kw.into())), "{line:?}");
        let r = parse(line).unwrap_err().reply();
        assert_eq!(
            (r.code(), r.enhanced().unwrap().to_string()),
            (555, "5.5.4".to_string())
        );
    }
}

#[test]
fn error_replies() {
    let cases = [
        (ParseError::UnrecognizedCommand, 500, "5.5.1"),
        (ParseError::InvalidCharacters, 500, "5.5.2"),
        (ParseError::Syntax("x"), 501, "5.5.4"),
        (ParseError::BadSender("x"), 501, "5.1.7"),
        (ParseError::BadRecipient("x"), 501, "5.1.3"),
        (ParseError::UnknownParameter("X".into()), 555, "5.5.4"),
    ];
    for (e, code, enh) in cases {
        let r = e.reply();
        assert_eq!(r.code(), code);
        assert_eq!(r.enhanced().unwrap().to_string(), enh);
    }
    assert_eq!(
        LineTooLong.reply().to_bytes(),
        b"500 5.5.2 Line too long\r\n"
    );
}

#[test]
fn helpers() {
    assert_eq!(parse_mailbox_str("a@b.c").unwrap().to_string(), "a@b.c");
    assert!(parse_mailbox_str("a@b.c x").is_none());
    assert!(parse_ehlo_host("").is_none());
    assert!(is_xtext("abc+2B"));
    assert!(!is_xtext("abc+2"));
    assert!(!is_xtext("abc+2b"));
    assert!(!is_xtext("a b"));
    assert_eq!(Verb::from_word("starttls"), Some(Verb::StartTls));
    assert_eq!(Verb::Bdat.as_str(), "BDAT");
}
