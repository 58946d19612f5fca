//! The SMTP session end to end over `tokio::io::duplex` (no sockets).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Client, Harness};
use mailgate_smtp::SmtpLimits;
use tokio::io::AsyncWriteExt;

/// Reads replies until the server closes; returns each reply's code and
/// enhanced code (e.g. "250 2.1.5"), or just the code when it has none.
async fn all_replies(c: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let r = c.reply().await;
        if r.is_empty() {
            return out;
        }
        out.push(short(&r));
    }
}

fn short(reply: &str) -> String {
    let last = reply.trim_end().lines().last().unwrap_or("");
    let mut words = last.splitn(3, ' ');
    let code = words.next().unwrap_or("").to_string();
    match words.next() {
        Some(e) if e.chars().next().is_some_and(|c| c.is_ascii_digit()) && e.contains('.') => {
            format!("{code} {e}")
        }
        _ => code,
    }
}

async fn start(h: &Harness) -> Client {
    let mut c = h.connect().await;
    c.send(b"EHLO client.example\r\n").await;
    c.expect("250-mx.example.org Hello client.example [192.0.2.10]")
        .await;
    c
}

#[tokio::test]
async fn full_transaction() {
    let h = Harness::new();
    let mut c = h.connect().await;
    let ehlo = c.cmd("EHLO client.example").await;
    assert_eq!(
        ehlo,
        "250-mx.example.org Hello client.example [192.0.2.10]\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n\
         250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-CHUNKING\r\n250 HELP\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<sender@remote.example> SIZE=100").await,
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<Alice@Example.org>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert_eq!(
        c.cmd("DATA").await,
        "354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    c.send(b"Subject: hi\r\n\r\nHello\r\n..dot\r\n.\r\n").await;
    let r = c.expect("250 2.0.0 Ok: queued as ").await;
    let id = r.trim_end().rsplit(' ').next().unwrap().to_string();
    assert_eq!(
        c.cmd("QUIT").await,
        "221 2.0.0 mx.example.org closing connection\r\n"
    );
    c.expect_closed().await;

    let msgs = h.store.messages();
    assert_eq!(msgs.len(), 1);
    let (raw, accounts) = &msgs[0];
    assert_eq!(accounts, &vec![1]);
    assert!(raw.starts_with("Return-Path: <sender@remote.example>\r\nReceived: from client.example (unknown [192.0.2.10])\r\n\tby mx.example.org (mailgate) with ESMTP id "), "{raw}");
    assert!(
        raw.contains(&format!("id {id}\r\n\tfor <alice@example.org>;\r\n\t")),
        "{raw}"
    );
    assert!(
        raw.ends_with("+0000\r\nSubject: hi\r\n\r\nHello\r\n.dot\r\n"),
        "{raw}"
    );
}

#[tokio::test]
async fn pipelined_commands_in_one_write() {
    let h = Harness::new();
    let mut c = h.connect().await;
    c.send(
        b"EHLO client.example\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\n\
RCPT TO:<team@example.org>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(
        all_replies(&mut c).await,
        [
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    let msgs = h.store.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        msgs[0].1,
        vec![1, 2],
        "alias team@ expands to alice and bob, alice once"
    );
    assert!(msgs[0].0.starts_with("Return-Path: <>\r\n"));
    assert!(
        !msgs[0].0.contains("\tfor <"),
        "no 'for' clause with several recipients"
    );
}

#[tokio::test]
async fn bdat_chunks() {
    let h = Harness::new();
    let mut c = start(&h).await;
    c.cmd("MAIL FROM:<a@remote.example>").await;
    c.cmd("RCPT TO:<bob@example.org>").await;
    c.send(b"BDAT 13\r\nSubject: x\r\n\r").await;
    c.expect("250 2.0.0 Ok: 13 octets received").await;
    // A chunk and the next commands in one write; LF ends the line the
    // previous chunk's CR started.
    c.send(b"BDAT 7 LAST\r\n\nbody\r\nNOOP\r\n").await;
    c.expect("250 2.0.0 Ok: queued as").await;
    c.expect("250 2.0.0 Ok").await;
    // Empty LAST chunk ends a message started with chunks.
    c.cmd("MAIL FROM:<a@remote.example>").await;
    c.cmd("RCPT TO:<bob@example.org>").await;
    c.send(b"BDAT 4\r\nab\r\n").await;
    c.expect("250 2.0.0 Ok: 4 octets").await;
    c.send(b"BDAT 0 LAST\r\n").await;
    c.expect("250 2.0.0 Ok: queued as").await;
    let msgs = h.store.messages();
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs[0].0.ends_with("\r\nSubject: x\r\n\r\nbody\r\n"),
        "{}",
        msgs[0].0
    );
    assert!(msgs[1].0.ends_with("+0000\r\nab\r\n"));
}

#[tokio::test]
async fn bdat_sequence_errors_keep_in_step() {
    let h = Harness::new();
    let mut c = start(&h).await;
    // Refused BDAT: its 6 bytes ("QUIT\r\n") are skipped, not executed.
    c.send(b"BDAT 6\r\nQUIT\r\nNOOP\r\n").await;
    c.expect("503 5.5.1").await;
    c.expect("250 2.0.0").await;
    c.cmd("MAIL FROM:<a@remote.example>").await;
    c.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n").await;
    c.expect("554 5.5.1").await;
    c.expect("250 2.0.0").await;
    c.cmd("RCPT TO:<bob@example.org>").await;
    c.send(b"BDAT 3\r\nabc").await;
    c.expect("250 2.0.0 Ok: 3 octets").await;
    // Mixing DATA into a BDAT transaction.
    assert!(c.cmd("DATA").await.starts_with("503 5.5.1"));
    assert!(c
        .cmd("MAIL FROM:<x@y.example>")
        .await
        .starts_with("503 5.5.1"));
    assert!(c.cmd("RSET").await.starts_with("250 2.0.0"));
    assert!(h.store.messages().is_empty());
    // BDAT then bare LF is refused like DATA.
    c.cmd("MAIL FROM:<a@remote.example>").await;
    c.cmd("RCPT TO:<bob@example.org>").await;
    c.send(b"BDAT 4 LAST\r\na\nb\n").await;
    c.expect("550 5.6.11").await;
    assert!(h.store.messages().is_empty());
}

#[tokio::test]
async fn bdat_too_large() {
    let h = Harness::with_limits(SmtpLimits {
        max_message_size: 10,
        ..SmtpLimits::default()
    });
    let mut c = start(&h).await;
    c.cmd("MAIL FROM:<a@remote.example>").await;
    c.cmd("RCPT TO:<bob@example.org>").await;
    // The chunk that would go past the limit is refused on its BDAT
    // line, unread, and the session ends.
    c.send(b"BDAT 8\r\n12345678BDAT 8\r\n12345678BDAT 2 LAST\r\n12NOOP\r\n")
        .await;
    assert_eq!(
        all_replies(&mut c).await,
        vec!["250 2.0.0".to_string(), "552 5.3.4".to_string()]
    );
    assert!(h.store.messages().is_empty());

    // The largest chunk size there is, in and out of a transaction.
    for before in [
        "",
        "MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\n",
    ] {
        let mut c = start(&h).await;
        c.send(format!("{before}BDAT 18446744073709551615\r\nxyz").as_bytes())
            .await;
        let replies = all_replies(&mut c).await;
        assert_eq!(
            replies.last().map(String::as_str),
            Some("552 5.3.4"),
            "{replies:?}"
        );
    }
}

#[tokio::test]
async fn sequence_and_syntax_errors() {
    // More errors than the default limit of 20 are made on purpose.
    let h = Harness::with_limits(SmtpLimits {
        max_errors: 100,
        ..SmtpLimits::default()
    });
    let mut c = h.connect().await;
    let cases: &[(&str, &str)] = &[
        ("MAIL FROM:<a@b.example>", "503 5.5.1"),
        ("RCPT TO:<alice@example.org>", "503 5.5.1"),
        ("DATA", "503 5.5.1"),
        ("HELO client.example", "250 mx.example.org Hello"),
        ("RCPT TO:<alice@example.org>", "503 5.5.1"),
        ("MAIL FROM:<a@b.example>", "250 2.1.0"),
        ("MAIL FROM:<a@b.example>", "503 5.5.1"),
        ("DATA", "554 5.5.1"),
        ("RSET", "250 2.0.0"),
        ("NOOP", "250 2.0.0"),
        ("NOOP anything", "250 2.0.0"),
        ("VRFY alice", "252 2.5.0"),
        ("EXPN team", "502 5.5.1"),
        ("HELP", "214-2.0.0"),
        ("STARTTLS", "502 5.5.1"),
        ("AUTH PLAIN", "502 5.5.1"),
        ("LHLO client.example", "500 5.5.1"),
        ("FOO", "500 5.5.1"),
        ("EHLO", "501 5.5.4"),
        ("MAIL FROM:<bad address@x>", "501 5.1.7"),
        ("MAIL FROM:<a@b.example> FOO=1", "555 5.5.4"),
        ("MAIL FROM:<a@b.example> BODY=BINARYMIME", "555 5.5.4"),
        ("MAIL FROM:<a@b.example> SIZE=52428801", "552 5.3.4"),
        ("MAIL FROM:<jöran@bücher.example>", "553 5.6.7"),
        (
            "MAIL FROM:<a@b.example> SIZE=52428800 RET=HDRS ENVID=x AUTH=<>",
            "250 2.1.0",
        ),
        ("RCPT TO:<alice>", "501 5.1.3"),
        (
            "RCPT TO:<alice@example.org> NOTIFY=NEVER ORCPT=rfc822;alice@example.org",
            "250 2.1.5",
        ),
        ("RCPT TO:<jöran@bücher.example>", "553 5.6.7"),
        ("RCPT TO:<nobody@example.org>", "550 5.1.1"),
        ("RCPT TO:<someone@elsewhere.example>", "550 5.7.1"),
        ("RCPT TO:<alice%elsewhere.example@example.org>", "550 5.1.1"),
        ("RCPT TO:<Postmaster>", "550 5.7.1"),
        ("RCPT TO:<Postmaster@example.org>", "250 2.1.5"),
        ("RCPT TO:<@relay.example:bob@example.org>", "250 2.1.5"),
        ("RSET", "250 2.0.0"),
    ];
    for (cmd, want) in cases {
        let r = c.cmd(cmd).await;
        assert!(r.starts_with(want), "{cmd:?}: expected {want:?}, got {r:?}");
    }
    // Overlong command line: 500 5.5.2, and the session goes on.
    let mut long = b"NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 5000));
    long.extend_from_slice(b"\r\nNOOP\r\n");
    c.send(&long).await;
    c.expect("500 5.5.2 Line too long").await;
    c.expect("250 2.0.0").await;
    // Garbage bytes.
    c.send(b"\x00\xff\xfe\r\n").await;
    c.expect("500 5.5.2").await;
}

#[tokio::test]
async fn smtputf8_transaction() {
    let h = Harness::new();
    let mut c = start(&h).await;
    assert!(c
        .cmd("MAIL FROM:<jöran@bücher.example> SMTPUTF8")
        .await
        .starts_with("250 2.1.0"));
    assert!(c
        .cmd("RCPT TO:<jöran@bücher.example>")
        .await
        .starts_with("250 2.1.5"));
    c.cmd("DATA").await;
    c.send("Subject: grüße\r\n\r\nü\r\n.\r\n".as_bytes()).await;
    c.expect("250 2.0.0").await;
    let msgs = h.store.messages();
    assert!(msgs[0].0.contains("with UTF8SMTP id"), "{}", msgs[0].0);
    assert_eq!(msgs[0].1, vec![4]);
}

#[tokio::test]
async fn recipient_limit_and_store_errors() {
    let h = Harness::with_limits(SmtpLimits {
        max_recipients: 2,
        ..SmtpLimits::default()
    });
    let mut c = start(&h).await;
    c.cmd("MAIL FROM:<a@remote.example>").await;
    assert!(c
        .cmd("RCPT TO:<alice@example.org>")
        .await
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@example.org>").await.starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<postmaster@example.org>")
        .await
        .starts_with("452 4.5.3"));
    // Store failing during DATA: 451, nothing stored.
    c.cmd("DATA").await;
    h.store.fail.store(true, Ordering::SeqCst);
    c.send(b"x\r\n.\r\n").await;
    c.expect("451 4.3.0").await;
    // Store failing during RCPT.
    c.cmd("MAIL FROM:<a@remote.example>").await;
    assert!(c
        .cmd("RCPT TO:<alice@example.org>")
        .await
        .starts_with("451 4.3.0"));
    assert!(h.store.messages().is_empty());
}

