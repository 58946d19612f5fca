//! Inbound message authentication on the MX listener: SPF (RFC 7208),
//! DKIM (RFC 6376), DMARC (RFC 7489) and, when the message carries ARC
//! sets, ARC (RFC 8617), with `mail-auth`, written into an
//! `Authentication-Results:` header (RFC 8601) and handed to the policy
//! plugins as data ([`Verification::results`], `message.auth-results`).
//!
//! # When
//! After the whole message was received (the lookups cost DNS round trips,
//! and a client that never finishes its message costs us none), and only
//! on the MX role without AUTH: submitted and LMTP mail is not checked.
//!
//! # Bounds
//! SPF, DKIM and ARC run at once, then DMARC; each step has at most
//! [`Verifier::timeout`]. A step that runs out of time, or whose DNS
//! answers fail, is `temperror` in the header; it never refuses a message
//! and never fails the session.
//!
//! # Refusal
//! A DMARC `fail` of a domain publishing `p=reject` is refused with
//! `550 5.7.1` when [`Verifier::dmarc_reject`] is set; not when any step
//! ran out of time (a `fail` then may only mean we did not see the
//! passing signature).
//!
//! # Forged results
//! `Authentication-Results:` fields already in the message that carry our
//! own authserv-id (the host name) are removed before ours is added
//! (RFC 8601 §5), so a sender cannot pass off its own verdict as ours.

use std::net::IpAddr;
use std::time::Duration;

use mail_auth::dkim::Signature;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcResult, MessageAuthenticator, SpfOutput,
    SpfResult,
};
use mailgate_policy::{AuthResult, AuthResults, DkimCheck, DmarcCheck, DmarcPolicy, SpfCheck};
use mailgate_smtp_proto::Reply;

/// The default bound on each verification step.
pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Verifies SPF, DKIM and DMARC of incoming messages.
pub struct Verifier {
    auth: MessageAuthenticator,
    /// The authserv-id of our header: the server's host name.
    hostname: String,
    /// The bound on each step (SPF and DKIM together, then DMARC).
    pub timeout: Duration,
    /// Refuse a DMARC failure under `p=reject` (`550 5.7.1`).
    pub dmarc_reject: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hostname", &self.hostname)
            .field("timeout", &self.timeout)
            .field("dmarc_reject", &self.dmarc_reject)
            .finish()
    }
}

/// Who sent the message, as SPF and DMARC judge it: the client, its
/// HELO name and the envelope sender (not the envelope itself: see
/// `mailgate_delivery::Envelope`).
#[derive(Debug, Clone, Copy)]
pub struct SpfIdentity<'a> {
    /// The client's address.
    pub client: IpAddr,
    /// The EHLO/HELO name.
    pub helo: &'a str,
    /// The MAIL FROM address, empty for `<>`.
    pub mail_from: &'a str,
}

/// The outcome of [`Verifier::verify`].
#[derive(Debug, Clone)]
pub struct Verification {
    /// The whole `Authentication-Results:` field, CRLF included.
    pub header: String,
    /// The SPF result (`pass`, `fail`, `temperror`, ...).
    pub spf: &'static str,
    /// The DKIM result of each signature (`none` without one).
    pub dkim: Vec<&'static str>,
    /// The DMARC result.
    pub dmarc: &'static str,
    /// The domain DMARC judged (the `From:` domain), if any.
    pub dmarc_domain: Option<String>,
    /// The reply refusing the message, when DMARC says to.
    pub reject: Option<Reply>,
    /// The same results as data, for the policy plugins.
    pub results: AuthResults,
}

impl Verifier {
    /// A verifier asking DNS through `auth`; `hostname` is our
    /// authserv-id.
    pub fn new(auth: MessageAuthenticator, hostname: impl Into<String>) -> Verifier {
        Verifier {
            auth,
            hostname: hostname.into(),
            timeout: DEFAULT_VERIFY_TIMEOUT,
            dmarc_reject: true,
        }
    }

