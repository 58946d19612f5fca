//! The mailbox view shared by sessions: one per selected mailbox, gone
//! with its last session; sessions on it keep their own numbering.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_view_per_mailbox_dropped_with_its_last_session() {
    let f = fixture().await;
    assert_eq!(f.ctx.views.live(), 0);
    let mut a = Client::login(&f.ctx, ALICE).await;
    let mut b = Client::login(&f.ctx, ALICE).await;
    let mut bob = Client::login(&f.ctx, BOB).await;
    a.ok("SELECT INBOX").await;
    b.ok("EXAMINE INBOX").await;
    assert_eq!(f.ctx.views.live(), 1, "two sessions, one mailbox");
    bob.ok("SELECT INBOX").await;
    assert_eq!(f.ctx.views.live(), 2, "another account's INBOX");
    // b expunges nothing (read-only); a expunges message 2; b still has
    // three messages until it is told.
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    assert_eq!(a.ok("EXPUNGE").await[0], "2 EXPUNGE");
    let r = b.ok("FETCH 3 (UID)").await;
    assert_eq!(r[0], "3 FETCH (UID 3)", "{r:?}");
    let r = b.ok("NOOP").await;
    assert_eq!(r[0], "2 EXPUNGE", "{r:?}");
    assert_eq!(b.ok("FETCH 2 (UID)").await[0], "2 FETCH (UID 3)");
    a.ok("UNSELECT").await;
    assert_eq!(f.ctx.views.live(), 2, "b still has it");
    b.ok("CLOSE").await;
    assert_eq!(f.ctx.views.live(), 1, "gone with its last session");
    drop(bob);
    bob = Client::login(&f.ctx, BOB).await;
    bob.ok("LOGOUT").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(f.ctx.views.live(), 0, "a closed connection lets go too");
}

/// What an idle connection costs the server in its own future: the state
/// kept across an await. Large rare states (a FETCH under way, TLS set up,
/// COMPRESS) are boxed so that thousands of idle sessions do not each
/// carry their size.
#[tokio::test]
async fn a_session_future_stays_small() {
    let f = common::fixture().await;
    let (_client, server) = tokio::io::duplex(64);
    let fut =
        mailgate_imap::serve_connection(server, common::peer(), std::sync::Arc::clone(&f.ctx));
    let size = std::mem::size_of_val(&fut);
    println!("session future: {size} bytes");
    assert!(size <= 3072, "session future: {size} bytes");
}
