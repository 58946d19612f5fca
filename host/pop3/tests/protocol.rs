//! Wire-level behaviour: byte-stuffing, TOP, states, garbage, limits,
//! timeouts, shutdown and pipelining.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mailgate_pop3::{Flow, Session, MAX_CONSECUTIVE_ERRORS};
use mailgate_pop3_proto::Frame;

#[tokio::test]
async fn retr_byte_stuffs_lines_starting_with_a_dot() {
    let f = fixture();
    let mut c = Client::login(&f.ctx, ALICE).await;
    assert_eq!(c.cmd("RETR 2").await, format!("+OK {} octets", MSG2.len()));
    let got = c.body_raw().await;
    let want: &[u8] =
        b"From: b@x\r\nSubject: two\r\n\r\n..starts with dot\r\n...two dots\r\n..\r\nend\r\n.\r\n";
    assert_eq!(got, want);
}

#[tokio::test]
async fn retr_adds_missing_final_crlf() {
    let f = fixture();
    let raw = b"Subject: x\r\n\r\nno newline at end";
    let uid = f.store.add_message(f.alice, raw);
    assert_eq!(uid.get(), 4);
    let mut c = Client::login(&f.ctx, ALICE).await;
    assert_eq!(c.cmd("RETR 4").await, format!("+OK {} octets", raw.len()));
    assert_eq!(
        c.body_raw().await,
        b"Subject: x\r\n\r\nno newline at end\r\n.\r\n"
    );
}

#[tokio::test]
async fn top_sends_headers_and_n_lines() {
    let f = fixture();
    let mut c = Client::login(&f.ctx, ALICE).await;
    assert_eq!(c.cmd("TOP 3 0").await, "+OK Top of message follows");
    assert_eq!(c.body().await, ["From: c@x", "Subject: three", ""]);
    assert_eq!(c.cmd("TOP 3 2").await, "+OK Top of message follows");
    assert_eq!(
        c.body().await,
        ["From: c@x", "Subject: three", "", "l1", "l2"]
    );
    assert_eq!(c.cmd("TOP 3 100").await, "+OK Top of message follows");
    assert_eq!(
        c.body().await,
        ["From: c@x", "Subject: three", "", "l1", "l2", "l3", "l4"]
    );
    assert_eq!(c.cmd("TOP 2 1").await, "+OK Top of message follows");
    assert_eq!(
        c.body().await,
        ["From: b@x", "Subject: two", "", "..starts with dot"]
    );
    assert_eq!(c.cmd("TOP 7 1").await, "-ERR no such message");
    assert_eq!(c.cmd("TOP 1").await, "-ERR TOP: missing argument");
}

#[tokio::test]
async fn commands_in_the_wrong_state() {
    let f = fixture();
    let (mut c, _) = Client::connect(&f.ctx).await;
    for cmd in [
        "STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL",
    ] {
        let verb = cmd.split(' ').next().unwrap();
        assert_eq!(c.cmd(cmd).await, format!("-ERR {verb} Not logged in"));
    }
    // A success between error runs keeps the error limit away.
    assert_eq!(c.cmd("CAPA").await, "+OK Capability list follows");
    c.body().await;
    assert_eq!(c.cmd("PASS secret").await, "-ERR Send USER first");
    assert_eq!(
        c.cmd("APOP alice c4c9334bac560ecc979e58001b3e22fb").await,
        "-ERR APOP not supported"
    );
    assert_eq!(c.cmd("STLS").await, "-ERR STLS not available");
    c.cmd(&format!("USER {ALICE}")).await;
    assert!(c.cmd(&format!("PASS {PASSWORD}")).await.starts_with("+OK"));
    for cmd in [
        "USER x",
        "PASS y",
        "AUTH PLAIN",
        "APOP a c4c9334bac560ecc979e58001b3e22fb",
        "STLS",
    ] {
        let verb = cmd.split(' ').next().unwrap();
        assert_eq!(c.cmd(cmd).await, format!("-ERR {verb} Already logged in"));
    }
    // CAPA works in both states.
    assert_eq!(c.cmd("CAPA").await, "+OK Capability list follows");
    assert_eq!(c.body().await.len(), 8);
    assert_eq!(c.cmd("NOOP").await, "+OK");
}

#[tokio::test]
async fn garbage_lines_get_errors_and_the_session_survives() {
    let f = fixture();
    let (mut c, _) = Client::connect(&f.ctx).await;
    c.send_raw(b"\xff\xfe\xfd\r\n").await;
    assert_eq!(c.line().await, "-ERR command is not valid UTF-8");
    c.send_raw(b"US\0ER x\r\n").await;
    assert_eq!(c.line().await, "-ERR invalid character in command");
    assert_eq!(c.cmd("").await, "-ERR empty command");
    assert_eq!(c.cmd("HELO example.org").await, "-ERR Unknown command");
    assert_eq!(c.cmd("RETR").await, "-ERR RETR: missing argument");
    assert_eq!(c.cmd("LIST abc").await, "-ERR LIST: invalid number");
    // An over-long line is answered once, after it ends.
    c.send_raw(&vec![b'A'; 100_000]).await;
    c.send_raw(b"\r\n").await;
    assert_eq!(c.line().await, "-ERR Line too long");
    // Bare LF is accepted as a line end.
    c.send_raw(format!("USER {ALICE}\nPASS {PASSWORD}\n").as_bytes())
        .await;
    assert_eq!(c.line().await, "+OK Send your password");
    assert!(c.line().await.starts_with("+OK Logged in"));
    assert_eq!(c.cmd("RETR 0").await, "-ERR no such message");
    assert_eq!(c.cmd("RETR 4294967295").await, "-ERR no such message");
}

