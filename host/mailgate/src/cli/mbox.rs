//! mbox files, read for `mailgate import mbox` and written by `mailgate
//! export mbox`.
//!
//! # Format
//! Messages follow each other, each starting with a `From ` line (`From
//! <sender> <asctime date>`) at the start of the file or after an empty
//! line, and ending with an empty line. A body line that would start with
//! `From ` is written `>From `; mboxrd quotes `>From ` again (`>>From `),
//! so reading removes one `>` from every `>...>From ` line. Files written
//! by mboxo tools (a lone `>From ` in the original cannot be told from a
//! quoted one) lose that `>`, as with every mboxrd reader.
//!
//! Flags live in header fields that the old server hid from IMAP clients,
//! and which are removed on import: `Status` (`R` read: `\Seen`; `O` old),
//! `X-Status` (`A` `\Answered`, `F` `\Flagged`, `T` `\Draft`, `D`
//! `\Deleted`), `X-Keywords` (keywords, separated by spaces or commas);
//! also Dovecot's and UW-IMAP's `X-UID`, `X-IMAP` and `X-IMAPbase`. The
//! date of the `From ` line (UTC) is the INTERNALDATE.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime};
use mailgate_store::{MailboxInfo, MessageMeta};

use super::export::ExportWriter;
use super::import::{Body, Broken, Source, SourceFolder, SourceMessage};

/// Header fields that carry the old server's state, not the message's.
const STATE_FIELDS: &[&str] = &[
    "status",
    "x-status",
    "x-keywords",
    "x-uid",
    "x-imap",
    "x-imapbase",
];
/// The largest mbox file read (it is read whole).
pub const MAX_MBOX_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Reads an mbox file into one folder named `mailbox`.
pub fn read(file: &Path, mailbox: &str) -> Result<Source, String> {
    let mut source = Source::default();
    let len = fs::metadata(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?
        .len();
    if len > MAX_MBOX_BYTES {
        return Err(format!(
            "{} is {len} bytes, more than the {MAX_MBOX_BYTES} an mbox import reads; split it first",
            file.display()
        ));
    }
    let data = fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut folder = SourceFolder {
        name: mailbox.to_string(),
        ..SourceFolder::default()
    };
    if !data.is_empty() && !data.starts_with(b"From ") {
        source.broken.push(Broken {
            origin: file.display().to_string(),
            reason: "not an mbox file (it does not start with a `From ` line)".into(),
        });
        source.folders.push(folder);
        return Ok(source);
    }
    for (n, (from_line, raw)) in split(&data).into_iter().enumerate() {
        let (raw, flags) = extract_state(&unquote(raw));
        folder.messages.push(SourceMessage {
            origin: format!("{} message {} ", file.display(), n + 1)
                .trim_end()
                .to_string(),
            body: Body::Bytes(raw),
            uid: None,
            flags,
            internal_date: from_line_date(from_line),
            pop3_uidl: None,
        });
    }
    source.folders.push(folder);
    Ok(source)
}

/// The messages of an mbox: (`From ` line, message lines after it), the
/// empty line before the next `From ` line left out.
fn split(data: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut starts = Vec::new();
    let mut pos = 0;
    let mut prev_empty = true;
    while pos < data.len() {
        let end = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| pos + i + 1);
        let line = &data[pos..end];
        if prev_empty && line.starts_with(b"From ") {
            starts.push(pos);
        }
        prev_empty = line == b"\n" || line == b"\r\n";
        pos = end;
    }
    let mut out = Vec::with_capacity(starts.len());
    for (i, &s) in starts.iter().enumerate() {
        let e = starts.get(i + 1).copied().unwrap_or(data.len());
        let chunk = &data[s..e];
        let nl = chunk
            .iter()
            .position(|&b| b == b'\n')
            .map_or(chunk.len(), |i| i + 1);
        let (from, mut body) = chunk.split_at(nl);
        // The separator: one empty line before the next message.
        if i + 1 < starts.len() || body.ends_with(b"\n\n") || body.ends_with(b"\r\n\r\n") {
            if let Some(b) = body.strip_suffix(b"\r\n") {
                body = b;
            } else if let Some(b) = body.strip_suffix(b"\n") {
                body = b;
            }
        }
        out.push((from, body));
    }
    out
}

