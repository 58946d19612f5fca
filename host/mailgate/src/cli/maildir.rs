//! Maildir++ as Dovecot (and Courier) keep it, read for `mailgate import
//! maildir` and written by `mailgate export maildir`.
//!
//! # Layout (Dovecot's default `LAYOUT=maildir++`)
//! - `DIR/{cur,new,tmp}`: INBOX; `DIR/.Name`, `DIR/.Name.Sub`: folders,
//!   `.` between levels, each level in modified UTF-7 (RFC 3501 §5.1.3).
//! - File names: `<time>.<unique>[,S=<size>][,W=<vsize>]:2,<flags>`; the
//!   flags are `D` draft, `F` flagged, `P` passed (forwarded), `R`
//!   replied, `S` seen, `T` trashed (`\Deleted`), and `a`..`z` the
//!   keywords numbered 0..25 in the folder's `dovecot-keywords`. Dovecot
//!   does not show `P` (mutt writes it); it is read as `$Forwarded`, and
//!   written as that keyword, which Dovecot does show.
//! - `dovecot-uidlist`: a header line `3 V<uidvalidity> N<uidnext> ...`
//!   (version 1: `1 <uidvalidity> <uidnext>`), then one line per message,
//!   `<uid> [<key><value> ...] :<file name without :2,...>`; the key `P`
//!   is a POP3 UIDL Dovecot kept from an earlier migration.
//! - `subscriptions` in DIR: `V\t2` and an empty line, then one name per
//!   line with TAB between levels (version 1: one name per line).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use mailgate_store::{MailboxInfo, MessageMeta};

use super::export::ExportWriter;
use super::import::{Body, Broken, DateSource, Source, SourceFolder, SourceMessage};

/// The dovecot-uidlist of a folder, if it has one this code understands.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UidList {
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// The UID the next message would have got.
    pub uid_next: u32,
    /// File name base -> (UID, POP3 UIDL kept, GUID).
    pub entries: HashMap<String, (u32, Option<String>, Option<String>)>,
}

/// Parses dovecot-uidlist; `None` if its header is not understood.
pub fn parse_uidlist(text: &str) -> Option<UidList> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(' ').collect();
    let mut list = UidList::default();
    match header.first().copied()? {
        "1" => {
            list.uid_validity = header.get(1)?.parse().ok()?;
            list.uid_next = header.get(2)?.parse().ok()?;
        }
        "2" | "3" => {
            for field in &header[1..] {
                let (key, value) = field.split_at_checked(1)?;
                match key {
                    "V" => list.uid_validity = value.parse().ok()?,
                    "N" => list.uid_next = value.parse().ok()?,
                    _ => {}
                }
            }
        }
        _ => return None,
    }
    if list.uid_validity == 0 {
        return None;
    }
    for line in lines {
        let Some((uid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        if uid == 0 {
            continue;
        }
        let (fields, name) = match rest.find(':') {
            // Version 3: the extension fields, then `:` and the name.
            Some(i) if i == 0 || rest.as_bytes()[i - 1] == b' ' => (&rest[..i], &rest[i + 1..]),
            // Versions 1 and 2: fields (if any) and the name last.
            _ => match rest.rsplit_once(' ') {
                Some((f, n)) => (f, n),
                None => ("", rest),
            },
        };
        let mut pop3 = None;
        let mut guid = None;
        for f in fields.split(' ') {
            if let Some(v) = f.strip_prefix('P') {
                pop3 = Some(v.to_string());
            } else if let Some(v) = f.strip_prefix('G') {
                guid = Some(v.to_string());
            }
        }
        let base = name.split(':').next().unwrap_or(name);
        if !base.is_empty() {
            list.entries.insert(base.to_string(), (uid, pop3, guid));
        }
    }
    Some(list)
}

/// A POP3 UIDL format of Dovecot (`pop3_uidl_format`), limited to what
/// a Maildir import knows: `%u` UID, `%v` UIDVALIDITY, `%f` file name,
/// `%g` GUID, with an optional zero-padded width and `X` or `x` for
/// hexadecimal (lower case either way, as Dovecot writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidlFormat(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var {
        width: usize,
        hex: Option<bool>,
        var: char,
    },
}

