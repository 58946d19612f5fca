//! Per-hook call cost, instantiation included: loads the trivial
//! `template` plugin (build it first with `scripts/build-plugins`) and
//! calls its `rcpt-to` hook through the chain many times, sequentially and
//! from concurrent tasks. Prints µs per call. Not a timed test.
//!
//! `cargo run --release -p mailgate-policy --example hook_cost [TEMPLATE.wasm [FILTER.wasm]]`
//!
//! Measures both a fresh instance per call (`[plugins] reuse_instances =
//! false`: instantiation and the slot reset included) and warm instances
//! (the default).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use mailgate_policy::{
    Envelope, MemoryKv, PluginsConfig, PolicyConfig, PolicyManager, RecipientInfo, SessionInfo,
    StaticResolver, Verdict,
};

#[tokio::main]
async fn main() {
    let wasm = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../plugins/target/wasm32-wasip2/release/template.wasm")
        });
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(&wasm, dir.path().join("template.wasm"))
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-plugins)", wasm.display()));
    // Parts of the per-call cost.
    let n = 100_000;
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(wasmtime_wasi::WasiCtxBuilder::new().build());
    }
    println!(
        "part: empty WASI context: {:.2} µs",
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let started = Instant::now();
    for _ in 0..n {
        let _ = std::hint::black_box(
            tokio::time::timeout(std::time::Duration::from_millis(100), async { 1 }).await,
        );
    }
    println!(
        "part: tokio timeout: {:.2} µs",
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    );

    let session = bench_session();
    for reuse in [false, true] {
        template_cost(&wasm, dir.path(), reuse).await;
    }

    if let Some(filter) = std::env::args().nth(2).map(PathBuf::from) {
        data_cost(&filter, &session).await;
    }
}

/// The `data` hook of the content filter (second argument, with the
/// `config` grant and no config: its built-in header and body rules) on a
/// 10 KB plain-text message like mailgate-bench's.
async fn data_cost(wasm: &std::path::Path, session: &SessionInfo) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(wasm, dir.path().join("content_filter.wasm")).expect("filter component");
    let mut settings: mailgate_policy::PluginSettings =
        toml::from_str("name = \"content_filter\"\ngrants = [\"config\"]").expect("settings");
    settings.enabled = true;
    let manager = manager(
        PluginsConfig::new(dir.path()),
        vec![settings],
        "content_filter",
    )
    .await;
    let chain = manager.snapshot();
    let mut raw = String::from(
        "Received: from bench by mailgate.test\r\nFrom: <bench-sender@client.test>\r\n\
         To: <a@example.org>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n\
         Subject: mailgate-bench message 0000000001\r\nMessage-ID: <r.1@client.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    let mut line = 0;
    while raw.len() < 10_000 {
        raw.push_str(&format!(
            "0000000001 {line:06} abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-=+_\r\n"
        ));
        line += 1;
    }
    let raw = Arc::new(raw.into_bytes());
    let envelope = Envelope {
        mail_from: "bench-sender@client.test".into(),
        recipients: vec!["a@example.org".into()],
        ..Default::default()
    };
    let once = || {
        let mut view = mailgate_policy::MessageView::shared(raw.clone());
        let mut envelope = envelope.clone();
        let chain = chain.clone();
        let session = session.clone();
        async move {
            let d = chain.data(&session, &mut envelope, &mut view).await;
            assert_eq!(d.verdict, Verdict::Accept);
            assert!(view.is_edited());
        }
    };
    for _ in 0..500 {
        once().await;
    }
    let n = 5_000;
    let started = Instant::now();
    for _ in 0..n {
        once().await;
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "content filter data hook, {} byte message: {per:.1} µs per call (warm instance + data), {n} calls",
        raw.len()
    );
}

/// The session every call of this program sees.
fn bench_session() -> SessionInfo {
    SessionInfo {
        client_ip: "192.0.2.1".parse().unwrap(),
        client_port: 25,
        reverse_name: None,
        tls: false,
        helo: Some("bench".into()),
        auth_user: None,
        listener: "mx".into(),
        session_id: "bench".into(),
    }
}

/// The `rcpt-to` hook of the template, sequentially and from concurrent
/// tasks, with warm instances or a fresh instance per call.
async fn template_cost(wasm: &std::path::Path, dir: &std::path::Path, reuse: bool) {
    let mut plugins = PluginsConfig::new(dir);
    plugins.max_instances = 64;
    plugins.reuse_instances = reuse;
    let manager = manager(plugins, vec![], "template").await;
    println!(
        "component: {} ({} bytes), pooling allocator: {}, {}",
        wasm.display(),
        std::fs::metadata(wasm).map(|m| m.len()).unwrap_or(0),
        manager.runtime().is_pooling(),
        if reuse {
            "warm instances (the default)"
        } else {
            "a fresh instance per call (reuse_instances = false)"
        }
    );
    let chain = manager.snapshot();
    let session = bench_session();
    let rcpt = RecipientInfo {
        address: "a@example.org".into(),
        params: vec![],
        account: Some("a@example.org".into()),
        tag: None,
    };

    // Warm up.
    for _ in 0..2_000 {
        chain
            .rcpt_to(&session, &mut Envelope::default(), &rcpt)
            .await;
    }
    let n = 20_000;
    let started = Instant::now();
    for _ in 0..n {
        let d = chain
            .rcpt_to(&session, &mut Envelope::default(), &rcpt)
            .await;
        assert_eq!(d.verdict, Verdict::Accept);
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let what = if reuse {
        "warm instance + rcpt-to"
    } else {
        "fresh instance + rcpt-to + reset"
    };
    println!("sequential: {per:.1} µs per hook call ({what}), {n} calls");

    let tasks = 8;
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (chain, session, rcpt) = (chain.clone(), session.clone(), rcpt.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..n / tasks {
                chain
                    .rcpt_to(&session, &mut Envelope::default(), &rcpt)
                    .await;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "concurrent ({tasks} tasks, {} worker threads): {:.1} µs per call wall, {:.0} calls/s",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        elapsed * 1e6 / n as f64,
        n as f64 / elapsed
    );
    let s = &manager.status().plugins[0].stats;
    println!(
        "stats: calls {} errors {} p50 <= {} µs p90 <= {} µs p99 <= {} µs",
        s.calls, s.errors, s.p50_us, s.p90_us, s.p99_us
    );
}

/// A policy manager over `plugins` that must load exactly `expect`.
async fn manager(
    plugins: PluginsConfig,
    plugin: Vec<mailgate_policy::PluginSettings>,
    expect: &str,
) -> Arc<PolicyManager> {
    let (manager, report) = PolicyManager::with_parts(
        PolicyConfig { plugins, plugin },
        None,
        Arc::new(MemoryKv::new()),
        Arc::new(StaticResolver::default()),
    )
    .await
    .expect("runtime");
    assert_eq!(report.loaded, vec![expect], "{report:?}");
    manager
}
