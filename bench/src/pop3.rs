//! The POP3 phase: one session (the maildrop lock allows no second one)
//! that retrieves every message with RETR and checks each against the
//! message that was sent.
//!
//! RETR is either lock-step (each command waits for the previous
//! response) or pipelined (RFC 2449 PIPELINING: up to `window` commands
//! outstanding). Nothing is deleted, so both passes see the same maildrop.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::message;
use crate::wire::{err, trim_eol, Conn, Error, Result};

/// Where to log in, and what to expect there.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// The server's POP3 address.
    pub address: String,
    /// The login name (mailgate: the full address).
    pub user: String,
    /// The password.
    pub password: String,
    /// The recipient the SMTP phase used, needed to regenerate messages.
    pub rcpt: String,
    /// The run whose messages must all be there.
    pub run_id: String,
    /// How many messages of the run were sent.
    pub expected: u64,
    /// Their size as sent.
    pub size: usize,
    /// Deadline for every single read and write.
    pub timeout: Duration,
}

/// The outcome of one RETR pass.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Messages retrieved (all in the maildrop, this run's and others).
    pub messages: u64,
    /// Bytes retrieved, after undoing dot-stuffing (what LIST counts).
    pub bytes: u64,
    /// From the first RETR written to the last message read.
    pub elapsed: Duration,
    /// The pipelining window; `None` for lock-step.
    pub window: Option<usize>,
    /// Messages that were not sent by this run (a peer's mailbox may
    /// hold older mail); retrieved and counted, not verified.
    pub foreign: u64,
    /// Messages whose retrieved size differs from their LIST size.
    pub list_mismatches: u64,
}

/// A logged-in POP3 session.
pub struct Session<S> {
    conn: Conn<S>,
    line: Vec<u8>,
}

