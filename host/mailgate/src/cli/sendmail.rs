//! `mailgate sendmail`: the `sendmail` command of every Unix mail server,
//! for programs that send mail without SMTP (cron, PHP's `mail()`, web
//! applications, scripts).
//!
//! It reads one message on standard input and hands it to the running
//! server over SMTP on the `smtp` listener (the unspecified address
//! `0.0.0.0`/`[::]` is reached on loopback). The server treats it like any
//! other client from that address: mail to local addresses is delivered;
//! mail to other domains is relayed only when the address is in
//! `[relay] trusted_networks` (empty by default: add `"127.0.0.1/32"`
//! for this command), and, from an address not in that list, the
//! sender's domain must exist in DNS (`[inbound]
//! reject_unknown_sender_domain`). The
//! command exits non-zero with the reason when the server could not take
//! the message, so that the calling program (and cron's mail) sees it.
//!
//! Installed as a link named `sendmail` (e.g. `/usr/sbin/sendmail`), the
//! binary behaves as `mailgate sendmail` (see `main.rs`).
//!
//! # Options (the usual ones of Postfix's and Sendmail's `sendmail`)
//! `-t` (recipients from `To:`, `Cc:`, `Bcc:`, added to those given as
//! arguments; `Bcc:` is removed), `-f ADDR`/`-r ADDR` (envelope sender),
//! `-F NAME` (full name for an added `From:`), `-i`/`-oi` (a line with a
//! single dot does not end the message), `-N NOTIFY`, `-R RET`, `-V ENVID`
//! (DSN), `-v`; other `-o…` options, `-B`, `-U` and `-bm` are accepted and
//! ignored; other modes (`-bs`, `-bp`, `-bv`, …) are refused with a hint.
//!
//! # Exit codes (sysexits.h, what callers of sendmail test)
//! 0 every recipient accepted; 64 bad usage; 65 bad message (no
//! recipient, too large); 67 a recipient refused for good; 69 the message
//! refused for good; 75 try again later (server down or a temporary
//! refusal).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use mailgate_relay::client::{
    tls::TlsClients, ClientError, Envelope, OutRecipient, RcptOutcome, SessionParams, SmtpClient,
};
use mailgate_relay::TlsPolicy;

use crate::config::Config;

/// Bad command line (EX_USAGE).
pub const EX_USAGE: u8 = 64;
/// Bad message: no recipient, too large, not mail (EX_DATAERR).
pub const EX_DATAERR: u8 = 65;
/// A recipient was refused for good (EX_NOUSER).
pub const EX_NOUSER: u8 = 67;
/// The message was refused for good (EX_UNAVAILABLE).
pub const EX_UNAVAILABLE: u8 = 69;
/// Try again later: server down, temporary refusal (EX_TEMPFAIL).
pub const EX_TEMPFAIL: u8 = 75;

/// Why the message was not handed over, with the exit code to use.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendmailError {
    /// The sysexits code.
    pub code: u8,
    /// What to print (after `sendmail: `).
    pub message: String,
}

fn error(code: u8, message: impl Into<String>) -> SendmailError {
    SendmailError {
        code,
        message: message.into(),
    }
}

/// The command line, parsed the way sendmail parses it (old-style options
/// such as `-oi` and `-fADDR` that a derive parser cannot express).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `-t`: recipients from the headers too.
    pub extract: bool,
    /// `-i`/`-oi`: a lone `.` line is data.
    pub ignore_dots: bool,
    /// `-f`/`-r`: the envelope sender.
    pub sender: Option<String>,
    /// `-F`: the full name for an added `From:`.
    pub full_name: Option<String>,
    /// `-N`: DSN NOTIFY for every recipient.
    pub notify: Option<String>,
    /// `-R`: DSN RET (`hdrs` or `full`).
    pub ret_full: Option<bool>,
    /// `-V`: DSN ENVID.
    pub envid: Option<String>,
    /// `-v`: print each recipient's reply.
    pub verbose: bool,
    /// The recipients given as arguments (commas split).
    pub recipients: Vec<String>,
}