#[tokio::test]
async fn data_flaws_are_rejected() {
    let h = Harness::with_limits(SmtpLimits {
        max_message_size: 100,
        max_data_line: 20,
        ..SmtpLimits::default()
    });
    let mut c = start(&h).await;
    let cases: &[(&[u8], &str)] = &[
        (b"line\nbare\r\n.\r\n", "550 5.6.11"),
        (b"line\rbare\r\n.\r\n", "550 5.6.11"),
        (&[b'a'; 150], "552 5.3.4"),
        (b"0123456789012345678901234\r\n.\r\n", "500 5.5.2"),
        (b"short\r\n.\r\n", "250 2.0.0"),
    ];
    for (body, want) in cases {
        c.cmd("MAIL FROM:<a@remote.example>").await;
        c.cmd("RCPT TO:<alice@example.org>").await;
        c.cmd("DATA").await;
        c.send(body).await;
        if !body.ends_with(b".\r\n") {
            c.send(b"\r\n.\r\n").await;
        }
        let r = c.reply().await;
        assert!(r.starts_with(want), "expected {want}, got {r:?}");
    }
    assert_eq!(h.store.messages().len(), 1);
}

#[tokio::test]
async fn smuggling_sequences_give_one_rejected_message() {
    for seq in [&b"\n.\n"[..], b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r.\r\n"] {
        let h = Harness::new();
        let mut c = h.connect().await;
        let mut script = b"EHLO client.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n\
Subject: first\r\n\r\nfirst"
            .to_vec();
        script.extend_from_slice(seq);
        script.extend_from_slice(
            b"MAIL FROM:<admin@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\nQUIT\r\n",
        );
        c.send(&script).await;
        assert_eq!(
            all_replies(&mut c).await,
            [
                "250",
                "250 2.1.0",
                "250 2.1.5",
                "354",
                "550 5.6.11",
                "221 2.0.0"
            ],
            "sequence {seq:?}"
        );
        assert!(h.store.messages().is_empty(), "sequence {seq:?}");
    }
    // With only CRLF the same bytes are one message, smuggled text inside.
    let h = Harness::new();
    let mut c = h.connect().await;
    c.send(
        b"EHLO c.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nfirst\r\n..\r\n\
MAIL FROM:<admin@example.org>\r\n.\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(
        all_replies(&mut c).await,
        [
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    let msgs = h.store.messages();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0]
        .0
        .ends_with("first\r\n.\r\nMAIL FROM:<admin@example.org>\r\n"));
}

