//! Loads the compiled example and hostile plugins (built by
//! `scripts/build-plugins`, which this harness runs once) and calls their
//! hooks through the chain.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mailgate_policy::{
    check_file, Envelope, FailureMode, Grant, LoadError, MemoryKv, MessageView, PluginSettings,
    PluginsConfig, PolicyConfig, PolicyManager, RecipientInfo, RecordType, ReloadReport, Reply,
    Resolver, RouteAction, SessionInfo, StaticResolver, Verdict,
};

/// Builds the plugins once per test binary; returns the artifact directory.
fn artifacts() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let status = std::process::Command::new(root.join("scripts/build-plugins"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run scripts/build-plugins");
        assert!(status.success(), "scripts/build-plugins failed");
        root.join("plugins/target/wasm32-wasip2/release")
    })
}

fn artifact(name: &str) -> PathBuf {
    artifacts().join(format!("{}.wasm", name.replace('-', "_")))
}

fn settings(name: &str, grants: &[Grant], config: serde_json::Value) -> PluginSettings {
    PluginSettings {
        name: name.into(),
        enabled: true,
        grants: grants.to_vec(),
        config: Some(config),
        ..PluginSettings::default()
    }
}

struct Setup {
    manager: Arc<PolicyManager>,
    report: ReloadReport,
    dir: tempfile::TempDir,
}

/// A manager over a fresh directory holding `files` (stem in the
/// directory, artifact name).
async fn setup(
    files: &[(&str, &str)],
    plugin: Vec<PluginSettings>,
    resolver: Arc<dyn Resolver>,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir(&plugins_dir).unwrap();
    for (stem, art) in files {
        std::fs::copy(artifact(art), plugins_dir.join(format!("{stem}.wasm"))).unwrap();
    }
    let mut plugins = PluginsConfig::new(&plugins_dir);
    plugins.max_instances = 32;
    plugins.poll_ms = 100;
    let cache = dir.path().join("cache");
    start(dir, PolicyConfig { plugins, plugin }, Some(cache), resolver).await
}

/// A manager for `config`, owning `dir`.
async fn start(
    dir: tempfile::TempDir,
    config: PolicyConfig,
    cache: Option<PathBuf>,
    resolver: Arc<dyn Resolver>,
) -> Setup {
    let (manager, report) =
        PolicyManager::with_parts(config, cache, Arc::new(MemoryKv::new()), resolver)
            .await
            .unwrap();
    Setup {
        manager,
        report,
        dir,
    }
}

fn session() -> SessionInfo {
    SessionInfo {
        client_ip: "192.0.2.7".parse().unwrap(),
        client_port: 40000,
        reverse_name: None,
        tls: false,
        helo: Some("client.example".into()),
        auth_user: None,
        listener: "mx".into(),
        session_id: "t1".into(),
    }
}

fn envelope() -> Envelope {
    Envelope {
        mail_from: "sender@example.net".into(),
        mail_params: vec![],
        recipients: vec![],
    }
}

fn rcpt(address: &str, tag: Option<&str>) -> RecipientInfo {
    RecipientInfo {
        address: address.into(),
        params: vec![],
        account: Some(address.into()),
        tag: tag.map(str::to_string),
    }
}

const SPAM: &[u8] = b"From: x@example.net\r\nSubject: You have WON viagra\r\nX-Remove-Me: yes\r\n\r\nSend a wire transfer now.\r\n";
const HAM: &[u8] = b"From: x@example.net\r\nSubject: lunch\r\n\r\nSee you at noon.\r\n";

#[tokio::test]
async fn template_accepts_and_counts() {
    let s = setup(
        &[("template", "template")],
        vec![],
        Arc::new(StaticResolver::default()),
    )
    .await;
    assert_eq!(s.report.loaded, vec!["template"]);
    let chain = s.manager.snapshot();
    let d = chain
        .rcpt_to(&session(), &mut envelope(), &rcpt("a@example.org", None))
        .await;
    assert_eq!(d.verdict, Verdict::Accept);
    let status = s.manager.status();
    assert_eq!(status.plugins[0].hooks, vec!["rcpt-to"]);
    assert_eq!(status.plugins[0].plugin_name, "template");
    // describe + self-test + on-mailbox-event.wants (the SDK exports the
    // interface) + one hook call
    assert_eq!(status.plugins[0].stats.calls, 4);
    assert_eq!(status.plugins[0].stats.errors, 0);
    // No capability: only WASI (served empty) and the always-served types.
    let imports = &status.plugins[0].imports;
    assert!(
        imports.iter().all(|i| i.starts_with("wasi:")
            || i == "mailgate:policy/types@0.1.4"
            || i == "mailgate:policy/message@0.1.4"),
        "{imports:?}"
    );
}

