//! The SMTP load: C connections, each sending messages one transaction
//! after another until N messages have been acknowledged.
//!
//! By default a transaction pipelines `MAIL`, `RCPT` and `DATA` in one
//! write (RFC 2920 allows `DATA` as the last command of a group), waits for
//! the three replies, then sends the message and waits for its `250`. With
//! pipelining off, each command waits for its reply. Either way the next
//! transaction starts only after the previous `250`, so each connection
//! has at most one message in flight and the server's acknowledgement
//! latency shapes the throughput, as with a real sending MTA.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::message;
use crate::wire::{err, trim_eol, Conn, Error, Result};

/// One SMTP reply: its code and the text of each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text after `NNN-` / `NNN ` of each line.
    pub lines: Vec<String>,
}

impl Reply {
    /// The reply as the server sent it, for error messages.
    pub fn summary(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
    }
}

/// Parses one reply line into (code, is-last-line, text).
pub fn parse_reply_line(line: &str) -> Option<(u16, bool, &str)> {
    let code = line.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let last = match line.as_bytes().get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => return None,
    };
    Some((code.parse().ok()?, last, line.get(4..).unwrap_or("")))
}

/// A client connection that has been greeted and said EHLO.
pub struct Client<S> {
    conn: Conn<S>,
    pipelining: bool,
    buf: Vec<u8>,
}

/// The timings of one acknowledged message.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From the end of the data (the `.` line written) to the `250`.
    pub data_ack: Duration,
    /// From `MAIL FROM` written to the `250` for the data.
    pub transaction: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Reads the greeting and says EHLO. Pipelining is used only if asked
    /// for and advertised.
    pub async fn start(
        stream: S,
        timeout: Duration,
        helo: &str,
        want_pipelining: bool,
    ) -> Result<Self> {
        let mut client = Client {
            conn: Conn::new(stream, timeout),
            pipelining: false,
            buf: Vec::with_capacity(512),
        };
        client.expect(220, "greeting").await?;
        client
            .conn
            .write_all(format!("EHLO {helo}\r\n").as_bytes())
            .await?;
        let ehlo = client.expect(250, "EHLO").await?;
        let advertised = ehlo.lines.iter().skip(1).any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
        });
        client.pipelining = want_pipelining && advertised;
        Ok(client)
    }

    /// Whether transactions are pipelined on this connection.
    pub fn pipelining(&self) -> bool {
        self.pipelining
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn read_reply(&mut self) -> Result<Reply> {
        let mut lines = Vec::new();
        loop {
            self.buf.clear();
            self.conn.read_line(&mut self.buf).await?;
            let line = trim_eol(&self.buf);
            let Some((code, last, text)) = parse_reply_line(&line) else {
                return err(format!("malformed SMTP reply line {line:?}"));
            };
            lines.push(text.to_string());
            if last {
                return Ok(Reply { code, lines });
            }
        }
    }

    async fn expect(&mut self, code: u16, what: &str) -> Result<Reply> {
        let reply = self.read_reply().await?;
        if reply.code != code {
            return err(format!("{what}: expected {code}, got {}", reply.summary()));
        }
        Ok(reply)
    }

    /// Sends one message (`data` already dot-stuffed and terminated) and
    /// waits for its acknowledgement, which must be `250`.
    pub async fn send(&mut self, from: &str, rcpt: &str, data: &[u8]) -> Result<Timing> {
        let mail = format!("MAIL FROM:<{from}>\r\n");
        let rcpt = format!("RCPT TO:<{rcpt}>\r\n");
        let started = Instant::now();
        if self.pipelining {
            self.conn
                .write_all(format!("{mail}{rcpt}DATA\r\n").as_bytes())
                .await?;
            // All three replies are read even after a failure, so the
            // error names the first command that was refused.
            let replies = [
                self.read_reply().await?,
                self.read_reply().await?,
                self.read_reply().await?,
            ];
            for ((reply, code), what) in replies
                .iter()
                .zip([250, 250, 354])
                .zip(["MAIL", "RCPT", "DATA"])
            {
                if reply.code != code {
                    return err(format!("{what}: expected {code}, got {}", reply.summary()));
                }
            }
        } else {
            self.conn.write_all(mail.as_bytes()).await?;
            self.expect(250, "MAIL").await?;
            self.conn.write_all(rcpt.as_bytes()).await?;
            self.expect(250, "RCPT").await?;
            self.conn.write_all(b"DATA\r\n").await?;
            self.expect(354, "DATA").await?;
        }
        self.conn.write_all(data).await?;
        let data_sent = Instant::now();
        self.expect(250, "end of data").await?;
        let acked = Instant::now();
        Ok(Timing {
            data_ack: acked - data_sent,
            transaction: acked - started,
        })
    }

    /// Says QUIT; the reply is not waited for beyond the timeout and not
    /// checked, because the measurement is over.
    pub async fn quit(mut self) {
        if self.conn.write_all(b"QUIT\r\n").await.is_ok() {
            let _ = self.read_reply().await;
        }
    }
}

