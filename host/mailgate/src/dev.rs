//! The development profile: `mailgate serve --dev`.
//!
//! A ready configuration for trying mailgate on one machine: data under
//! `./dev-data`, the local domain `mailgate.test` with the account
//! `demo@mailgate.test` (password `demo`), every listener on 127.0.0.1 on
//! an unprivileged port. Nothing here is used without `--dev`.
//!
//! TLS: on first start a self-signed certificate for the profile's host
//! name is made in `dev-data/tls/` (rcgen) and its fingerprint printed;
//! clear-text passwords are allowed, since every listener is on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{AuthSettings, Config, Limits, Listen, SubmissionSettings, TlsSettings};

/// The local domain of the development profile.
pub const DOMAIN: &str = "mailgate.test";
/// The demo account.
pub const DEMO_USER: &str = "demo@mailgate.test";
/// Its password.
pub const DEMO_PASSWORD: &str = "demo";

/// The development configuration, with data in `data_dir`.
pub fn config(data_dir: PathBuf) -> Config {
    Config {
        hostname: "localhost".into(),
        data_dir: data_dir.clone(),
        domains: vec![DOMAIN.into()],
        user: None,
        group: None,
        listen: Listen {
            smtp: Some("127.0.0.1:2525".into()),
            pop3: Some("127.0.0.1:2110".into()),
            submission: Some("127.0.0.1:2587".into()),
            submissions: Some("127.0.0.1:2465".into()),
            pop3s: Some("127.0.0.1:2995".into()),
            imap: Some("127.0.0.1:2143".into()),
            imaps: Some("127.0.0.1:2993".into()),
            lmtp: None,
            managesieve: None,
            metrics: Some("127.0.0.1:2925".into()),
            proxy: Default::default(),
        },
        limits: Limits::default(),
        auth: AuthSettings {
            allow_plaintext: true,
            ..AuthSettings::default()
        },
        tls: Some(TlsSettings {
            cert: data_dir.join("tls").join("cert.pem"),
            key: data_dir.join("tls").join("key.pem"),
            self_signed: true,
        }),
        submission: SubmissionSettings::default(),
        shutdown_timeout: 5,
        log: Default::default(),
        sieve: Default::default(),
        store: Default::default(),
        srs: Default::default(),
        relay: Default::default(),
        queue: Default::default(),
        dkim: Vec::new(),
        // The development profile receives from local test clients only;
        // verifying their mail would ask the system's resolver for SPF and
        // DMARC records of whatever domain they use (and, at MAIL, for the
        // sender's domain).
        inbound: crate::config::InboundSettings {
            verify: false,
            reject_unknown_sender_domain: false,
            reverse_lookup: false,
            ..Default::default()
        },
        plugins: Some(mailgate_policy::PluginsConfig::new(
            data_dir.join("plugins"),
        )),
        plugin: crate::plugins::dev_plugin_settings(),
        source: None,
    }
}

/// The summary printed when the development server is ready.
pub fn summary(config: &Config, addresses: &[(&'static str, SocketAddr)]) -> String {
    let port = |p: &str| {
        addresses
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, a)| a.port())
            .unwrap_or(0)
    };
    let mut s = String::new();
    s.push_str("\nmailgate development server\n");
    s.push_str(&format!(
        "  data directory  {}\n",
        config.data_dir.display()
    ));
    s.push_str(&format!("  local domain    {DOMAIN}\n"));
    s.push_str(&format!(
        "  demo account    {DEMO_USER}  password: {DEMO_PASSWORD}\n"
    ));
    for (protocol, address) in addresses {
        s.push_str(&format!("  {protocol:<15} {address}\n"));
    }
    if let Some(tls) = &config.tls {
        s.push_str(&format!(
            "  tls certificate {} (self-signed)\n  sha256          {}\n",
            tls.cert.display(),
            mailgate_tls::certificate_fingerprint(&tls.cert).unwrap_or_else(|e| e.to_string())
        ));
    }
    s.push_str("\nSend a first message (Python's smtplib):\n");
    s.push_str(&format!(
        "  python3 -c \"import smtplib; smtplib.SMTP('127.0.0.1', {}).sendmail('you@example.net', ['{DEMO_USER}'], 'Subject: hello\\r\\n\\r\\nIt works.\\r\\n')\"\n",
        port("smtp")
    ));
    s.push_str("Read it back (POP3):\n");
    s.push_str(&format!(
        "  python3 -c \"import poplib; p=poplib.POP3('127.0.0.1', {}); p.user('{DEMO_USER}'); p.pass_('{DEMO_PASSWORD}'); print(b'\\n'.join(p.retr(1)[1]).decode())\"\n",
        port("pop3")
    ));
    s.push_str("Read it with IMAP (folders stay on the server), then over IMAPS:\n");
    s.push_str(&format!(
        "  python3 -c \"import imaplib; m=imaplib.IMAP4('127.0.0.1', {}); m.login('{DEMO_USER}', '{DEMO_PASSWORD}'); m.select(); print(m.fetch('1', '(BODY[])')[1][0][1].decode())\"\n",
        port("imap")
    ));
    if let Some(tls) = &config.tls {
        s.push_str(&format!(
            "  python3 -c \"import imaplib, ssl; m=imaplib.IMAP4_SSL('localhost', {}, ssl_context=ssl.create_default_context(cafile='{}')); m.login('{DEMO_USER}', '{DEMO_PASSWORD}'); print(m.select())\"\n",
            port("imaps"),
            tls.cert.display()
        ));
    }
    s.push_str("Manage accounts:  cargo run -p mailgate -- --dev user list\n");
    s.push_str("Stop with Ctrl-C.\n");
    s
}