#[tokio::test]
async fn content_filter_scores_and_files_spam_and_the_chain_sees_edits() {
    let s = setup(
        &[("a-filter", "content-filter"), ("b-edits", "edits")],
        vec![
            settings(
                "a-filter",
                &[Grant::Config],
                serde_json::json!({"threshold": 5.0}),
            ),
            settings("b-edits", &[Grant::Log], serde_json::json!({})),
        ],
        Arc::new(StaticResolver::default()),
    )
    .await;
    assert!(s.report.refused.is_empty(), "{:?}", s.report.refused);
    let chain = s.manager.snapshot();

    let mut message = MessageView::new(SPAM);
    let mut env = envelope();
    let d = chain.data(&session(), &mut env, &mut message).await;
    assert_eq!(d.verdict, Verdict::Accept);
    assert_eq!(d.folder.as_deref(), Some("Junk"));
    // viagra 5 + "you have won" 4 + wire transfer 2.5
    assert_eq!(message.header("X-Spam-Score"), vec!["11.5"]);
    assert_eq!(message.header("X-Spam-Flag"), vec!["YES"]);
    // The second plugin saw the first one's header, and removed one.
    assert_eq!(message.header("X-Seen-Score"), vec!["11.5"]);
    assert!(message.header("X-Remove-Me").is_empty());
    let bytes = message.to_bytes();
    assert!(bytes.ends_with(b"\r\n\r\nSend a wire transfer now.\r\n"));

    let mut message = MessageView::new(HAM);
    let d = chain.data(&session(), &mut envelope(), &mut message).await;
    assert_eq!(d.folder, None);
    assert_eq!(message.header("X-Spam-Score"), vec!["0.0"]);
}

#[tokio::test]
async fn content_filter_rejects_over_the_reject_threshold() {
    let s = setup(
        &[("filter", "content-filter")],
        vec![settings(
            "filter",
            &[Grant::Config],
            serde_json::json!({"reject_threshold": 10.0}),
        )],
        Arc::new(StaticResolver::default()),
    )
    .await;
    let mut message = MessageView::new(SPAM);
    let d = s
        .manager
        .snapshot()
        .data(&session(), &mut envelope(), &mut message)
        .await;
    match d.verdict {
        Verdict::Reject(r) => assert_eq!((r.code, r.enhanced.as_str()), (550, "5.7.1")),
        other => panic!("{other:?}"),
    }
    assert_eq!(d.by.as_deref(), Some("filter"));
    assert!(
        message.header("X-Spam-Score").is_empty(),
        "edits of a reject are dropped"
    );
}

#[tokio::test]
async fn rcpt_reject_and_recipient_edits() {
    let s = setup(
        &[("edits", "edits")],
        vec![settings("edits", &[Grant::Log], serde_json::json!({}))],
        Arc::new(StaticResolver::default()),
    )
    .await;
    let chain = s.manager.snapshot();
    let mut env = envelope();
    let d = chain
        .rcpt_to(&session(), &mut env, &rcpt("blocked@example.org", None))
        .await;
    assert!(matches!(d.verdict, Verdict::Reject(ref r) if r.text == "blocked by edits"));
    let d = chain
        .rcpt_to(&session(), &mut env, &rcpt("expand@example.org", None))
        .await;
    assert_eq!(d.verdict, Verdict::Accept);
    assert_eq!(env.recipients, vec!["extra@example.org"]);
}

#[tokio::test]
async fn greylist_defers_then_accepts() {
    let s = setup(
        &[("greylist", "greylist")],
        vec![settings(
            "greylist",
            &[Grant::Kv, Grant::Clock, Grant::Config],
            serde_json::json!({"delay": 0}),
        )],
        Arc::new(StaticResolver::default()),
    )
    .await;
    assert!(s.report.refused.is_empty(), "{:?}", s.report.refused);
    let chain = s.manager.snapshot();
    let r = rcpt("a@example.org", None);
    let first = chain.rcpt_to(&session(), &mut envelope(), &r).await;
    match first.verdict {
        Verdict::Tempfail(reply) => {
            assert_eq!((reply.code, reply.enhanced.as_str()), (451, "4.7.1"))
        }
        other => panic!("{other:?}"),
    }
    let second = chain.rcpt_to(&session(), &mut envelope(), &r).await;
    assert_eq!(second.verdict, Verdict::Accept);
    // Another recipient is a new triplet.
    let other = chain
        .rcpt_to(&session(), &mut envelope(), &rcpt("b@example.org", None))
        .await;
    assert!(matches!(other.verdict, Verdict::Tempfail(_)));
}

#[tokio::test]
async fn a_capability_without_grant_is_refused() {
    let s = setup(
        &[("greylist", "greylist"), ("ungranted", "ungranted")],
        vec![settings("greylist", &[Grant::Kv], serde_json::json!({}))],
        Arc::new(StaticResolver::default()),
    )
    .await;
    let refused: Vec<_> = s
        .report
        .refused
        .iter()
        .map(|(n, e)| (n.as_str(), e.clone()))
        .collect();
    assert!(
        refused.contains(&("ungranted", LoadError::NotGranted(Grant::Dns))),
        "{refused:?}"
    );
    // greylist imports clock and config besides kv
    assert!(
        refused
            .iter()
            .any(|(n, e)| *n == "greylist" && matches!(e, LoadError::NotGranted(_))),
        "{refused:?}"
    );
    assert!(s.manager.snapshot().plugins().is_empty());
}

