//! The clocks of a connection over the real loop: a command that
//! trickles in is cut at `command_timeout`; an APPEND message that comes
//! too slowly is cut by `min_transfer_rate`, and one that comes fast
//! enough may take longer than `command_timeout`. Small values so that
//! the tests take about a second each. And a FETCH that repeats a large
//! body comes out in bounded parts.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_command_is_cut_at_command_timeout() {
    let f = fixture_with(|ctx| ctx.command_timeout = Duration::from_millis(800)).await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    let t0 = Instant::now();
    // One byte every 200 ms: never silent, never done.
    let mut closed = None;
    for b in b"a NOOP and more and more and more".iter().cycle().take(40) {
        c.send_raw(&[*b]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if c.task.is_finished() {
            closed = Some(t0.elapsed());
            break;
        }
    }
    let elapsed = closed.expect("the session outlived command_timeout");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(
        c.line().await,
        "* BYE Command not received in time; closing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_append_is_cut_by_min_transfer_rate() {
    let f = fixture_with(|ctx| {
        ctx.min_transfer_rate = 1000;
        ctx.transfer_grace = Duration::from_millis(700);
    })
    .await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.send("a APPEND INBOX {100000}").await;
    assert!(c.line().await.starts_with("+ "));
    let t0 = Instant::now();
    // 10 bytes every 100 ms: 100 bytes/s, a tenth of the minimum.
    let mut closed = None;
    for _ in 0..50 {
        c.send_raw(&[b'x'; 10]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if c.task.is_finished() {
            closed = Some(t0.elapsed());
            break;
        }
    }
    let elapsed = closed.expect("a transfer at 100 bytes/s was not cut");
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(c.line().await, "* BYE Data transfer too slow; closing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_fast_enough_may_outlast_command_timeout() {
    let f = fixture_with(|ctx| {
        ctx.command_timeout = Duration::from_millis(500);
        ctx.min_transfer_rate = 1000;
        ctx.transfer_grace = Duration::from_millis(300);
    })
    .await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    let body = "Subject: slow\r\n\r\n".to_string() + &"y".repeat(4000) + "\r\n";
    c.send(&format!("a APPEND INBOX {{{}}}", body.len())).await;
    assert!(c.line().await.starts_with("+ "));
    // About 5000 bytes/s for about 0.8 s: longer than command_timeout.
    for piece in body.as_bytes().chunks(250) {
        c.send_raw(piece).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.send_raw(b"\r\n").await;
    let r = c.until_tagged("a").await;
    assert!(r.last().unwrap().starts_with("OK [APPENDUID"), "{r:?}");
}

/// The session alone, fed frames: a FETCH repeating a large message's
/// body 40 times comes out in parts none of which is much larger than
/// OUTPUT_CHUNK, and the parts add up to the whole answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_answers_in_bounded_parts_whatever_it_repeats() {
    use mailgate_imap::cmd::fetch::OUTPUT_CHUNK;
    use mailgate_imap::Session;
    use mailgate_imap_proto::Frame;

    let f = fixture().await;
    let body: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("line {i:06} of a large message\r\n").into_bytes())
        .collect();
    let mut msg = b"Subject: big\r\n\r\n".to_vec();
    msg.extend_from_slice(&body);
    deliver(&f.store, f.alice, "INBOX", &msg).await;
    let mut s = Session::new(f.ctx.clone(), peer());
    let mut out = Vec::new();
    for cmd in [
        format!("a LOGIN {ALICE} \"{PASSWORD}\""),
        "b SELECT INBOX".to_string(),
    ] {
        s.handle_frame(Frame::Command(cmd.into_bytes()), &mut out)
            .await;
    }
    assert!(out.ends_with(b"b OK [READ-WRITE] SELECT completed\r\n"));
    out.clear();
    let items = vec!["BODY.PEEK[]"; 40].join(" ");
    let cmd = format!("c FETCH 4 ({items} BODY.PEEK[TEXT])");
    s.handle_frame(Frame::Command(cmd.into_bytes()), &mut out)
        .await;
    let (mut largest, mut total, mut parts) = (out.len(), out.len(), 1);
    while s.has_more_output() {
        out.clear();
        s.resume(&mut out).await;
        largest = largest.max(out.len());
        total += out.len();
        parts += 1;
    }
    assert!(out.ends_with(b"c OK FETCH completed\r\n"));
    assert!(largest <= OUTPUT_CHUNK + 1024, "a part of {largest} bytes");
    assert!(total > 40 * msg.len() + body.len(), "{total}");
    assert!(parts >= total / (OUTPUT_CHUNK + 1024), "{parts} parts");
}