    /// Verifies `message` (as received, before our trace fields).
    pub async fn verify(&self, env: SpfIdentity<'_>, message: &[u8]) -> Verification {
        let client = env.client.to_canonical();
        let helo = env.helo;
        let from_domain = env
            .mail_from
            .rsplit_once('@')
            .map_or(helo, |(_, d)| d)
            .to_ascii_lowercase();
        let parsed = AuthenticatedMessage::parse(message);
        let mut timed_out = false;

        let spf_step = tokio::time::timeout(
            self.timeout,
            self.auth.verify_spf(SpfParameters::verify(
                client,
                helo,
                &self.hostname,
                env.mail_from,
            )),
        );
        let dkim_step = async {
            match &parsed {
                Some(m) => Some(tokio::time::timeout(self.timeout, self.auth.verify_dkim(m)).await),
                None => None,
            }
        };
        // ARC costs nothing without ARC sets (no look-up): only a message
        // carrying ARC-Seal/ARC-Message-Signature fields is checked.
        let arc_step = async {
            match &parsed {
                Some(m)
                    if m.has_arc_errors
                        || !m.ams_headers.is_empty()
                        || !m.as_headers.is_empty()
                        || !m.aar_headers.is_empty() =>
                {
                    Some(
                        tokio::time::timeout(self.timeout, self.auth.verify_arc(m))
                            .await
                            .map_or(AuthResult::TempError, |out| auth_result(out.result())),
                    )
                }
                _ => None,
            }
        };
        let (spf, dkim, arc) = tokio::join!(spf_step, dkim_step, arc_step);
        let spf = spf.unwrap_or_else(|_| {
            timed_out = true;
            SpfOutput::new(from_domain.clone()).with_result(SpfResult::TempError)
        });
        let dkim: Vec<DkimOutput<'_>> = match dkim {
            Some(Ok(outputs)) => outputs,
            Some(Err(_)) => {
                timed_out = true;
                vec![DkimOutput::temp_err(mail_auth::Error::Dns(
                    mail_auth::DnsError::Resolver("timed out".into()),
                ))]
            }
            None => Vec::new(),
        };

        let mut dmarc_domain = None;
        let mut dmarc_policy = DmarcPolicy::Unspecified;
        let mut reject = None;
        let dmarc = match &parsed {
            None => "permerror",
            Some(m) => {
                let params = DmarcParameters::new(m, &dkim, &from_domain, &spf);
                match tokio::time::timeout(self.timeout, self.auth.verify_dmarc(params)).await {
                    Err(_) => "temperror",
                    Ok(out) => {
                        if !out.domain().is_empty() {
                            dmarc_domain = Some(out.domain().to_ascii_lowercase());
                        }
                        dmarc_policy = match out.policy() {
                            Policy::None => DmarcPolicy::None,
                            Policy::Quarantine => DmarcPolicy::Quarantine,
                            Policy::Reject => DmarcPolicy::Reject,
                            Policy::Unspecified => DmarcPolicy::Unspecified,
                        };
                        match out.result() {
                            DmarcResult::Fail(_) if timed_out => "temperror",
                            DmarcResult::Fail(_) => {
                                if self.dmarc_reject && out.policy() == Policy::Reject {
                                    reject = Some(Reply::with_code(
                                        550,
                                        5,
                                        7,
                                        1,
                                        format!(
                                            "Message rejected by the DMARC policy of {}",
                                            sanitize(out.domain()).unwrap_or("the sender")
                                        ),
                                    ));
                                }
                                "fail"
                            }
                            other => dmarc_word(&other),
                        }
                    }
                }
            }
        };