#[tokio::test]
async fn dnsbl_refuses_listed_clients() {
    let resolver =
        StaticResolver::default().with("7.2.0.192.bl.example", RecordType::A, &["127.0.0.2"]);
    let s = setup(
        &[("dnsbl", "dnsbl")],
        vec![settings(
            "dnsbl",
            &[Grant::Dns, Grant::Config],
            serde_json::json!({"zones": ["bl.example"]}),
        )],
        Arc::new(resolver),
    )
    .await;
    let chain = s.manager.snapshot();
    let d = chain.connect(&session()).await;
    match d.verdict {
        Verdict::Reject(r) => {
            assert_eq!(r.code, 554);
            assert!(r.text.contains("bl.example"), "{}", r.text);
        }
        other => panic!("{other:?}"),
    }
    let mut clean = session();
    clean.client_ip = "198.51.100.1".parse().unwrap();
    assert_eq!(chain.connect(&clean).await.verdict, Verdict::Accept);
}

#[tokio::test]
async fn router_files_by_tag_and_rules_and_forwarder_redirects() {
    let s = setup(
        &[("a-router", "router"), ("b-forwarder", "forwarder")],
        vec![
            settings(
                "a-router",
                &[Grant::Config],
                serde_json::json!({"tag_folders": {"news": "Newsletters"},
                                   "rules": [{"header": "List-Id", "contains": "rust", "folder": "Lists/Rust"}]}),
            ),
            settings(
                "b-forwarder",
                &[Grant::Config],
                serde_json::json!({"forward": {"sales@example.org": ["ann@example.net"]}}),
            ),
        ],
        Arc::new(StaticResolver::default()),
    )
    .await;
    assert!(s.report.refused.is_empty(), "{:?}", s.report.refused);
    let chain = s.manager.snapshot();
    let env = envelope();
    let ham = MessageView::new(HAM);
    let folder_of = |d: &mailgate_policy::RouteDecision| match &d.actions[..] {
        [RouteAction::Deliver(del)] => del.folder.clone(),
        other => panic!("{other:?}"),
    };
    let d = chain
        .route(
            &session(),
            &env,
            &rcpt("alice+news@example.org", Some("news")),
            &ham,
        )
        .await;
    assert_eq!(folder_of(&d).as_deref(), Some("Newsletters"));
    let d = chain
        .route(
            &session(),
            &env,
            &rcpt("alice+misc@example.org", Some("misc")),
            &ham,
        )
        .await;
    assert_eq!(folder_of(&d).as_deref(), Some("misc"));
    let d = chain
        .route(
            &session(),
            &env,
            &rcpt("alice+../x@example.org", Some("../x")),
            &ham,
        )
        .await;
    assert_eq!(folder_of(&d), None, "unsafe tags are not folders");
    let list = MessageView::new(&b"List-Id: <rust-users.example>\r\n\r\nhi\r\n"[..]);
    let d = chain
        .route(&session(), &env, &rcpt("alice@example.org", None), &list)
        .await;
    assert_eq!(folder_of(&d).as_deref(), Some("Lists/Rust"));
    let d = chain
        .route(&session(), &env, &rcpt("sales@example.org", None), &ham)
        .await;
    assert_eq!(
        d.actions,
        vec![RouteAction::Forward(vec!["ann@example.net".into()])]
    );
}

async fn hostile(art: &str, failure: FailureMode) -> Setup {
    let mut s = settings(art, &[], serde_json::json!({}));
    s.failure = Some(failure);
    s.config = None;
    setup(&[(art, art)], vec![s], Arc::new(StaticResolver::default())).await
}

#[tokio::test]
async fn endless_loop_times_out_fail_closed() {
    let s = hostile("endless-loop", FailureMode::FailClosed).await;
    assert!(s.report.refused.is_empty(), "{:?}", s.report.refused);
    let started = Instant::now();
    let d = s
        .manager
        .snapshot()
        .rcpt_to(&session(), &mut envelope(), &rcpt("a@example.org", None))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(d.verdict, Verdict::Tempfail(Reply::policy_failure()));
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_millis(500),
        "{elapsed:?}"
    );
    let st = &s.manager.status().plugins[0].stats;
    assert_eq!((st.errors, st.timeouts), (1, 1));
}

#[tokio::test]
async fn endless_loop_fail_open_accepts() {
    let s = hostile("endless-loop", FailureMode::FailOpen).await;
    let mut message = MessageView::new(HAM);
    let d = s
        .manager
        .snapshot()
        .data(&session(), &mut envelope(), &mut message)
        .await;
    assert_eq!(d.verdict, Verdict::Accept);
}

/// On a single-threaded runtime, a spinning plugin must still let other
/// tasks (other sessions) run: it yields at every epoch tick.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_plugin_does_not_block_other_sessions() {
    let s = setup(
        &[("a-loop", "endless-loop"), ("template", "template")],
        vec![],
        Arc::new(StaticResolver::default()),
    )
    .await;
    let chain = s.manager.snapshot();
    let spinning = {
        let chain = chain.clone();
        tokio::spawn(async move {
            chain
                .rcpt_to(&session(), &mut envelope(), &rcpt("a@example.org", None))
                .await
        })
    };
    // Let the spinner start, then measure how long a tick of another task takes.
    tokio::task::yield_now().await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let other = started.elapsed();
    assert!(
        other < Duration::from_millis(50),
        "other task waited {other:?}"
    );
    let d = spinning.await.unwrap();
    assert_eq!(d.by.as_deref(), Some("a-loop"));
}

