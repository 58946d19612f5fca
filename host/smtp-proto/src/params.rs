//! MAIL and RCPT parameters.
//!
//! ```text
//! Mail-parameters  = esmtp-param *(SP esmtp-param)     ; RFC 5321 §4.1.2
//! Rcpt-parameters  = esmtp-param *(SP esmtp-param)
//! esmtp-param    = esmtp-keyword ["=" esmtp-value]
//! esmtp-keyword  = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
//! esmtp-value    = 1*(%d33-60 / %d62-126)              ; RFC 6531: =/ UTF8-non-ascii
//!
//! size-param     = "SIZE=" 1*20DIGIT                    ; RFC 1870
//! body-param     = "BODY=" ("7BIT" / "8BITMIME" / "BINARYMIME")  ; RFC 6152, RFC 3030
//! smtputf8-param = "SMTPUTF8"                           ; RFC 6531 §3.4
//! ret-param      = "RET=" ("FULL" / "HDRS")             ; RFC 3461 §4.3
//! envid-param    = "ENVID=" xtext                       ; RFC 3461 §4.4
//! auth-param     = "AUTH=" (xtext / "<>")               ; RFC 4954 §5
//! notify-param   = "NOTIFY=" ("NEVER" / 1#("SUCCESS" / "FAILURE" / "DELAY"))  ; RFC 3461 §4.1
//! orcpt-param    = "ORCPT=" addr-type ";" xtext         ; RFC 3461 §4.2
//! xtext          = *( xchar / hexchar )
//! xchar          = any ASCII CHAR between "!" (33) and "~" (126) inclusive,
//!                  except for "+" and "="
//! hexchar        = ASCII "+" immediately followed by two upper case
//!                  hexadecimal digits
//! ```
//!
//! Keywords and fixed values are case-insensitive. A keyword we do not
//! know is [`ParseError::UnknownParameter`] (`555`); a known keyword with
//! a bad value, a repeated keyword or a malformed token is
//! [`ParseError::Syntax`] (`501`).

use crate::error::ParseError;

/// `BODY=` (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `7BIT`
    SevenBit,
    /// `8BITMIME`
    EightBitMime,
    /// `BINARYMIME` (only with BDAT)
    BinaryMime,
}

/// `RET=` (RFC 3461).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// `FULL`: return the whole message in a DSN.
    Full,
    /// `HDRS`: return the headers only.
    Hdrs,
}

/// `NOTIFY=` (RFC 3461).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// `NEVER`
    Never,
    /// A list of conditions.
    On {
        /// `SUCCESS`
        success: bool,
        /// `FAILURE`
        failure: bool,
        /// `DELAY`
        delay: bool,
    },
}

/// `ORCPT=addr-type;xtext` (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orcpt {
    /// The address type, e.g. `rfc822` or `utf-8`.
    pub addr_type: String,
    /// The address, still xtext-encoded as sent.
    pub address: String,
}

/// The parameters of MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=`: the size the client announces.
    pub size: Option<u64>,
    /// `BODY=`
    pub body: Option<Body>,
    /// `SMTPUTF8` given.
    pub smtputf8: bool,
    /// `RET=`
    pub ret: Option<Ret>,
    /// `ENVID=`, xtext as sent.
    pub envid: Option<String>,
    /// `AUTH=`, xtext as sent (`<>` for none).
    pub auth: Option<String>,
}

/// The parameters of RCPT TO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=`
    pub notify: Option<Notify>,
    /// `ORCPT=`
    pub orcpt: Option<Orcpt>,
}

/// Splits `esmtp-param *(SP esmtp-param)` into (keyword, value) pairs.
/// Tolerates several spaces between parameters.
fn split_params(s: &str) -> Result<Vec<(&str, Option<&str>)>, ParseError> {
    let mut out = Vec::new();
    for token in s.split(' ').filter(|t| !t.is_empty()) {
        let (keyword, value) = match token.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (token, None),
        };
        let kw_ok = keyword
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && keyword
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !kw_ok {
            return Err(ParseError::Syntax("invalid parameter"));
        }
        if let Some(v) = value {
            let v_ok = !v.is_empty()
                && v.bytes()
                    .all(|b| ((33..=126).contains(&b) && b != b'=') || b >= 0x80);
            if !v_ok {
                return Err(ParseError::Syntax("invalid parameter value"));
            }
        }
        out.push((keyword, value));
    }
    Ok(out)
}

/// Whether `s` is xtext (see the module ABNF).
pub fn is_xtext(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
                if i + 2 >= b.len() {
                    return false;
                }
                if !(hex(b[i + 1]) && hex(b[i + 2])) {
                    return false;
                }
                i += 3;
            }
            b'=' => return false,
            c if (33..=126).contains(&c) => i += 1,
            _ => return false,
        }
    }
    true
}

