//! `mailgate import imap`: every folder of another IMAP server, pulled
//! with flags, keywords, INTERNALDATE, UIDVALIDITY and UIDs.
//!
//! A small IMAP4rev1 client of our own (RFC 3501 / RFC 9051): LOGIN or
//! AUTHENTICATE PLAIN, LIST, LSUB, STATUS, EXAMINE and UID FETCH are all
//! it needs. The client crates were looked at and not taken: `imap` is
//! synchronous and brings native-tls (OpenSSL), `async-imap` brings
//! async-std-era dependencies and a second parser; the responses needed
//! here are a handful, read by [`tokenize`] below, and TLS is the
//! workspace's rustls (the relay's root store and PEM loader).
//!
//! Folders are read one after the other on one connection; the messages
//! of the folder being imported flow through a bounded channel
//! ([`CHANNEL_MESSAGES`]), so memory holds a few batches, not a mailbox.
//!
//! Bounds: a response line (outside literals) is at most
//! [`MAX_LINE_BYTES`]; a literal at most the import's
//! [`super::import::MAX_MESSAGE_BYTES`]; every read waits at most
//! [`READ_TIMEOUT`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use mailgate_store::SpecialUse;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::import::{Body, Broken, Item, Source, SourceFolder, SourceMessage, MAX_MESSAGE_BYTES};

/// The longest response line read (literals apart).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// How long one read from the server may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Messages asked for in one UID FETCH of bodies.
pub const FETCH_CHUNK: usize = 100;
/// How a refused command's error reads (`LIST refused: NO ...`).
const REFUSED: &str = " refused: ";
/// Messages read ahead of the store.
pub const CHANNEL_MESSAGES: usize = 256;

/// How to reach the old server.
#[derive(Debug, Clone, clap::Args)]
pub struct ImapArgs {
    /// The old server's host name or address.
    #[arg(long)]
    pub host: String,
    /// Its port (default 993 with --tls, else 143).
    #[arg(long)]
    pub port: Option<u16>,
    /// TLS from the first byte (IMAPS, port 993).
    #[arg(long, conflicts_with = "starttls")]
    pub tls: bool,
    /// Plain connection upgraded with STARTTLS.
    #[arg(long)]
    pub starttls: bool,
    /// Trust this PEM certificate (or CA) besides the system's roots.
    #[arg(long, value_name = "PEM")]
    pub tls_ca_file: Option<PathBuf>,
    /// The user name on the old server.
    #[arg(long)]
    pub user: String,
    /// A file whose first line is the password (kept off the command
    /// line, where `ps` would show it).
    #[arg(long, value_name = "FILE")]
    pub password_file: PathBuf,
    /// Only these folders (names as mailgate shows them, `/` between
    /// levels); default: every folder.
    #[arg(long, num_args = 1.., value_name = "FOLDER")]
    pub folders: Vec<String>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One part of a response: a line's text (without CRLF) or a literal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Literal(Vec<u8>),
}

/// A token of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Atom(String),
    Str(Vec<u8>),
    Open,
    Close,
}

