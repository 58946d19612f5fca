//! Whole sessions through `tokio::io::duplex`: login, listing, retrieval,
//! deletion, and the rules around them.

mod common;

use common::*;
use mailgate_auth::sasl::encode_base64;

#[tokio::test]
async fn full_session() {
    let f = fixture();
    let (mut c, greeting) = Client::connect(&f.ctx).await;
    assert_eq!(greeting, "+OK pop.example.org POP3 mailgate ready");

    assert_eq!(c.cmd("CAPA").await, "+OK Capability list follows");
    assert_eq!(
        c.body().await,
        [
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "USER",
            "SASL PLAIN LOGIN",
            "IMPLEMENTATION mailgate"
        ]
    );
    assert_eq!(
        c.cmd(&format!("USER {ALICE}")).await,
        "+OK Send your password"
    );
    let total = MSG1.len() + MSG2.len() + MSG3.len();
    assert_eq!(
        c.cmd(&format!("PASS {PASSWORD}")).await,
        format!("+OK Logged in, 3 messages ({total} octets)")
    );

    assert_eq!(c.cmd("STAT").await, format!("+OK 3 {total}"));
    assert_eq!(
        c.cmd("LIST").await,
        format!("+OK 3 messages ({total} octets)")
    );
    assert_eq!(
        c.body().await,
        [
            format!("1 {}", MSG1.len()),
            format!("2 {}", MSG2.len()),
            format!("3 {}", MSG3.len())
        ]
    );
    assert_eq!(c.cmd("LIST 2").await, format!("+OK 2 {}", MSG2.len()));
    assert_eq!(c.cmd("LIST 4").await, "-ERR no such message");
    assert_eq!(c.cmd("LIST 0").await, "-ERR no such message");

    let v = f.store.uid_validity(f.alice);
    assert_eq!(c.cmd("UIDL").await, "+OK Unique-id listing follows");
    assert_eq!(
        c.body().await,
        [format!("1 {v}.1"), format!("2 {v}.2"), format!("3 {v}.3")]
    );
    assert_eq!(c.cmd("UIDL 3").await, format!("+OK 3 {v}.3"));

    assert_eq!(c.cmd("RETR 1").await, format!("+OK {} octets", MSG1.len()));
    assert_eq!(c.body_raw().await, [MSG1, b".\r\n"].concat());
    assert_eq!(c.cmd("NOOP").await, "+OK");

    assert_eq!(c.cmd("DELE 1").await, "+OK message 1 deleted");
    assert_eq!(
        c.cmd("STAT").await,
        format!("+OK 2 {}", MSG2.len() + MSG3.len())
    );
    assert_eq!(
        c.cmd("LIST").await,
        format!("+OK 2 messages ({} octets)", MSG2.len() + MSG3.len())
    );
    assert_eq!(
        c.body().await,
        [format!("2 {}", MSG2.len()), format!("3 {}", MSG3.len())]
    );
    assert_eq!(c.cmd("UIDL").await, "+OK Unique-id listing follows");
    assert_eq!(c.body().await, [format!("2 {v}.2"), format!("3 {v}.3")]);
    // Not deleted until QUIT.
    assert_eq!(f.store.uids(f.alice), [1, 2, 3]);

    assert_eq!(
        c.cmd("QUIT").await,
        "+OK pop.example.org POP3 mailgate signing off (2 messages left)"
    );
    assert_eq!(c.until_eof().await, "");
    assert_eq!(f.store.uids(f.alice), [2, 3]);
    c.hang_up().await;
    assert!(!f.ctx.locks.maildrop_locked_here(f.alice));

    // Message numbers restart at 1, unique-ids stay.
    let mut c = Client::login(&f.ctx, ALICE).await;
    assert_eq!(c.cmd("UIDL").await, "+OK Unique-id listing follows");
    assert_eq!(c.body().await, [format!("1 {v}.2"), format!("2 {v}.3")]);
    assert_eq!(
        c.cmd("QUIT").await,
        "+OK pop.example.org POP3 mailgate signing off (2 messages left)"
    );
}

#[tokio::test]
async fn empty_maildrop_and_quit_before_login() {
    let f = fixture();
    let mut c = Client::login(&f.ctx, BOB).await;
    assert_eq!(c.cmd("STAT").await, "+OK 0 0");
    assert_eq!(c.cmd("LIST").await, "+OK 0 messages (0 octets)");
    assert!(c.body().await.is_empty());
    assert_eq!(
        c.cmd("QUIT").await,
        "+OK pop.example.org POP3 mailgate signing off (0 messages left)"
    );

    let (mut c, _) = Client::connect(&f.ctx).await;
    assert_eq!(
        c.cmd("QUIT").await,
        "+OK pop.example.org POP3 mailgate signing off"
    );
    assert_eq!(c.until_eof().await, "");
}