/// Parses sendmail's arguments (without the program name).
pub fn parse_options(args: &[String]) -> Result<Options, SendmailError> {
    let mut o = Options::default();
    let mut i = 0;
    // An option that takes a value: glued (`-fADDR`) or the next argument.
    fn value(
        args: &[String],
        i: &mut usize,
        glued: &str,
        name: &str,
    ) -> Result<String, SendmailError> {
        if !glued.is_empty() {
            return Ok(glued.to_string());
        }
        *i += 1;
        args.get(*i)
            .cloned()
            .ok_or_else(|| error(EX_USAGE, format!("option -{name} needs a value")))
    }
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            o.recipients.extend(args[i + 1..].iter().cloned());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            o.recipients.push(arg.clone());
            i += 1;
            continue;
        }
        let (flag, rest) = arg[1..].split_at(arg[1..].chars().next().map_or(0, char::len_utf8));
        match flag {
            "t" if rest.is_empty() => o.extract = true,
            "i" if rest.is_empty() => o.ignore_dots = true,
            "v" if rest.is_empty() => o.verbose = true,
            "o" => match rest {
                "i" => o.ignore_dots = true,
                // -oem, -odb, -oQ…: delivery modes of the old sendmail;
                // the server decides those here.
                "" => return Err(error(EX_USAGE, "option -o needs a letter (e.g. -oi)")),
                _ => {}
            },
            "f" | "r" => o.sender = Some(value(args, &mut i, rest, flag)?),
            "F" => o.full_name = Some(value(args, &mut i, rest, flag)?),
            "N" => {
                let v = value(args, &mut i, rest, flag)?;
                o.notify = Some(v.to_ascii_uppercase());
            }
            "R" => {
                let v = value(args, &mut i, rest, flag)?;
                o.ret_full = match v.to_ascii_lowercase().as_str() {
                    "full" => Some(true),
                    "hdrs" => Some(false),
                    _ => return Err(error(EX_USAGE, "option -R takes hdrs or full")),
                }
            }
            "V" => o.envid = Some(value(args, &mut i, rest, flag)?),
            // Body type and "initial submission": the server looks at the
            // message itself.
            "B" | "C" | "L" => {
                value(args, &mut i, rest, flag)?;
            }
            "U" if rest.is_empty() => {}
            "b" => match rest {
                "m" => {}
                "p" => {
                    return Err(error(
                        EX_USAGE,
                        "-bp (mailq): use `mailgate queue list` instead",
                    ))
                }
                _ => {
                    return Err(error(
                        EX_USAGE,
                        format!(
                            "mode -b{} is not supported (only -bm, sending a message)",
                            printable(rest)
                        ),
                    ))
                }
            },
            _ => {
                return Err(error(
                    EX_USAGE,
                    format!("unknown option {}", printable(arg)),
                ))
            }
        }
        i += 1;
    }
    o.recipients = o
        .recipients
        .iter()
        .flat_map(|r| r.split(','))
        .map(|r| {
            r.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .filter(|r| !r.is_empty())
        .collect();
    Ok(o)
}

/// `s` with control characters escaped, for messages about what a caller
/// passed.
fn printable(s: &str) -> String {
    s.chars().flat_map(char::escape_default).take(200).collect()
}

/// The message read from standard input, in SMTP form: CRLF line ends;
/// without `-i`, cut at a line holding a single dot.
pub fn read_message(
    mut input: impl Read,
    ignore_dots: bool,
    limit: u64,
) -> Result<Vec<u8>, SendmailError> {
    let mut raw = Vec::new();
    input
        .by_ref()
        .take(limit + 1)
        .read_to_end(&mut raw)
        .map_err(|e| error(EX_DATAERR, format!("cannot read the message: {e}")))?;
    if raw.len() as u64 > limit {
        return Err(error(
            EX_DATAERR,
            format!("the message is larger than the server's limit of {limit} bytes"),
        ));
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let body = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if !ignore_dots && body == b"." {
            break;
        }
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// Where the header section ends: the index just past its blank line (or
/// the whole message when there is no body).
fn header_end(message: &[u8]) -> usize {
    if message.starts_with(b"\r\n") {
        return 0;
    }
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |p| p + 2)
}

/// Whether the header section has a field named `name`.
fn has_field(header: &[u8], name: &str) -> bool {
    fields(header).any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// The header fields as (name, whole field with its folded lines).
fn fields(header: &[u8]) -> impl Iterator<Item = (String, &[u8])> {
    let mut starts = Vec::new();
    let mut pos = 0;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            starts.push(pos);
        }
        pos += line.len();
    }
    starts.push(header.len());
    starts
        .windows(2)
        .map(move |w| {
            let field = &header[w[0]..w[1]];
            let name = field
                .iter()
                .position(|&b| b == b':')
                .map(|c| String::from_utf8_lossy(&field[..c]).trim().to_string())
                .unwrap_or_default();
            (name, field)
        })
        .collect::<Vec<_>>()
        .into_iter()
}

/// With `-t`: the addresses of `To:`, `Cc:` and `Bcc:`; and the message
/// with its `Bcc:` fields removed.
pub fn extract_recipients(message: &[u8]) -> (Vec<String>, Vec<u8>) {
    let end = header_end(message);
    let (header, body) = message.split_at(end);
    let mut kept = Vec::with_capacity(message.len());
    let mut addresses = Vec::new();
    for (name, field) in fields(header) {
        let lower = name.to_ascii_lowercase();
        if matches!(lower.as_str(), "to" | "cc" | "bcc") {
            let parsed = mail_parser::MessageParser::new().parse_headers(field);
            if let Some(list) = parsed.as_ref().and_then(|m| match lower.as_str() {
                "to" => m.to(),
                "cc" => m.cc(),
                _ => m.bcc(),
            }) {
                for addr in list.iter() {
                    if let Some(a) = addr.address() {
                        addresses.push(a.to_string());
                    }
                }
            }
        }
        if lower != "bcc" {
            kept.extend_from_slice(field);
        }
    }
    kept.extend_from_slice(body);
    (addresses, kept)
}

/// Adds `From:`, `Date:` and `Message-ID:` when the message has none (what
/// Postfix's cleanup does for locally submitted mail).
pub fn complete_header(
    message: Vec<u8>,
    sender: &str,
    full_name: Option<&str>,
    hostname: &str,
) -> Vec<u8> {
    let end = header_end(&message);
    let header = &message[..end];
    let mut added = String::new();
    if !has_field(header, "From") {
        match full_name {
            Some(name) if !name.is_empty() => {
                let name: String = name.chars().filter(|c| !c.is_control()).collect();
                let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
                added.push_str(&format!("From: \"{quoted}\" <{sender}>\r\n"));
            }
            _ => added.push_str(&format!("From: {sender}\r\n")),
        }
    }
    if !has_field(header, "Date") {
        added.push_str(&format!(
            "Date: {}\r\n",
            chrono::Local::now().format("%a, %d %b %Y %H:%M:%S %z")
        ));
    }
    if !has_field(header, "Message-ID") {
        let now = chrono::Utc::now();
        added.push_str(&format!(
            "Message-ID: <{}.{}.{}@{}>\r\n",
            now.format("%Y%m%d%H%M%S"),
            now.timestamp_subsec_nanos(),
            std::process::id(),
            hostname
        ));
    }
    if added.is_empty() {
        return message;
    }
    let mut out = Vec::with_capacity(message.len() + added.len() + 2);
    out.extend_from_slice(&message[..end]);
    out.extend_from_slice(added.as_bytes());
    if end == message.len() && !message.is_empty() {
        // No body and no blank line: end the header section.
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&message[end..]);
    out
}

/// The login name of the user running the command (for the default
/// envelope sender `login@hostname`, as Postfix does).
fn login_name() -> String {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::metadata("/proc/self") {
        let uid = meta.uid();
        if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
            for line in passwd.lines() {
                let mut parts = line.split(':');
                let (Some(name), _, Some(id)) = (parts.next(), parts.next(), parts.next()) else {
                    continue;
                };
                if id.parse::<u32>().ok() == Some(uid) {
                    return name.to_string();
                }
            }
        }
    }
    std::env::var("LOGNAME")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "nobody".into())
}