struct Conn {
    io: BufReader<Box<dyn Stream>>,
    tag: u32,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl Conn {
    async fn read_line(&mut self) -> Result<Vec<u8>, String> {
        let mut line = Vec::new();
        let fut = async {
            loop {
                let buf = self.io.fill_buf().await.map_err(|e| err("read", e))?;
                if buf.is_empty() {
                    return Err("the server closed the connection".to_string());
                }
                let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (buf.len(), false),
                };
                line.extend_from_slice(&buf[..take]);
                self.io.consume(take);
                if line.len() > MAX_LINE_BYTES {
                    return Err(format!(
                        "a response line longer than {MAX_LINE_BYTES} bytes"
                    ));
                }
                if done {
                    return Ok(());
                }
            }
        };
        tokio::time::timeout(READ_TIMEOUT, fut)
            .await
            .map_err(|_| format!("no answer within {} s", READ_TIMEOUT.as_secs()))??;
        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            line.pop();
        }
        Ok(line)
    }

    /// One whole response: a line and the literals it announces.
    async fn read_response(&mut self) -> Result<Vec<Piece>, String> {
        let mut pieces = Vec::new();
        loop {
            let line = self.read_line().await?;
            let literal = literal_len(&line);
            pieces.push(Piece::Text(line));
            let Some(n) = literal else {
                return Ok(pieces);
            };
            if n > MAX_MESSAGE_BYTES {
                return Err(format!(
                    "the server sends {n} bytes at once, more than the {MAX_MESSAGE_BYTES} an import takes"
                ));
            }
            let mut data = vec![0; n as usize];
            tokio::time::timeout(READ_TIMEOUT, self.io.read_exact(&mut data))
                .await
                .map_err(|_| format!("no answer within {} s", READ_TIMEOUT.as_secs()))?
                .map_err(|e| err("read", e))?;
            pieces.push(Piece::Literal(data));
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let io = self.io.get_mut();
        io.write_all(bytes).await.map_err(|e| err("write", e))?;
        io.flush().await.map_err(|e| err("write", e))
    }

    /// Sends a command; returns its untagged responses once it is OK.
    async fn command(&mut self, command: &str) -> Result<Vec<Vec<Piece>>, String> {
        self.tag += 1;
        let tag = format!("m{}", self.tag);
        self.write(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        self.finish(&tag, command).await
    }

    async fn finish(&mut self, tag: &str, command: &str) -> Result<Vec<Vec<Piece>>, String> {
        let mut untagged = Vec::new();
        loop {
            let r = self.read_response().await?;
            let Some(Piece::Text(first)) = r.first() else {
                continue;
            };
            if let Some(rest) = first.strip_prefix(tag.as_bytes()) {
                let rest = String::from_utf8_lossy(rest).trim().to_string();
                if rest.len() >= 2 && rest[..2].eq_ignore_ascii_case("OK") {
                    return Ok(untagged);
                }
                let verb = command.split(' ').next().unwrap_or(command);
                return Err(format!("{verb}{REFUSED}{}", printable(&rest)));
            }
            untagged.push(r);
        }
    }
}

/// What the server said, fit for a terminal (no control characters).
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(300)
        .collect()
}