#[tokio::test]
async fn too_many_errors_closes() {
    let h = Harness::with_limits(SmtpLimits {
        max_errors: 3,
        ..SmtpLimits::default()
    });
    let mut c = h.connect().await;
    c.send(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n").await;
    assert_eq!(
        all_replies(&mut c).await,
        ["500 5.5.1", "500 5.5.1", "500 5.5.1", "421 4.7.0"]
    );
    c.expect_closed().await;
}

#[tokio::test]
async fn idle_timeout_closes() {
    let h = Harness::with_limits(SmtpLimits {
        idle_timeout: Duration::from_millis(100),
        ..SmtpLimits::default()
    });
    let mut c = h.connect().await;
    c.expect("421 4.4.2").await;
    c.expect_closed().await;
}

#[tokio::test]
async fn slow_command_line_and_slow_transfer_get_421() {
    let limits = SmtpLimits {
        command_timeout: Duration::from_millis(300),
        min_transfer_rate: 1000,
        transfer_grace: Duration::from_millis(300),
        ..SmtpLimits::default()
    };
    // Half a command line, then nothing: the line's deadline, not the
    // (default, 300 s) idle timeout, ends it.
    let h = Harness::with_limits(limits);
    let mut c = start(&h).await;
    c.send(b"NOOP").await;
    c.expect("421 4.4.2").await;
    c.expect_closed().await;

    // Whole lines slower than that are fine.
    let mut c = start(&h).await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(c.cmd("NOOP").await.starts_with("250"));
    }
    // A message at 10 bytes in 300 ms: far below 1000 B/s after the grace.
    c.cmd("MAIL FROM:<a@remote.example>").await;
    c.cmd("RCPT TO:<bob@example.org>").await;
    c.cmd("DATA").await;
    c.send(b"Subject: \r\n").await;
    c.expect("421 4.4.2").await;
    c.expect_closed().await;
    assert!(h.store.messages().is_empty());
}

