//! SEARCH, SORT and THREAD commands and their search keys (RFC 9051
//! §6.4.4 and §9, RFC 5256, RFC 3501's NEW/OLD/RECENT,
//! RFC 7162 MODSEQ):
//!
//! ```abnf
//! search-key      = "ALL" / "ANSWERED" / "BCC" SP astring /
//!                   "BEFORE" SP date / "BODY" SP astring /
//!                   "CC" SP astring / "DELETED" / "FLAGGED" /
//!                   "FROM" SP astring / "KEYWORD" SP flag-keyword /
//!                   "ON" SP date / "SEEN" /
//!                   "SINCE" SP date / "SUBJECT" SP astring /
//!                   "TEXT" SP astring / "TO" SP astring /
//!                   "UNANSWERED" / "UNDELETED" / "UNFLAGGED" /
//!                   "UNKEYWORD" SP flag-keyword / "UNSEEN" / "DRAFT" /
//!                   "HEADER" SP header-fld-name SP astring /
//!                   "LARGER" SP number64 / "NOT" SP search-key /
//!                   "OR" SP search-key SP search-key /
//!                   "SENTBEFORE" SP date / "SENTON" SP date /
//!                   "SENTSINCE" SP date / "SMALLER" SP number64 /
//!                   "UID" SP sequence-set / "UNDRAFT" / sequence-set /
//!                   "(" search-key *(SP search-key) ")"
//! search-modsequence = "MODSEQ" [search-modseq-ext] SP mod-sequence-valzer
//! ```
//!
//! Nesting (parentheses, NOT, OR) is bounded by [`MAX_DEPTH`] so that a
//! hostile command cannot exhaust the stack.

use super::{Cursor, R};
use crate::command::{CommandBody, DateOp, SearchKey, SearchReturn, SortKey, ThreadAlgorithm};

/// Deepest nesting of search keys accepted.
pub const MAX_DEPTH: usize = 32;

/// ```abnf
/// search          = "SEARCH" [search-return-opts] SP search-program
/// search-return-opts = SP "RETURN" SP "(" [search-return-opt
///                   *(SP search-return-opt)] ")"
/// search-program  = ["CHARSET" SP charset SP] search-key *(SP search-key)
/// ```
pub(super) fn search(c: &mut Cursor<'_>, uid: bool) -> R<CommandBody> {
    c.sp()?;
    let mut ret = None;
    if c.eat_word("RETURN") {
        c.sp()?;
        c.expect(b'(', "'('")?;
        let mut opts = Vec::new();
        if !c.eat(b')') {
            loop {
                let o = c.keyword("a search return option")?;
                opts.push(match o.as_str() {
                    "MIN" => SearchReturn::Min,
                    "MAX" => SearchReturn::Max,
                    "ALL" => SearchReturn::All,
                    "COUNT" => SearchReturn::Count,
                    "SAVE" => SearchReturn::Save,
                    _ => return Err(format!("unknown search return option {o}")),
                });
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
            }
        }
        ret = Some(opts);
        c.sp()?;
    }
    if c.eat_word("CHARSET") {
        c.sp()?;
        charset(c)?;
        c.sp()?;
    }
    let key = program(c)?;
    Ok(CommandBody::Search { uid, ret, key })
}

/// `charset = atom / quoted`; only UTF-8 and US-ASCII are known.
fn charset(c: &mut Cursor<'_>) -> R<()> {
    let cs = c.astring("a charset")?;
    if cs.eq_ignore_ascii_case(b"UTF-8") || cs.eq_ignore_ascii_case(b"US-ASCII") {
        Ok(())
    } else {
        Err("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset".into())
    }
}

/// ```abnf
/// sort            = ["UID" SP] "SORT" SP sort-criteria SP search-criteria
/// sort-criteria   = "(" sort-criterion *(SP sort-criterion) ")"
/// sort-criterion  = ["REVERSE" SP] sort-key
/// sort-key        = "ARRIVAL" / "CC" / "DATE" / "FROM" / "SIZE" /
///                   "SUBJECT" / "TO" / "DISPLAYFROM" / "DISPLAYTO"
/// search-criteria = charset 1*(SP search-key)
/// ```
pub(super) fn sort(c: &mut Cursor<'_>, uid: bool) -> R<CommandBody> {
    c.sp()?;
    let criteria = c.paren_list(|c| {
        let reverse = c.eat_word("REVERSE");
        if reverse {
            c.sp()?;
        }
        let k = c.keyword("a sort key")?;
        let key = match k.as_str() {
            "ARRIVAL" => SortKey::Arrival,
            "CC" => SortKey::Cc,
            "DATE" => SortKey::Date,
            "FROM" => SortKey::From,
            "SIZE" => SortKey::Size,
            "SUBJECT" => SortKey::Subject,
            "TO" => SortKey::To,
            "DISPLAYFROM" => SortKey::DisplayFrom,
            "DISPLAYTO" => SortKey::DisplayTo,
            _ => return Err(format!("unknown sort key {k}")),
        };
        Ok((reverse, key))
    })?;
    c.sp()?;
    charset(c)?;
    c.sp()?;
    let key = program(c)?;
    Ok(CommandBody::Sort { uid, criteria, key })
}

/// `thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria`
pub(super) fn thread(c: &mut Cursor<'_>, uid: bool) -> R<CommandBody> {
    c.sp()?;
    let alg = c.keyword("a threading algorithm")?;
    let algorithm = match alg.as_str() {
        "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
        "REFERENCES" => ThreadAlgorithm::References,
        _ => return Err(format!("unknown threading algorithm {alg}")),
    };
    c.sp()?;
    charset(c)?;
    c.sp()?;
    let key = program(c)?;
    Ok(CommandBody::Thread {
        uid,
        algorithm,
        key,
    })
}