/// How often, and how long apart, a login refused because the maildrop is
/// still locked (by the session that just quit) is retried.
const LOCK_RETRIES: u32 = 50;
const LOCK_RETRY_DELAY: Duration = Duration::from_millis(100);

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Reads the greeting. Returns the session and whether the server
    /// advertises PIPELINING.
    pub async fn start(stream: S, timeout: Duration) -> Result<(Self, bool)> {
        let mut s = Session {
            conn: Conn::new(stream, timeout),
            line: Vec::with_capacity(256),
        };
        s.expect_ok("greeting").await?;
        s.conn.write_all(b"CAPA\r\n").await?;
        let pipelining = match s.status_line().await? {
            Ok(_) => s
                .multi_line()
                .await?
                .split(|&b| b == b'\n')
                .any(|l| trim_eol(l).eq_ignore_ascii_case("PIPELINING")),
            Err(_) => false,
        };
        Ok((s, pipelining))
    }

    /// USER and PASS. `Ok(false)`: refused because the maildrop is locked.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<bool> {
        self.conn
            .write_all(format!("USER {user}\r\n").as_bytes())
            .await?;
        self.expect_ok("USER").await?;
        self.conn
            .write_all(format!("PASS {password}\r\n").as_bytes())
            .await?;
        match self.status_line().await? {
            Ok(_) => Ok(true),
            Err(text) if text.to_ascii_uppercase().contains("[IN-USE]") => Ok(false),
            Err(text) => err(format!("PASS refused: {text}")),
        }
    }

    /// The first line of a response: `Ok(text)` for `+OK`, `Err(text)`
    /// for `-ERR`.
    async fn status_line(&mut self) -> Result<std::result::Result<String, String>> {
        self.line.clear();
        self.conn.read_line(&mut self.line).await?;
        let line = trim_eol(&self.line);
        if let Some(rest) = line.strip_prefix("+OK") {
            Ok(Ok(rest.trim_start().to_string()))
        } else if line.starts_with("-ERR") {
            Ok(Err(line))
        } else {
            err(format!("malformed POP3 status line {line:?}"))
        }
    }

    async fn expect_ok(&mut self, what: &str) -> Result<String> {
        self.status_line()
            .await?
            .map_err(|text| Error(format!("{what}: {text}")))
    }

    /// The body of a multi-line response up to the `.` line, with
    /// dot-stuffing undone (RFC 1939 §3).
    pub async fn multi_line(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.multi_line_into(&mut out).await?;
        Ok(out)
    }

    async fn multi_line_into(&mut self, out: &mut Vec<u8>) -> Result<()> {
        loop {
            // Read straight into `out`, then drop the stuffing dot or the
            // terminator in place: one copy per byte.
            let start = out.len();
            self.conn.read_line(out).await?;
            if &out[start..] == b".\r\n" || &out[start..] == b".\n" {
                out.truncate(start);
                return Ok(());
            }
            if out[start] == b'.' {
                out.remove(start);
            }
        }
    }

    /// STAT and LIST: the size of each message, in order.
    pub async fn list(&mut self) -> Result<Vec<u64>> {
        self.conn.write_all(b"STAT\r\n").await?;
        let stat = self.expect_ok("STAT").await?;
        let count: usize = stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error(format!("STAT: cannot parse {stat:?}")))?;
        self.conn.write_all(b"LIST\r\n").await?;
        self.expect_ok("LIST").await?;
        let listing = self.multi_line().await?;
        let mut sizes = Vec::with_capacity(count);
        for line in listing
            .split(|&b| b == b'\n')
            .map(trim_eol)
            .filter(|l| !l.is_empty())
        {
            let mut parts = line.split_whitespace();
            let (Some(Ok(n)), Some(Ok(size))) = (
                parts.next().map(str::parse::<usize>),
                parts.next().map(str::parse::<u64>),
            ) else {
                return err(format!("LIST: cannot parse {line:?}"));
            };
            // RETR takes message numbers, and the benchmark retrieves
            // 1..=count; a gap would mean a deleted message, which a fresh
            // session never has.
            if n != sizes.len() + 1 {
                return err(format!(
                    "LIST: expected message {}, got {line:?}",
                    sizes.len() + 1
                ));
            }
            sizes.push(size);
        }
        if sizes.len() != count {
            return err(format!(
                "STAT says {count} messages, LIST lists {}",
                sizes.len()
            ));
        }
        Ok(sizes)
    }

    /// RETR message `n` (its `+OK` already expected) into `out`.
    async fn retr_response(&mut self, n: usize, out: &mut Vec<u8>) -> Result<()> {
        self.expect_ok(&format!("RETR {n}")).await?;
        self.multi_line_into(out).await
    }

    /// STAT; the answer must be `+OK`.
    pub async fn stat(&mut self) -> Result<String> {
        self.conn.write_all(b"STAT\r\n").await?;
        self.expect_ok("STAT").await
    }

    /// QUIT, answer unchecked: the measurement is over.
    pub async fn quit(mut self) {
        if self.conn.write_all(b"QUIT\r\n").await.is_ok() {
            let _ = self.status_line().await;
        }
    }
}

/// Checks retrieved messages against what the SMTP phase sent.
struct Verifier<'a> {
    mailbox: &'a Mailbox,
    seen: HashSet<u64>,
    foreign: u64,
    list_mismatches: u64,
}

impl Verifier<'_> {
    fn check(&mut self, n: usize, listed: u64, retrieved: &[u8]) -> Result<()> {
        if listed != retrieved.len() as u64 {
            self.list_mismatches += 1;
        }
        let Some((run, seq)) = message::identify(retrieved) else {
            self.foreign += 1;
            return Ok(());
        };
        if run != self.mailbox.run_id {
            self.foreign += 1;
            return Ok(());
        }
        if seq >= self.mailbox.expected || !self.seen.insert(seq) {
            return err(format!(
                "message {n}: unexpected or duplicate sequence number {seq}"
            ));
        }
        // The server adds trace headers in front; everything we sent must
        // follow them unchanged.
        let sent = message::generate(
            &self.mailbox.run_id,
            seq,
            self.mailbox.size,
            &self.mailbox.rcpt,
        );
        if !retrieved.ends_with(&sent) {
            return err(format!(
                "message {n} (sequence {seq}) is not what was sent: {} bytes retrieved, {} sent",
                retrieved.len(),
                sent.len()
            ));
        }
        Ok(())
    }

    fn finish(self) -> Result<(u64, u64)> {
        let found = self.seen.len() as u64;
        if found != self.mailbox.expected {
            let missing: Vec<u64> = (0..self.mailbox.expected)
                .filter(|s| !self.seen.contains(s))
                .take(10)
                .collect();
            return err(format!(
                "{found} of {} sent messages are in the maildrop; missing e.g. {missing:?}",
                self.mailbox.expected
            ));
        }
        Ok((self.foreign, self.list_mismatches))
    }
}