#[tokio::test]
async fn shutdown_closes_idle_sessions_and_lets_transactions_finish() {
    let h = Harness::new();
    let mut idle = greeted_after_ehlo(&h).await;
    let mut busy = greeted_after_ehlo(&h).await;
    busy.cmd("MAIL FROM:<a@remote.example>").await;
    h.shutdown.send(true).unwrap();
    idle.expect("421 4.3.2").await;
    idle.expect_closed().await;
    assert!(busy
        .cmd("RCPT TO:<alice@example.org>")
        .await
        .starts_with("250"));
    busy.cmd("DATA").await;
    busy.send(b"x\r\n.\r\n").await;
    busy.expect("250 2.0.0").await;
    busy.expect("421 4.3.2").await;
    busy.expect_closed().await;
    assert_eq!(h.store.messages().len(), 1);
    // New connections during shutdown are turned away after the greeting.
    let mut late = h.connect().await;
    late.expect("421 4.3.2").await;
}

async fn greeted_after_ehlo(h: &Harness) -> Client {
    let mut c = h.connect().await;
    c.send(b"EHLO client.example\r\n").await;
    c.reply().await;
    c
}

/// xorshift64, for reproducible split points.
struct XorShift(u64);
impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x % n as u64) as usize
    }
}

#[tokio::test]
async fn split_writes_at_random_points() {
    let script: &[u8] = b"EHLO client.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\n\
DATA\r\nSubject: split\r\n\r\n..stuffed\r\nline\r\n.\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.org>\r\n\
BDAT 5\r\nab\r\ncBDAT 3 LAST\r\nd\r\nRSET\r\nQUIT\r\n";
    let want = [
        "250",
        "250 2.1.0",
        "250 2.1.5",
        "354",
        "250 2.0.0",
        "250 2.1.0",
        "250 2.1.5",
        "250 2.0.0",
        "250 2.0.0",
        "250 2.0.0",
        "221 2.0.0",
    ];
    let mut rng = XorShift(0xDEAD_BEEF_1234_5678);
    for round in 0..60 {
        let h = Harness::new();
        let mut c = h.connect().await;
        let mut rest = script;
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(24));
            c.send(&rest[..n]).await;
            rest = &rest[n..];
            if rng.below(3) == 0 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(all_replies(&mut c).await, want, "round {round}");
        let msgs = h.store.messages();
        assert_eq!(msgs.len(), 2, "round {round}");
        assert!(
            msgs[0]
                .0
                .ends_with("+0000\r\nSubject: split\r\n\r\n.stuffed\r\nline\r\n"),
            "round {round}"
        );
        assert!(
            msgs[1].0.ends_with("+0000\r\nab\r\ncd\r\n"),
            "round {round}"
        );
    }
}