/// `{n}` or `{n+}` at the end of a line: a literal of n bytes follows.
fn literal_len(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The tokens of a response (RFC 9051 §9: atoms, quoted strings,
/// literals, parentheses; `NIL` is an atom).
fn tokenize(pieces: &[Piece]) -> Vec<Token> {
    let mut out = Vec::new();
    for p in pieces {
        let text = match p {
            Piece::Literal(data) => {
                out.push(Token::Str(data.clone()));
                continue;
            }
            Piece::Text(t) => t,
        };
        // The literal announcement at the end is the next piece.
        let end = match literal_len(text) {
            Some(_) => text.iter().rposition(|&b| b == b'{').unwrap_or(text.len()),
            None => text.len(),
        };
        let t = &text[..end];
        let mut i = 0;
        while i < t.len() {
            match t[i] {
                b' ' => i += 1,
                b'(' => {
                    out.push(Token::Open);
                    i += 1;
                }
                b')' => {
                    out.push(Token::Close);
                    i += 1;
                }
                b'"' => {
                    let mut s = Vec::new();
                    i += 1;
                    while i < t.len() && t[i] != b'"' {
                        if t[i] == b'\\' && i + 1 < t.len() {
                            i += 1;
                        }
                        s.push(t[i]);
                        i += 1;
                    }
                    i += 1;
                    out.push(Token::Str(s));
                }
                _ => {
                    let start = i;
                    while i < t.len() && !matches!(t[i], b' ' | b'(' | b')' | b'"') {
                        // `BODY[HEADER.FIELDS (A)]` is not asked for; `[`
                        // and `]` stay inside the atom.
                        i += 1;
                    }
                    out.push(Token::Atom(
                        String::from_utf8_lossy(&t[start..i]).into_owned(),
                    ));
                }
            }
        }
    }
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn connect(args: &ImapArgs) -> Result<Conn, String> {
    let port = args.port.unwrap_or(if args.tls { 993 } else { 143 });
    let tcp = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect((args.host.as_str(), port)))
        .await
        .map_err(|_| format!("cannot connect to {}:{port}: timed out", args.host))?
        .map_err(|e| format!("cannot connect to {}:{port}: {e}", args.host))?;
    let stream: Box<dyn Stream> = if args.tls {
        Box::new(tls(args, tcp).await?)
    } else {
        Box::new(tcp)
    };
    let mut conn = Conn {
        io: BufReader::new(stream),
        tag: 0,
    };
    let greeting = conn.read_line().await?;
    if !greeting.starts_with(b"* OK") && !greeting.starts_with(b"* PREAUTH") {
        return Err(format!(
            "unexpected greeting: {}",
            printable(&String::from_utf8_lossy(&greeting))
        ));
    }
    if args.starttls {
        conn.command("STARTTLS").await?;
        let tag = conn.tag;
        let inner = conn.io.into_inner();
        let stream: Box<dyn Stream> = Box::new(tls(args, inner).await?);
        conn = Conn {
            io: BufReader::new(stream),
            tag,
        };
    }
    Ok(conn)
}

async fn tls<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    args: &ImapArgs,
    stream: S,
) -> Result<tokio_rustls::client::TlsStream<S>, String> {
    use mailgate_relay::client::tls::{load_pem_roots, TlsClients};
    let extra = match &args.tls_ca_file {
        Some(p) => load_pem_roots(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => Vec::new(),
    };
    let clients = TlsClients::new(&extra, true).map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(args.host.clone())
        .map_err(|e| format!("{}: {e}", args.host))?;
    tokio_rustls::TlsConnector::from(Arc::clone(&clients.verified))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS with {}: {e}", args.host))
}

async fn login(conn: &mut Conn, user: &str, password: &str) -> Result<(), String> {
    // AUTHENTICATE PLAIN (RFC 4616) carries any bytes; LOGIN's quoted
    // strings cannot carry CR, LF or (before UTF8=ACCEPT) non-ASCII.
    conn.tag += 1;
    let tag = format!("m{}", conn.tag);
    conn.write(format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes())
        .await?;
    let r = conn.read_line().await?;
    if r.starts_with(b"+") {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{password}").as_bytes());
        conn.write(format!("{token}\r\n").as_bytes()).await?;
        return conn
            .finish(&tag, "AUTHENTICATE")
            .await
            .map(|_| ())
            .map_err(refused);
    }
    if user
        .chars()
        .chain(password.chars())
        .any(|c| c.is_control() || !c.is_ascii())
    {
        return Err("the old server does not take AUTHENTICATE PLAIN, and LOGIN cannot carry this user name or password".into());
    }
    conn.command(&format!("LOGIN {} {}", quote(user), quote(password)))
        .await
        .map(|_| ())
        .map_err(refused)
}

/// A refusal of the login says so (without the server's words, which
/// may echo the user name); other errors (timeouts, a broken connection)
/// are told as they are.
fn refused(e: String) -> String {
    if e.contains(REFUSED) {
        "the old server refused the user name or password".into()
    } else {
        e
    }
}

/// A folder as the old server names it.
struct Remote {
    raw: Vec<u8>,
    name: String,
    special: Option<SpecialUse>,
}

fn string_of(t: &Token) -> Option<Vec<u8>> {
    match t {
        Token::Atom(a) if a.eq_ignore_ascii_case("NIL") => None,
        Token::Atom(a) => Some(a.as_bytes().to_vec()),
        Token::Str(s) => Some(s.clone()),
        _ => None,
    }
}

/// `* LIST (attrs) "sep" name`
fn parse_list(r: &[Piece]) -> Option<(Vec<String>, Option<u8>, Vec<u8>)> {
    let t = tokenize(r);
    if !matches!(t.get(1), Some(Token::Atom(a)) if a.eq_ignore_ascii_case("LIST") || a.eq_ignore_ascii_case("LSUB"))
    {
        return None;
    }
    let mut i = 2;
    if t.get(i) != Some(&Token::Open) {
        return None;
    }
    i += 1;
    let mut attrs = Vec::new();
    while let Some(Token::Atom(a)) = t.get(i) {
        attrs.push(a.clone());
        i += 1;
    }
    if t.get(i) != Some(&Token::Close) {
        return None;
    }
    let sep = string_of(t.get(i + 1)?).and_then(|s| s.first().copied());
    let name = string_of(t.get(i + 2)?)?;
    Some((attrs, sep, name))
}

fn local_name(raw: &[u8], sep: Option<u8>) -> Option<String> {
    let decoded = mailgate_imap_proto::mutf7::decode(raw)?;
    let name = match sep {
        Some(s) if s != b'/' => decoded.replace(s as char, "/"),
        _ => decoded,
    };
    if name.eq_ignore_ascii_case("INBOX") {
        return Some("INBOX".into());
    }
    Some(name)
}

/// Numbers in `(KEY n KEY n)` of STATUS, or `[KEY n]` of SELECT.
fn number_after(tokens: &[Token], key: &str) -> Option<u32> {
    let i = tokens.iter().position(
        |t| matches!(t, Token::Atom(a) if a.trim_start_matches('[').eq_ignore_ascii_case(key)),
    )?;
    match tokens.get(i + 1)? {
        Token::Atom(n) => n.trim_end_matches(']').parse().ok(),
        _ => None,
    }
}

/// Reads the old server's folders; their messages follow through the
/// folders' channels while the import runs.
pub async fn read(args: ImapArgs) -> Result<Source, String> {
    let password = std::fs::read_to_string(&args.password_file)
        .map_err(|e| format!("cannot read {}: {e}", args.password_file.display()))?;
    let password = password.lines().next().unwrap_or_default().to_string();
    let mut conn = connect(&args).await?;
    login(&mut conn, &args.user, &password).await?;
    let mut remotes = Vec::new();
    for r in conn.command("LIST \"\" \"*\"").await? {
        let Some((attrs, sep, raw)) = parse_list(&r) else {
            continue;
        };
        if attrs.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        }) {
            continue;
        }
        let Some(name) = local_name(&raw, sep) else {
            continue;
        };
        if !args.folders.is_empty() && !args.folders.iter().any(|f| f == &name) {
            continue;
        }
        let special = attrs.iter().find_map(|a| SpecialUse::from_attribute(a));
        remotes.push(Remote { raw, name, special });
    }
    let mut subscribed = HashSet::new();
    for r in conn.command("LSUB \"\" \"*\"").await? {
        if let Some((_, sep, raw)) = parse_list(&r) {
            if let Some(n) = local_name(&raw, sep) {
                subscribed.insert(n);
            }
        }
    }
    let mut source = Source::default();
    let mut senders = Vec::new();
    for remote in &remotes {
        let quoted = quote(&String::from_utf8_lossy(&remote.raw));
        let status = conn
            .command(&format!("STATUS {quoted} (UIDVALIDITY UIDNEXT MESSAGES)"))
            .await?;
        let tokens: Vec<Token> = status.iter().flat_map(|r| tokenize(r)).collect();
        let (tx, rx) = mpsc::channel(CHANNEL_MESSAGES);
        source.folders.push(SourceFolder {
            name: remote.name.clone(),
            uid_validity: number_after(&tokens, "UIDVALIDITY"),
            uid_next: number_after(&tokens, "UIDNEXT"),
            subscribed: Some(subscribed.contains(&remote.name)),
            special_use: remote.special,
            expected: number_after(&tokens, "MESSAGES").unwrap_or(0) as usize,
            messages: Vec::new(),
            stream: Some(rx),
        });
        senders.push((quoted, remote.name.clone(), tx));
    }
    let host = args.host.clone();
    tokio::spawn(async move {
        for (quoted, name, tx) in senders {
            if let Err(e) = pull(&mut conn, &host, &quoted, &name, &tx).await {
                let _ = tx.send(Item::Fatal(e)).await;
                return;
            }
        }
        let _ = conn.command("LOGOUT").await;
    });
    Ok(source)
}

