//! Unit-testing a plugin with `cargo test` on the build machine, without a
//! server: build the hook's arguments here, call the hook as a plain
//! function, look at the [`Outcome`](crate::Outcome).
//!
//! ```ignore
//! use mailgate_plugin_sdk::testing::{self, envelope, recipient, session};
//! use mailgate_plugin_sdk::prelude::*;
//!
//! #[test]
//! fn refuses_spam() {
//!     testing::set_config(r#"{"threshold": 5}"#);
//!     let m = Message::from_eml(include_bytes!("../tests/spam.eml").to_vec());
//!     let out = MyPlugin::data(&session(), &envelope("a@remote.test", &["b@example.org"]), &m);
//!     assert!(matches!(out.verdict, Verdict::Reject(_)));
//!     assert_eq!(testing::logs(), vec!["info: spam".to_string()]);
//! }
//! ```
//!
//! Off WebAssembly (that is, in `cargo test` on the build machine) the
//! capabilities are served here, per test thread: `config` returns what
//! [`set_config`] set (`{}` by default), `kv` is an in-memory map,
//! `clock` reads [`set_clock`]'s time, `dns` answers what [`set_dns`]
//! was given (`not-found` otherwise), and `log` lines are collected for
//! [`logs`]. Grants are not checked here; `mailgate plugin check` and
//! `mailgate plugin run` check them in the real runtime.
//!
//! The mock message answers `header`, `header-names`, `size` and `raw`
//! from the bytes as given, and `text-parts` from a single-part body or
//! the text parts of a `multipart/*` body, base64 and quoted-printable
//! decoded; charsets other than UTF-8/ASCII are not converted (the host
//! converts them). `mailgate plugin run` runs the real host parser.

// The capability mocks are only called off WebAssembly.
#![cfg_attr(target_arch = "wasm32", allow(dead_code))]

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::{AuthResults, Envelope, Recipient, Session, TextPart};

/// The session of a test: a client at 192.0.2.1:40000 on the `mx`
/// listener, HELO `client.test`, no TLS, not authenticated.
pub fn session() -> Session {
    Session {
        client_ip: "192.0.2.1".into(),
        client_port: 40000,
        reverse_name: None,
        tls: false,
        helo: Some("client.test".into()),
        auth_user: None,
        listener: "mx".into(),
        session_id: "test".into(),
    }
}

/// An envelope from `from` ("" for `<>`) to `rcpts`, without parameters.
pub fn envelope(from: &str, rcpts: &[&str]) -> Envelope {
    Envelope {
        mail_from: from.into(),
        mail_params: Vec::new(),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
    }
}

/// A recipient `address` (lower-cased), local to account `address`
/// itself, with its `+tag` if it has one.
pub fn recipient(address: &str) -> Recipient {
    let address = address.to_ascii_lowercase();
    let tag = address
        .split('@')
        .next()
        .and_then(|local| local.split_once('+'))
        .map(|(_, tag)| tag.to_string());
    Recipient {
        account: Some(address.clone()),
        address,
        params: Vec::new(),
        tag,
    }
}

thread_local! {
    static STATE: RefCell<Mock> = RefCell::new(Mock::default());
}

#[derive(Default)]
struct Mock {
    config: Option<String>,
    kv: BTreeMap<String, Vec<u8>>,
    now: u64,
    monotonic_ms: u64,
    dns: BTreeMap<(String, String), Vec<String>>,
    logs: Vec<String>,
    http_responses:
        std::collections::VecDeque<Result<crate::http::Response, crate::http::HttpError>>,
    http_requests: Vec<SentRequest>,
}

/// A request a plugin sent through `http` in a unit test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    /// The method.
    pub method: String,
    /// The URL.
    pub url: String,
    /// The header fields.
    pub headers: Vec<(String, String)>,
    /// The body (the message's bytes for `send_message`).
    pub body: Vec<u8>,
}