impl UidlFormat {
    /// Parses a format such as `%08Xu%08Xv`.
    pub fn parse(s: &str) -> Result<UidlFormat, String> {
        let mut pieces = Vec::new();
        let mut chars = s.chars().peekable();
        let mut text = String::new();
        while let Some(c) = chars.next() {
            if c != '%' {
                text.push(c);
                continue;
            }
            if chars.peek() == Some(&'%') {
                chars.next();
                text.push('%');
                continue;
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            let mut width = 0usize;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                width = width * 10 + d as usize;
                chars.next();
                if width > 64 {
                    return Err(format!("POP3 UIDL format {s:?}: width too large"));
                }
            }
            let hex = match chars.peek() {
                Some('X') => Some(true),
                Some('x') => Some(false),
                _ => None,
            };
            if hex.is_some() {
                chars.next();
            }
            match chars.next() {
                Some(var @ ('u' | 'v' | 'f' | 'g')) => pieces.push(Piece::Var { width, hex, var }),
                other => {
                    return Err(format!(
                        "POP3 UIDL format {s:?}: unknown variable %{}; known: %u %v %f %g",
                        other.map(String::from).unwrap_or_default()
                    ))
                }
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(UidlFormat(pieces))
    }

    /// The UIDL of one message.
    pub fn render(&self, uid: u32, uid_validity: u32, file: &str, guid: Option<&str>) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var { width, hex, var } => {
                    let number = match var {
                        'u' => Some(uid),
                        'v' => Some(uid_validity),
                        _ => None,
                    };
                    let s = match (number, hex) {
                        // Dovecot writes hexadecimal in lower case for
                        // both (`%08Xu%08Xv` gives `000000016b169fe7`).
                        (Some(n), Some(_)) => format!("{n:0width$x}"),
                        (Some(n), None) => format!("{n:0width$}"),
                        (None, _) if *var == 'f' => file.to_string(),
                        (None, _) => guid.unwrap_or_default().to_string(),
                    };
                    out.push_str(&s);
                }
            }
        }
        out
    }
}

/// Reads a Maildir++ tree.
pub fn read(dir: &Path, dates: DateSource, uidl: Option<UidlFormat>) -> Result<Source, String> {
    if !dir.join("cur").is_dir() {
        return Err(format!(
            "{} is not a Maildir (it has no cur/ directory)",
            dir.display()
        ));
    }
    let mut source = Source::default();
    let subscriptions = read_subscriptions(dir);
    let mut dirs = vec![("INBOX".to_string(), dir.to_path_buf())];
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let file = e.file_name();
        let Some(name) = file.to_str() else {
            source.broken.push(Broken {
                origin: e.path().display().to_string(),
                reason: "folder name is not UTF-8".into(),
            });
            continue;
        };
        let Some(encoded) = name.strip_prefix('.') else {
            continue;
        };
        if encoded.is_empty() || encoded == "." || !e.path().join("cur").is_dir() {
            continue;
        }
        match folder_name(encoded) {
            Some(n) => dirs.push((n, e.path())),
            None => source.broken.push(Broken {
                origin: e.path().display().to_string(),
                reason: "folder name is not valid modified UTF-7".into(),
            }),
        }
    }
    for (name, path) in dirs {
        let is_inbox = name == "INBOX";
        let mut folder = read_folder(&path, is_inbox, dates, uidl.as_ref(), &mut source.broken);
        folder.subscribed = subscriptions.as_ref().map(|s| s.contains(&name));
        folder.name = name;
        source.folders.push(folder);
    }
    Ok(source)
}