/// What the SMTP phase sends, and where.
#[derive(Debug, Clone)]
pub struct Load {
    /// The server's SMTP address.
    pub address: String,
    /// More addresses of the same store (other nodes): connection `i`
    /// goes to the `i`-th of `address` and these, round robin.
    pub also: Vec<String>,
    /// The envelope recipient (a local account of the server).
    pub rcpt: String,
    /// Messages in total.
    pub messages: u64,
    /// Concurrent connections.
    pub clients: usize,
    /// Bytes of each message, as generated (before dot-stuffing).
    pub size: usize,
    /// Pipeline MAIL+RCPT+DATA where the server advertises PIPELINING.
    pub pipelining: bool,
    /// Deadline for every single read and write.
    pub timeout: Duration,
    /// Run id written into every message.
    pub run_id: String,
}

/// The outcome of the SMTP phase.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Messages acknowledged with `250`.
    pub messages: u64,
    /// Message bytes acknowledged (as generated, before dot-stuffing).
    pub bytes: u64,
    /// From the first transaction to the last acknowledgement (the
    /// connections are opened and greeted before the clock starts).
    pub elapsed: Duration,
    /// End of data → `250`, one per message.
    pub data_ack: Vec<Duration>,
    /// `MAIL` → `250` for the data, one per message.
    pub transaction: Vec<Duration>,
    /// Whether the transactions were pipelined.
    pub pipelined: bool,
}