/// Queues the answer of the next `http::send`/`http::send_message` in this
/// test thread (answers are used in order; with none queued a request
/// fails with `not-allowed`).
pub fn push_http_answer(answer: Result<crate::http::Response, crate::http::HttpError>) {
    with(|m| m.http_responses.push_back(answer));
}

/// The requests sent so far in this test thread, emptied by the call.
pub fn http_requests() -> Vec<SentRequest> {
    with(|m| std::mem::take(&mut m.http_requests))
}

pub(crate) fn http(
    request: &crate::http::Request,
    body: Vec<u8>,
) -> Result<crate::http::Response, crate::http::HttpError> {
    with(|m| {
        m.http_requests.push(SentRequest {
            method: request.method.clone(),
            url: request.url.clone(),
            headers: request.headers.clone(),
            body,
        });
        m.http_responses.pop_front().unwrap_or_else(|| {
            Err(crate::http::HttpError::NotAllowed(
                "no answer queued (testing::push_http_answer)".into(),
            ))
        })
    })
}

fn with<R>(f: impl FnOnce(&mut Mock) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

/// Sets the JSON the `config` capability returns in this test thread.
pub fn set_config(json: &str) {
    with(|m| m.config = Some(json.to_string()));
}

/// Sets what `clock::now` (Unix seconds) and `clock::monotonic_ms` return.
pub fn set_clock(now: u64, monotonic_ms: u64) {
    with(|m| {
        m.now = now;
        m.monotonic_ms = monotonic_ms;
    });
}

/// Makes `dns::lookup(name, kind)` answer `records` (kind as written in
/// the WIT: "a", "aaaa", "mx", "txt", "ptr").
pub fn set_dns(name: &str, kind: &str, records: &[&str]) {
    with(|m| {
        m.dns.insert(
            (name.to_ascii_lowercase(), kind.to_ascii_lowercase()),
            records.iter().map(|r| r.to_string()).collect(),
        )
    });
}

/// The log lines written so far in this test thread (`"info: text"`),
/// emptied by the call.
pub fn logs() -> Vec<String> {
    with(|m| std::mem::take(&mut m.logs))
}

/// Forgets the config, key-value pairs, clock, DNS answers and log lines
/// of this test thread.
pub fn reset() {
    with(|m| *m = Mock::default());
}

// The capabilities off WebAssembly (crate-internal).
pub(crate) fn config_json() -> String {
    with(|m| m.config.clone().unwrap_or_else(|| "{}".into()))
}
pub(crate) fn log(level: &str, text: &str) {
    with(|m| m.logs.push(format!("{level}: {text}")));
}
pub(crate) fn kv_get(key: &str) -> Option<Vec<u8>> {
    with(|m| m.kv.get(key).cloned())
}
pub(crate) fn kv_set(key: &str, value: &[u8]) {
    with(|m| m.kv.insert(key.to_string(), value.to_vec()));
}
pub(crate) fn kv_delete(key: &str) {
    with(|m| m.kv.remove(key));
}
pub(crate) fn kv_increment(key: &str, delta: i64) -> Result<i64, String> {
    with(|m| {
        let old = match m.kv.get(key) {
            None => 0,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| "not an integer".to_string())?,
        };
        let new = old.saturating_add(delta);
        m.kv.insert(key.to_string(), new.to_string().into_bytes());
        Ok(new)
    })
}
pub(crate) fn mock_bytes(m: &MockMessage) -> Vec<u8> {
    m.raw.clone()
}
pub(crate) fn now() -> (u64, u64) {
    with(|m| (m.now, m.monotonic_ms))
}
pub(crate) fn dns(name: &str, kind: &str) -> Option<Vec<String>> {
    with(|m| {
        m.dns
            .get(&(name.trim_end_matches('.').to_ascii_lowercase(), kind.into()))
            .cloned()
    })
}

/// A message built from `.eml` bytes (see [`crate::Message::from_eml`]).
pub(crate) struct MockMessage {
    pub(crate) raw: Vec<u8>,
    pub(crate) auth: Option<AuthResults>,
    /// (name, unfolded value) of each field.
    fields: Vec<(String, String)>,
    body_start: usize,
}