/// `Name.Sub` (modified UTF-7 levels) -> `Name/Sub`.
fn folder_name(encoded: &str) -> Option<String> {
    let mut levels = Vec::new();
    for level in encoded.split('.') {
        if level.is_empty() {
            return None;
        }
        levels.push(mailgate_imap_proto::mutf7::decode(level.as_bytes())?);
    }
    let name = levels.join("/");
    if name.eq_ignore_ascii_case("INBOX") {
        return Some("INBOX".into());
    }
    Some(name)
}

/// `Name/Sub` -> `Name.Sub`, each level in modified UTF-7.
fn folder_dir(name: &str) -> String {
    name.split('/')
        .map(mailgate_imap_proto::mutf7::encode)
        .collect::<Vec<_>>()
        .join(".")
}

fn read_subscriptions(dir: &Path) -> Option<Vec<String>> {
    let text = fs::read_to_string(dir.join("subscriptions")).ok()?;
    let mut lines = text.lines().peekable();
    let v2 = lines.peek() == Some(&"V\t2");
    if v2 {
        lines.next();
    }
    Some(
        lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let name = if v2 {
                    l.replace('\t', "/")
                } else {
                    l.to_string()
                };
                if name.eq_ignore_ascii_case("INBOX") {
                    "INBOX".into()
                } else {
                    name
                }
            })
            .collect(),
    )
}

fn read_keywords(dir: &Path) -> HashMap<u8, String> {
    let mut out = HashMap::new();
    if let Ok(text) = fs::read_to_string(dir.join("dovecot-keywords")) {
        for line in text.lines() {
            if let Some((n, name)) = line.split_once(' ') {
                if let Ok(n) = n.parse::<u8>() {
                    if n < 26 && !name.is_empty() {
                        out.insert(n, name.to_string());
                    }
                }
            }
        }
    }
    out
}

fn read_folder(
    dir: &Path,
    is_inbox: bool,
    dates: DateSource,
    uidl: Option<&UidlFormat>,
    broken: &mut Vec<Broken>,
) -> SourceFolder {
    let list = match fs::read_to_string(dir.join("dovecot-uidlist")) {
        Ok(text) => {
            let l = parse_uidlist(&text);
            if l.is_none() {
                broken.push(Broken {
                    origin: dir.join("dovecot-uidlist").display().to_string(),
                    reason: "header not understood; UIDs not kept for this folder".into(),
                });
            }
            l
        }
        Err(_) => None,
    };
    let keywords = read_keywords(dir);
    let mut numbered = Vec::new();
    let mut others = Vec::new();
    for sub in ["cur", "new"] {
        let path = dir.join(sub);
        let Ok(rd) = fs::read_dir(&path) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let file = e.file_name();
            let Some(name) = file.to_str() else {
                broken.push(Broken {
                    origin: e.path().display().to_string(),
                    reason: "file name is not UTF-8".into(),
                });
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let (base, info) = match name.split_once(":2,").or_else(|| name.split_once("!2,")) {
                Some((b, i)) => (b, Some(i)),
                None => (name.split(':').next().unwrap_or(name), None),
            };
            let mut flags = Vec::new();
            if let Some(info) = info {
                for c in info.chars() {
                    let f = match c {
                        'D' => "\\Draft".to_string(),
                        'F' => "\\Flagged".to_string(),
                        'P' => "$Forwarded".to_string(),
                        'R' => "\\Answered".to_string(),
                        'S' => "\\Seen".to_string(),
                        'T' => "\\Deleted".to_string(),
                        'a'..='z' => match keywords.get(&(c as u8 - b'a')) {
                            Some(k) => k.clone(),
                            None => continue,
                        },
                        _ => continue,
                    };
                    if !flags.contains(&f) {
                        flags.push(f);
                    }
                }
            }
            let mtime = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            let from_name = base
                .split('.')
                .next()
                .and_then(|t| t.parse::<i64>().ok())
                .filter(|&t| t > 0);
            let internal_date = match dates {
                DateSource::Mtime => mtime.or(from_name),
                DateSource::Filename => from_name.or(mtime),
            };
            let known = list.as_ref().and_then(|l| l.entries.get(base));
            let pop3_uidl = match (known, &list) {
                (Some((uid, kept, guid)), Some(l)) if is_inbox => kept.clone().or_else(|| {
                    uidl.map(|f| f.render(*uid, l.uid_validity, base, guid.as_deref()))
                }),
                _ => None,
            };
            let msg = SourceMessage {
                origin: e.path().display().to_string(),
                body: Body::File(e.path()),
                uid: known.map(|k| k.0),
                flags,
                internal_date,
                pop3_uidl,
            };
            match msg.uid {
                Some(_) => numbered.push(msg),
                None => others.push((internal_date, msg)),
            }
        }
    }
    numbered.sort_by_key(|m| m.uid);
    others.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.origin.cmp(&b.1.origin)));
    numbered.extend(others.into_iter().map(|(_, m)| m));
    SourceFolder {
        name: String::new(),
        uid_validity: list.as_ref().map(|l| l.uid_validity),
        uid_next: list.as_ref().map(|l| l.uid_next),
        subscribed: None,
        messages: numbered,
        ..SourceFolder::default()
    }
}