        let spf_word = spf_word(spf.result());
        let dkim_words: Vec<&'static str> = if dkim.is_empty() {
            vec!["none"]
        } else {
            dkim.iter().map(|d| dkim_word(d.result())).collect()
        };

        // RFC 8601 §2.2: authserv-id; then one resinfo per method.
        let mut header = format!("Authentication-Results: {}", self.hostname);
        header.push_str(";\r\n\tspf=");
        header.push_str(spf_word);
        match (env.mail_from.rsplit_once('@'), sanitize(helo)) {
            (Some((_, d)), _) => {
                if let Some(d) = sanitize(d) {
                    header.push_str(" smtp.mailfrom=");
                    header.push_str(&d.to_ascii_lowercase());
                }
            }
            (None, Some(h)) => {
                header.push_str(" smtp.helo=");
                header.push_str(h);
            }
            (None, None) => {}
        }
        if dkim.is_empty() {
            header.push_str(";\r\n\tdkim=none");
        }
        for (d, word) in dkim.iter().zip(&dkim_words) {
            header.push_str(";\r\n\tdkim=");
            header.push_str(word);
            if let Some(sig) = d.signature() {
                push_signature(&mut header, sig);
            }
        }
        header.push_str(";\r\n\tdmarc=");
        header.push_str(dmarc);
        if let Some(d) = dmarc_domain.as_deref().and_then(sanitize) {
            header.push_str(" header.from=");
            header.push_str(d);
        }
        if let Some(arc) = arc {
            header.push_str(";\r\n\tarc=");
            header.push_str(arc.as_str());
        }
        header.push_str("\r\n");

        let spf_domain = match env.mail_from.rsplit_once('@') {
            Some((_, d)) => d,
            None => helo,
        };
        let results = AuthResults {
            spf: SpfCheck {
                result: word_result(spf_word),
                domain: spf_domain.to_ascii_lowercase(),
            },
            dkim: dkim
                .iter()
                .zip(&dkim_words)
                .map(|(d, word)| DkimCheck {
                    result: word_result(word),
                    domain: d
                        .signature()
                        .map(|s| s.d.to_ascii_lowercase())
                        .unwrap_or_default(),
                    selector: d.signature().map(|s| s.s.clone()).unwrap_or_default(),
                })
                .collect(),
            dmarc: DmarcCheck {
                result: word_result(dmarc),
                policy: dmarc_policy,
                domain: dmarc_domain.clone().unwrap_or_default(),
            },
            arc: arc.unwrap_or(AuthResult::None),
        };

        Verification {
            header,
            spf: spf_word,
            dkim: dkim_words,
            dmarc,
            dmarc_domain,
            reject,
            results,
        }
    }
}

fn push_signature(header: &mut String, sig: &Signature) {
    if let Some(d) = sanitize(&sig.d) {
        header.push_str(" header.d=");
        header.push_str(&d.to_ascii_lowercase());
    }
    if let Some(s) = sanitize(&sig.s) {
        header.push_str(" header.s=");
        header.push_str(s);
    }
}

/// `value` if it is a plain domain-ish token (letters, digits, `.`, `-`,
/// `_`) that cannot break the header's syntax; `None` otherwise.
fn sanitize(value: &str) -> Option<&str> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    ok.then_some(value)
}

/// The result of an RFC 8601 word this module wrote.
fn word_result(word: &str) -> AuthResult {
    match word {
        "pass" => AuthResult::Pass,
        "fail" => AuthResult::Fail,
        "softfail" => AuthResult::SoftFail,
        "neutral" => AuthResult::Neutral,
        "temperror" => AuthResult::TempError,
        "permerror" => AuthResult::PermError,
        _ => AuthResult::None,
    }
}

/// An ARC (or DKIM) result of `mail-auth`.
fn auth_result(r: &DkimResult) -> AuthResult {
    word_result(dkim_word(r))
}