impl MockMessage {
    pub(crate) fn new(raw: Vec<u8>) -> MockMessage {
        let (fields, body_start) = parse_header(&raw);
        MockMessage {
            raw,
            auth: None,
            fields,
            body_start,
        }
    }

    pub(crate) fn header(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub(crate) fn header_names(&self) -> Vec<String> {
        self.fields.iter().map(|(n, _)| n.clone()).collect()
    }

    pub(crate) fn text_parts(&self, max_bytes: u32) -> Vec<TextPart> {
        let mut out = Vec::new();
        let content_type = self.header("content-type").into_iter().next();
        let encoding = self.header("content-transfer-encoding").into_iter().next();
        collect_parts(
            content_type.as_deref(),
            encoding.as_deref(),
            &self.raw[self.body_start..],
            &mut out,
            0,
        );
        let mut left = max_bytes as usize;
        let mut parts = Vec::new();
        for (content_type, mut text) in out {
            if left == 0 {
                break;
            }
            if text.len() > left {
                let mut cut = left;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            left -= text.len();
            parts.push(TextPart { content_type, text });
        }
        parts
    }
}

/// The fields of the header and where the body starts.
fn parse_header(raw: &[u8]) -> (Vec<(String, String)>, usize) {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = String::from_utf8_lossy(&raw[pos..end]);
        let line = line.trim_end_matches(['\r', '\n']);
        pos = end;
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    (fields, pos)
}

/// The parameter `name` of a header value (`boundary="x"`).
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn collect_parts(
    content_type: Option<&str>,
    encoding: Option<&str>,
    body: &[u8],
    out: &mut Vec<(String, String)>,
    depth: u32,
) {
    let ct = content_type.unwrap_or("text/plain");
    let kind = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if kind.starts_with("multipart/") && depth < 8 {
        let Some(boundary) = param(ct, "boundary") else {
            return;
        };
        let text = String::from_utf8_lossy(body);
        let delimiter = format!("--{boundary}");
        for part in text.split(delimiter.as_str()).skip(1) {
            if part.starts_with("--") {
                break;
            }
            let part = part.trim_start_matches(['\r', '\n']).as_bytes();
            let (fields, start) = parse_header(part);
            let get = |n: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.as_str())
            };
            collect_parts(
                get("content-type"),
                get("content-transfer-encoding"),
                &part[start..],
                out,
                depth + 1,
            );
        }
        return;
    }
    if kind != "text/plain" && kind != "text/html" {
        return;
    }
    let decoded = match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        Some("base64") => base64(body),
        Some("quoted-printable") => quoted_printable(body),
        _ => body.to_vec(),
    };
    let text = String::from_utf8_lossy(&decoded).replace("\r\n", "\n");
    out.push((kind, text.trim_end_matches('\n').to_string()));
}

fn base64(input: &[u8]) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for v in input.iter().filter_map(|&c| value(c)) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn quoted_printable(input: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'=' if input[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' if input[i + 1..].starts_with(b"\n") => i += 2,
            b'=' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(a), Some(b)) => {
                    out.push((a * 16 + b) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::Message;

    #[test]
    fn mock_message_answers_like_the_host() {
        let m = Message::from_eml(
            "From: a@remote.test\r\nSubject: hello\r\n  world\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nau lait\r\n--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n--b--\r\n",
        );
        assert_eq!(m.header("subject"), vec!["hello world".to_string()]);
        assert_eq!(m.header_names(), vec!["From", "Subject", "Content-Type"]);
        let parts = m.text_parts(1000);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].text, "café au lait");
        assert_eq!(parts[1].content_type, "text/html");
        assert_eq!(parts[1].text, "<b>hi</b>");
        assert_eq!(m.text_parts(4)[0].text, "caf");
        assert_eq!(m.raw(0, 4), b"From");
    }
}