/// Decodes xtext (`+2B` → `+`); `None` if it is not valid xtext or does
/// not decode to UTF-8.
pub fn decode_xtext(s: &str) -> Option<String> {
    if !is_xtext(s) {
        return None;
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            let hi = (b[i + 1] as char).to_digit(16)?;
            let lo = (b[i + 2] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::Syntax("duplicate parameter"));
    }
    *slot = Some(value);
    Ok(())
}

fn no_value(value: Option<&str>) -> Result<(), ParseError> {
    match value {
        None => Ok(()),
        Some(_) => Err(ParseError::Syntax("parameter takes no value")),
    }
}

fn need_value(value: Option<&str>) -> Result<&str, ParseError> {
    value.ok_or(ParseError::Syntax("parameter needs a value"))
}

impl MailParams {
    /// Parses the parameters after the reverse-path.
    pub fn parse(s: &str) -> Result<MailParams, ParseError> {
        let mut p = MailParams::default();
        for (keyword, value) in split_params(s)? {
            match keyword.to_ascii_uppercase().as_str() {
                "SIZE" => {
                    let v = need_value(value)?;
                    if v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(ParseError::Syntax("invalid SIZE value"));
                    }
                    let n = v
                        .parse::<u64>()
                        .map_err(|_| ParseError::Syntax("invalid SIZE value"))?;
                    set_once(&mut p.size, n)?;
                }
                "BODY" => {
                    let body = match need_value(value)?.to_ascii_uppercase().as_str() {
                        "7BIT" => Body::SevenBit,
                        "8BITMIME" => Body::EightBitMime,
                        "BINARYMIME" => Body::BinaryMime,
                        _ => return Err(ParseError::Syntax("invalid BODY value")),
                    };
                    set_once(&mut p.body, body)?;
                }
                "SMTPUTF8" => {
                    no_value(value)?;
                    if p.smtputf8 {
                        return Err(ParseError::Syntax("duplicate parameter"));
                    }
                    p.smtputf8 = true;
                }
                "RET" => {
                    let ret = match need_value(value)?.to_ascii_uppercase().as_str() {
                        "FULL" => Ret::Full,
                        "HDRS" => Ret::Hdrs,
                        _ => return Err(ParseError::Syntax("invalid RET value")),
                    };
                    set_once(&mut p.ret, ret)?;
                }
                "ENVID" => {
                    let v = need_value(value)?;
                    if v.len() > 100 || !is_xtext(v) {
                        return Err(ParseError::Syntax("invalid ENVID value"));
                    }
                    set_once(&mut p.envid, v.to_string())?;
                }
                "AUTH" => {
                    let v = need_value(value)?;
                    if v != "<>" && !is_xtext(v) {
                        return Err(ParseError::Syntax("invalid AUTH value"));
                    }
                    set_once(&mut p.auth, v.to_string())?;
                }
                _ => return Err(ParseError::UnknownParameter(keyword.to_ascii_uppercase())),
            }
        }
        Ok(p)
    }
}

impl RcptParams {
    /// Parses the parameters after the forward-path.
    pub fn parse(s: &str) -> Result<RcptParams, ParseError> {
        let mut p = RcptParams::default();
        for (keyword, value) in split_params(s)? {
            match keyword.to_ascii_uppercase().as_str() {
                "NOTIFY" => {
                    let v = need_value(value)?.to_ascii_uppercase();
                    let notify = if v == "NEVER" {
                        Notify::Never
                    } else {
                        let (mut success, mut failure, mut delay) = (false, false, false);
                        for item in v.split(',') {
                            let flag = match item {
                                "SUCCESS" => &mut success,
                                "FAILURE" => &mut failure,
                                "DELAY" => &mut delay,
                                _ => return Err(ParseError::Syntax("invalid NOTIFY value")),
                            };
                            if *flag {
                                return Err(ParseError::Syntax("invalid NOTIFY value"));
                            }
                            *flag = true;
                        }
                        Notify::On {
                            success,
                            failure,
                            delay,
                        }
                    };
                    set_once(&mut p.notify, notify)?;
                }
                "ORCPT" => {
                    let v = need_value(value)?;
                    let Some((addr_type, address)) = v.split_once(';') else {
                        return Err(ParseError::Syntax("invalid ORCPT value"));
                    };
                    let type_ok = !addr_type.is_empty()
                        && addr_type.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
                        });
                    // RFC 6533 lets utf-8 addr-types carry raw UTF-8, so
                    // non-ASCII is allowed next to xtext here.
                    let addr_ok = !address.is_empty()
                        && (is_xtext(address)
                            || (!address.is_ascii()
                                && address.bytes().all(|b| b >= 33 && b != b'=')));
                    if !type_ok || !addr_ok || address.len() > 500 {
                        return Err(ParseError::Syntax("invalid ORCPT value"));
                    }
                    set_once(
                        &mut p.orcpt,
                        Orcpt {
                            addr_type: addr_type.to_string(),
                            address: address.to_string(),
                        },
                    )?;
                }
                _ => return Err(ParseError::UnknownParameter(keyword.to_ascii_uppercase())),
            }
        }
        Ok(p)
    }
}