#[tokio::test]
async fn user_name_is_case_insensitive() {
    let f = fixture();
    let mut c = Client::login(&f.ctx, "Alice@Example.ORG").await;
    assert_eq!(c.cmd("STAT").await.split(' ').nth(1), Some("3"));
}

#[tokio::test]
async fn auth_plain_with_initial_response_and_continuation() {
    let f = fixture();
    let good = encode_base64(format!("\0{ALICE}\0{PASSWORD}").as_bytes());

    let (mut c, _) = Client::connect(&f.ctx).await;
    let total = MSG1.len() + MSG2.len() + MSG3.len();
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {good}")).await,
        format!("+OK Logged in, 3 messages ({total} octets)")
    );
    assert_eq!(c.cmd("QUIT").await.split(' ').next(), Some("+OK"));
    c.hang_up().await;

    let (mut c, _) = Client::connect(&f.ctx).await;
    assert_eq!(c.cmd("AUTH PLAIN").await, "+ ");
    assert!(c.cmd(&good).await.starts_with("+OK Logged in"));
    assert!(c.cmd("STAT").await.starts_with("+OK 3 "));
    c.hang_up().await;

    // authzid equal to the user is accepted.
    let (mut c, _) = Client::connect(&f.ctx).await;
    let same = encode_base64(format!("{ALICE}\0{ALICE}\0{PASSWORD}").as_bytes());
    assert!(c
        .cmd(&format!("auth plain {same}"))
        .await
        .starts_with("+OK Logged in"));
}

#[tokio::test]
async fn auth_listing_cancel_and_errors() {
    let f = fixture();
    let (mut c, _) = Client::connect(&f.ctx).await;
    assert_eq!(c.cmd("AUTH").await, "+OK Supported mechanisms follow");
    assert_eq!(c.body().await, ["PLAIN", "LOGIN"]);
    assert_eq!(
        c.cmd("AUTH CRAM-MD5").await,
        "-ERR Unsupported authentication mechanism"
    );
    assert_eq!(c.cmd("AUTH PLAIN").await, "+ ");
    assert_eq!(c.cmd("*").await, "-ERR Authentication cancelled");
    assert_eq!(c.cmd("AUTH PLAIN").await, "+ ");
    assert_eq!(
        c.cmd("not base64!").await,
        "-ERR Invalid base64 in SASL response"
    );
    assert_eq!(
        c.cmd("AUTH PLAIN !!!!").await,
        "-ERR Invalid SASL PLAIN message: invalid base64"
    );
    let no_pass = encode_base64(format!("\0{ALICE}\0").as_bytes());
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {no_pass}")).await,
        "-ERR Invalid SASL PLAIN message: malformed PLAIN message"
    );
    assert_eq!(
        c.cmd("AUTH PLAIN =").await,
        "-ERR Invalid SASL PLAIN message: malformed PLAIN message"
    );
    // Proxy authorization is refused like a wrong password.
    let proxy = encode_base64(format!("{BOB}\0{ALICE}\0{PASSWORD}").as_bytes());
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {proxy}")).await,
        "-ERR [AUTH] Authentication failed"
    );
    // After all that, the session still works.
    let good = encode_base64(format!("\0{ALICE}\0{PASSWORD}").as_bytes());
    assert!(c
        .cmd(&format!("AUTH PLAIN {good}"))
        .await
        .starts_with("+OK Logged in"));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let f = fixture();
    let (mut c, _) = Client::connect(&f.ctx).await;
    let mut answers = Vec::new();
    for user in [ALICE, "nobody@example.org"] {
        answers.push((
            c.cmd(&format!("USER {user}")).await,
            c.cmd("PASS wrong").await,
        ));
        let plain = encode_base64(format!("\0{user}\0wrong").as_bytes());
        answers.push((String::new(), c.cmd(&format!("AUTH PLAIN {plain}")).await));
    }
    assert_eq!(
        answers[0],
        (
            "+OK Send your password".to_string(),
            "-ERR [AUTH] Authentication failed".to_string()
        )
    );
    assert_eq!(answers[0], answers[2]);
    assert_eq!(
        answers[1],
        (
            String::new(),
            "-ERR [AUTH] Authentication failed".to_string()
        )
    );
    assert_eq!(answers[1], answers[3]);
    // PASS consumed the USER: another PASS needs USER again.
    assert_eq!(c.cmd("PASS x").await, "-ERR Send USER first");
}

#[tokio::test]
async fn blocked_client_gets_a_temporary_error() {
    let store = MemStore::new();
    store.add_account(ALICE, PASSWORD);
    let limits = mailgate_auth::LimiterSettings {
        max_failures: 2,
        ..fast_limits()
    };
    let (ctx, _tx) = context(store, limits);
    let ctx = std::sync::Arc::new(ctx);
    let (mut c, _) = Client::connect(&ctx).await;
    for _ in 0..2 {
        c.cmd(&format!("USER {ALICE}")).await;
        assert_eq!(
            c.cmd("PASS wrong").await,
            "-ERR [AUTH] Authentication failed"
        );
    }
    c.cmd(&format!("USER {ALICE}")).await;
    assert_eq!(
        c.cmd(&format!("PASS {PASSWORD}")).await,
        "-ERR [SYS/TEMP] Too many failures, try later"
    );
}