/// Opens a session and logs in, waiting while the previous session's
/// maildrop lock is released. Returns the session and whether the server
/// advertises PIPELINING.
async fn open(mailbox: &Mailbox) -> Result<(Session<TcpStream>, bool)> {
    for _ in 0..LOCK_RETRIES {
        let stream = tokio::time::timeout(mailbox.timeout, TcpStream::connect(&mailbox.address))
            .await
            .map_err(|_| Error(format!("POP3: connecting to {} timed out", mailbox.address)))??;
        stream.set_nodelay(true)?;
        let (mut session, pipelining) = Session::start(stream, mailbox.timeout).await?;
        if session.login(&mailbox.user, &mailbox.password).await? {
            return Ok((session, pipelining));
        }
        session.quit().await;
        tokio::time::sleep(LOCK_RETRY_DELAY).await;
    }
    err("POP3: the maildrop stayed locked")
}

/// The number of messages in the maildrop (STAT), in a session of its
/// own.
pub async fn count(mailbox: &Mailbox) -> Result<u64> {
    let (mut session, _) = open(mailbox)
        .await
        .map_err(|e| Error(format!("POP3: {e}")))?;
    session.conn.write_all(b"STAT\r\n").await?;
    let stat = session.expect_ok("STAT").await?;
    session.quit().await;
    stat.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error(format!("POP3 STAT: cannot parse {stat:?}")))
}

/// One RETR pass over the whole maildrop: lock-step if `window` is
/// `None`, else pipelined with up to `window` commands outstanding.
/// `Ok(None)` if pipelining was asked for but is not advertised.
pub async fn retr_all(mailbox: &Mailbox, window: Option<usize>) -> Result<Option<Outcome>> {
    let (mut session, pipelining) = open(mailbox)
        .await
        .map_err(|e| Error(format!("POP3: {e}")))?;
    if window.is_some() && !pipelining {
        session.quit().await;
        return Ok(None);
    }
    let outcome = retr_session(&mut session, mailbox, window)
        .await
        .map_err(|e| Error(format!("POP3: {e}")))?;
    session.quit().await;
    Ok(Some(outcome))
}

