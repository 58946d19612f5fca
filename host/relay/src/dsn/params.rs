//! The DSN parameters of RFC 3461 as the queue stores them, as the relay
//! passes them on to a next hop, and as a report shows them.
//!
//! # What the queue holds
//! The SMTP side stores the parameters as the client sent them:
//!
//! - `NOTIFY` (§4.1): `NEVER`, or a comma list of `SUCCESS`, `FAILURE`,
//!   `DELAY` (any case); `None` when the client gave none.
//! - `ORCPT` (§4.2): `addr-type;xtext`, e.g. `rfc822;bob@example.org`
//!   (RFC 6533 also allows raw UTF-8 after `utf-8;`).
//! - `ENVID` (§4.4): xtext, at most 100 characters.
//! - `RET` (§4.3): `FULL` or `HDRS` (a `bool` in the queue).
//!
//! # xtext (§4)
//! ```text
//! xtext   = *( xchar / hexchar )
//! xchar   = any ASCII CHAR between "!" (33) and "~" (126) inclusive,
//!           except for "+" and "="
//! hexchar = ASCII "+" immediately followed by two upper case
//!           hexadecimal digits
//! ```
//! A value that is not valid xtext (a queue filled by other means) is
//! encoded before it is sent, never sent raw; one that cannot be made
//! valid is left out (the next hop then applies its defaults).
//!
//! # In a report (RFC 3464 §2.2.1, §2.3.1)
//! `Original-Envelope-Id` and `Original-Recipient` show the values decoded
//! from xtext, as Postfix does; a decoded value holding control
//! characters is shown in its xtext form instead, so nothing a client sent
//! can add a line to the report.

use mailgate_smtp_proto::{decode_xtext, is_xtext};

/// Longest `ENVID` value (RFC 3461 §4.4).
pub const MAX_ENVID: usize = 100;
/// Longest `ORCPT` value, `addr-type;` included (RFC 3461 §4.2).
pub const MAX_ORCPT: usize = 500;

/// What a recipient's `NOTIFY` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify {
    /// `SUCCESS`: a report once delivered (or relayed to a hop without
    /// DSN).
    pub success: bool,
    /// `FAILURE`: a report when it fails for good.
    pub failure: bool,
    /// `DELAY`: a report when it is delayed.
    pub delay: bool,
}

impl Notify {
    /// No `NOTIFY` given: failures and delays (RFC 3461 §4.1 leaves the
    /// default to the MTA; this is what Postfix and Sendmail do).
    pub const DEFAULT: Notify = Notify {
        success: false,
        failure: true,
        delay: true,
    };
    /// `NOTIFY=NEVER`.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };

    /// Reads a stored value: `None` (not given) is [`Notify::DEFAULT`];
    /// `Err` for a value that is not `NEVER` or a list of the three words
    /// without repeats.
    pub fn parse(stored: Option<&str>) -> Result<Notify, InvalidParam> {
        let Some(s) = stored else {
            return Ok(Notify::DEFAULT);
        };
        if s.trim().eq_ignore_ascii_case("NEVER") {
            return Ok(Notify::NEVER);
        }
        let mut n = Notify::NEVER;
        for word in s.split(',') {
            let flag = match word.trim().to_ascii_uppercase().as_str() {
                "SUCCESS" => &mut n.success,
                "FAILURE" => &mut n.failure,
                "DELAY" => &mut n.delay,
                _ => return Err(InvalidParam::Notify),
            };
            if *flag {
                return Err(InvalidParam::Notify);
            }
            *flag = true;
        }
        Ok(n)
    }

    /// Like [`Notify::parse`], but an invalid value counts as not given
    /// (the default), which is what the next hop would assume too.
    pub fn of(stored: Option<&str>) -> Notify {
        Notify::parse(stored).unwrap_or(Notify::DEFAULT)
    }

    /// The canonical parameter value (`NEVER`, or e.g. `SUCCESS,FAILURE`).
    pub fn to_param(self) -> String {
        let words: Vec<&str> = [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .into_iter()
        .filter_map(|(on, w)| on.then_some(w))
        .collect();
        if words.is_empty() {
            "NEVER".into()
        } else {
            words.join(",")
        }
    }
}

/// A stored DSN parameter that cannot be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidParam {
    /// `NOTIFY` is not `NEVER` or a list of `SUCCESS`, `FAILURE`, `DELAY`.
    #[error("NOTIFY is not NEVER or a list of SUCCESS, FAILURE and DELAY")]
    Notify,
    /// `ENVID` is longer than [`MAX_ENVID`] once encoded.
    #[error("ENVID is longer than 100 characters")]
    EnvidTooLong,
    /// `ORCPT` has no `addr-type;`, a bad address type, or is longer than
    /// [`MAX_ORCPT`] once encoded.
    #[error("ORCPT is not addr-type;address of at most 500 characters")]
    Orcpt,
}