#[tokio::test]
async fn memory_bomb_hits_the_limit() {
    let mut s = settings("memory-bomb", &[], serde_json::json!({}));
    s.memory_mb = Some(16);
    s.timeout_ms = Some(2000);
    let s = setup(
        &[("memory-bomb", "memory-bomb")],
        vec![s],
        Arc::new(StaticResolver::default()),
    )
    .await;
    let started = Instant::now();
    let d = s
        .manager
        .snapshot()
        .rcpt_to(&session(), &mut envelope(), &rcpt("a@example.org", None))
        .await;
    assert_eq!(d.verdict, Verdict::Tempfail(Reply::policy_failure()));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "failed by limit, not by time-out"
    );
    let st = &s.manager.status().plugins[0].stats;
    assert_eq!((st.errors, st.timeouts), (1, 0));
}

#[tokio::test]
async fn trap_applies_the_failure_mode() {
    let s = hostile("trap", FailureMode::FailOpen).await;
    let chain = s.manager.snapshot();
    for _ in 0..3 {
        let d = chain
            .rcpt_to(&session(), &mut envelope(), &rcpt("a@example.org", None))
            .await;
        assert_eq!(d.verdict, Verdict::Accept);
    }
    assert_eq!(s.manager.status().plugins[0].stats.errors, 3);
}

#[tokio::test]
async fn huge_header_edit_is_refused() {
    let s = hostile("huge-header", FailureMode::FailClosed).await;
    let mut message = MessageView::new(HAM);
    let d = s
        .manager
        .snapshot()
        .data(&session(), &mut envelope(), &mut message)
        .await;
    assert_eq!(d.verdict, Verdict::Tempfail(Reply::policy_failure()));
    assert!(message.header("X-Huge").is_empty());
    assert!(!message.is_edited());
}

#[tokio::test]
async fn failing_self_test_is_refused() {
    let s = setup(
        &[("bad", "bad-self-test")],
        vec![],
        Arc::new(StaticResolver::default()),
    )
    .await;
    assert_eq!(
        s.report.refused,
        vec![(
            "bad".to_string(),
            LoadError::SelfTest("not configured".into())
        )]
    );
}

#[tokio::test]
async fn hot_reload_swaps_keeps_snapshots_and_refuses_bad_files() {
    let s = setup(
        &[("x", "template")],
        vec![settings("x", &[Grant::Config], serde_json::json!({}))],
        Arc::new(StaticResolver::default()),
    )
    .await;
    let before = s.manager.snapshot();
    assert_eq!(before.plugins()[0].plugin_name(), "template");
    let path = s.dir.path().join("plugins/x.wasm");
    let watcher = {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let handle = s
            .manager
            .spawn_watcher(Some(s.dir.path().join("status.json")), rx);
        (tx, handle)
    };

    // Replace the file: the watcher picks it up within two seconds.
    std::fs::copy(artifact("content-filter"), &path).unwrap();
    let swapped = wait_for(|| {
        s.manager
            .snapshot()
            .plugins()
            .first()
            .map(|p| p.plugin_name().to_string())
            == Some("content-filter".into())
    })
    .await;
    assert!(swapped, "watcher did not swap within 2 s");
    // A session that took the old snapshot keeps the old plugin.
    assert_eq!(before.plugins()[0].plugin_name(), "template");
    // The watcher also writes the status file `mailgate plugin list` reads.
    let status_path = s.dir.path().join("status.json");
    let written = wait_for(|| {
        std::fs::read(&status_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<mailgate_policy::StatusFile>(&b).ok())
            .is_some_and(|st| {
                st.plugins
                    .first()
                    .is_some_and(|p| p.plugin_name == "content-filter")
            })
    })
    .await;
    assert!(written, "status file not written");

    // A broken file is refused; the previous version serves on.
    std::fs::write(&path, b"not a component").unwrap();
    let report = s.manager.reload().await;
    assert!(
        matches!(report.refused.as_slice(), [(n, LoadError::Compile(_))] if n == "x"),
        "{report:?}"
    );
    assert_eq!(
        s.manager.snapshot().plugins()[0].plugin_name(),
        "content-filter"
    );

    // Removing the file removes the plugin.
    std::fs::remove_file(&path).unwrap();
    let report = s.manager.reload().await;
    assert_eq!(report.removed, vec!["x"]);
    assert!(s.manager.snapshot().plugins().is_empty());
    watcher.0.send(true).unwrap();
    watcher.1.await.unwrap();
}

/// Polls `cond` until it holds. The deadline is generous because a reload
/// compiles the component (cranelift, in a debug build) and a loaded CI
/// machine took more than 2 s for that; the wait ends as soon as it holds.
async fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let s = setup(
        &[("template", "template")],
        vec![],
        Arc::new(StaticResolver::default()),
    )
    .await;
    let cache = s.dir.path().join("cache");
    let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(entries.len(), 1);
    // A second runtime on the same cache loads without compiling (fast).
    let mut plugins = PluginsConfig::new(s.dir.path().join("plugins"));
    plugins.max_instances = 4;
    let started = Instant::now();
    let (m2, report) = PolicyManager::with_parts(
        PolicyConfig {
            plugins,
            plugin: vec![],
        },
        Some(cache.clone()),
        Arc::new(MemoryKv::new()),
        Arc::new(StaticResolver::default()),
    )
    .await
    .unwrap();
    assert_eq!(report.loaded, vec!["template"]);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    let d = m2
        .snapshot()
        .rcpt_to(&session(), &mut envelope(), &rcpt("a@example.org", None))
        .await;
    assert_eq!(d.verdict, Verdict::Accept);
    eprintln!("load from cache: {:?}", started.elapsed());
}