/// Removes one `>` from every `>...>From ` line (mboxrd).
fn unquote(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        if quotes > 0 && line[quotes..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Takes the state fields out of the header; returns the message without
/// them and the flags they held.
fn extract_state(raw: &[u8]) -> (Vec<u8>, Vec<String>) {
    let header_len = mailgate_store::structure::header_block_len(raw);
    let mut out = Vec::with_capacity(raw.len());
    let mut flags = Vec::new();
    let mut skipping = false;
    for line in raw[..header_len].split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if continuation && skipping {
            continue;
        }
        skipping = false;
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
            if STATE_FIELDS.contains(&name.trim()) {
                skipping = true;
                let value = String::from_utf8_lossy(&line[colon + 1..])
                    .trim()
                    .to_string();
                match name.trim() {
                    "status" if value.contains('R') => flags.push("\\Seen".to_string()),
                    "x-status" => {
                        for (c, f) in [
                            ('A', "\\Answered"),
                            ('F', "\\Flagged"),
                            ('T', "\\Draft"),
                            ('D', "\\Deleted"),
                        ] {
                            if value.contains(c) {
                                flags.push(f.to_string());
                            }
                        }
                    }
                    "x-keywords" => flags.extend(
                        value
                            .split([' ', ','])
                            .filter(|k| !k.is_empty())
                            .map(str::to_string),
                    ),
                    _ => {}
                }
                continue;
            }
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(&raw[header_len..]);
    flags.sort();
    flags.dedup();
    (out, flags)
}

/// The date of a `From sender Www Mmm dd hh:mm:ss yyyy` line, UTC.
fn from_line_date(line: &[u8]) -> Option<i64> {
    let text = String::from_utf8_lossy(line);
    let words: Vec<&str> = text.split_whitespace().collect();
    // From, sender, then the five words of the date (a time zone may
    // follow the year in some writers; it is ignored).
    let date = words.get(2..7)?.join(" ");
    NaiveDateTime::parse_from_str(&date, "%a %b %d %H:%M:%S %Y")
        .ok()
        .map(|d| d.and_utc().timestamp())
}

/// Writes each folder as one mboxrd file, LF line ends (what mutt and
/// Python's `mailbox` write).
pub struct Writer {
    root: PathBuf,
    current: Option<(PathBuf, std::io::BufWriter<fs::File>)>,
}

impl Writer {
    /// A writer into `root` (which exists and is empty).
    pub fn new(root: &Path) -> Writer {
        Writer {
            root: root.to_path_buf(),
            current: None,
        }
    }
}

impl ExportWriter for Writer {
    fn begin(&mut self, mb: &MailboxInfo) -> Result<(), String> {
        let path = self.root.join(mb.name.replace('/', "."));
        let file = fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.current = Some((path, std::io::BufWriter::new(file)));
        Ok(())
    }

    fn message(&mut self, meta: &MessageMeta, raw: &[u8]) -> Result<(), String> {
        let Some((path, out)) = self.current.as_mut() else {
            return Ok(());
        };
        let bytes = render(meta, raw);
        out.write_all(&bytes)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn end(&mut self) -> Result<(), String> {
        if let Some((path, mut out)) = self.current.take() {
            out.flush()
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// One message as mboxrd: `From ` line, header with the state fields,
/// body with `From ` lines quoted, an empty line after.
fn render(meta: &MessageMeta, raw: &[u8]) -> Vec<u8> {
    let date = DateTime::from_timestamp(meta.internal_date, 0)
        .unwrap_or_default()
        .format("%a %b %e %H:%M:%S %Y");
    let mut out = format!("From MAILER-DAEMON {date}\n").into_bytes();
    let header_len = mailgate_store::structure::header_block_len(raw);
    let (header, body) = raw.split_at(header_len);
    let header = lf(header);
    let header = header
        .strip_suffix(b"\n\n")
        .map(|h| [h, b"\n"].concat())
        .unwrap_or(header);
    out.extend_from_slice(&header);
    let has = |f: &str| meta.has_flag(f);
    out.extend_from_slice(if has("\\Seen") {
        b"Status: RO\n"
    } else {
        b"Status: O\n"
    });
    let x: String = [
        ('A', "\\Answered"),
        ('F', "\\Flagged"),
        ('T', "\\Draft"),
        ('D', "\\Deleted"),
    ]
    .iter()
    .filter(|(_, f)| has(f))
    .map(|(c, _)| *c)
    .collect();
    if !x.is_empty() {
        out.extend_from_slice(format!("X-Status: {x}\n").as_bytes());
    }
    let keywords: Vec<&str> = meta
        .flags
        .iter()
        .filter(|f| !f.starts_with('\\'))
        .map(String::as_str)
        .collect();
    if !keywords.is_empty() {
        out.extend_from_slice(format!("X-Keywords: {}\n", keywords.join(" ")).as_bytes());
    }
    out.push(b'\n');
    for line in lf(body).split_inclusive(|&b| b == b'\n') {
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        if line[quotes..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// CRLF line ends become LF.
fn lf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_unquotes() {
        let data = b"From a@b Mon Dec  7 11:29:53 2026\nSubject: 1\nStatus: RO\nX-Status: AF\nX-Keywords: $Label1, Work\n\nhi\n>From x\n>>From y\n\nFrom c@d Tue Dec  8 01:02:03 2026\nSubject: 2\n\nbye\n";
        let msgs = split(data);
        assert_eq!(msgs.len(), 2);
        let (raw, flags) = extract_state(&unquote(msgs[0].1));
        assert_eq!(raw, b"Subject: 1\n\nhi\nFrom x\n>From y\n");
        assert_eq!(
            flags,
            ["$Label1", "Work", "\\Answered", "\\Flagged", "\\Seen"]
        );
        assert_eq!(msgs[1].1, b"Subject: 2\n\nbye\n");
        assert_eq!(from_line_date(msgs[1].0), Some(1796691723));
    }

    #[test]
    fn render_round_trip() {
        let meta = MessageMeta {
            uid: mailgate_store::Uid::new(1).unwrap(),
            flags: vec!["$Forwarded".into(), "\\Seen".into()],
            internal_date: 1796691723,
            size: 0,
            modseq: 1,
            blob: 1,
        };
        let raw = b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n";
        let out = render(&meta, raw);
        let msgs = split(&out);
        assert_eq!(msgs.len(), 1);
        let (back, flags) = extract_state(&unquote(msgs[0].1));
        assert_eq!(back, b"Subject: x\n\nFrom here\n>From there\n");
        assert_eq!(flags, ["$Forwarded", "\\Seen"]);
        assert_eq!(from_line_date(msgs[0].0), Some(1796691723));
    }
}