/// Writes an account as a Maildir++ tree with dovecot-uidlist,
/// dovecot-keywords and subscriptions, so Dovecot keeps UIDVALIDITY and
/// UIDs. Files keep the bytes as stored (CRLF line ends, which Dovecot and
/// mutt read).
pub struct Writer {
    root: PathBuf,
    subscriptions: Vec<String>,
    current: Option<Folder>,
}

struct Folder {
    dir: PathBuf,
    uid_validity: u32,
    uid_next: u32,
    uidlist: String,
    keywords: Vec<String>,
}

impl Writer {
    /// A writer into `root` (which exists and is empty).
    pub fn new(root: &Path, subscriptions: Vec<String>) -> Result<Writer, String> {
        Ok(Writer {
            root: root.to_path_buf(),
            subscriptions,
            current: None,
        })
    }
}

fn io(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

impl ExportWriter for Writer {
    fn begin(&mut self, mb: &MailboxInfo) -> Result<(), String> {
        let dir = if mb.name == "INBOX" {
            self.root.clone()
        } else {
            self.root.join(format!(".{}", folder_dir(&mb.name)))
        };
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| io(&dir, e))?;
        }
        if mb.name != "INBOX" {
            // Dovecot's marker of a Maildir++ folder.
            fs::write(dir.join("maildirfolder"), b"").map_err(|e| io(&dir, e))?;
        }
        self.current = Some(Folder {
            dir,
            uid_validity: mb.uid_validity,
            uid_next: mb.uid_next,
            uidlist: String::new(),
            keywords: Vec::new(),
        });
        Ok(())
    }

    fn message(&mut self, meta: &MessageMeta, raw: &[u8]) -> Result<(), String> {
        let Some(f) = self.current.as_mut() else {
            return Ok(());
        };
        let mut letters = String::new();
        let mut keyword_letters = String::new();
        for flag in &meta.flags {
            match flag.as_str() {
                "\\Draft" => letters.push('D'),
                "\\Flagged" => letters.push('F'),
                "\\Answered" => letters.push('R'),
                "\\Seen" => letters.push('S'),
                "\\Deleted" => letters.push('T'),
                k => {
                    let i = match f.keywords.iter().position(|x| x == k) {
                        Some(i) => i,
                        None => {
                            f.keywords.push(k.to_string());
                            f.keywords.len() - 1
                        }
                    };
                    // Maildir has letters for 26 keywords per folder.
                    if i < 26 {
                        keyword_letters.push((b'a' + i as u8) as char);
                    }
                }
            }
        }
        let mut all: Vec<char> = letters.chars().chain(keyword_letters.chars()).collect();
        all.sort_unstable();
        let all: String = all.into_iter().collect();
        let base = format!(
            "{}.M{}P{}V{:08X}.mailgate,S={}",
            meta.internal_date.max(0),
            meta.uid,
            std::process::id(),
            f.uid_validity,
            raw.len()
        );
        let path = f.dir.join("cur").join(format!("{base}:2,{all}"));
        fs::write(&path, raw).map_err(|e| io(&path, e))?;
        let when = UNIX_EPOCH + Duration::from_secs(meta.internal_date.max(0) as u64);
        let file = fs::File::options()
            .write(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        file.set_modified(when).map_err(|e| io(&path, e))?;
        f.uidlist.push_str(&format!("{} :{base}\n", meta.uid));
        Ok(())
    }

    fn end(&mut self) -> Result<(), String> {
        let Some(f) = self.current.take() else {
            return Ok(());
        };
        let path = f.dir.join("dovecot-uidlist");
        let text = format!("3 V{} N{}\n{}", f.uid_validity, f.uid_next, f.uidlist);
        fs::write(&path, text).map_err(|e| io(&path, e))?;
        if !f.keywords.is_empty() {
            let path = f.dir.join("dovecot-keywords");
            let mut out = fs::File::create(&path).map_err(|e| io(&path, e))?;
            for (i, k) in f.keywords.iter().enumerate().take(26) {
                writeln!(out, "{i} {k}").map_err(|e| io(&path, e))?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        let path = self.root.join("subscriptions");
        let mut text = String::from("V\t2\n\n");
        for s in &self.subscriptions {
            text.push_str(&s.replace('/', "\t"));
            text.push('\n');
        }
        fs::write(&path, text).map_err(|e| io(&path, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidlist_v3() {
        let l = parse_uidlist(
            "3 V1700000000 N12 G0123abcd\n1 :1700.M1P2.host\n5 W120 S118 :1700.M5P2.host\n9 P0000beef :1700.M9P2.host,S=3\n",
        )
        .unwrap();
        assert_eq!(l.uid_validity, 1700000000);
        assert_eq!(l.uid_next, 12);
        assert_eq!(l.entries["1700.M1P2.host"].0, 1);
        assert_eq!(l.entries["1700.M5P2.host"].0, 5);
        assert_eq!(
            l.entries["1700.M9P2.host,S=3"],
            (9, Some("0000beef".into()), None)
        );
    }

    #[test]
    fn uidlist_v1_and_garbage() {
        let l = parse_uidlist("1 42 7\n3 1700.M1P2.host:2,S\n").unwrap();
        assert_eq!((l.uid_validity, l.uid_next), (42, 7));
        assert_eq!(l.entries["1700.M1P2.host"].0, 3);
        assert_eq!(parse_uidlist(""), None);
        assert_eq!(parse_uidlist("9 V1 N1\n"), None);
        assert_eq!(parse_uidlist("3 Vx N1\n"), None);
        assert_eq!(parse_uidlist("3 V0 N1\n"), None);
    }

    #[test]
    fn dovecot_default_uidl() {
        let f = UidlFormat::parse("%08Xu%08Xv").unwrap();
        assert_eq!(f.render(1, 0x6b16_9fe7, "x", None), "000000016b169fe7");
        let f = UidlFormat::parse("%v.%u-%f%%").unwrap();
        assert_eq!(f.render(3, 9, "name", None), "9.3-name%");
        assert!(UidlFormat::parse("%m").is_err());
    }

    #[test]
    fn folder_names() {
        assert_eq!(
            folder_name("Work.Projects").as_deref(),
            Some("Work/Projects")
        );
        assert_eq!(folder_name("Entw&APw-rfe").as_deref(), Some("Entwürfe"));
        assert_eq!(folder_name("a..b"), None);
        assert_eq!(folder_dir("Entwürfe/x"), "Entw&APw-rfe.x");
    }
}