fn spf_word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_word(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn dmarc_word(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

/// `message` without the `Authentication-Results:` fields whose
/// authserv-id is `hostname` (RFC 8601 §5); `None` if it has none.
pub fn strip_own_results(hostname: &str, message: &[u8]) -> Option<Vec<u8>> {
    const NAME: &[u8] = b"authentication-results:";
    // Each header field with its continuation lines: (start, end).
    let mut fields = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let rest = &message[pos..];
        if rest.starts_with(b"\r\n") {
            break;
        }
        let line_end = |from: usize| {
            message[from..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(message.len(), |i| from + i + 2)
        };
        let mut end = line_end(pos);
        while end < message.len() && matches!(message[end], b' ' | b'\t') {
            end = line_end(end);
        }
        fields.push((pos, end));
        pos = end;
    }
    let ours = |&(start, end): &(usize, usize)| {
        let field = &message[start..end];
        if field.len() < NAME.len() || !field[..NAME.len()].eq_ignore_ascii_case(NAME) {
            return false;
        }
        let value = String::from_utf8_lossy(&field[NAME.len()..]);
        let id = value
            .split(';')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        id.eq_ignore_ascii_case(hostname)
    };
    if !fields.iter().any(ours) {
        return None;
    }
    let mut out = Vec::with_capacity(message.len());
    let mut copied = 0;
    for f in fields.iter().filter(|f| ours(f)) {
        out.extend_from_slice(&message[copied..f.0]);
        copied = f.1;
    }
    out.extend_from_slice(&message[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};

    #[test]
    fn own_results_are_removed_others_kept() {
        let msg = b"Authentication-Results: mx.b.test;\r\n\tspf=pass\r\nAuthentication-Results: other.test; dkim=pass\r\nauthentication-results:MX.B.TEST; dmarc=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.b.test; body\r\n";
        let out = strip_own_results("mx.b.test", msg).unwrap();
        assert_eq!(
            out,
            b"Authentication-Results: other.test; dkim=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.b.test; body\r\n"
        );
        assert!(strip_own_results("mx.c.test", msg).is_none());
        assert!(strip_own_results("mx.b.test", b"Subject: x\r\n\r\n").is_none());
        // No panic on odd input.
        for bad in [&b""[..], b"\r\n", b"Authentication-Results", b"a\r\n b"] {
            let _ = strip_own_results("mx.b.test", bad);
        }
    }

    #[test]
    fn sanitize_keeps_only_safe_tokens() {
        assert_eq!(sanitize("a.test"), Some("a.test"));
        assert_eq!(sanitize("a;b"), None);
        assert_eq!(sanitize(""), None);
        assert_eq!(sanitize("a\r\nX-Evil: 1"), None);
    }

    /// A name server that never answers: every step runs out of time and
    /// the header says `temperror`; nothing is refused.
    #[tokio::test]
    async fn dns_that_never_answers_is_temperror_within_the_bound() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let mut ns = NameServerConfig::udp(addr.ip());
        for c in &mut ns.connections {
            c.port = addr.port();
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 1;
        let auth =
            MessageAuthenticator::new(ResolverConfig::from_name_servers(vec![ns]), opts).unwrap();
        let mut v = Verifier::new(auth, "mx.b.test");
        v.timeout = Duration::from_millis(300);
        let msg = b"From: <x@a.test>\r\nDKIM-Signature: v=1; a=rsa-sha256; d=a.test; s=s1; c=relaxed/relaxed; h=from; bh=AAAA; b=AAAA\r\nSubject: t\r\n\r\nbody\r\n";
        let started = std::time::Instant::now();
        let r = v
            .verify(
                SpfIdentity {
                    client: "127.0.0.1".parse().unwrap(),
                    helo: "client.a.test",
                    mail_from: "x@a.test",
                },
                msg,
            )
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(r.spf, "temperror", "{}", r.header);
        assert_eq!(r.dmarc, "temperror", "{}", r.header);
        assert!(r.reject.is_none());
        assert!(
            r.header.starts_with(
                "Authentication-Results: mx.b.test;\r\n\tspf=temperror smtp.mailfrom=a.test;"
            ),
            "{}",
            r.header
        );
        assert!(r.header.ends_with("\r\n") && r.header.contains("dmarc=temperror"));
        drop(silent);
    }

    /// A verifier asking the in-process test DNS server.
    fn verifier_on(dns: &mailgate_relay::testing::dns::TestDnsServer) -> Verifier {
        let addr = dns.addr();
        let mut ns = NameServerConfig::udp(addr.ip());
        for c in &mut ns.connections {
            c.port = addr.port();
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 1;
        let auth =
            MessageAuthenticator::new(ResolverConfig::from_name_servers(vec![ns]), opts).unwrap();
        Verifier::new(auth, "mx.b.test")
    }

    fn ed25519_key(
        dns: &mailgate_relay::testing::dns::TestDnsServer,
        domain: &str,
        selector: &str,
    ) -> mail_auth::common::crypto::Ed25519Key {
        use base64::Engine;
        use mail_auth::common::crypto::Ed25519Key;
        let key = Ed25519Key::from_pkcs8_der(&Ed25519Key::generate_pkcs8().unwrap()).unwrap();
        let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
        dns.add_txt(
            &format!("{selector}._domainkey.{domain}"),
            &format!("v=DKIM1; k=ed25519; p={public}"),
        );
        key
    }

    /// A message from a.test signed by a.test, then ARC-sealed by a
    /// forwarder (fwd.test): every method passes, `arc=pass` is in the
    /// header and in the results; without the ARC set there is no `arc=`;
    /// a header changed after sealing breaks the chain.
    #[tokio::test]
    async fn spf_dkim_dmarc_and_arc_results_as_header_and_data() {
        use mail_auth::arc::ArcSealer;
        use mail_auth::common::headers::HeaderWriter;
        use mail_auth::dkim::DkimSigner;
        use mail_auth::AuthenticationResults;

        let dns = mailgate_relay::testing::dns::TestDnsServer::start()
            .await
            .unwrap();
        dns.add_txt("a.test", "v=spf1 ip4:127.0.0.1 -all");
        dns.add_txt("_dmarc.a.test", "v=DMARC1; p=reject");
        let a_key = ed25519_key(&dns, "a.test", "s1");
        let fwd_key = ed25519_key(&dns, "fwd.test", "arc1");
        let v = verifier_on(&dns);

        let msg =
            "From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: hello\r\n\r\nA body.\r\n";
        let signed = DkimSigner::from_key(a_key)
            .domain("a.test")
            .selector("s1")
            .headers(["From", "To", "Subject"])
            .sign(msg.as_bytes())
            .unwrap()
            .to_header()
            + msg;
        let parsed = AuthenticatedMessage::parse(signed.as_bytes()).unwrap();
        let dkim = v.auth.verify_dkim(&parsed).await;
        let arc = v.auth.verify_arc(&parsed).await;
        let results = AuthenticationResults::new("fwd.test").with_dkim_results(&dkim, "a.test");
        let set = ArcSealer::from_key(fwd_key)
            .domain("fwd.test")
            .selector("arc1")
            .headers(["From", "To", "Subject", "DKIM-Signature"])
            .seal(&parsed, &results, &arc)
            .unwrap();
        let sealed = format!("{}{}{}", set.to_header(), results.to_header(), signed);

        let env = SpfIdentity {
            client: "127.0.0.1".parse().unwrap(),
            helo: "mail.a.test",
            mail_from: "alice@a.test",
        };
        let r = v.verify(env, sealed.as_bytes()).await;
        assert!(
            r.header.contains("spf=pass smtp.mailfrom=a.test"),
            "{}",
            r.header
        );
        assert!(
            r.header.contains("dkim=pass header.d=a.test header.s=s1"),
            "{}",
            r.header
        );
        assert!(
            r.header.contains("dmarc=pass header.from=a.test"),
            "{}",
            r.header
        );
        assert!(r.header.ends_with(";\r\n\tarc=pass\r\n"), "{}", r.header);
        assert!(r.reject.is_none());
        let data = &r.results;
        assert_eq!(
            data.spf,
            SpfCheck {
                result: AuthResult::Pass,
                domain: "a.test".into()
            }
        );
        assert_eq!(
            data.dkim,
            vec![DkimCheck {
                result: AuthResult::Pass,
                domain: "a.test".into(),
                selector: "s1".into()
            }]
        );
        assert_eq!(
            data.dmarc,
            DmarcCheck {
                result: AuthResult::Pass,
                policy: DmarcPolicy::Reject,
                domain: "a.test".into()
            }
        );
        assert_eq!(data.arc, AuthResult::Pass);

        // No ARC set: no `arc=` and `none` in the data.
        let r = v.verify(env, signed.as_bytes()).await;
        assert!(!r.header.contains("\tarc="), "{}", r.header);
        assert_eq!(r.results.arc, AuthResult::None);
        assert_eq!(r.results.dkim[0].result, AuthResult::Pass);

        // A sealed header changed after sealing: the chain does not pass
        // (and neither does the DKIM signature over it).
        let tampered = sealed.replace("Subject: hello", "Subject: hellO");
        let r = v.verify(env, tampered.as_bytes()).await;
        assert_ne!(r.results.arc, AuthResult::Pass, "{}", r.header);
        assert_ne!(r.results.arc, AuthResult::None, "{}", r.header);
        assert!(
            r.header.contains(&format!("arc={}", r.results.arc)),
            "{}",
            r.header
        );
        assert_eq!(r.results.dkim[0].result, AuthResult::Fail, "{}", r.header);

        // An SPF failure for another client and a DMARC failure under
        // p=reject: refused, and the data says why.
        let r = v
            .verify(
                SpfIdentity {
                    client: "192.0.2.9".parse().unwrap(),
                    ..env
                },
                msg.as_bytes(),
            )
            .await;
        assert_eq!(r.results.spf.result, AuthResult::Fail, "{}", r.header);
        assert!(r.results.dkim.is_empty());
        assert_eq!(r.results.dmarc.result, AuthResult::Fail);
        assert_eq!(r.results.dmarc.policy, DmarcPolicy::Reject);
        assert!(r.reject.is_some());
    }
}
