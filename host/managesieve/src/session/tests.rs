//! The session without sockets, over a real store in a temporary
//! directory.

use std::sync::Arc;
use std::time::Duration;

use mailgate_auth::{Authenticator, LimiterSettings, PlaintextPolicy};
use mailgate_store::{password::hash_password, Directory, SqliteStore};

use super::{Flow, Session};
use crate::ManageSieveContext;

struct Fixture {
    _dir: tempfile::TempDir,
    session: Session,
}

async fn fixture(allow_plaintext: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store
        .create_account("u@example.org", &hash_password("pw"))
        .await
        .unwrap();
    let limiter = LimiterSettings {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        ..LimiterSettings::default()
    };
    let auth = Authenticator::new(store.clone(), limiter).with_plaintext_policy(PlaintextPolicy {
        allow_plaintext,
        trust_loopback: false,
    });
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let mut ctx = ManageSieveContext::new("mx.example.org", store, Arc::new(auth), rx);
    ctx.settings.max_script_size = 100;
    ctx.max_scripts = 2;
    let peer = "192.0.2.1:1234".parse().unwrap();
    Fixture {
        _dir: dir,
        session: Session::new(Arc::new(ctx), peer),
    }
}

/// Feeds `input` whole; returns everything written and the last flow.
async fn say(s: &mut Session, input: &str) -> (String, Flow) {
    let mut buf = input.as_bytes().to_vec();
    let mut out = Vec::new();
    let mut flow = Flow::Continue;
    while let Some((used, f)) = s.feed(&buf, &mut out).await {
        buf.drain(..used);
        flow = f;
        if buf.is_empty() || f != Flow::Continue {
            break;
        }
    }
    (String::from_utf8(out).unwrap(), flow)
}

const LOGIN: &str = "AUTHENTICATE \"PLAIN\" \"AHVAZXhhbXBsZS5vcmcAcHc=\"\r\n";

#[tokio::test]
async fn greeting_lists_the_capabilities() {
    let f = fixture(true).await;
    let mut out = Vec::new();
    f.session.greeting(&mut out);
    let g = String::from_utf8(out).unwrap();
    assert!(g.starts_with("\"IMPLEMENTATION\" \"mailgate\"\r\n"), "{g}");
    assert!(g.contains("\"SIEVE\" \"fileinto reject "), "{g}");
    assert!(!g.contains("editheader"), "{g}");
    assert!(g.contains("\"SASL\" \"PLAIN LOGIN\"\r\n"), "{g}");
    assert!(g.contains("\"MAXREDIRECTS\" \"4\"\r\n"), "{g}");
    assert!(g.contains("\"VERSION\" \"1.0\"\r\n"), "{g}");
    // No certificate in this fixture: no STARTTLS.
    assert!(!g.contains("STARTTLS"), "{g}");
    assert!(g.ends_with("OK\r\n"), "{g}");
}

#[tokio::test]
async fn no_password_before_tls_by_default() {
    let mut f = fixture(false).await;
    let mut out = Vec::new();
    f.session.greeting(&mut out);
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("\"SASL\" \"\"\r\n"));
    let (r, _) = say(&mut f.session, LOGIN).await;
    assert!(r.starts_with("NO (ENCRYPT-NEEDED)"), "{r}");
    assert_eq!(f.session.user(), None);
}

#[tokio::test]
async fn login_then_script_commands() {
    let mut f = fixture(true).await;
    let s = &mut f.session;
    let (r, _) = say(s, "LISTSCRIPTS\r\n").await;
    assert!(r.starts_with("NO"), "{r}");
    assert_eq!(say(s, LOGIN).await.0, "OK \"Logged in\"\r\n");
    assert_eq!(s.user(), Some("u@example.org"));
    // Does not compile: NO with line and column, nothing stored.
    let (r, _) = say(s, "PUTSCRIPT \"a\" {10+}\r\nfileinto;\n\r\n").await;
    assert!(r.starts_with("NO \"line 1, column"), "{r}");
    assert_eq!(say(s, "LISTSCRIPTS\r\n").await.0, "OK\r\n");
    assert_eq!(
        say(s, "PUTSCRIPT \"a\" {5+}\r\nkeep;\r\n").await.0,
        "OK\r\n"
    );
    assert_eq!(say(s, "CHECKSCRIPT \"stop;\"\r\n").await.0, "OK\r\n");
    assert_eq!(say(s, "SETACTIVE \"a\"\r\n").await.0, "OK\r\n");
    assert_eq!(say(s, "LISTSCRIPTS\r\n").await.0, "\"a\" ACTIVE\r\nOK\r\n");
    assert_eq!(
        say(s, "GETSCRIPT \"a\"\r\n").await.0,
        "{5}\r\nkeep;\r\nOK\r\n"
    );
    let (r, _) = say(s, "DELETESCRIPT \"a\"\r\n").await;
    assert!(r.starts_with("NO (ACTIVE)"), "{r}");
    // Quota: 2 scripts, 100 bytes.
    assert_eq!(say(s, "PUTSCRIPT \"b\" \"keep;\"\r\n").await.0, "OK\r\n");
    let (r, _) = say(s, "HAVESPACE \"c\" 10\r\n").await;
    assert!(r.starts_with("NO (QUOTA/MAXSCRIPTS)"), "{r}");
    let (r, _) = say(s, "HAVESPACE \"b\" 101\r\n").await;
    assert!(r.starts_with("NO (QUOTA/MAXSIZE)"), "{r}");
    let (r, _) = say(s, "RENAMESCRIPT \"b\" \"a\"\r\n").await;
    assert!(r.starts_with("NO (ALREADYEXISTS)"), "{r}");
    assert_eq!(say(s, "RENAMESCRIPT \"a\" \"c\"\r\n").await.0, "OK\r\n");
    assert_eq!(say(s, "SETACTIVE \"\"\r\n").await.0, "OK\r\n");
    assert_eq!(say(s, "DELETESCRIPT \"c\"\r\n").await.0, "OK\r\n");
    let (r, _) = say(s, "GETSCRIPT \"c\"\r\n").await;
    assert!(r.starts_with("NO (NONEXISTENT)"), "{r}");
    assert_eq!(
        say(s, "NOOP \"t1\"\r\n").await.0,
        "OK (TAG \"t1\") \"Done\"\r\n"
    );
    assert_eq!(say(s, "UNAUTHENTICATE\r\n").await.0, "OK\r\n");
    assert_eq!(s.user(), None);
    let (r, flow) = say(s, "LOGOUT\r\n").await;
    assert_eq!(
        (r.as_str(), flow),
        ("OK \"Logout completed\"\r\n", Flow::Close)
    );
}