/// `search-key *(SP search-key)` up to the end of the command.
pub(super) fn program(c: &mut Cursor<'_>) -> R<SearchKey> {
    let mut keys = vec![key(c, 0)?];
    while c.eat(b' ') {
        keys.push(key(c, 0)?);
    }
    Ok(if keys.len() == 1 {
        keys.remove(0)
    } else {
        SearchKey::And(keys)
    })
}

fn string(c: &mut Cursor<'_>) -> R<Vec<u8>> {
    c.sp()?;
    c.astring("a search string")
}

fn date(c: &mut Cursor<'_>) -> R<i64> {
    c.sp()?;
    let quoted = c.peek() == Some(b'"');
    let text = if quoted {
        c.quoted()?
    } else {
        c.atom("a date")?.to_vec()
    };
    std::str::from_utf8(&text)
        .ok()
        .and_then(super::date::parse_date_text)
        .ok_or_else(|| "invalid date".to_string())
}

fn key(c: &mut Cursor<'_>, depth: usize) -> R<SearchKey> {
    if depth > MAX_DEPTH {
        return Err("search keys nested too deeply".into());
    }
    if c.eat(b'(') {
        let mut keys = vec![key(c, depth + 1)?];
        while c.eat(b' ') {
            keys.push(key(c, depth + 1)?);
        }
        c.expect(b')', "')'")?;
        return Ok(SearchKey::And(keys));
    }
    if c.peek()
        .is_some_and(|b| b.is_ascii_digit() || b == b'*' || b == b'$')
    {
        return Ok(SearchKey::Seq(c.sequence_set()?));
    }
    let name = c.keyword("a search key")?;
    let flag = |f: &str| Ok(SearchKey::Flag(f.into()));
    let not_flag = |f: &str| Ok(SearchKey::NotFlag(f.into()));
    let header = |c: &mut Cursor<'_>, h: &str| Ok(SearchKey::Header(h.into(), string(c)?));
    match name.as_str() {
        "ALL" => Ok(SearchKey::All),
        "ANSWERED" => flag("\\Answered"),
        "DELETED" => flag("\\Deleted"),
        "DRAFT" => flag("\\Draft"),
        "FLAGGED" => flag("\\Flagged"),
        "SEEN" => flag("\\Seen"),
        "UNANSWERED" => not_flag("\\Answered"),
        "UNDELETED" => not_flag("\\Deleted"),
        "UNDRAFT" => not_flag("\\Draft"),
        "UNFLAGGED" => not_flag("\\Flagged"),
        "UNSEEN" => not_flag("\\Seen"),
        "KEYWORD" | "UNKEYWORD" => {
            c.sp()?;
            let k = String::from_utf8_lossy(c.atom("a keyword")?).into_owned();
            Ok(if name == "KEYWORD" {
                SearchKey::Flag(k)
            } else {
                SearchKey::NotFlag(k)
            })
        }
        "NEW" => Ok(SearchKey::New),
        "OLD" => Ok(SearchKey::Old),
        "RECENT" => Ok(SearchKey::Recent),
        "BCC" => header(c, "Bcc"),
        "CC" => header(c, "Cc"),
        "FROM" => header(c, "From"),
        "TO" => header(c, "To"),
        "SUBJECT" => header(c, "Subject"),
        "HEADER" => {
            c.sp()?;
            let field = c.astring("a header field name")?;
            let field = String::from_utf8(field).map_err(|_| "field name is not UTF-8")?;
            Ok(SearchKey::Header(field, string(c)?))
        }
        "BODY" => Ok(SearchKey::Body(string(c)?)),
        "TEXT" => Ok(SearchKey::Text(string(c)?)),
        "BEFORE" => Ok(SearchKey::Date(DateOp::Before, date(c)?)),
        "ON" => Ok(SearchKey::Date(DateOp::On, date(c)?)),
        "SINCE" => Ok(SearchKey::Date(DateOp::Since, date(c)?)),
        "SENTBEFORE" => Ok(SearchKey::SentDate(DateOp::Before, date(c)?)),
        "SENTON" => Ok(SearchKey::SentDate(DateOp::On, date(c)?)),
        "SENTSINCE" => Ok(SearchKey::SentDate(DateOp::Since, date(c)?)),
        "LARGER" => {
            c.sp()?;
            Ok(SearchKey::Larger(c.number("a size")?))
        }
        "SMALLER" => {
            c.sp()?;
            Ok(SearchKey::Smaller(c.number("a size")?))
        }
        "UID" => {
            c.sp()?;
            Ok(SearchKey::Uid(c.sequence_set()?))
        }
        "NOT" => {
            c.sp()?;
            Ok(SearchKey::Not(Box::new(key(c, depth + 1)?)))
        }
        "OR" => {
            c.sp()?;
            let a = key(c, depth + 1)?;
            c.sp()?;
            let b = key(c, depth + 1)?;
            Ok(SearchKey::Or(Box::new(a), Box::new(b)))
        }
        "MODSEQ" => {
            c.sp()?;
            // Optional entry name and type (`"/flags/\\seen" all`).
            if c.peek() == Some(b'"') {
                c.quoted()?;
                c.sp()?;
                c.atom("an entry type")?;
                c.sp()?;
            }
            Ok(SearchKey::Modseq(c.number("a mod-sequence")?))
        }
        _ => Err(format!("unknown search key {name}")),
    }
}
