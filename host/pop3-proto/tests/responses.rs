//! Known answers for the response writers.

use mailgate_pop3_proto::response::{
    write_continuation, write_data_line, write_end, write_err, write_message, write_ok,
    write_status, write_top, MAX_STATUS_LINE,
};
use mailgate_pop3_proto::{ResponseCode, Status};

fn out(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut v = Vec::new();
    f(&mut v);
    String::from_utf8(v).unwrap()
}

#[test]
fn status_lines() {
    let table: &[(Status, Option<ResponseCode>, &str, &str)] = &[
        (Status::Ok, None, "", "+OK\r\n"),
        (Status::Ok, None, "2 320", "+OK 2 320\r\n"),
        (
            Status::Err,
            None,
            "no such message",
            "-ERR no such message\r\n",
        ),
        (
            Status::Err,
            Some(ResponseCode::InUse),
            "locked",
            "-ERR [IN-USE] locked\r\n",
        ),
        (
            Status::Err,
            Some(ResponseCode::LoginDelay),
            "wait",
            "-ERR [LOGIN-DELAY] wait\r\n",
        ),
        (
            Status::Err,
            Some(ResponseCode::SysTemp),
            "later",
            "-ERR [SYS/TEMP] later\r\n",
        ),
        (
            Status::Err,
            Some(ResponseCode::SysPerm),
            "never",
            "-ERR [SYS/PERM] never\r\n",
        ),
        (
            Status::Err,
            Some(ResponseCode::Auth),
            "Authentication failed",
            "-ERR [AUTH] Authentication failed\r\n",
        ),
        (Status::Err, Some(ResponseCode::Auth), "", "-ERR [AUTH]\r\n"),
        (
            Status::Ok,
            Some(ResponseCode::SysTemp),
            "odd but legal",
            "+OK [SYS/TEMP] odd but legal\r\n",
        ),
        // Line breaks in a text cannot start a new response.
        (
            Status::Err,
            None,
            "a\r\n+OK forged",
            "-ERR a  +OK forged\r\n",
        ),
        // A text without a code must not look like one.
        (Status::Err, None, "[IN-USE] fake", "-ERR (IN-USE] fake\r\n"),
        (
            Status::Err,
            Some(ResponseCode::Auth),
            "[x]",
            "-ERR [AUTH] [x]\r\n",
        ),
    ];
    for &(status, code, text, want) in table {
        assert_eq!(out(|o| write_status(o, status, code, text)), want);
    }
    assert_eq!(out(|o| write_ok(o, "hi")), "+OK hi\r\n");
    assert_eq!(
        out(|o| write_err(o, Some(ResponseCode::SysTemp), "x")),
        "-ERR [SYS/TEMP] x\r\n"
    );
    assert_eq!(ResponseCode::InUse.to_string(), "IN-USE");
}

#[test]
fn long_status_text_is_cut_at_a_char_boundary() {
    let text = "\u{e9}".repeat(1000);
    let line = out(|o| write_err(o, Some(ResponseCode::SysPerm), &text));
    assert!(line.len() <= MAX_STATUS_LINE, "{}", line.len());
    assert!(line.len() >= MAX_STATUS_LINE - 1);
    assert!(line.ends_with("\u{e9}\r\n"));
}

#[test]
fn continuation_and_data_lines() {
    assert_eq!(out(|o| write_continuation(o, "")), "+ \r\n");
    assert_eq!(out(|o| write_continuation(o, "abc\r\n")), "+ abc\r\n");
    assert_eq!(out(|o| write_data_line(o, b"1 120")), "1 120\r\n");
    assert_eq!(out(|o| write_data_line(o, b".")), "..\r\n");
    assert_eq!(out(|o| write_data_line(o, b".hidden")), "..hidden\r\n");
    assert_eq!(out(|o| write_data_line(o, b"")), "\r\n");
    assert_eq!(out(write_end), ".\r\n");
}

#[test]
fn messages_are_stuffed_and_terminated() {
    let table: &[(&[u8], &str)] = &[
        (b"", ".\r\n"),
        (b"\r\n", "\r\n.\r\n"),
        (b"A: b\r\n\r\nbody\r\n", "A: b\r\n\r\nbody\r\n.\r\n"),
        (
            b"A: b\r\n\r\nno final newline",
            "A: b\r\n\r\nno final newline\r\n.\r\n",
        ),
        (b"A: b\n\nbare lf\n", "A: b\r\n\r\nbare lf\r\n.\r\n"),
        (
            b"A: b\r\n\r\n.\r\n..x\r\n.y\r\nz.\r\n",
            "A: b\r\n\r\n..\r\n...x\r\n..y\r\nz.\r\n.\r\n",
        ),
        (b".first\r\n", "..first\r\n.\r\n"),
        (b"x\n.\nbare lf dot\n", "x\r\n..\r\nbare lf dot\r\n.\r\n"),
        (b"cr\ronly\r\n", "cr\ronly\r\n.\r\n"),
        (b"trailing blank\r\n\r\n", "trailing blank\r\n\r\n.\r\n"),
    ];
    for &(raw, want) in table {
        assert_eq!(
            out(|o| write_message(o, raw)),
            want,
            "raw {:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn top_sends_header_and_n_lines() {
    let raw = b"From: a\r\nSubject: s\r\n\r\nline 1\r\n.line 2\r\nline 3\r\n";
    let table: &[(u32, &str)] = &[
        (0, "From: a\r\nSubject: s\r\n\r\n.\r\n"),
        (1, "From: a\r\nSubject: s\r\n\r\nline 1\r\n.\r\n"),
        (
            2,
            "From: a\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\n.\r\n",
        ),
        (
            3,
            "From: a\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n",
        ),
        (
            u32::MAX,
            "From: a\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n",
        ),
    ];
    for &(n, want) in table {
        assert_eq!(out(|o| write_top(o, raw, n)), want, "n {n}");
    }
    // No blank line: all header, sent whole.
    assert_eq!(
        out(|o| write_top(o, b"A: b\r\n.C: d", 0)),
        "A: b\r\n..C: d\r\n.\r\n"
    );
    assert_eq!(out(|o| write_top(o, b"", 5)), ".\r\n");
    assert_eq!(
        out(|o| write_top(o, b"A: b\n\nx\ny\n", 1)),
        "A: b\r\n\r\nx\r\n.\r\n"
    );
}
