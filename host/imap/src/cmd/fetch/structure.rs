//! ENVELOPE, BODY and BODYSTRUCTURE from the structure saved at delivery
//! (never a re-parse). RFC 9051 §9:
//!
//! ```abnf
//! envelope        = "(" env-date SP env-subject SP env-from SP
//!                   env-sender SP env-reply-to SP env-to SP env-cc SP
//!                   env-bcc SP env-in-reply-to SP env-message-id ")"
//! address         = "(" addr-name SP addr-adl SP addr-mailbox SP
//!                   addr-host ")"
//! body            = "(" (body-type-1part / body-type-mpart) ")"
//! body-type-1part = (body-type-basic / body-type-msg / body-type-text)
//!                   [SP body-ext-1part]
//! body-type-basic = media-basic SP body-fields
//! body-type-msg   = media-message SP body-fields SP envelope
//!                   SP body SP body-fld-lines
//! body-type-text  = media-text SP body-fields SP body-fld-lines
//! body-fields     = body-fld-param SP body-fld-id SP body-fld-desc SP
//!                   body-fld-enc SP body-fld-octets
//! body-ext-1part  = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang
//!                   [SP body-fld-loc *(SP body-extension)]]]
//! body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
//! body-ext-mpart  = body-fld-param [SP body-fld-dsp [SP body-fld-lang
//!                   [SP body-fld-loc *(SP body-extension)]]]
//! ```

use mailgate_imap_proto::response::{write_nstring, write_string};
use mailgate_store::structure::{Address, BodyPart, Disposition, HeaderEnvelope, PartKind};

fn nstr(out: &mut Vec<u8>, s: Option<&str>, utf8: bool) {
    write_nstring(out, s.map(str::as_bytes), utf8);
}

fn addresses(out: &mut Vec<u8>, list: &[Address], utf8: bool) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        nstr(out, a.name.as_deref(), utf8);
        out.push(b' ');
        nstr(out, a.adl.as_deref(), utf8);
        out.push(b' ');
        nstr(out, a.mailbox.as_deref(), utf8);
        out.push(b' ');
        nstr(out, a.host.as_deref(), utf8);
        out.push(b')');
    }
    out.push(b')');
}

/// Writes an ENVELOPE.
pub(super) fn envelope(out: &mut Vec<u8>, e: &HeaderEnvelope, utf8: bool) {
    out.push(b'(');
    nstr(out, e.date.as_deref(), utf8);
    out.push(b' ');
    nstr(out, e.subject.as_deref(), utf8);
    for list in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
        out.push(b' ');
        addresses(out, list, utf8);
    }
    out.push(b' ');
    nstr(out, e.in_reply_to.as_deref(), utf8);
    out.push(b' ');
    nstr(out, e.message_id.as_deref(), utf8);
    out.push(b')');
}

fn params(out: &mut Vec<u8>, params: &[(String, String)], utf8: bool) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_string(out, k.as_bytes(), utf8);
        out.push(b' ');
        write_string(out, v.as_bytes(), utf8);
    }
    out.push(b')');
}

fn disposition(out: &mut Vec<u8>, d: Option<&Disposition>, utf8: bool) {
    match d {
        None => out.extend_from_slice(b"NIL"),
        Some(d) => {
            out.push(b'(');
            write_string(out, d.kind.as_bytes(), utf8);
            out.push(b' ');
            params(out, &d.params, utf8);
            out.push(b')');
        }
    }
}

fn language(out: &mut Vec<u8>, lang: &[String], utf8: bool) {
    match lang {
        [] => out.extend_from_slice(b"NIL"),
        [one] => write_string(out, one.as_bytes(), utf8),
        many => {
            out.push(b'(');
            for (i, l) in many.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_string(out, l.as_bytes(), utf8);
            }
            out.push(b')');
        }
    }
}

/// The extension data every part ends with in BODYSTRUCTURE (RFC 9051
/// §7.5.2): ` disposition language location`.
fn extension_tail(out: &mut Vec<u8>, part: &BodyPart, utf8: bool) {
    out.push(b' ');
    disposition(out, part.disposition.as_ref(), utf8);
    out.push(b' ');
    language(out, &part.language, utf8);
    out.push(b' ');
    nstr(out, part.location.as_deref(), utf8);
}

/// Writes BODY (`ext` false) or BODYSTRUCTURE (`ext` true) of a part.
pub(super) fn body(out: &mut Vec<u8>, part: &BodyPart, ext: bool, utf8: bool) {
    out.push(b'(');
    match &part.kind {
        PartKind::Multipart(children) => {
            for child in children {
                body(out, child, ext, utf8);
            }
            out.push(b' ');
            write_string(out, part.media_subtype.as_bytes(), utf8);
            if ext {
                out.push(b' ');
                params(out, &part.params, utf8);
                extension_tail(out, part, utf8);
            }
        }
        kind => {
            write_string(out, part.media_type.as_bytes(), utf8);
            out.push(b' ');
            write_string(out, part.media_subtype.as_bytes(), utf8);
            out.push(b' ');
            params(out, &part.params, utf8);
            out.push(b' ');
            nstr(out, part.id.as_deref(), utf8);
            out.push(b' ');
            nstr(out, part.description.as_deref(), utf8);
            out.push(b' ');
            write_string(out, part.encoding.as_bytes(), utf8);
            out.extend_from_slice(format!(" {}", part.size()).as_bytes());
            if let PartKind::Message(message) = kind {
                out.push(b' ');
                envelope(out, &message.envelope, utf8);
                out.push(b' ');
                body(out, &message.root, ext, utf8);
                out.extend_from_slice(format!(" {}", part.lines).as_bytes());
            } else if part.is_type("text", None) {
                out.extend_from_slice(format!(" {}", part.lines).as_bytes());
            }
            if ext {
                out.push(b' ');
                nstr(out, part.md5.as_deref(), utf8);
                extension_tail(out, part, utf8);
            }
        }
    }
    out.push(b')');
}