#[tokio::test]
async fn check_reports_hooks_and_imports() {
    let report = check_file(
        &artifact("greylist"),
        &settings(
            "greylist",
            &[Grant::Kv, Grant::Clock, Grant::Config],
            serde_json::json!({}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(report.hooks, vec!["rcpt-to"]);
    for i in [
        "mailgate:policy/kv@0.1.4",
        "mailgate:policy/clock@0.1.4",
        "mailgate:policy/config@0.1.4",
    ] {
        assert!(
            report.imports.iter().any(|x| x == i),
            "{i} in {:?}",
            report.imports
        );
    }
    let refused = check_file(
        &artifact("greylist"),
        &settings("greylist", &[], serde_json::json!({})),
    )
    .await;
    assert!(matches!(refused, Err(LoadError::NotGranted(_))));
}

/// A manager over a directory holding the one component file `path`.
async fn setup_file(path: &Path, stem: &str, grants: &[Grant]) -> Setup {
    setup_file_with(path, stem, grants, true).await
}

/// [`setup_file`] with `[plugins] reuse_instances` set.
async fn setup_file_with(path: &Path, stem: &str, grants: &[Grant], reuse: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir(&plugins_dir).unwrap();
    std::fs::copy(path, plugins_dir.join(format!("{stem}.wasm"))).unwrap();
    let mut plugins = PluginsConfig::new(&plugins_dir);
    plugins.max_instances = 8;
    plugins.reuse_instances = reuse;
    let config = PolicyConfig {
        plugins,
        plugin: vec![settings(stem, grants, serde_json::json!({}))],
    };
    start(dir, config, None, Arc::new(StaticResolver::default())).await
}

/// Loads the probe compiled against WIT `wit` (a fixture in
/// `tests/fixtures/compat`), checks that it is the one plugin, imports that
/// version's `message` interface and that its `data` hook runs (it files
/// `[folder:Old]` in `Old` and adds one `X-Probe`). Returns the setup (which
/// must live as long as the chain), the chain and the message view.
async fn old_probe_runs(wit: &str) -> (Setup, Arc<mailgate_policy::Chain>, MessageView) {
    let old = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/compat/probe-wit-{wit}.wasm"));
    let s = setup_file(&old, "old-probe", &[Grant::Config]).await;
    assert!(s.report.refused.is_empty(), "{:?}", s.report.refused);
    let chain = s.manager.snapshot();
    let [plugin] = chain.plugins() else {
        panic!("one plugin expected");
    };
    let import = format!("mailgate:policy/message@{wit}");
    assert!(plugin.imports().contains(&import), "{:?}", plugin.imports());
    let mut view = MessageView::new(&b"Subject: [folder:Old]\r\n\r\nbody\r\n"[..]);
    let d = chain.data(&session(), &mut envelope(), &mut view).await;
    assert_eq!(d.verdict, Verdict::Accept);
    assert_eq!(d.folder.as_deref(), Some("Old"));
    assert_eq!(view.header("X-Probe").len(), 1);
    (s, chain, view)
}

/// `message.auth-results` (WIT 0.1.1): the probe writes what it read into
/// `X-Probe-Auth`, which goes below the host's trace fields; without
/// results it reads `none`.
#[tokio::test]
async fn data_hook_reads_the_auth_results() {
    use mailgate_policy::{AuthResult, AuthResults, DkimCheck, DmarcCheck, DmarcPolicy, SpfCheck};
    let s = setup_file(&artifact("probe"), "probe", &[Grant::Config]).await;
    assert!(s.report.refused.is_empty(), "{:?}", s.report.refused);
    let chain = s.manager.snapshot();
    let raw = b"Received: from x by mx.b.test\r\nAuthentication-Results: mx.b.test; spf=pass\r\nSubject: s\r\n\r\nbody\r\n";
    let results = AuthResults {
        spf: SpfCheck {
            result: AuthResult::Pass,
            domain: "a.test".into(),
        },
        dkim: vec![
            DkimCheck {
                result: AuthResult::Pass,
                domain: "a.test".into(),
                selector: "s1".into(),
            },
            DkimCheck {
                result: AuthResult::Fail,
                domain: "list.test".into(),
                selector: "k".into(),
            },
        ],
        dmarc: DmarcCheck {
            result: AuthResult::Pass,
            policy: DmarcPolicy::Quarantine,
            domain: "a.test".into(),
        },
        arc: AuthResult::Neutral,
    };
    let mut view = MessageView::new(&raw[..])
        .with_trace_fields(2)
        .with_auth_results(Some(Arc::new(results)));
    let d = chain.data(&session(), &mut envelope(), &mut view).await;
    assert_eq!(d.verdict, Verdict::Accept);
    assert_eq!(
        view.header("X-Probe-Auth"),
        vec!["spf=pass (a.test) dkim=pass (a.test s1) dkim=fail (list.test k) dmarc=pass (a.test p=quarantine) arc=neutral"]
    );
    assert_eq!(
        view.header_names(),
        vec![
            "Received",
            "Authentication-Results",
            "X-Probe-Auth",
            "X-Probe",
            "Subject"
        ]
    );

    let mut view = MessageView::new(&raw[..]);
    chain.data(&session(), &mut envelope(), &mut view).await;
    assert_eq!(view.header("X-Probe-Auth"), vec!["none"]);
}

/// A plugin compiled against WIT 0.1.0 (before `message.auth-results`)
/// loads on a 0.1.1 host and its hooks run: additions do not break
/// compiled plugins.
#[tokio::test]
async fn a_plugin_built_against_wit_0_1_0_still_runs() {
    let (_s, chain, view) = old_probe_runs("0.1.0").await;
    assert!(view.header("X-Probe-Auth").is_empty());
    let d = chain
        .rcpt_to(
            &session(),
            &mut envelope(),
            &rcpt("alice+reject@example.test", Some("reject")),
        )
        .await;
    assert!(matches!(d.verdict, Verdict::Reject(_)), "{:?}", d.verdict);
}

/// Instances are kept warm between calls (the probe counts its helo calls
/// in memory), and an instance that trapped is never used again: the next
/// call starts from a fresh one, whose count starts at 1.
#[tokio::test]
async fn instances_are_reused_until_one_fails() {
    let s = setup_file(&artifact("probe"), "probe", &[Grant::Config]).await;
    assert!(s.report.refused.is_empty(), "{:?}", s.report.refused);
    let chain = s.manager.snapshot();
    let helo = |name: &str| {
        let mut session = session();
        session.helo = Some(name.to_string());
        session
    };
    let count = |d: mailgate_policy::Decision| match d.verdict {
        Verdict::Reject(r) => r.text,
        other => panic!("expected the probe's count, got {other:?}"),
    };
    assert_eq!(
        count(chain.helo(&helo("count.a")).await),
        "probe: helo call 1"
    );
    assert_eq!(
        count(chain.helo(&helo("count.b")).await),
        "probe: helo call 2"
    );
    assert_eq!(
        count(chain.helo(&helo("count.c")).await),
        "probe: helo call 3"
    );
    // The trap applies the failure mode (fail-closed by default) ...
    let d = chain.helo(&helo("panic.now")).await;
    assert_eq!(d.verdict, Verdict::Tempfail(Reply::policy_failure()));
    // ... and the instance that trapped is gone.
    assert_eq!(
        count(chain.helo(&helo("count.d")).await),
        "probe: helo call 1"
    );
}

/// `[plugins] reuse_instances = false`: every call has a fresh instance.
#[tokio::test]
async fn reuse_can_be_turned_off() {
    let s = setup_file_with(&artifact("probe"), "probe", &[Grant::Config], false).await;
    assert!(s.report.refused.is_empty(), "{:?}", s.report.refused);
    let chain = s.manager.snapshot();
    for _ in 0..3 {
        let mut session = session();
        session.helo = Some("count.x".into());
        match chain.helo(&session).await.verdict {
            Verdict::Reject(r) => assert_eq!(r.text, "probe: helo call 1"),
            other => panic!("{other:?}"),
        }
    }
}

/// A warm instance keeps nothing of the messages it was lent: once `data`
/// and `route` returned and the host let go of its view, the message's
/// buffer has no other owner. (It used to stay in the warm instance's
/// resource table until the instance was retired, 10,000 calls later.)
#[tokio::test]
async fn warm_instances_let_go_of_the_message() {
    let s = setup(
        &[("a-filter", "content-filter"), ("b-router", "router")],
        vec![
            settings("a-filter", &[Grant::Config], serde_json::json!({})),
            settings("b-router", &[Grant::Config], serde_json::json!({})),
        ],
        Arc::new(StaticResolver::default()),
    )
    .await;
    assert!(s.report.refused.is_empty(), "{:?}", s.report.refused);
    let chain = s.manager.snapshot();
    let raw = Arc::new(HAM.to_vec());
    for _ in 0..3 {
        let mut view = MessageView::shared(raw.clone());
        let d = chain.data(&session(), &mut envelope(), &mut view).await;
        assert_eq!(d.verdict, Verdict::Accept);
        assert_eq!(view.header("X-Spam-Score"), vec!["0.0"], "the filter ran");
        let r = chain
            .route(
                &session(),
                &envelope(),
                &rcpt("alice@example.org", None),
                &view,
            )
            .await;
        assert!(matches!(&r.actions[..], [RouteAction::Deliver(_)]), "{r:?}");
        drop(view);
        assert_eq!(
            Arc::strong_count(&raw),
            1,
            "a plugin instance still holds the message"
        );
    }
}

/// A plugin compiled against WIT 0.1.1 (before `http` and
/// `on-mailbox-event`) loads on a 0.1.2 host, runs, and is not asked for
/// mailbox events (it does not export the interface).
#[tokio::test]
async fn a_plugin_built_against_wit_0_1_1_still_runs() {
    let (_s, chain, _view) = old_probe_runs("0.1.1").await;
    let [plugin] = chain.plugins() else {
        panic!("one plugin expected");
    };
    assert!(!plugin.wants(mailgate_policy::Hook::MailboxEvent));
}

/// A plugin compiled against WIT 0.1.2 (before `on-deliver` and the
/// `sieve-filter` world of 0.1.3) loads and runs on a 0.1.3 host, and
/// still wants `mailbox-event` if it did.
#[tokio::test]
async fn a_plugin_built_against_wit_0_1_2_still_runs() {
    let (_s, chain, view) = old_probe_runs("0.1.2").await;
    assert_eq!(view.header("X-Probe").len(), 1);
    let [plugin] = chain.plugins() else {
        panic!("one plugin expected");
    };
    assert!(!plugin.exports(mailgate_policy::Hook::Deliver));
}

/// A plugin compiled against WIT 0.1.3 (before the `edit-header` action of
/// the `sieve-filter` world in 0.1.4) loads and runs on a 0.1.4 host: the
/// `plugin` world did not change.
#[tokio::test]
async fn a_plugin_built_against_wit_0_1_3_still_runs() {
    let (_s, chain, view) = old_probe_runs("0.1.3").await;
    assert_eq!(view.header("X-Probe").len(), 1);
    let [plugin] = chain.plugins() else {
        panic!("one plugin expected");
    };
    assert!(!plugin.exports(mailgate_policy::Hook::Deliver));
}

/// The system Sieve plugin (plugins/sieve): loads into its own engine,
/// runs a script on a message and returns its actions; a script that does
/// not compile and one past its step budget are errors (the host keeps
/// the message); an operator plugin is refused as a Sieve plugin.
#[tokio::test]
async fn the_sieve_plugin_runs_scripts_and_contains_hostile_ones() {
    use mailgate_policy::{
        NamedScript, SieveAction, SieveError, SieveFilter, SieveLimits, SieveRequest,
    };
    let wasm = std::fs::read(artifact("sieve")).expect("sieve.wasm (scripts/build-plugins)");
    let filter = SieveFilter::from_bytes(wasm, SieveLimits::default())
        .await
        .expect("loads");
    let view = Arc::new(MessageView::new(
        &b"From: a@b.test\r\nTo: me@x.test\r\nSubject: hello news\r\n\r\nbody\r\n"[..],
    ));
    let request = |text: &str| SieveRequest {
        account: "me@x.test".into(),
        envelope_to: "me@x.test".into(),
        envelope_from: "a@b.test".into(),
        script: NamedScript {
            name: "s".into(),
            text: text.into(),
        },
        mailboxes: vec!["INBOX".into()],
        ..SieveRequest::default()
    };
    let r = filter
        .run(
            request(
                r#"require ["fileinto", "imap4flags"];
                   if header :contains "subject" "news" { fileinto :flags "\\Seen" "News"; }"#,
            ),
            view.clone(),
        )
        .await
        .expect("runs");
    assert_eq!(
        r.actions,
        vec![SieveAction::FileInto {
            mailbox: "News".into(),
            create: false,
            flags: vec!["\\Seen".into()],
        }]
    );
    // Twice: the second run takes the compiled script from the cache.
    let again = filter
        .run(request("keep;"), view.clone())
        .await
        .expect("runs");
    assert_eq!(again.actions, vec![SieveAction::Keep(vec![])]);
    let bad = filter.run(request("filein \"x\";"), view.clone()).await;
    assert!(matches!(bad, Err(SieveError::Compile(_))), "{bad:?}");
    // editheader (WIT 0.1.4): the edits come among the actions, where the
    // script made them; refused unless the settings allow it.
    let script = r#"require ["editheader", "copy"]; redirect :copy "x@y.test";
        addheader "X-A" "1"; deleteheader :index 1 "subject";"#;
    let off = filter.run(request(script), view.clone()).await;
    assert!(matches!(off, Err(SieveError::Compile(_))), "{off:?}");
    let on = SieveRequest {
        settings: r#"{"editheader": true}"#.into(),
        ..request(script)
    };
    let r = filter.run(on, view.clone()).await.expect("runs");
    use mailgate_policy::SieveHeaderEdit as E;
    assert_eq!(
        r.actions,
        vec![
            SieveAction::Redirect("x@y.test".into()),
            SieveAction::EditHeader(E::Add {
                name: "X-A".into(),
                value: "1".into(),
                last: false
            }),
            SieveAction::EditHeader(E::Delete {
                name: "subject".into(),
                occurrence: 1
            }),
            SieveAction::Keep(vec![]),
        ]
    );
    // Thousands of searches of a 256 KiB body: far past the step budget.
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 256 << 10));
    let big = Arc::new(MessageView::new(big));
    let tests = vec![r#"body :contains "zzz""#; 5_000].join(", ");
    let hostile = format!("require \"body\"; if anyof({tests}) {{ discard; }}");
    let started = std::time::Instant::now();
    let stopped = filter.run(request(&hostile), big).await;
    assert!(
        matches!(
            stopped,
            Err(SieveError::Runtime(_)) | Err(SieveError::Sandbox(_))
        ),
        "{stopped:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Still serving after a failed run.
    assert!(filter.run(request("keep;"), view).await.is_ok());
    // An operator plugin (world `plugin`) is not a Sieve plugin.
    let probe = std::fs::read(artifact("probe")).unwrap();
    assert!(SieveFilter::from_bytes(probe, SieveLimits::default())
        .await
        .is_err());
}

/// Serves one HTTP/1.1 request on `listener` with `answer`; returns the
/// request's bytes (head and body).
async fn serve_one(listener: tokio::net::TcpListener, answer: &'static str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut conn, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the whole request");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + len {
                break;
            }
        }
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
        answer.len()
    );
    conn.write_all(reply.as_bytes()).await.unwrap();
    got
}

