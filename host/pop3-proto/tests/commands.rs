//! Known-answer tables for the command parser, one row per case.

use mailgate_pop3_proto::{
    parse_command, parse_sasl_response, Command, ParseError, SaslResponse, Verb,
};

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn valid_commands() {
    let table: Vec<(&[u8], Command)> = vec![
        (
            b"USER alice@example.org",
            Command::User(s("alice@example.org")),
        ),
        (
            b"user alice@example.org",
            Command::User(s("alice@example.org")),
        ),
        (
            b"USER  alice@example.org ",
            Command::User(s("alice@example.org")),
        ),
        (
            b"USER j\xc3\xb6rg@example.org",
            Command::User(s("j\u{f6}rg@example.org")),
        ),
        (b"PASS secret", Command::Pass(s("secret"))),
        (
            b"PASS with spaces  inside ",
            Command::Pass(s("with spaces  inside ")),
        ),
        (b"PASS  lead", Command::Pass(s(" lead"))),
        (b"pass p\xc3\xa4ss", Command::Pass(s("p\u{e4}ss"))),
        (
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fb",
            Command::Apop {
                name: s("mrose"),
                digest: s("c4c9334bac560ecc979e58001b3e22fb"),
            },
        ),
        (b"STAT", Command::Stat),
        (b"stat", Command::Stat),
        (b"StAt ", Command::Stat),
        (b"LIST", Command::List(None)),
        (b"LIST 2", Command::List(Some(2))),
        (b"LIST 0", Command::List(Some(0))),
        (b"LIST 4294967295", Command::List(Some(u32::MAX))),
        (b"LIST 0007", Command::List(Some(7))),
        (b"RETR 1", Command::Retr(1)),
        (b"DELE 12", Command::Dele(12)),
        (b"NOOP", Command::Noop),
        (b"RSET", Command::Rset),
        (b"QUIT", Command::Quit),
        (b"TOP 1 0", Command::Top { msg: 1, lines: 0 }),
        (b"top 3 10", Command::Top { msg: 3, lines: 10 }),
        (b"UIDL", Command::Uidl(None)),
        (b"UIDL 5", Command::Uidl(Some(5))),
        (b"CAPA", Command::Capa),
        (b"STLS", Command::Stls),
        (
            b"AUTH",
            Command::Auth {
                mechanism: None,
                initial_response: None,
            },
        ),
        (
            b"AUTH plain",
            Command::Auth {
                mechanism: Some(s("PLAIN")),
                initial_response: None,
            },
        ),
        (
            b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm",
            Command::Auth {
                mechanism: Some(s("PLAIN")),
                initial_response: Some(s("AHRpbQB0YW5zdGFhZnRhbnN0YWFm")),
            },
        ),
        (
            b"AUTH PLAIN =",
            Command::Auth {
                mechanism: Some(s("PLAIN")),
                initial_response: Some(s("")),
            },
        ),
        (
            b"AUTH SCRAM-SHA-256",
            Command::Auth {
                mechanism: Some(s("SCRAM-SHA-256")),
                initial_response: None,
            },
        ),
    ];
    for (line, want) in table {
        let got = parse_command(line);
        assert_eq!(
            got.as_ref(),
            Ok(&want),
            "line {:?}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(got.unwrap().verb(), want.verb());
    }
}

#[test]
fn every_parse_error() {
    use ParseError::*;
    let table: &[(&[u8], ParseError)] = &[
        (b"", Empty),
        (b"   ", Empty),
        (b" STAT", UnknownCommand),
        (b"XYZZY", UnknownCommand),
        (b"STATS", UnknownCommand),
        (b"RET 1", UnknownCommand),
        (b"\xff\xfe", NotUtf8),
        (b"USER \xc3", NotUtf8),
        (b"STAT\0", InvalidCharacter),
        (b"USER a\tb", InvalidCharacter),
        (b"PASS a\rb", InvalidCharacter),
        (b"NOOP\x7f", InvalidCharacter),
        (b"USER", MissingArgument(Verb::User)),
        (b"USER ", MissingArgument(Verb::User)),
        (b"PASS", MissingArgument(Verb::Pass)),
        (b"PASS ", MissingArgument(Verb::Pass)),
        (b"RETR", MissingArgument(Verb::Retr)),
        (b"DELE", MissingArgument(Verb::Dele)),
        (b"TOP 1", MissingArgument(Verb::Top)),
        (b"APOP mrose", MissingArgument(Verb::Apop)),
        (b"USER a b", TooManyArguments(Verb::User)),
        (b"STAT 1", TooManyArguments(Verb::Stat)),
        (b"NOOP x", TooManyArguments(Verb::Noop)),
        (b"RSET x", TooManyArguments(Verb::Rset)),
        (b"QUIT now", TooManyArguments(Verb::Quit)),
        (b"CAPA x", TooManyArguments(Verb::Capa)),
        (b"STLS x", TooManyArguments(Verb::Stls)),
        (b"LIST 1 2", TooManyArguments(Verb::List)),
        (b"UIDL 1 2", TooManyArguments(Verb::Uidl)),
        (b"RETR 1 2", TooManyArguments(Verb::Retr)),
        (b"TOP 1 2 3", TooManyArguments(Verb::Top)),
        (b"AUTH PLAIN a b", TooManyArguments(Verb::Auth)),
        (b"APOP a b c", TooManyArguments(Verb::Apop)),
        (b"RETR x", InvalidNumber(Verb::Retr)),
        (b"RETR -1", InvalidNumber(Verb::Retr)),
        (b"RETR +1", InvalidNumber(Verb::Retr)),
        (b"DELE 1.5", InvalidNumber(Verb::Dele)),
        (b"LIST 4294967296", InvalidNumber(Verb::List)),
        (b"UIDL 99999999999999999999", InvalidNumber(Verb::Uidl)),
        (b"TOP x 1", InvalidNumber(Verb::Top)),
        (b"TOP 1 x", InvalidNumber(Verb::Top)),
        (b"AUTH PL@IN", InvalidArgument(Verb::Auth)),
        (b"AUTH ABCDEFGHIJKLMNOPQRSTU", InvalidArgument(Verb::Auth)),
        (
            b"APOP mrose C4C9334BAC560ECC979E58001B3E22FB",
            InvalidArgument(Verb::Apop),
        ),
        (b"APOP mrose c4c9", InvalidArgument(Verb::Apop)),
    ];
    for (line, want) in table {
        assert_eq!(
            parse_command(line),
            Err(want.clone()),
            "line {:?}",
            String::from_utf8_lossy(line)
        );
        // Every error has a message for the log.
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn verbs_round_trip() {
    for kw in [
        "USER", "PASS", "APOP", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "QUIT", "TOP",
        "UIDL", "CAPA", "AUTH", "STLS",
    ] {
        let verb = Verb::from_keyword(kw.to_ascii_lowercase().as_bytes()).unwrap();
        assert_eq!(verb.keyword(), kw);
        assert_eq!(verb.to_string(), kw);
    }
    assert_eq!(Verb::from_keyword(b"HELO"), None);
}

#[test]
fn debug_hides_secrets() {
    let shown = format!("{:?}", parse_command(b"PASS hunter2").unwrap());
    assert!(!shown.contains("hunter2"), "{shown}");
    let shown = format!(
        "{:?}",
        parse_command(b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm").unwrap()
    );
    assert!(!shown.contains("AHRpbQ"), "{shown}");
    assert_eq!(format!("{:?}", Command::Stat), "STAT");
}

#[test]
fn sasl_responses() {
    assert_eq!(parse_sasl_response(b"*"), Ok(SaslResponse::Cancel));
    assert_eq!(parse_sasl_response(b" * "), Ok(SaslResponse::Cancel));
    assert_eq!(parse_sasl_response(b""), Ok(SaslResponse::Data(s(""))));
    assert_eq!(
        parse_sasl_response(b"AHRpbQB0YW5zdGFhZnRhbnN0YWFm"),
        Ok(SaslResponse::Data(s("AHRpbQB0YW5zdGFhZnRhbnN0YWFm")))
    );
    assert_eq!(
        parse_sasl_response(b"ab+/cd=="),
        Ok(SaslResponse::Data(s("ab+/cd==")))
    );
    assert_eq!(
        parse_sasl_response(b"QUIT now"),
        Err(ParseError::InvalidArgument(Verb::Auth))
    );
    assert_eq!(
        parse_sasl_response(b"\xff"),
        Err(ParseError::InvalidArgument(Verb::Auth))
    );
}