#[tokio::test]
async fn too_many_errors_in_a_row_close_the_session() {
    let f = fixture();
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.cmd("DELE 1").await;
    for _ in 1..MAX_CONSECUTIVE_ERRORS {
        assert_eq!(c.cmd("BOGUS").await, "-ERR Unknown command");
    }
    // A success resets the count.
    assert_eq!(c.cmd("NOOP").await, "+OK");
    for _ in 1..MAX_CONSECUTIVE_ERRORS {
        assert_eq!(c.cmd("BOGUS").await, "-ERR Unknown command");
    }
    assert_eq!(
        c.cmd("BOGUS").await,
        "-ERR Too many errors, closing connection"
    );
    assert_eq!(c.until_eof().await, "");
    c.hang_up().await;
    assert_eq!(f.store.uids(f.alice), [1, 2, 3]);
    assert!(!f.ctx.locks.maildrop_locked_here(f.alice));
}

// The clock is paused (tokio test-util): time moves only when every task
// waits, so the timing below is exact and cannot flake on a busy machine.
#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_without_update() {
    let f = fixture_with(|ctx| ctx.idle_timeout = Duration::from_millis(500));
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.cmd("DELE 1").await;
    let start = tokio::time::Instant::now();
    // Trickling bytes of an unfinished line does not keep it alive: the
    // timer runs from the last complete command.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        c.send_raw(b"N").await;
    }
    assert_eq!(
        c.until_eof().await,
        "-ERR Idle timeout, closing connection\r\n"
    );
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_millis(600),
        "{elapsed:?}"
    );
    c.hang_up().await;
    assert_eq!(f.store.uids(f.alice), [1, 2, 3]);
    assert!(!f.ctx.locks.maildrop_locked_here(f.alice));
}

#[tokio::test]
async fn shutdown_closes_idle_sessions_without_update() {
    let f = fixture();
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.cmd("DELE 1").await;
    f.shutdown.send(true).unwrap();
    assert_eq!(
        c.until_eof().await,
        "-ERR [SYS/TEMP] server shutting down\r\n"
    );
    c.hang_up().await;
    assert_eq!(f.store.uids(f.alice), [1, 2, 3]);
    assert!(!f.ctx.locks.maildrop_locked_here(f.alice));
    // New connections during shutdown are turned away at once.
    let (mut c, greeting) = Client::connect(&f.ctx).await;
    assert_eq!(greeting, "-ERR [SYS/TEMP] server shutting down");
    assert_eq!(c.until_eof().await, "");
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let f = fixture();
    let (mut c, _) = Client::connect(&f.ctx).await;
    c.send_raw(
        format!(
            "USER {ALICE}\r\nPASS {PASSWORD}\r\nSTAT\r\nUIDL 1\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n"
        )
        .as_bytes(),
    )
    .await;
    let v = f.store.uid_validity(f.alice);
    assert_eq!(c.line().await, "+OK Send your password");
    assert!(c.line().await.starts_with("+OK Logged in, 3 messages"));
    assert!(c.line().await.starts_with("+OK 3 "));
    assert_eq!(c.line().await, format!("+OK 1 {v}.1"));
    assert_eq!(c.line().await, format!("+OK {} octets", MSG1.len()));
    assert_eq!(c.body_raw().await, [MSG1, b".\r\n"].concat());
    assert_eq!(c.line().await, "+OK message 1 deleted");
    assert!(c
        .line()
        .await
        .starts_with("+OK pop.example.org POP3 mailgate signing off"));
    assert_eq!(c.until_eof().await, "");
    assert_eq!(f.store.uids(f.alice), [2, 3]);
}

#[tokio::test]
async fn session_runs_without_a_socket() {
    let f = fixture();
    let mut s = Session::new(Arc::clone(&f.ctx), peer());
    let mut out = Vec::new();
    s.greeting(&mut out);
    for line in [
        format!("USER {ALICE}"),
        format!("PASS {PASSWORD}"),
        "DELE 3".into(),
    ] {
        assert_eq!(
            s.handle_frame(Frame::Line(line.into_bytes()), &mut out)
                .await,
            Flow::Continue
        );
    }
    assert!(s.in_transaction());
    assert_eq!(
        s.handle_frame(Frame::Line(b"QUIT".to_vec()), &mut out)
            .await,
        Flow::Close
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("+OK message 3 deleted\r\n+OK pop.example.org POP3 mailgate signing off (2 messages left)\r\n"), "{text}");
    assert_eq!(s.end_reason(), "quit");
    drop(s);
    assert_eq!(f.store.uids(f.alice), [1, 2]);
    assert!(!f.ctx.locks.maildrop_locked_here(f.alice));
}