/// The rspamd plugin's learning hook through the `http` capability: the
/// plugin wants `mailbox-event`, its request reaches the allowed
/// controller with the message as the body; a plugin without the
/// destination in `http_allow` is refused before any connection.
#[tokio::test]
async fn mailbox_event_reaches_the_allowed_controller_only() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve_one(listener, r#"{"success":true}"#));
    let controller = format!("http://127.0.0.1:{port}");
    let mut allowed = settings(
        "rspamd",
        &[Grant::Http, Grant::Config, Grant::Log],
        serde_json::json!({ "controller_url": controller }),
    );
    allowed.http_allow = vec![format!("{controller}/")];
    allowed.timeout_ms = Some(5000);
    let s = setup(
        &[("rspamd", "rspamd")],
        vec![allowed],
        Arc::new(StaticResolver::default()),
    )
    .await;
    assert!(s.report.refused.is_empty(), "{:?}", s.report.refused);
    let chain = s.manager.snapshot();
    assert!(chain.wants(mailgate_policy::Hook::MailboxEvent));
    let event = mailgate_policy::MailboxEvent {
        account: "alice@example.org".into(),
        direction: mailgate_policy::Direction::Spam,
        operation: "move".into(),
        source: Some("INBOX".into()),
        target: "Junk".into(),
    };
    let raw = b"Subject: cheap pills\r\n\r\nBuy now.\r\n";
    let failed = chain
        .mailbox_event(&event, Arc::new(MessageView::new(&raw[..])))
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    let request = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(
        request.starts_with("POST /learnspam HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.ends_with("\r\n\r\nSubject: cheap pills\r\n\r\nBuy now.\r\n"));
    assert_eq!(chain.plugins()[0].stats().snapshot().http_requests, 1);

    // The same plugin with another destination in its list: refused.
    let mut elsewhere = settings(
        "rspamd",
        &[Grant::Http, Grant::Config, Grant::Log],
        serde_json::json!({ "controller_url": controller }),
    );
    elsewhere.http_allow = vec!["http://127.0.0.1:1/".into()];
    let s = setup(
        &[("rspamd", "rspamd")],
        vec![elsewhere],
        Arc::new(StaticResolver::default()),
    )
    .await;
    let chain = s.manager.snapshot();
    let failed = chain
        .mailbox_event(&event, Arc::new(MessageView::new(&raw[..])))
        .await;
    assert_eq!(failed, vec!["rspamd".to_string()]);
    let stats = chain.plugins()[0].stats().snapshot();
    assert_eq!((stats.http_requests, stats.http_errors), (1, 1));
}

/// A malformed `http_allow` entry refuses the plugin at load.
#[tokio::test]
async fn a_bad_http_allow_entry_refuses_the_plugin() {
    let mut bad = settings(
        "rspamd",
        &[Grant::Http, Grant::Config, Grant::Log],
        serde_json::json!({}),
    );
    bad.http_allow = vec!["ftp://127.0.0.1/".into()];
    let s = setup(
        &[("rspamd", "rspamd")],
        vec![bad],
        Arc::new(StaticResolver::default()),
    )
    .await;
    assert_eq!(s.report.refused.len(), 1, "{:?}", s.report.refused);
    assert!(s.manager.snapshot().plugins().is_empty());
}

/// At most `http::MAX_CONCURRENT_PER_PLUGIN` requests of one plugin are
/// under way at once; the others fail at once (`busy`), and the plugin's
/// `on_error` applies to them.
#[tokio::test]
async fn http_requests_of_one_plugin_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Answers each request after 2 s (every call has started by then).
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = 0;
                while !String::from_utf8_lossy(&buf[..got]).contains("Buy now.") {
                    let n = conn.read(&mut buf[got..]).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    got += n;
                }
                tokio::time::sleep(Duration::from_millis(2000)).await;
                let body = r#"{"action":"no action","score":0,"required_score":15}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    let mut s = settings(
        "rspamd",
        &[Grant::Http, Grant::Config, Grant::Log],
        serde_json::json!({ "url": url }),
    );
    s.http_allow = vec![format!("{url}/")];
    s.timeout_ms = Some(5000);
    let s = setup(
        &[("rspamd", "rspamd")],
        vec![s],
        Arc::new(StaticResolver::default()),
    )
    .await;
    let chain = s.manager.snapshot();
    let n = mailgate_policy::http::MAX_CONCURRENT_PER_PLUGIN + 4;
    let calls = (0..n).map(|_| {
        let chain = chain.clone();
        async move {
            let mut view = MessageView::new(&b"Subject: x\r\n\r\nBuy now.\r\n"[..]);
            chain.data(&session(), &mut envelope(), &mut view).await
        }
    });
    let decisions = futures_join_all(calls).await;
    assert!(decisions.iter().all(|d| d.verdict == Verdict::Accept));
    let stats = chain.plugins()[0].stats().snapshot();
    assert_eq!(stats.http_requests, n as u64);
    assert_eq!(stats.http_errors, 4, "{stats:?}");
}

/// Runs futures concurrently on the current runtime (no extra crate).
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
