//! SEARCH RETURN (SAVE) and `$` (RFC 5182), SEARCH on decoded encoded
//! words (RFC 9051 §6.4.4), FETCH answered in parts, and the small read
//! buffer of idle sessions.

mod common;

use std::sync::Arc;

use common::*;
use mailgate_imap::Session;
use mailgate_imap_proto::Frame;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_save_and_dollar() {
    let f = fixture().await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.ok("SELECT INBOX").await;
    // SAVE alone: no ESEARCH response (RFC 5182 §2.1).
    let r = c
        .ok("SEARCH RETURN (SAVE) OR SUBJECT one SUBJECT three")
        .await;
    assert_eq!(r.len(), 1, "{r:?}");
    let r = c.ok("FETCH $ (UID)").await;
    assert_eq!(r[..2], ["1 FETCH (UID 1)", "3 FETCH (UID 3)"]);
    let r = c.ok("UID FETCH $ (FLAGS)").await;
    assert_eq!(r.len(), 3, "{r:?}");
    // `$` as a search key, by sequence number and by UID.
    let r = c.ok("SEARCH $").await;
    assert_eq!(r[0], "SEARCH 1 3");
    let r = c.ok("SEARCH NOT UID $").await;
    assert_eq!(r[0], "SEARCH 2");
    // STORE and COPY take `$` too.
    c.ok("STORE $ +FLAGS.SILENT (\\Flagged)").await;
    let r = c.ok("SEARCH FLAGGED").await;
    assert_eq!(r[0], "SEARCH 1 3");
    // With other options the ESEARCH response comes; MIN with SAVE keeps
    // only the smallest (RFC 5182 §2.4).
    let r = c.ok("SEARCH RETURN (MIN SAVE) ALL").await;
    assert!(
        r[0].starts_with("ESEARCH") && r[0].ends_with("MIN 1"),
        "{r:?}"
    );
    let r = c.ok("FETCH $ (UID)").await;
    assert_eq!(r[..1], ["1 FETCH (UID 1)"]);
    assert_eq!(r.len(), 2);
    // Expunged messages leave `$`.
    c.ok("SEARCH RETURN (SAVE) ALL").await;
    c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    c.ok("EXPUNGE").await;
    let r = c.ok("UID SEARCH UID $").await;
    assert_eq!(r[0], "SEARCH 1 3");
    // SELECT empties it.
    c.ok("SELECT INBOX").await;
    let r = c.ok("FETCH $ (UID)").await;
    assert_eq!(r.len(), 1, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_matches_decoded_encoded_words() {
    let f = fixture().await;
    deliver(
        &f.store,
        f.alice,
        "INBOX",
        b"From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.org>\r\n\
          Subject: =?UTF-8?Q?caf=C3=A9_cr=C3=A8me?=\r\n\
          X-Note: =?UTF-8?B?w6lsw6h2ZQ==?=\r\n\r\nbody\r\n",
    )
    .await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.ok("SELECT INBOX").await;
    // UTF-8 search strings as literals (LITERAL+).
    let search = |key: &str, value: &str| {
        format!("SEARCH CHARSET UTF-8 {key} {{{}+}}\r\n{value}", value.len())
    };
    let r = c.ok(&search("SUBJECT", "CAFÉ CRÈME")).await;
    assert_eq!(r[0], "SEARCH 4");
    let r = c.ok(&search("FROM", "andré")).await;
    assert_eq!(r[0], "SEARCH 4");
    let r = c.ok(&search("HEADER X-Note", "élève")).await;
    assert_eq!(r[0], "SEARCH 4");
    let r = c.ok(&search("TEXT", "crème")).await;
    assert_eq!(r[0], "SEARCH 4");
    // The encoded form as written still matches; other text does not.
    let r = c.ok("SEARCH SUBJECT \"=?UTF-8?Q?caf\"").await;
    assert_eq!(r[0], "SEARCH 4");
    let r = c.ok(&search("SUBJECT", "thé")).await;
    assert_eq!(r[0], "SEARCH");
}

fn big_message(n: usize, size: usize) -> Vec<u8> {
    let mut m = format!("Subject: big {n}\r\n\r\n").into_bytes();
    while m.len() + 80 <= size {
        m.extend_from_slice(format!("{n:06} {}\r\n", "x".repeat(70)).as_bytes());
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_fetch_is_answered_in_parts() {
    let f = fixture().await;
    let messages: Vec<Vec<u8>> = (0..40).map(|n| big_message(n, 20_000)).collect();
    for m in &messages {
        deliver(&f.store, f.alice, "Archive", m).await;
    }
    let huge = big_message(99, 3_000_000);
    deliver(&f.store, f.alice, "Archive", &huge).await;

    // The session itself: one FETCH over 800 KB leaves at most one chunk
    // (256 KiB) and one message pending at a time.
    let mut s = Session::new(Arc::clone(&f.ctx), peer());
    let mut out = Vec::new();
    s.handle_frame(
        Frame::Command(format!("a LOGIN {ALICE} \"{PASSWORD}\"").into_bytes()),
        &mut out,
    )
    .await;
    s.handle_frame(Frame::Command(b"b SELECT Archive".to_vec()), &mut out)
        .await;
    out.clear();
    s.handle_frame(
        Frame::Command(b"c FETCH 1:40 BODY.PEEK[]".to_vec()),
        &mut out,
    )
    .await;
    let mut parts = 1;
    let mut all = Vec::new();
    loop {
        assert!(
            out.len() < 256 * 1024 + 25_000,
            "part of {} bytes",
            out.len()
        );
        all.extend_from_slice(&std::mem::take(&mut out));
        if !s.has_more_output() {
            break;
        }
        s.resume(&mut out).await;
        parts += 1;
    }
    assert!(parts >= 3, "{parts} parts");
    let text = String::from_utf8(all).unwrap();
    assert!(
        text.ends_with("c OK FETCH completed\r\n"),
        "{}",
        &text[text.len() - 100..]
    );
    for (n, m) in messages.iter().enumerate() {
        let head = format!("* {} FETCH (BODY[] {{{}}}\r\n", n + 1, m.len());
        let at = text.find(&head).unwrap_or_else(|| panic!("no {head}"));
        let body = &text.as_bytes()[at + head.len()..at + head.len() + m.len()];
        assert_eq!(body, &m[..]);
    }

    // Over the wire, with a command pipelined behind: everything intact
    // and in order, \Seen set and reported.
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.ok("SELECT Archive").await;
    c.send("d FETCH 1:* BODY[]\r\ne NOOP").await;
    let r = c.until_tagged("d").await;
    assert_eq!(r.len(), 42, "{}", r.len());
    for (n, m) in messages.iter().chain([&huge]).enumerate() {
        let expect = format!(
            "{} FETCH (BODY[] {{{}}}\r\n{} FLAGS (\\Seen))",
            n + 1,
            m.len(),
            String::from_utf8_lossy(m)
        );
        assert!(r[n] == expect, "message {n} differs");
    }
    assert_eq!(r[41], "OK FETCH completed");
    let r = c.until_tagged("e").await;
    assert_eq!(r.last().unwrap(), "OK NOOP completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_commands_after_idle_still_framed() {
    // Idle sessions read with a small buffer that grows on demand: a
    // large APPEND literal and long lines still arrive whole.
    let f = fixture().await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    let m = big_message(7, 200_000);
    c.send_raw(format!("a APPEND INBOX {{{}+}}\r\n", m.len()).as_bytes())
        .await;
    c.send_raw(&m).await;
    c.send_raw(b"\r\n").await;
    let r = c.until_tagged("a").await;
    assert!(r.last().unwrap().starts_with("OK [APPENDUID"), "{r:?}");
    c.ok("SELECT INBOX").await;
    let r = c.ok("FETCH 4 RFC822.SIZE").await;
    assert_eq!(r[0], format!("4 FETCH (RFC822.SIZE {})", m.len()));
    let long = format!("SEARCH {}", vec!["ALL"; 5000].join(" "));
    let r = c.ok(&long).await;
    assert_eq!(r[0], "SEARCH 1 2 3 4");
}
