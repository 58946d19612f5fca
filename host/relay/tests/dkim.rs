//! DKIM: a generated key signs outgoing mail, and a verifier that reads
//! the published TXT record from the test DNS server says `pass`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use mailgate_relay::dkim::{generate, DkimSigner};
use mailgate_relay::testing::peer::{PeerScript, ScriptedPeer};
use mailgate_relay::testing::TestDnsServer;
use mailgate_relay::{HickoryDns, ManualClock};
use mailgate_store::queue::OutboundQueue;

#[tokio::test]
async fn relayed_mail_is_signed_and_verifies() {
    let key = generate("a.test", "mg1", 1024).unwrap();
    assert_eq!(key.dns_name, "mg1._domainkey.a.test");
    assert!(key.txt.starts_with("v=DKIM1; k=rsa; p="));
    assert!(key.zone_line().contains("IN TXT ( \"v=DKIM1"));
    let mut signer = DkimSigner::new();
    signer
        .add_pem("a.test", "mg1", key.private_pem.as_bytes())
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "a.test", &["alice@a.test"]).await;
    let peer = ScriptedPeer::start("127.0.0.3", PeerScript::default())
        .await
        .unwrap();
    let dns = TestDnsServer::start().await.unwrap();
    dns.add_mx("b.test", 10, "mx.b.test");
    dns.add_ip("mx.b.test", "127.0.0.3".parse().unwrap());
    dns.add_txt(&key.dns_name, &key.txt);
    let relay = relay_with_dkim(
        store,
        &["a.test".to_string()],
        &dns,
        peer.addr().port(),
        Arc::new(ManualClock::new(T0)),
        Vec::new(),
        Some(Arc::new(signer)),
        |_| {},
    );
    relay
        .enqueue(message("alice@a.test", &["bob@b.test"], T0))
        .await
        .unwrap();
    relay.run_once().await.unwrap();
    let msgs = peer.messages();
    assert_eq!(msgs.len(), 1);
    let data = msgs[0].data.clone();
    assert!(data.starts_with(b"DKIM-Signature: "));

    let resolver = HickoryDns::new(&[dns.addr()], Duration::from_secs(2)).unwrap();
    let verifier = MessageAuthenticator(resolver.resolver().clone());
    let parsed = AuthenticatedMessage::parse(&data).unwrap();
    let results = verifier.verify_dkim(&parsed).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].result(), &DkimResult::Pass);

    // Tampering with the body breaks it.
    let mut bad = data.clone();
    let at = bad.len() - 5;
    bad[at] = b'X';
    let parsed = AuthenticatedMessage::parse(&bad).unwrap();
    let results = verifier.verify_dkim(&parsed).await;
    assert_ne!(results[0].result(), &DkimResult::Pass);
}

#[test]
fn mail_without_a_key_is_not_signed() {
    let signer = DkimSigner::new();
    assert!(signer
        .sign_for("x@c.test", b"From: x@c.test\r\n\r\nhi\r\n")
        .is_none());
    assert!(DkimSigner::new()
        .add_pem("a.test", "s", b"not a key")
        .is_err());
}