/// Runs the SMTP phase.
pub async fn run(load: &Load) -> Result<Outcome> {
    // Open and greet every connection first so that connection setup does
    // not count against the acceptance rate.
    let mut connecting = JoinSet::new();
    let addresses: Vec<&String> = std::iter::once(&load.address)
        .chain(load.also.iter())
        .collect();
    for i in 0..load.clients {
        let address = addresses[i % addresses.len()].clone();
        let (timeout, pipelining) = (load.timeout, load.pipelining);
        connecting.spawn(async move {
            let stream = tokio::time::timeout(timeout, TcpStream::connect(&address))
                .await
                .map_err(|_| Error(format!("SMTP: connecting to {address} timed out")))??;
            stream.set_nodelay(true)?;
            Client::start(stream, timeout, "client.test", pipelining).await
        });
    }
    let mut clients = Vec::with_capacity(load.clients);
    while let Some(joined) = connecting.join_next().await {
        let client = joined.map_err(|e| Error(format!("SMTP: connection task failed: {e}")))?;
        clients.push(client.map_err(|e| Error(format!("SMTP: opening a session: {e}")))?);
    }
    let pipelined = clients.iter().all(|c| c.pipelining());

    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut sending = JoinSet::new();
    for mut client in clients {
        let next = next.clone();
        let load = load.clone();
        sending.spawn(async move {
            let mut timings = Vec::new();
            loop {
                // Messages are handed out one at a time from a shared
                // counter, so a slow connection does not hold back the rest.
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= load.messages {
                    break;
                }
                let data = message::dot_stuff(&message::generate(
                    &load.run_id,
                    seq,
                    load.size,
                    &load.rcpt,
                ));
                let timing = client
                    .send(message::SENDER, &load.rcpt, &data)
                    .await
                    .map_err(|e| Error(format!("SMTP: message {seq}: {e}")))?;
                timings.push(timing);
            }
            client.quit().await;
            Ok::<_, Error>(timings)
        });
    }
    let mut data_ack = Vec::with_capacity(load.messages as usize);
    let mut transaction = Vec::with_capacity(load.messages as usize);
    let mut last_ack = started;
    while let Some(joined) = sending.join_next().await {
        // The first failure ends the phase; dropping the JoinSet aborts
        // the other connections.
        let timings = joined.map_err(|e| Error(format!("SMTP: client task failed: {e}")))??;
        data_ack.extend(timings.iter().map(|t| t.data_ack));
        transaction.extend(timings.iter().map(|t| t.transaction));
        last_ack = Instant::now();
    }
    // Measured to the last task's end, which includes one QUIT round trip;
    // negligible against thousands of durable commits.
    let elapsed = last_ack - started;
    let messages = data_ack.len() as u64;
    Ok(Outcome {
        messages,
        bytes: messages * load.size as u64,
        elapsed,
        data_ack,
        transaction,
        pipelined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_reply_line("250-PIPELINING"),
            Some((250, false, "PIPELINING"))
        );
        assert_eq!(
            parse_reply_line("250 2.0.0 Ok"),
            Some((250, true, "2.0.0 Ok"))
        );
        assert_eq!(parse_reply_line("354"), Some((354, true, "")));
        assert_eq!(parse_reply_line("25x ok"), None);
        assert_eq!(parse_reply_line("250+x"), None);
        assert_eq!(parse_reply_line("hi"), None);
    }

    /// A scripted server: answers each command line, collects the message.
    async fn fake_server(
        stream: tokio::io::DuplexStream,
        advertise_pipelining: bool,
    ) -> (Vec<String>, Vec<u8>) {
        let (r, mut w) = tokio::io::split(stream);
        let mut r = BufReader::new(r);
        w.write_all(b"220 fake ESMTP\r\n").await.unwrap();
        let mut commands = Vec::new();
        let mut data = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).await.unwrap() == 0 {
                break;
            }
            let cmd = trim_eol(&line);
            commands.push(cmd.clone());
            let verb = cmd.split([' ', ':']).next().unwrap().to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" if advertise_pipelining => {
                    b"250-fake\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n"
                }
                "EHLO" => b"250-fake\r\n250 SIZE 1000000\r\n",
                "MAIL" | "RCPT" => b"250 2.1.0 Ok\r\n",
                "DATA" => {
                    w.write_all(b"354 go ahead\r\n").await.unwrap();
                    loop {
                        line.clear();
                        r.read_until(b'\n', &mut line).await.unwrap();
                        if line == b".\r\n" {
                            break;
                        }
                        data.extend_from_slice(&line);
                    }
                    b"250 2.0.0 Ok: queued as 1\r\n"
                }
                "QUIT" => {
                    w.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => b"500 what?\r\n",
            };
            w.write_all(reply).await.unwrap();
        }
        (commands, data)
    }

    #[tokio::test]
    async fn sends_a_message_pipelined_or_not() {
        for advertise in [true, false] {
            let (client_end, server_end) = tokio::io::duplex(64 * 1024);
            let server = tokio::spawn(fake_server(server_end, advertise));
            let mut client = Client::start(client_end, Duration::from_secs(5), "client.test", true)
                .await
                .unwrap();
            assert_eq!(client.pipelining(), advertise);
            let msg = message::generate("t", 1, 10240, "u@bench.test");
            client
                .send(message::SENDER, "u@bench.test", &message::dot_stuff(&msg))
                .await
                .unwrap();
            client.quit().await;
            let (commands, data) = server.await.unwrap();
            assert_eq!(
                commands,
                [
                    "EHLO client.test",
                    "MAIL FROM:<bench-sender@client.test>",
                    "RCPT TO:<u@bench.test>",
                    "DATA",
                    "QUIT"
                ]
            );
            // The server got the message dot-stuffed (it has dot lines),
            // minus the terminating `.` line it stopped at.
            let stuffed = message::dot_stuff(&msg);
            assert!(stuffed.len() > msg.len() + 3);
            assert_eq!(data, stuffed[..stuffed.len() - 3]);
        }
    }

    #[tokio::test]
    async fn refused_recipient_is_an_error() {
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut s = server_end;
            s.write_all(b"220 x\r\n").await.unwrap();
            let mut r = BufReader::new(s);
            let mut line = Vec::new();
            r.read_until(b'\n', &mut line).await.unwrap();
            r.get_mut()
                .write_all(b"250-x\r\n250 PIPELINING\r\n")
                .await
                .unwrap();
            line.clear();
            r.read_until(b'\n', &mut line).await.unwrap();
            r.get_mut()
                .write_all(b"250 ok\r\n550 5.1.1 no such user\r\n554 no valid recipients\r\n")
                .await
                .unwrap();
            // Keep the connection open until the client is done.
            let _ = r.read_until(b'\n', &mut line).await;
        });
        let mut client = Client::start(client_end, Duration::from_secs(5), "c", true)
            .await
            .unwrap();
        let e = client.send("a@b", "c@d", b".\r\n").await.unwrap_err();
        assert!(e.0.contains("RCPT: expected 250, got 550"), "{e}");
    }
}
