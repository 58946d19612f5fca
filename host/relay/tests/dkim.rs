//! DKIM: a generated key signs outgoing mail, and a verifier that reads
//! the published TXT record from the test DNS server says `pass`.

mod common;

use common::*;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use mailgate_relay::dkim::DkimSigner;
use mailgate_relay::testing::peer::PeerScript;

#[tokio::test]
async fn relayed_mail_is_signed_and_verifies() {
    let (key, signer) = dkim_signer("a.test", "mg1");
    assert_eq!(key.dns_name, "mg1._domainkey.a.test");
    assert!(key.txt.starts_with("v=DKIM1; k=rsa; p="));
    assert!(key.zone_line().contains("IN TXT ( \"v=DKIM1"));

    let (_dir, store) = sender_store(&["alice@a.test"]).await;
    let peer = peer("127.0.0.3", PeerScript::default()).await;
    let dns = dns_with_mx(&[("b.test", "127.0.0.3")]).await;
    dns.add_txt(&key.dns_name, &key.txt);
    let (relay, _) = sender_relay(&store, &dns, peer.addr().port(), Some(signer), |_| {});
    send(&relay, message("alice@a.test", &["bob@b.test"], T0)).await;
    let msgs = peer.messages();
    assert_eq!(msgs.len(), 1);
    let data = msgs[0].data.clone();
    assert!(data.starts_with(b"DKIM-Signature: "));

    let verifier = MessageAuthenticator(resolver(&dns).resolver().clone());
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