async fn retr_session<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    mailbox: &Mailbox,
    window: Option<usize>,
) -> Result<Outcome> {
    let sizes = session.list().await?;
    let count = sizes.len();
    let window_size = window.unwrap_or(1).max(1);
    let mut verifier = Verifier {
        mailbox,
        seen: HashSet::with_capacity(count),
        foreign: 0,
        list_mismatches: 0,
    };
    let mut bytes = 0u64;
    let mut message = Vec::with_capacity(mailbox.size + 4096);
    let mut commands = Vec::with_capacity(window_size * 16);
    let (mut sent, mut received) = (0usize, 0usize);
    let started = Instant::now();
    while received < count {
        // Top up the window with one write. Commands are tiny, so this
        // write never blocks on a server that is busy sending us responses.
        commands.clear();
        while sent < count && sent - received < window_size {
            sent += 1;
            commands.extend_from_slice(format!("RETR {sent}\r\n").as_bytes());
        }
        if !commands.is_empty() {
            session.conn.write_all(&commands).await?;
        }
        received += 1;
        message.clear();
        session.retr_response(received, &mut message).await?;
        bytes += message.len() as u64;
        verifier.check(received, sizes[received - 1], &message)?;
    }
    let elapsed = started.elapsed();
    let (foreign, list_mismatches) = verifier.finish()?;
    Ok(Outcome {
        messages: count as u64,
        bytes,
        elapsed,
        window,
        foreign,
        list_mismatches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    fn mailbox(expected: u64) -> Mailbox {
        Mailbox {
            address: String::new(),
            user: "u@bench.test".into(),
            password: "pw".into(),
            rcpt: "u@bench.test".into(),
            run_id: "run1".into(),
            expected,
            size: 2500,
            timeout: Duration::from_secs(5),
        }
    }

    /// A scripted POP3 server holding `messages` (unstuffed), answering
    /// one command line at a time in order, so pipelined commands work.
    async fn fake_server(stream: tokio::io::DuplexStream, messages: Vec<Vec<u8>>) -> Vec<String> {
        let (r, mut w) = tokio::io::split(stream);
        let mut r = BufReader::new(r);
        w.write_all(b"+OK POP3 ready\r\n").await.unwrap();
        let mut commands = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).await.unwrap() == 0 {
                break;
            }
            let cmd = trim_eol(&line);
            commands.push(cmd.clone());
            let mut parts = cmd.split(' ');
            let reply = match parts.next().unwrap() {
                "CAPA" => b"+OK\r\nUSER\r\nPIPELINING\r\n.\r\n".to_vec(),
                "USER" | "PASS" => b"+OK\r\n".to_vec(),
                "STAT" => {
                    let total: usize = messages.iter().map(Vec::len).sum();
                    format!("+OK {} {total}\r\n", messages.len()).into_bytes()
                }
                "LIST" => {
                    let mut out = b"+OK\r\n".to_vec();
                    for (i, m) in messages.iter().enumerate() {
                        out.extend_from_slice(format!("{} {}\r\n", i + 1, m.len()).as_bytes());
                    }
                    out.extend_from_slice(b".\r\n");
                    out
                }
                "RETR" => {
                    let n: usize = parts.next().unwrap().parse().unwrap();
                    let mut out = b"+OK message follows\r\n".to_vec();
                    out.extend_from_slice(&message::dot_stuff(&messages[n - 1]));
                    out
                }
                "QUIT" => {
                    w.write_all(b"+OK bye\r\n").await.unwrap();
                    break;
                }
                _ => b"-ERR what?\r\n".to_vec(),
            };
            w.write_all(&reply).await.unwrap();
        }
        commands
    }

    fn stored(seq: u64) -> Vec<u8> {
        let mut m = b"Return-Path: <bench-sender@client.test>\r\nReceived: by fake\r\n".to_vec();
        m.extend_from_slice(&message::generate("run1", seq, 2500, "u@bench.test"));
        m
    }

    async fn pass(messages: Vec<Vec<u8>>, expected: u64, window: Option<usize>) -> Result<Outcome> {
        let (client_end, server_end) = tokio::io::duplex(8 * 1024);
        let server = tokio::spawn(fake_server(server_end, messages));
        let mb = mailbox(expected);
        let (mut session, pipelining) = Session::start(client_end, mb.timeout).await.unwrap();
        assert!(pipelining);
        assert!(session.login(&mb.user, &mb.password).await.unwrap());
        let outcome = retr_session(&mut session, &mb, window).await;
        session.quit().await;
        server.await.unwrap();
        outcome
    }

    #[tokio::test]
    async fn retrieves_and_verifies_lock_step_and_pipelined() {
        let mut messages: Vec<Vec<u8>> = (0..20).rev().map(stored).collect();
        // Mail that some other sender left in a peer's mailbox.
        messages.push(b"Subject: old\r\n\r\n.hello\r\n".to_vec());
        let total: u64 = messages.iter().map(|m| m.len() as u64).sum();
        for window in [None, Some(4), Some(64)] {
            let o = pass(messages.clone(), 20, window).await.unwrap();
            assert_eq!(o.messages, 21);
            assert_eq!(o.bytes, total);
            assert_eq!(o.foreign, 1);
            assert_eq!(o.list_mismatches, 0);
        }
    }

    #[tokio::test]
    async fn detects_missing_and_damaged_messages() {
        let e = pass((0..3).map(stored).collect(), 4, Some(2))
            .await
            .unwrap_err();
        assert!(e.0.contains("3 of 4 sent messages"), "{e}");

        let mut damaged: Vec<Vec<u8>> = (0..3).map(stored).collect();
        let len = damaged[1].len();
        damaged[1].truncate(len - 10);
        damaged[1].extend_from_slice(b"\r\n");
        let e = pass(damaged, 3, None).await.unwrap_err();
        assert!(
            e.0.contains("message 2 (sequence 1) is not what was sent"),
            "{e}"
        );
    }
}