/// Encodes `s` as xtext: `+`, `=`, and every byte outside `!`..`~` become
/// `+XX`.
pub fn encode_xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The stored value itself if it is xtext, otherwise its encoding.
fn as_xtext(s: &str) -> String {
    if is_xtext(s) {
        s.to_string()
    } else {
        encode_xtext(s)
    }
}

/// The `ENVID=` value to send: the stored xtext, or the value encoded if
/// it was not xtext; `Err` if longer than [`MAX_ENVID`] then.
pub fn envid_param(stored: &str) -> Result<String, InvalidParam> {
    let v = as_xtext(stored);
    if v.is_empty() || v.len() > MAX_ENVID {
        return Err(InvalidParam::EnvidTooLong);
    }
    Ok(v)
}

fn valid_addr_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/?^_`{|}~".contains(&b))
}

/// RFC 6533 §3 `utf-8-addr-xtext`: printable ASCII except `+`, `\` and
/// `=` as is; those three and every non-ASCII character as `\x{HEX}`.
fn utf8_addr_xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_graphic() && !matches!(c, '+' | '\\' | '=') {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", c as u32));
        }
    }
    out
}

/// The `ORCPT=` value to send, from the stored `addr-type;address`.
/// Raw UTF-8 after `utf-8;` is kept only when the transaction uses
/// SMTPUTF8 (`utf8_session`, RFC 6533 §3 `utf-8-addr-unitext`); otherwise
/// it becomes `utf-8-addr-xtext`. Any other value that is not xtext is
/// encoded as xtext. `Err` for a missing or bad address type, or a value
/// longer than [`MAX_ORCPT`].
pub fn orcpt_param(stored: &str, utf8_session: bool) -> Result<String, InvalidParam> {
    let (addr_type, address) = stored.split_once(';').ok_or(InvalidParam::Orcpt)?;
    if !valid_addr_type(addr_type) || address.is_empty() {
        return Err(InvalidParam::Orcpt);
    }
    let is_utf8_type = addr_type.eq_ignore_ascii_case("utf-8");
    let encoded = if address.is_ascii() {
        as_xtext(address)
    } else if is_utf8_type && utf8_session {
        // unitext: raw UTF-8, but no ASCII controls, space, '+' or '='.
        if address
            .chars()
            .all(|c| !c.is_ascii() || (c.is_ascii_graphic() && c != '+' && c != '='))
        {
            address.to_string()
        } else {
            utf8_addr_xtext(address)
        }
    } else if is_utf8_type {
        utf8_addr_xtext(address)
    } else {
        // A non-ASCII address under an ASCII type: xtext of its UTF-8
        // bytes keeps it intact and valid.
        encode_xtext(address)
    };
    let value = format!("{addr_type};{encoded}");
    if value.len() > MAX_ORCPT {
        return Err(InvalidParam::Orcpt);
    }
    Ok(value)
}

/// Text safe for a report field: the decoded value if `stored` is xtext
/// that decodes to printable text, else its xtext form (printable ASCII),
/// so no control character or line break reaches the report.
pub fn field_text(stored: &str) -> String {
    let printable = |s: &str| s.chars().all(|c| !c.is_control());
    if let Some(decoded) = decode_xtext(stored) {
        if printable(&decoded) {
            return decoded;
        }
    }
    if printable(stored) {
        return stored.to_string();
    }
    encode_xtext(stored)
}

/// The `Original-Recipient` field value (`addr-type; address`) for a
/// stored ORCPT, or `None` if it has no valid address type. In a classic
/// (`message/delivery-status`, not `global`) report, which must be ASCII,
/// a non-ASCII `utf-8` address is shown as `utf-8-addr-xtext` (RFC 6533
/// §3) and any other non-ASCII address in xtext.
pub fn original_recipient(stored: &str, global: bool) -> Option<String> {
    let (t, a) = stored.split_once(';')?;
    if !valid_addr_type(t) || a.is_empty() {
        return None;
    }
    let shown = field_text(a);
    let shown = if global || shown.is_ascii() {
        shown
    } else if t.eq_ignore_ascii_case("utf-8") {
        utf8_addr_xtext(&shown)
    } else {
        encode_xtext(&shown)
    };
    Some(format!("{t}; {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_values() {
        assert_eq!(Notify::parse(None), Ok(Notify::DEFAULT));
        assert_eq!(Notify::parse(Some("never")), Ok(Notify::NEVER));
        let n = Notify::parse(Some("success, Delay")).unwrap();
        assert!(n.success && n.delay && !n.failure);
        assert_eq!(n.to_param(), "SUCCESS,DELAY");
        assert_eq!(Notify::NEVER.to_param(), "NEVER");
        for bad in [
            "",
            "SUCCESS,SUCCESS",
            "NEVER,SUCCESS",
            "ALWAYS",
            "SUCCESS;FAILURE",
        ] {
            assert_eq!(
                Notify::parse(Some(bad)),
                Err(InvalidParam::Notify),
                "{bad:?}"
            );
            assert_eq!(Notify::of(Some(bad)), Notify::DEFAULT);
        }
    }

    #[test]
    fn xtext_encoding() {
        assert_eq!(encode_xtext("a b+c=d\r\n"), "a+20b+2Bc+3Dd+0D+0A");
        assert_eq!(encode_xtext("é"), "+C3+A9");
        assert!(is_xtext(&encode_xtext("any \u{1} thing + = é")));
        assert_eq!(
            decode_xtext(&encode_xtext("x y+z")).as_deref(),
            Some("x y+z")
        );
    }

    #[test]
    fn envid_is_passed_as_xtext() {
        assert_eq!(envid_param("QQ314159+2B1").unwrap(), "QQ314159+2B1");
        assert_eq!(envid_param("has space").unwrap(), "has+20space");
        assert_eq!(envid_param("a+b").unwrap(), "a+2Bb", "'+' not hex: encoded");
        assert_eq!(envid_param(&"x".repeat(100)).unwrap().len(), 100);
        assert_eq!(
            envid_param(&"x".repeat(101)),
            Err(InvalidParam::EnvidTooLong)
        );
        assert_eq!(
            envid_param(&" ".repeat(40)),
            Err(InvalidParam::EnvidTooLong)
        );
        assert_eq!(envid_param(""), Err(InvalidParam::EnvidTooLong));
    }

    #[test]
    fn orcpt_is_passed_as_xtext() {
        assert_eq!(
            orcpt_param("rfc822;bob@b.test", false).unwrap(),
            "rfc822;bob@b.test"
        );
        assert_eq!(
            orcpt_param("rfc822;e+3Dmc2@b.test", false).unwrap(),
            "rfc822;e+3Dmc2@b.test"
        );
        assert_eq!(
            orcpt_param("rfc822;a b@b.test", false).unwrap(),
            "rfc822;a+20b@b.test"
        );
        assert_eq!(
            orcpt_param("utf-8;zoë@b.test", true).unwrap(),
            "utf-8;zoë@b.test"
        );
        assert_eq!(
            orcpt_param("utf-8;zoë@b.test", false).unwrap(),
            "utf-8;zo\\x{EB}@b.test"
        );
        assert_eq!(
            orcpt_param("rfc822;zoë@b.test", true).unwrap(),
            "rfc822;zo+C3+AB@b.test"
        );
        for bad in [
            "bob@b.test",
            ";bob@b.test",
            "rfc822;",
            "rf c822;x",
            "x\r\n;y",
        ] {
            assert_eq!(orcpt_param(bad, false), Err(InvalidParam::Orcpt), "{bad:?}");
        }
        let long = format!("rfc822;{}@b.test", "x".repeat(490));
        assert_eq!(orcpt_param(&long, false), Err(InvalidParam::Orcpt));
    }

    #[test]
    fn report_fields_never_carry_control_characters() {
        assert_eq!(field_text("ENV+2B42"), "ENV+42");
        assert_eq!(field_text("ENV+0D+0AX-Evil:+201"), "ENV+0D+0AX-Evil:+201");
        assert_eq!(field_text("raw\r\nX-Evil: 1"), "raw+0D+0AX-Evil:+201");
        assert_eq!(field_text("zo\\x{EB}@b.test"), "zo\\x{EB}@b.test");
        assert_eq!(
            original_recipient("rfc822;e+3Dmc2@b.test", false).as_deref(),
            Some("rfc822; e=mc2@b.test")
        );
        assert_eq!(original_recipient("no-type", false), None);
        assert_eq!(
            original_recipient("utf-8;zoë@b.test", true).as_deref(),
            Some("utf-8; zoë@b.test")
        );
        assert_eq!(
            original_recipient("utf-8;zoë@b.test", false).as_deref(),
            Some("utf-8; zo\\x{EB}@b.test")
        );
        assert_eq!(
            original_recipient("rfc822;zoë@b.test", false).as_deref(),
            Some("rfc822; zo+C3+AB@b.test")
        );
    }
}