/// Where to reach the server: the `smtp` listener, on loopback when it
/// listens on every address.
fn server_address(config: &Config) -> Result<SocketAddr, SendmailError> {
    let listen = config.listen.smtp.as_deref().ok_or_else(|| {
        error(
            EX_UNAVAILABLE,
            "the configuration has no [listen] smtp listener to hand the message to",
        )
    })?;
    let addr: SocketAddr = listen.parse().map_err(|_| {
        error(
            EX_UNAVAILABLE,
            format!("[listen] smtp = {listen:?} is not an address:port"),
        )
    })?;
    if addr.port() == 0 {
        return Err(error(
            EX_UNAVAILABLE,
            format!("[listen] smtp = {listen:?} has port 0 (chosen at each start): give it a fixed port"),
        ));
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, addr.port()))
}

/// Runs `mailgate sendmail ARGS` with the message on standard input;
/// returns the exit code.
pub async fn run(config: &Config, args: &[String]) -> Result<(), SendmailError> {
    let options = parse_options(args)?;
    let message = read_message(
        std::io::stdin().lock(),
        options.ignore_dots,
        config.limits.max_message_size,
    )?;
    send(config, options, message).await
}

/// Hands `message` to the server as `options` say.
pub async fn send(
    config: &Config,
    options: Options,
    message: Vec<u8>,
) -> Result<(), SendmailError> {
    let mut recipients = options.recipients.clone();
    let message = if options.extract {
        let (found, stripped) = extract_recipients(&message);
        recipients.extend(found);
        stripped
    } else {
        message
    };
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|r| seen.insert(r.to_ascii_lowercase()));
    if recipients.is_empty() {
        return Err(error(
            EX_DATAERR,
            "no recipients: give them as arguments, or use -t to read To:, Cc: and Bcc:",
        ));
    }
    let sender = options
        .sender
        .clone()
        .unwrap_or_else(|| format!("{}@{}", login_name(), config.hostname));
    let message = complete_header(
        message,
        &sender,
        options.full_name.as_deref(),
        &config.hostname,
    );
    let addr = server_address(config)?;
    let tls_clients = TlsClients::new(&[], false)
        .map_err(|e| error(EX_TEMPFAIL, format!("cannot set up the client: {e}")))?;
    let params = SessionParams {
        helo: config.hostname.clone(),
        source_ip: None,
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(300),
        // Loopback to our own server: nothing to protect on the wire.
        tls: TlsPolicy::Disabled,
        tls_clients,
        auth: None,
    };
    let unreachable = |e: ClientError| {
        let code = if e.is_permanent() {
            EX_UNAVAILABLE
        } else {
            EX_TEMPFAIL
        };
        error(
            code,
            format!("the mail server at {addr} did not take the message: {e} (is `mailgate serve` running?)"),
        )
    };
    let mut client = SmtpClient::connect(addr, &config.hostname, &params)
        .await
        .map_err(unreachable)?;
    let out: Vec<OutRecipient> = recipients
        .iter()
        .map(|r| OutRecipient {
            address: r.clone(),
            notify: options.notify.clone(),
            orcpt: None,
        })
        .collect();
    let eight_bit = message.iter().any(|&b| b >= 0x80);
    let envelope = Envelope {
        sender: &sender,
        recipients: &out,
        body: &message,
        smtputf8: !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii()),
        eight_bit,
        envid: options.envid.as_deref(),
        ret_full: options.ret_full,
    };
    let outcomes = client.send_mail(&envelope).await.map_err(unreachable)?;
    client.quit().await;
    let mut code = 0u8;
    let mut problems = Vec::new();
    for (rcpt, outcome) in recipients.iter().zip(&outcomes) {
        match outcome {
            RcptOutcome::Delivered(reply) => {
                if options.verbose {
                    eprintln!("sendmail: {}: {}", printable(rcpt), printable(reply));
                }
            }
            RcptOutcome::Temporary(reply) => {
                code = code.max(EX_TEMPFAIL);
                problems.push(format!(
                    "{}: {} (try again later)",
                    printable(rcpt),
                    printable(reply)
                ));
            }
            RcptOutcome::Permanent(reply) => {
                if code != EX_TEMPFAIL {
                    code = EX_NOUSER;
                }
                let hint = refusal_hint(reply);
                problems.push(format!("{}: {}{hint}", printable(rcpt), printable(reply)));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(error(code, problems.join("\nsendmail: ")))
    }
}

/// What to change when the server refused for good, for the two
/// refusals that depend on where the command runs: relaying (`5.7.1`)
/// and the sender's domain (`5.1.8`, `5.7.27`). Both go away when this
/// machine's address (usually `127.0.0.1`) is in `[relay]
/// trusted_networks`.
fn refusal_hint(reply: &str) -> &'static str {
    let lower = reply.to_ascii_lowercase();
    if lower.contains("sender address rejected") {
        " (the sender's domain has no MX, A or AAAA record in DNS: give -f an address \
         in a domain that exists, or add this machine's address, e.g. \"127.0.0.1/32\", \
         to [relay] trusted_networks)"
    } else if reply.contains("5.7.1") || lower.contains("relay") {
        " (mail to other domains from this machine needs its address, e.g. \
         \"127.0.0.1/32\", in [relay] trusted_networks)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_in_their_old_forms() {
        let o = parse_options(&args(
            "-t -oi -fbob@a.test -F Bob -N success,failure -R hdrs -V id1 x@b.test,y@b.test",
        ))
        .unwrap();
        assert!(o.extract && o.ignore_dots);
        assert_eq!(o.sender.as_deref(), Some("bob@a.test"));
        assert_eq!(o.full_name.as_deref(), Some("Bob"));
        assert_eq!(o.notify.as_deref(), Some("SUCCESS,FAILURE"));
        assert_eq!(o.ret_full, Some(false));
        assert_eq!(o.envid.as_deref(), Some("id1"));
        assert_eq!(o.recipients, vec!["x@b.test", "y@b.test"]);
        let o = parse_options(&args("-i -r <c@a.test> -odb -oem -- -weird@b.test")).unwrap();
        assert!(o.ignore_dots);
        assert_eq!(o.sender.as_deref(), Some("<c@a.test>"));
        assert_eq!(o.recipients, vec!["-weird@b.test"]);
        for bad in ["-bs", "-bp", "-q", "-f", "-o", "-R sometimes"] {
            let e = parse_options(&args(bad)).unwrap_err();
            assert_eq!(e.code, EX_USAGE, "{bad}");
        }
    }

    #[test]
    fn a_lone_dot_ends_the_message_unless_i() {
        let input = b"Subject: x\n\nline\n.\nafter\n";
        assert_eq!(
            read_message(&input[..], false, 1000).unwrap(),
            b"Subject: x\r\n\r\nline\r\n"
        );
        assert_eq!(
            read_message(&input[..], true, 1000).unwrap(),
            b"Subject: x\r\n\r\nline\r\n.\r\nafter\r\n"
        );
        assert_eq!(
            read_message(&input[..], true, 5).unwrap_err().code,
            EX_DATAERR
        );
    }

    #[test]
    fn t_reads_to_cc_bcc_and_removes_bcc() {
        let m = b"To: A <a@x.test>, b@x.test\r\nCc: c@x.test\r\nBcc: secret@x.test,\r\n  other@x.test\r\nSubject: s\r\n\r\nBcc: not a header\r\n";
        let (rcpts, out) = extract_recipients(m);
        assert_eq!(
            rcpts,
            vec![
                "a@x.test",
                "b@x.test",
                "c@x.test",
                "secret@x.test",
                "other@x.test"
            ]
        );
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("secret"), "{text}");
        assert!(
            text.contains("Subject: s\r\n\r\nBcc: not a header"),
            "{text}"
        );
    }

    #[test]
    fn missing_fields_are_added() {
        let out = complete_header(
            b"Subject: s\r\n\r\nbody\r\n".to_vec(),
            "bob@a.test",
            Some("Bob \"B\""),
            "mx.a.test",
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("Subject: s\r\nFrom: \"Bob \\\"B\\\"\" <bob@a.test>\r\nDate: "),
            "{text}"
        );
        assert!(
            text.contains("Message-ID: <") && text.contains("@mx.a.test>\r\n\r\nbody\r\n"),
            "{text}"
        );
        let whole = b"From: x@a.test\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@a>\r\n\r\nb\r\n";
        assert_eq!(
            complete_header(whole.to_vec(), "s@a.test", None, "h"),
            whole
        );
        let no_body = complete_header(b"Subject: s\r\n".to_vec(), "s@a.test", None, "h");
        assert!(String::from_utf8(no_body).unwrap().ends_with(">\r\n\r\n"));
    }
}