#[tokio::test]
async fn login_exchange_and_failures() {
    let mut f = fixture(true).await;
    let s = &mut f.session;
    // LOGIN: two prompts.
    assert_eq!(
        say(s, "AUTHENTICATE \"LOGIN\"\r\n").await.0,
        "\"VXNlcm5hbWU6\"\r\n"
    );
    assert_eq!(
        say(s, "\"dUBleGFtcGxlLm9yZw==\"\r\n").await.0,
        "\"UGFzc3dvcmQ6\"\r\n"
    );
    assert_eq!(say(s, "\"cHc=\"\r\n").await.0, "OK \"Logged in\"\r\n");
    assert_eq!(say(s, "UNAUTHENTICATE\r\n").await.0, "OK\r\n");
    // "*" gives up.
    assert_eq!(say(s, "AUTHENTICATE \"PLAIN\"\r\n").await.0, "\"\"\r\n");
    assert!(say(s, "\"*\"\r\n").await.0.starts_with("NO"));
    // Wrong passwords: NO, then BYE at the third.
    let bad = "AUTHENTICATE \"PLAIN\" \"AHVAZXhhbXBsZS5vcmcAbm8=\"\r\n";
    assert_eq!(say(s, bad).await.0, "NO \"Authentication failed\"\r\n");
    assert_eq!(say(s, bad).await.0, "NO \"Authentication failed\"\r\n");
    let (r, flow) = say(s, bad).await;
    assert!(r.starts_with("BYE"), "{r}");
    assert_eq!(flow, Flow::Close);
}

#[tokio::test]
async fn bad_input_is_bounded() {
    let mut f = fixture(true).await;
    let s = &mut f.session;
    // A literal over max_script_size ends the session.
    let (r, flow) = say(s, "CHECKSCRIPT {101+}\r\n").await;
    assert!(
        r.starts_with("BYE \"Scripts are limited to 100 bytes\""),
        "{r}"
    );
    assert_eq!(flow, Flow::Close);
    // Errors in a row: BYE at the tenth.
    let mut f = fixture(true).await;
    let s = &mut f.session;
    for _ in 0..9 {
        let (r, flow) = say(s, "FOO\r\n").await;
        assert!(r.starts_with("NO"), "{r}");
        assert_eq!(flow, Flow::Continue);
    }
    let (r, flow) = say(s, "FOO bar\r\n").await;
    assert!(r.starts_with("BYE"), "{r}");
    assert_eq!(flow, Flow::Close);
    // A line over the limit.
    let mut f = fixture(true).await;
    let long = format!("NOOP \"{}", "x".repeat(crate::MAX_COMMAND_LINE));
    let (r, flow) = say(&mut f.session, &long).await;
    assert!(r.starts_with("BYE"), "{r}");
    assert_eq!(flow, Flow::Close);
}

#[tokio::test]
async fn commands_per_session_are_bounded() {
    let mut f = fixture(true).await;
    let noops = "NOOP\r\n".repeat(crate::MAX_COMMANDS as usize);
    let (r, flow) = say(&mut f.session, &noops).await;
    assert_eq!(flow, Flow::Continue);
    assert_eq!(
        r.matches("OK \"Done\"").count(),
        crate::MAX_COMMANDS as usize
    );
    let (r, flow) = say(&mut f.session, "NOOP\r\n").await;
    assert!(r.starts_with("BYE"), "{r}");
    assert_eq!(flow, Flow::Close);
}