#[tokio::test]
async fn helo_uses_smtp_protocol() {
    let h = Harness::new();
    let mut c = h.connect().await;
    assert_eq!(
        c.cmd("HELO [192.0.2.10]").await,
        "250 mx.example.org Hello [192.0.2.10] [192.0.2.10]\r\n"
    );
    c.cmd("MAIL FROM:<a@remote.example>").await;
    c.cmd("RCPT TO:<alice@example.org>").await;
    c.cmd("DATA").await;
    c.send(b".\r\n").await;
    c.expect("250 2.0.0").await;
    assert!(h.store.messages()[0].0.contains(
        "from [192.0.2.10] (unknown [192.0.2.10])\r\n\tby mx.example.org (mailgate) with SMTP id"
    ));
}

#[tokio::test]
async fn garbage_never_panics_the_session() {
    const FRAGMENTS: &[&[u8]] = &[
        b"EHLO x.example\r\n",
        b"MAIL FROM:<a@remote.example>\r\n",
        b"RCPT TO:<alice@example.org>\r\n",
        b"DATA\r\n",
        b"BDAT 3\r\n",
        b"BDAT 2 LAST\r\n",
        b".\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b".",
        b"RSET\r\n",
        b"\xff\x00",
        b"MAIL FROM:<\xc3\xbc@x>\r\n",
        b"AUTH PLAIN =\r\n",
        b"NOOP\r\n",
        b"x",
    ];
    let mut rng = XorShift(0x1234_5678_9ABC_DEF1);
    for _ in 0..40 {
        let h = Harness::with_limits(SmtpLimits {
            max_errors: 1000,
            ..SmtpLimits::default()
        });
        let mut c = h.connect().await;
        let mut input = Vec::new();
        for _ in 0..200 {
            input.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]);
        }
        let mut rest = &input[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(64));
            c.send(&rest[..n]).await;
            rest = &rest[n..];
        }
        c.writer.shutdown().await.unwrap();
        // Drain replies until the server closes; the task must end cleanly.
        while !c.reply().await.is_empty() {}
        c.expect_closed().await;
    }
}
