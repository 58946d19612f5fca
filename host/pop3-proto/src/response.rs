//! Writing responses: status lines, response codes, multi-line data.
//!
//! RFC 2449 §3 (ABNF):
//! ```text
//! single-line  = status [SP text] CRLF       ;512 octets maximum
//! multi-line   = single-line *dot-stuffed "." CRLF
//! dot-stuffed  = *CHAR CRLF                  ;512 octets maximum
//!     ;if the line starts with ".", it is stuffed with an extra "."
//! status       = "+OK" / "-ERR"
//! text         = *schar / resp-code *CHAR
//! resp-code    = "[" resp-level *("/" resp-level) "]"
//! ```
//! RFC 1939 §3: "If any line of the multi-line response begins with the
//! termination octet, the line is 'byte-stuffed' by pre-pending the
//! termination octet to that line of the response."
//!
//! All writers append to a `Vec<u8>`, so the session can batch the
//! answers to pipelined commands (RFC 2449 §6.6) into one write.

use std::fmt;

/// The status indicator of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `+OK`
    Ok,
    /// `-ERR`
    Err,
}

impl Status {
    /// `+OK` or `-ERR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "+OK",
            Status::Err => "-ERR",
        }
    }
}

/// An extended response code, sent in brackets after the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCode {
    /// `[IN-USE]` (RFC 2449 §8.1.1): the maildrop is locked by another
    /// session.
    InUse,
    /// `[LOGIN-DELAY]` (RFC 2449 §8.1.2): logging in again this soon is
    /// refused.
    LoginDelay,
    /// `[SYS/TEMP]` (RFC 3206 §4): a temporary problem on the server side.
    SysTemp,
    /// `[SYS/PERM]` (RFC 3206 §4): a permanent problem on the server side.
    SysPerm,
    /// `[AUTH]` (RFC 3206 §5): the credentials are wrong.
    Auth,
}

impl ResponseCode {
    /// The code without brackets, e.g. `SYS/TEMP`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseCode::InUse => "IN-USE",
            ResponseCode::LoginDelay => "LOGIN-DELAY",
            ResponseCode::SysTemp => "SYS/TEMP",
            ResponseCode::SysPerm => "SYS/PERM",
            ResponseCode::Auth => "AUTH",
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest status line (RFC 2449 §3), CRLF included.
pub const MAX_STATUS_LINE: usize = 512;

/// Writes a status line: `+OK text` or `-ERR [CODE] text`.
///
/// Control characters in `text` become spaces, so that nothing a caller
/// puts in the text (an address, an error message) can start a new line.
/// A text without a code must not begin with `[` (RFC 2449 §3: it would
/// read as a code), so such a bracket becomes `(`. Text beyond the
/// 512-octet line limit is cut at a character boundary.
pub fn write_status(out: &mut Vec<u8>, status: Status, code: Option<ResponseCode>, text: &str) {
    let start = out.len();
    out.extend_from_slice(status.as_str().as_bytes());
    if let Some(code) = code {
        out.extend_from_slice(b" [");
        out.extend_from_slice(code.as_str().as_bytes());
        out.push(b']');
    }
    if !text.is_empty() {
        out.push(b' ');
        // Room for the text: the line limit less what is written and CRLF.
        let limit = MAX_STATUS_LINE - 2;
        let mut buf = [0u8; 4];
        for (i, c) in text.chars().enumerate() {
            let c = match c {
                '[' if i == 0 && code.is_none() => '(',
                c if c.is_control() => ' ',
                c => c,
            };
            let bytes = c.encode_utf8(&mut buf).as_bytes();
            if out.len() - start + bytes.len() > limit {
                break;
            }
            out.extend_from_slice(bytes);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `+OK text`.
pub fn write_ok(out: &mut Vec<u8>, text: &str) {
    write_status(out, Status::Ok, None, text);
}

/// Writes `-ERR text`, or `-ERR [CODE] text`.
pub fn write_err(out: &mut Vec<u8>, code: Option<ResponseCode>, text: &str) {
    write_status(out, Status::Err, code, text);
}

/// Writes a SASL continuation (RFC 5034 §4: `continue-req = "+" SP
/// [base64] CRLF`); `challenge` is already base64 (often empty).
pub fn write_continuation(out: &mut Vec<u8>, challenge: &str) {
    out.extend_from_slice(b"+ ");
    out.extend(challenge.bytes().filter(|b| !b.is_ascii_control()));
    out.extend_from_slice(b"\r\n");
}

/// Writes one line of a multi-line response: byte-stuffed if it starts
/// with `.`, then CRLF. `line` must not hold the line ending.
pub fn write_data_line(out: &mut Vec<u8>, line: &[u8]) {
    if line.first() == Some(&b'.') {
        out.push(b'.');
    }
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

/// Ends a multi-line response: `.` CRLF.
pub fn write_end(out: &mut Vec<u8>) {
    out.extend_from_slice(b".\r\n");
}

/// Writes a whole message as the body of a RETR response, followed by the
/// terminator.
///
/// Lines end at LF; a bare LF is sent as CRLF (POP3 is a CRLF protocol, and
/// a client must never see a line it could take for the terminator), and a
/// last line without an ending gets CRLF. A message already in CRLF form is
/// therefore sent byte for byte, apart from the stuffing.
pub fn write_message(out: &mut Vec<u8>, raw: &[u8]) {
    out.reserve(raw.len() + raw.len() / 64 + 5);
    for line in lines(raw) {
        write_data_line(out, line);
    }
    write_end(out);
}

/// Writes the header of a message, the blank line after it, and the first
/// `body_lines` lines of its body, then the terminator (RFC 1939 §7, TOP).
///
/// The header ends at the first empty line; a message without one is all
/// header and is sent whole.
pub fn write_top(out: &mut Vec<u8>, raw: &[u8], body_lines: u32) {
    let mut in_header = true;
    let mut left = body_lines;
    for line in lines(raw) {
        if in_header {
            in_header = !line.is_empty();
        } else if left == 0 {
            break;
        } else {
            left -= 1;
        }
        write_data_line(out, line);
    }
    write_end(out);
}

/// The lines of a message without their endings (LF or CRLF). A final
/// LF does not start another line.
fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    let empty = raw.is_empty();
    body.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(move |_| !empty)
}
