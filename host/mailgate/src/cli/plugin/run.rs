//! `mailgate plugin run FILE --hook HOOK [MESSAGE.eml]`: one hook of one
//! component on one message, in the server's runtime, without a server.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mailgate_policy::{
    AuthAttempt, Direction, Envelope, Hook, MailboxEvent, RunInput, SessionInfo,
};

use super::{resolve, SettingsArgs};
use crate::config::Config;

/// Largest message `plugin run` reads.
pub const MAX_MESSAGE: u64 = 64 << 20;

/// `mailgate plugin run`
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The component.
    pub file: PathBuf,
    /// The hook: connect, helo, auth, mail-from, rcpt-to, data, route,
    /// mailbox-event.
    #[arg(long)]
    pub hook: String,
    /// The envelope sender (MAIL FROM); empty for `<>`.
    #[arg(long, default_value = "", value_name = "ADDR")]
    pub from: String,
    /// An envelope recipient; repeatable. `rcpt-to` and `route` are called
    /// once per recipient.
    #[arg(long = "rcpt", value_name = "ADDR")]
    pub rcpts: Vec<String>,
    /// The client's IP address.
    #[arg(long, default_value = "192.0.2.1", value_name = "IP")]
    pub client: IpAddr,
    /// The client's HELO/EHLO name.
    #[arg(long, default_value = "client.test", value_name = "NAME")]
    pub helo: String,
    /// The listener: mx, submission, submissions or lmtp.
    #[arg(long, default_value = "mx")]
    pub listener: String,
    /// The session is under TLS.
    #[arg(long)]
    pub tls: bool,
    /// The authenticated account (and, for the `auth` hook, the user name
    /// of the attempt).
    #[arg(long, value_name = "ADDR")]
    pub auth_user: Option<String>,
    /// For the `auth` hook: the attempt failed.
    #[arg(long)]
    pub auth_failed: bool,
    /// For `mailbox-event`: the message was filed as spam (into Junk) or
    /// as ham (out of it).
    #[arg(long, default_value = "spam", value_parser = ["spam", "ham"])]
    pub direction: String,
    /// For `mailbox-event`: the account that filed it (default: the first
    /// --rcpt, else user@example.org).
    #[arg(long, value_name = "ADDR")]
    pub account: Option<String>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    /// The message (an .eml file), for `data`, `route` and `mailbox-event`.
    pub message: Option<PathBuf>,
}

/// What `mailbox-event` is told: a MOVE into Junk (spam) or out of it
/// into INBOX (ham).
fn mailbox_event(args: &RunArgs) -> MailboxEvent {
    let account = args
        .account
        .clone()
        .or_else(|| args.rcpts.first().cloned())
        .unwrap_or_else(|| "user@example.org".into())
        .to_ascii_lowercase();
    let spam = args.direction == "spam";
    MailboxEvent {
        account,
        direction: if spam {
            Direction::Spam
        } else {
            Direction::Ham
        },
        operation: "move".into(),
        source: Some(if spam { "INBOX" } else { "Junk" }.into()),
        target: if spam { "Junk" } else { "INBOX" }.into(),
    }
}

/// Runs `plugin run`.
pub async fn run(
    config: Option<&Config>,
    config_path: Option<&Path>,
    args: RunArgs,
) -> Result<(), String> {
    let hook = Hook::ALL
        .into_iter()
        .find(|h| h.name() == args.hook)
        .ok_or_else(|| {
            format!(
                "unknown hook {:?} ({}; WIT {} has no other)",
                args.hook.chars().take(40).collect::<String>(),
                Hook::ALL.map(|h| h.name()).join(", "),
                mailgate_policy::runtime::WIT_VERSION
            )
        })?;
    let resolved = resolve(config, config_path, &args.file, &args.settings)?;
    let message = match &args.message {
        Some(path) => {
            let len = std::fs::metadata(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .len();
            if len > MAX_MESSAGE {
                return Err(format!(
                    "{}: {len} bytes, more than plugin run reads ({MAX_MESSAGE})",
                    path.display()
                ));
            }
            let mut bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            // The server hands plugins CRLF line ends.
            if !bytes.windows(2).any(|w| w == b"\r\n") {
                bytes = bytes
                    .split(|&b| b == b'\n')
                    .collect::<Vec<_>>()
                    .join(&b"\r\n"[..]);
            }
            Some(bytes)
        }
        None => None,
    };
    let input = RunInput {
        hook,
        session: SessionInfo {
            client_ip: args.client,
            client_port: 40000,
            reverse_name: None,
            tls: args.tls,
            helo: Some(args.helo.clone()),
            auth_user: if hook == Hook::Auth {
                None
            } else {
                args.auth_user.clone()
            },
            listener: args.listener.clone(),
            session_id: "plugin-run".into(),
        },
        envelope: Envelope {
            mail_from: args.from.clone(),
            mail_params: Vec::new(),
            recipients: args.rcpts.iter().map(|r| r.to_ascii_lowercase()).collect(),
        },
        auth: args.auth_user.as_ref().map(|u| AuthAttempt {
            mechanism: "PLAIN".into(),
            user: u.clone(),
            success: !args.auth_failed,
        }),
        message,
        mailbox_event: Some(mailbox_event(&args)),
    };
    let resolver = match config {
        Some(c) => crate::plugins::plugin_resolver(c),
        None => Arc::new(mailgate_policy::SystemResolver),
    };
    let report = mailgate_policy::run_file(
        &args.file,
        &resolved.settings,
        &resolved.policy,
        resolver,
        input,
    )
    .await
    .map_err(|e| format!("{}: {e}", args.file.display()))?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "{} {} at {} ({})",
        report.plugin,
        report.version,
        report.hook,
        args.file.display()
    );
    for line in &resolved.origin {
        println!("  {line}");
    }
    for call in &report.calls {
        match &call.recipient {
            Some(r) => println!("{r}: {}", call.verdict),
            None => println!("verdict  {}", call.verdict),
        }
        if let Some(reply) = &call.reply {
            println!("  reply    {reply}");
        }
        if let Some(reason) = &call.reason {
            println!("  reason   {reason}");
        }
        if let Some(f) = &call.failure {
            println!("  failure  {f} (the failure mode gives the verdict)");
        }
        for e in &call.edits {
            println!("  edit     {e}");
        }
        for a in call.route.iter().flatten() {
            println!("  route    {a}");
        }
        for l in &call.logs {
            println!("  log      {l}");
        }
        println!(
            "  time     {} us, memory {} KiB",
            call.elapsed_us,
            call.memory_bytes / 1024
        );
    }
    Ok(())
}