/// Sends one folder's messages, in UID order.
async fn pull(
    conn: &mut Conn,
    host: &str,
    quoted: &str,
    name: &str,
    tx: &mpsc::Sender<Item>,
) -> Result<(), String> {
    let examine = conn.command(&format!("EXAMINE {quoted}")).await?;
    let tokens: Vec<Token> = examine.iter().flat_map(|r| tokenize(r)).collect();
    let exists = tokens
        .windows(3)
        .find_map(|w| match (&w[1], &w[2]) {
            (Token::Atom(n), Token::Atom(e)) if e.eq_ignore_ascii_case("EXISTS") => {
                n.parse::<u32>().ok()
            }
            _ => None,
        })
        .unwrap_or(0);
    if exists == 0 {
        return Ok(());
    }
    // Flags and dates of all, then the bodies in chunks.
    let mut metas = Vec::new();
    for r in conn
        .command("UID FETCH 1:* (UID FLAGS INTERNALDATE)")
        .await?
    {
        if let Some(f) = parse_fetch(&r) {
            if let Some(uid) = f.uid {
                metas.push((uid, f.flags, f.internal_date));
            }
        }
    }
    metas.sort_by_key(|m| m.0);
    for chunk in metas.chunks(FETCH_CHUNK) {
        let set = chunk
            .iter()
            .map(|m| m.0.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut bodies = std::collections::HashMap::new();
        for r in conn
            .command(&format!("UID FETCH {set} (UID BODY.PEEK[])"))
            .await?
        {
            if let Some(f) = parse_fetch(&r) {
                if let (Some(uid), Some(body)) = (f.uid, f.body) {
                    bodies.insert(uid, body);
                }
            }
        }
        for (uid, flags, date) in chunk {
            let origin = format!("{host}: {name} UID {uid}");
            let item = match bodies.remove(uid) {
                Some(body) => Item::Message(SourceMessage {
                    origin,
                    body: Body::Bytes(body),
                    uid: Some(*uid),
                    flags: flags.clone(),
                    internal_date: *date,
                    pop3_uidl: None,
                }),
                None => Item::Broken(Broken {
                    origin,
                    reason: "the server sent no body for it".into(),
                }),
            };
            if tx.send(item).await.is_err() {
                return Err("the import stopped".into());
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Fetched {
    uid: Option<u32>,
    flags: Vec<String>,
    internal_date: Option<i64>,
    body: Option<Vec<u8>>,
}

/// `* n FETCH (UID u FLAGS (...) INTERNALDATE "..." BODY[] {n}...)`
fn parse_fetch(r: &[Piece]) -> Option<Fetched> {
    let t = tokenize(r);
    if !matches!(t.get(2), Some(Token::Atom(a)) if a.eq_ignore_ascii_case("FETCH")) {
        return None;
    }
    if t.get(3) != Some(&Token::Open) {
        return None;
    }
    let mut f = Fetched::default();
    let mut i = 4;
    while let Some(Token::Atom(key)) = t.get(i) {
        let key = key.to_ascii_uppercase();
        i += 1;
        match key.as_str() {
            "UID" => {
                f.uid = match t.get(i) {
                    Some(Token::Atom(n)) => n.parse().ok(),
                    _ => None,
                };
                i += 1;
            }
            "FLAGS" => {
                if t.get(i) == Some(&Token::Open) {
                    i += 1;
                    while let Some(Token::Atom(flag)) = t.get(i) {
                        if !flag.eq_ignore_ascii_case("\\Recent") {
                            f.flags.push(flag.clone());
                        }
                        i += 1;
                    }
                }
                i += 1;
            }
            "INTERNALDATE" => {
                if let Some(Token::Str(s)) = t.get(i) {
                    f.internal_date = parse_date(&String::from_utf8_lossy(s));
                }
                i += 1;
            }
            "BODY[]" | "RFC822" => {
                f.body = t.get(i).and_then(string_of);
                i += 1;
            }
            _ => {
                // Something not asked for: skip one value (a list whole).
                if t.get(i) == Some(&Token::Open) {
                    let mut depth = 0;
                    while let Some(tok) = t.get(i) {
                        match tok {
                            Token::Open => depth += 1,
                            Token::Close => depth -= 1,
                            _ => {}
                        }
                        i += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                } else {
                    i += 1;
                }
            }
        }
    }
    Some(f)
}

/// An IMAP date-time, `" 4-Nov-2023 22:13:20 +0000"`.
fn parse_date(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_str(s.trim(), "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Piece {
        Piece::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn fetch_with_literal() {
        let r = vec![
            text("* 3 FETCH (UID 7 FLAGS (\\Seen \\Recent $Forwarded) INTERNALDATE \" 4-Nov-2023 22:13:20 +0000\" BODY[] {5}"),
            Piece::Literal(b"ab\r\nc".to_vec()),
            text(")"),
        ];
        let f = parse_fetch(&r).unwrap();
        assert_eq!(f.uid, Some(7));
        assert_eq!(f.flags, ["\\Seen", "$Forwarded"]);
        assert_eq!(f.internal_date, Some(1699136000));
        assert_eq!(f.body.as_deref(), Some(&b"ab\r\nc"[..]));
    }

    #[test]
    fn list_lines() {
        let (attrs, sep, name) =
            parse_list(&[text(r#"* LIST (\HasNoChildren \Sent) "/" "Sent Items""#)]).unwrap();
        assert_eq!(attrs, ["\\HasNoChildren", "\\Sent"]);
        assert_eq!(sep, Some(b'/'));
        assert_eq!(name, b"Sent Items");
        let (_, sep, name) = parse_list(&[
            text("* LIST () \".\" {8}"),
            Piece::Literal(b"Work.B&APw-".to_vec()),
        ])
        .unwrap();
        assert_eq!(local_name(&name, sep).as_deref(), Some("Work/Bü"));
        assert_eq!(parse_list(&[text("* LIST")]), None);
        assert_eq!(parse_list(&[text("* LIST (")]), None);
    }

    #[test]
    fn hostile_input_does_not_panic() {
        for s in [
            "* 1 FETCH (UID",
            "* 1 FETCH (FLAGS (",
            "\"",
            "{",
            "{99999999999999999999}",
            "* LIST (\\x) NIL",
        ] {
            let _ = parse_fetch(&[text(s)]);
            let _ = parse_list(&[text(s)]);
            let _ = literal_len(s.as_bytes());
        }
        assert_eq!(literal_len(b"a {12}"), Some(12));
        assert_eq!(literal_len(b"a {12+}"), Some(12));
        assert_eq!(literal_len(b"a {}"), None);
    }
}
