//! The MTA-STS policy fetch over real HTTPS (an in-process rustls server
//! with a certificate for `mta-sts.b.test`) and the TXT lookup through
//! hickory and the in-process DNS server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::resolver;
use mailgate_relay::client::tls::{CertificateDer, TlsClients};
use mailgate_relay::mta_sts::{HttpsFetcher, MtaSts, PolicyFetcher};
use mailgate_relay::testing::peer::self_signed_tls;
use mailgate_relay::testing::TestDnsServer;
use mailgate_relay::{Dns, HickoryDns, ManualClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `response` (raw HTTP) once per connection over TLS; returns the
/// port and the certificate.
async fn https_server(
    names: &[&str],
    response: Vec<u8>,
) -> (u16, rustls::pki_types::CertificateDer<'static>) {
    let (config, cert) = self_signed_tls(names);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, response) = (acceptor.clone(), response.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(&response).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, cert)
}

fn ok_response(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx.b.test\r\nmax_age: 600\r\n";

/// The DNS server with `mta-sts.b.test` at 127.0.0.1, and a fetcher
/// through it trusting `roots` that connects to `port`.
async fn fetcher_to(
    port: u16,
    roots: &[CertificateDer<'static>],
    timeout: Duration,
) -> (HttpsFetcher, Arc<HickoryDns>, TestDnsServer) {
    let dns = TestDnsServer::start().await.unwrap();
    dns.add_ip("mta-sts.b.test", "127.0.0.1".parse().unwrap());
    let resolver = Arc::new(resolver(&dns));
    let tls = TlsClients::new(roots, false).unwrap();
    let fetcher = HttpsFetcher::new(resolver.clone(), tls.verified.clone(), port, timeout);
    (fetcher, resolver, dns)
}

/// A fetcher for b.test's policy served as `response` over HTTPS with a
/// certificate for `cert_names`, trusted or not.
async fn fetcher_for(
    response: Vec<u8>,
    cert_names: &[&str],
    trust: bool,
) -> (HttpsFetcher, Arc<HickoryDns>, TestDnsServer) {
    let (port, cert) = https_server(cert_names, response).await;
    let roots = if trust { vec![cert] } else { Vec::new() };
    let (fetcher, resolver, dns) = fetcher_to(port, &roots, Duration::from_secs(5)).await;
    dns.add_txt("_mta-sts.b.test", "v=STSv1; id=abc123;");
    (fetcher, resolver, dns)
}

/// The error fetching b.test's policy served as `response` by a trusted
/// `mta-sts.b.test`.
async fn trusted_fetch_error(response: Vec<u8>) -> String {
    let (fetcher, _r, _dns) = fetcher_for(response, &["mta-sts.b.test"], true).await;
    fetcher.fetch("b.test").await.unwrap_err()
}

#[tokio::test]
async fn fetches_a_policy_with_a_verified_certificate() {
    let (fetcher, resolver, _dns) = fetcher_for(
        ok_response("text/plain; charset=utf-8", POLICY),
        &["mta-sts.b.test"],
        true,
    )
    .await;
    assert_eq!(fetcher.fetch("b.test").await.unwrap(), POLICY);
    // And through the cache, with the TXT record from real DNS.
    let sts = MtaSts::new(
        resolver.clone(),
        Arc::new(fetcher),
        Arc::new(ManualClock::new(1_000)),
    );
    let p = sts.policy("b.test").await.unwrap();
    assert!(p.allows("mx.b.test") && !p.allows("mx.c.test"));
    assert_eq!(
        resolver.txt("_mta-sts.b.test").await.unwrap(),
        vec!["v=STSv1; id=abc123;".to_string()]
    );
}

#[tokio::test]
async fn refuses_untrusted_or_misnamed_certificates() {
    let (fetcher, _r, _dns) = fetcher_for(
        ok_response("text/plain", POLICY),
        &["mta-sts.b.test"],
        false,
    )
    .await;
    let e = fetcher.fetch("b.test").await.unwrap_err();
    assert!(e.contains("TLS"), "{e}");
    let (fetcher, _r, _dns) =
        fetcher_for(ok_response("text/plain", POLICY), &["www.b.test"], true).await;
    let e = fetcher.fetch("b.test").await.unwrap_err();
    assert!(e.contains("TLS"), "{e}");
}

#[tokio::test]
async fn refuses_redirects_other_types_and_huge_bodies() {
    let redirect = b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://evil.test/\r\nContent-Length: 0\r\n\r\n".to_vec();
    let e = trusted_fetch_error(redirect).await;
    assert!(e.contains("301"), "{e}");

    let e = trusted_fetch_error(ok_response("text/html", POLICY)).await;
    assert!(e.contains("text/plain"), "{e}");

    let huge = "mx: a.test\n".repeat(10_000); // 110 000 bytes
    let e = trusted_fetch_error(ok_response("text/plain", &huge)).await;
    assert!(e.contains("reading the policy"), "{e}");

    // A body without Content-Length, read until the close, still limited.
    let mut chunked =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n".to_vec();
    chunked.extend_from_slice(huge.as_bytes());
    trusted_fetch_error(chunked).await;
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp); // accepts, never answers the TLS hello
        }
    });
    let (fetcher, _r, _dns) = fetcher_to(port, &[], Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let e = fetcher.fetch("b.test").await.unwrap_err();
    assert!(e.contains("timed out"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