#[tokio::test]
async fn dele_rset_quit() {
    let f = fixture();
    let mut c = Client::login(&f.ctx, ALICE).await;
    assert_eq!(c.cmd("DELE 2").await, "+OK message 2 deleted");
    assert_eq!(c.cmd("DELE 2").await, "-ERR message 2 already deleted");
    assert_eq!(c.cmd("RETR 2").await, "-ERR message 2 already deleted");
    assert_eq!(c.cmd("TOP 2 0").await, "-ERR message 2 already deleted");
    assert_eq!(c.cmd("LIST 2").await, "-ERR message 2 already deleted");
    assert_eq!(c.cmd("UIDL 2").await, "-ERR message 2 already deleted");
    assert_eq!(c.cmd("DELE 9").await, "-ERR no such message");
    assert_eq!(c.cmd("DELE 3").await, "+OK message 3 deleted");
    let total = MSG1.len() + MSG2.len() + MSG3.len();
    assert_eq!(
        c.cmd("RSET").await,
        format!("+OK maildrop has 3 messages ({total} octets)")
    );
    assert!(c.cmd("RETR 2").await.starts_with("+OK"));
    c.body_raw().await;
    assert_eq!(c.cmd("DELE 1").await, "+OK message 1 deleted");
    assert_eq!(c.cmd("DELE 3").await, "+OK message 3 deleted");
    assert_eq!(
        c.cmd("QUIT").await,
        "+OK pop.example.org POP3 mailgate signing off (1 messages left)"
    );
    assert_eq!(f.store.uids(f.alice), [2]);
}

#[tokio::test]
async fn dropped_connection_deletes_nothing_and_unlocks() {
    let f = fixture();
    let mut c = Client::login(&f.ctx, ALICE).await;
    assert_eq!(c.cmd("DELE 1").await, "+OK message 1 deleted");
    assert_eq!(c.cmd("DELE 2").await, "+OK message 2 deleted");
    assert!(f.ctx.locks.maildrop_locked_here(f.alice));
    c.hang_up().await;
    assert_eq!(f.store.uids(f.alice), [1, 2, 3]);
    assert!(!f.ctx.locks.maildrop_locked_here(f.alice));
    let mut c = Client::login(&f.ctx, ALICE).await;
    assert!(c.cmd("STAT").await.starts_with("+OK 3 "));
}

#[tokio::test]
async fn second_session_gets_in_use() {
    let f = fixture();
    let mut first = Client::login(&f.ctx, ALICE).await;
    let (mut second, _) = Client::connect(&f.ctx).await;
    second.cmd(&format!("USER {ALICE}")).await;
    assert_eq!(
        second.cmd(&format!("PASS {PASSWORD}")).await,
        "-ERR [IN-USE] Maildrop is locked by another session"
    );
    // Still in AUTHORIZATION: transaction commands are refused.
    assert_eq!(second.cmd("STAT").await, "-ERR STAT Not logged in");
    // Another account is not affected.
    second.cmd(&format!("USER {BOB}")).await;
    assert!(second
        .cmd(&format!("PASS {PASSWORD}"))
        .await
        .starts_with("+OK Logged in"));
    second.cmd("QUIT").await;

    assert!(first.cmd("QUIT").await.starts_with("+OK"));
    first.hang_up().await;
    let mut third = Client::login(&f.ctx, ALICE).await;
    assert!(third.cmd("STAT").await.starts_with("+OK 3 "));
}

#[tokio::test]
async fn expunge_failure_answers_sys_temp() {
    let f = fixture();
    let mut c = Client::login(&f.ctx, ALICE).await;
    c.cmd("DELE 1").await;
    f.store
        .fail_expunge
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        c.cmd("QUIT").await,
        "-ERR [SYS/TEMP] Some deleted messages not removed, try again"
    );
    assert_eq!(c.until_eof().await, "");
    c.hang_up().await;
    assert_eq!(f.store.uids(f.alice), [1, 2, 3]);
    assert!(!f.ctx.locks.maildrop_locked_here(f.alice));
}

#[tokio::test]
async fn snapshot_hides_later_mail() {
    let f = fixture();
    let mut c = Client::login(&f.ctx, ALICE).await;
    f.store
        .add_message(f.alice, b"Subject: late\r\n\r\nlate\r\n");
    assert!(c.cmd("STAT").await.starts_with("+OK 3 "));
    assert_eq!(c.cmd("RETR 4").await, "-ERR no such message");
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    c.hang_up().await;
    let mut c = Client::login(&f.ctx, ALICE).await;
    assert!(c.cmd("STAT").await.starts_with("+OK 4 "));
}
