//! The registry's output, and the endpoint over a real socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// The value of the sample `name{labels}` (labels as the text format
/// writes them), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn build_info_and_prometheus_names() {
    let text = encode();
    let series = format!(
        "mailgate_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &series), Some(1.0), "{text}");
    // Counters end in _total, in the Prometheus (not OpenMetrics) format.
    assert!(
        text.contains("# TYPE mailgate_store_commit_failures_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
}

#[test]
fn sessions_count_and_the_guard_gives_back() {
    let active = "mailgate_sessions_active{protocol=\"imap\",listener=\"imaps\"}";
    let total = "mailgate_sessions_total{protocol=\"imap\",listener=\"imaps\"}";
    let before = sample(&encode(), total).unwrap_or(0.0);
    let guard = session_started(Listener::Imaps);
    let during = encode();
    assert_eq!(sample(&during, total), Some(before + 1.0), "{during}");
    assert!(sample(&during, active).unwrap() >= 1.0);
    drop(guard);
    assert_eq!(sample(&encode(), total), Some(before + 1.0));
}

#[test]
fn labels_come_from_enums() {
    smtp_message(
        Listener::Submission,
        MessageOutcome::Rejected(RejectReason::Policy),
    );
    auth_attempt(
        Some(Protocol::Pop3),
        Mechanism::UserPass,
        AuthResult::Failure,
    );
    plugin_call(
        "10-filter",
        "data",
        PluginResult::FuelExhausted,
        Duration::from_millis(3),
    );
    queue(QueueSnapshot {
        new: 2,
        deferred: 1,
        held: 0,
        oldest_age_seconds: 4000,
    });
    let text = encode();
    for series in [
        "mailgate_smtp_messages_total{listener=\"submission\",outcome=\"rejected\",reason=\"policy\"}",
        "mailgate_auth_attempts_total{protocol=\"pop3\",mechanism=\"user_pass\",result=\"failure\"}",
        "mailgate_plugin_calls_total{plugin=\"10-filter\",hook=\"data\",result=\"fuel_exhausted\"}",
        "mailgate_plugin_call_duration_seconds_count{plugin=\"10-filter\",hook=\"data\"}",
    ] {
        assert!(sample(&text, series).unwrap() >= 1.0, "{series} in {text}");
    }
    assert_eq!(
        sample(&text, "mailgate_queue_messages{state=\"new\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "mailgate_queue_oldest_age_seconds"),
        Some(4000.0)
    );
}

#[test]
fn every_metric_is_documented() {
    let docs = include_str!("../../../docs/monitoring.md");
    // A family shows once it has a series: touch each one.
    drop(session_started(Listener::Lmtp));
    connection_refused(Listener::Smtp, ConnectionLimit::MaxConnections);
    tls_handshake(Protocol::Smtp, true);
    smtp_message(Listener::Smtp, MessageOutcome::Accepted);
    recipients(RecipientDisposition::Queued, 0);
    delivery_latency(Duration::ZERO);
    queue(QueueSnapshot::default());
    relay_attempt(RelayResult::Deferred);
    dsn_sent(DsnKind::Delay);
    auth_attempt(None, Mechanism::Unknown, AuthResult::Blocked);
    plugin_call("p", "connect", PluginResult::Ok, Duration::ZERO);
    store_commit(Duration::ZERO, 1, true);
    bytes_received(Listener::Lmtp, 0);
    bytes_sent(Listener::Lmtp, 0);
    let text = encode();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let name = rest.split(' ').next().unwrap();
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} is not in docs/monitoring.md"
        );
    }
}

#[test]
fn listener_keys_round_trip() {
    for l in Listener::ALL {
        assert_eq!(Listener::from_key(l.as_str()), Some(l));
    }
    assert_eq!(Listener::from_key("metrics"), None);
}

struct FakeProbe {
    ready: AtomicBool,
}

#[async_trait::async_trait]
impl http::Probe for FakeProbe {
    async fn ready(&self) -> Result<(), Vec<String>> {
        if self.ready.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(vec!["the store refuses writes: disk full".into()])
        }
    }
    async fn refresh(&self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_answers_and_healthcheck_follows_readiness() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let probe = Arc::new(FakeProbe {
        ready: AtomicBool::new(true),
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(listener, probe.clone(), stopped));
    let wait = Duration::from_secs(5);
    assert_eq!(client::check_ready(address, wait).await.unwrap(), "ready");
    probe.ready.store(false, Ordering::SeqCst);
    match client::check_ready(address, wait).await {
        Err(client::CheckError::NotReady { status, body }) => {
            assert_eq!(status, hyper::StatusCode::SERVICE_UNAVAILABLE);
            assert!(body.contains("disk full"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    stop.send(true).unwrap();
    server.await.unwrap();
    assert!(matches!(
        client::check_ready(address, wait).await,
        Err(client::CheckError::Connect { .. })
    ));
}

#[test]
fn unspecified_addresses_are_asked_on_loopback() {
    let a = client::local_address("0.0.0.0:9925".parse().unwrap());
    assert_eq!(a.to_string(), "127.0.0.1:9925");
    let a = client::local_address("[::]:9925".parse().unwrap());
    assert_eq!(a.to_string(), "[::1]:9925");
    let a = client::local_address("127.0.0.2:1".parse().unwrap());
    assert_eq!(a.to_string(), "127.0.0.2:1");
}
