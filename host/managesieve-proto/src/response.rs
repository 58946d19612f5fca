//! Replies (RFC 5804 section 1.3, 4): `OK`/`NO`/`BYE` with an optional
//! response code and text, strings quoted or as literals, the capability
//! list, `LISTSCRIPTS` and `GETSCRIPT` bodies.
//!
//! ```text
//! response-oknobye = ("OK" / "NO" / "BYE") [SP "(" resp-code ")"] [SP string] CRLF
//! string           = quoted / literal-s2c          ; literal-s2c = "{" number "}" CRLF *OCTET
//! ```

/// A response code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// `AUTH-TOO-WEAK`
    AuthTooWeak,
    /// `ENCRYPT-NEEDED`: log in after STARTTLS.
    EncryptNeeded,
    /// `QUOTA/MAXSCRIPTS`
    QuotaMaxScripts,
    /// `QUOTA/MAXSIZE`
    QuotaMaxSize,
    /// `TRYLATER`: our fault, temporary.
    TryLater,
    /// `ACTIVE`: the script is active (DELETESCRIPT refused).
    Active,
    /// `NONEXISTENT`
    NonExistent,
    /// `ALREADYEXISTS`
    AlreadyExists,
    /// `TAG "..."` (NOOP's tag back).
    Tag(String),
    /// `WARNINGS`: accepted, with warnings in the text.
    Warnings,
}

impl Code {
    fn write(&self, out: &mut Vec<u8>) {
        let s = match self {
            Code::AuthTooWeak => "AUTH-TOO-WEAK",
            Code::EncryptNeeded => "ENCRYPT-NEEDED",
            Code::QuotaMaxScripts => "QUOTA/MAXSCRIPTS",
            Code::QuotaMaxSize => "QUOTA/MAXSIZE",
            Code::TryLater => "TRYLATER",
            Code::Active => "ACTIVE",
            Code::NonExistent => "NONEXISTENT",
            Code::AlreadyExists => "ALREADYEXISTS",
            Code::Warnings => "WARNINGS",
            Code::Tag(t) => {
                out.extend_from_slice(b"TAG ");
                string(out, t.as_bytes());
                return;
            }
        };
        out.extend_from_slice(s.as_bytes());
    }
}

/// The kind of a final reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`
    Ok,
    /// `NO`
    No,
    /// `BYE`: the server closes the connection.
    Bye,
}

/// Writes `OK`/`NO`/`BYE` with an optional code and text.
pub fn reply(status: Status, code: Option<&Code>, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(match status {
        Status::Ok => b"OK".as_slice(),
        Status::No => b"NO",
        Status::Bye => b"BYE",
    });
    if let Some(c) = code {
        out.extend_from_slice(b" (");
        c.write(&mut out);
        out.push(b')');
    }
    if !text.is_empty() {
        out.push(b' ');
        string(&mut out, text.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes a string: quoted when it is short and holds no CR, LF or NUL,
/// else as a literal (which carries any octets safely, NUL too: unlike
/// IMAP's, hence not `write_string`). The quoted form is IMAP's.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 1024 && !s.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        mailgate_imap_proto::response::write_quoted(out, s);
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

/// What the server announces (RFC 5804 section 1.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// `IMPLEMENTATION`
    pub implementation: String,
    /// `SIEVE`: the extensions, space-separated on the wire.
    pub sieve: Vec<String>,
    /// `SASL`: the mechanisms offered now (none before TLS when plain
    /// text is not allowed).
    pub sasl: Vec<String>,
    /// `STARTTLS`, offered before TLS only.
    pub starttls: bool,
    /// `MAXREDIRECTS`
    pub max_redirects: Option<usize>,
}

/// The capability lines and the final `OK` (also the greeting).
pub fn capabilities(c: &Capabilities) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = |name: &str, value: Option<&str>| {
        string(&mut out, name.as_bytes());
        if let Some(v) = value {
            out.push(b' ');
            string(&mut out, v.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    };
    line("IMPLEMENTATION", Some(&c.implementation));
    line("SIEVE", Some(&c.sieve.join(" ")));
    line("SASL", Some(&c.sasl.join(" ")));
    if c.starttls {
        line("STARTTLS", None);
    }
    if let Some(n) = c.max_redirects {
        line("MAXREDIRECTS", Some(&n.to_string()));
    }
    line("VERSION", Some("1.0"));
    out.extend_from_slice(&reply(Status::Ok, None, ""));
    out
}

/// `LISTSCRIPTS`: one line per script, ` ACTIVE` after the active one.
pub fn list_scripts<'a>(scripts: impl IntoIterator<Item = (&'a str, bool)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, active) in scripts {
        string(&mut out, name.as_bytes());
        if active {
            out.extend_from_slice(b" ACTIVE");
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&reply(Status::Ok, None, ""));
    out
}

/// `GETSCRIPT`: the script as a literal, then `OK`.
pub fn get_script(script: &[u8]) -> Vec<u8> {
    let mut out = format!("{{{}}}\r\n", script.len()).into_bytes();
    out.extend_from_slice(script);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&reply(Status::Ok, None, ""));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn replies() {
        assert_eq!(s(reply(Status::Ok, None, "")), "OK\r\n");
        assert_eq!(
            s(reply(
                Status::No,
                Some(&Code::NonExistent),
                "There is no \"x\""
            )),
            "NO (NONEXISTENT) \"There is no \\\"x\\\"\"\r\n"
        );
        assert_eq!(
            s(reply(Status::Ok, Some(&Code::Tag("t1".into())), "Done")),
            "OK (TAG \"t1\") \"Done\"\r\n"
        );
        // Text with a line break goes as a literal, never raw.
        assert_eq!(
            s(reply(Status::No, None, "line 1: error\r\nline 2")),
            "NO {21}\r\nline 1: error\r\nline 2\r\n"
        );
        assert_eq!(
            s(reply(Status::Bye, Some(&Code::TryLater), "bye")),
            "BYE (TRYLATER) \"bye\"\r\n"
        );
    }

    #[test]
    fn bodies() {
        let caps = Capabilities {
            implementation: "mailgate".into(),
            sieve: vec!["fileinto".into(), "vacation".into()],
            sasl: vec!["PLAIN".into()],
            starttls: true,
            max_redirects: Some(4),
        };
        assert_eq!(
            s(capabilities(&caps)),
            "\"IMPLEMENTATION\" \"mailgate\"\r\n\"SIEVE\" \"fileinto vacation\"\r\n\"SASL\" \"PLAIN\"\r\n\
\"STARTTLS\"\r\n\"MAXREDIRECTS\" \"4\"\r\n\"VERSION\" \"1.0\"\r\nOK\r\n"
        );
        assert_eq!(
            s(list_scripts([("a", false), ("b", true)])),
            "\"a\"\r\n\"b\" ACTIVE\r\nOK\r\n"
        );
        assert_eq!(s(get_script(b"keep;")), "{5}\r\nkeep;\r\nOK\r\n");
    }
}
