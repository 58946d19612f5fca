//! SORT and UID SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO), and
//! the base subject and sent date that SORT and THREAD share.
//!
//! Keys come from the envelope saved at delivery. Ties are broken by
//! sequence number (RFC 5256 §3: "If two or more messages exactly match
//! according to the sorting criteria, these messages are sorted according
//! to the order in which they appear in the mailbox").

use std::cmp::Ordering;

use mailgate_imap_proto::{SearchKey, SortKey};
use mailgate_store::structure::Address;
use mailgate_store::{MessageStructure, RawPart};

/// Messages whose structures one store call loads for SORT and THREAD.
pub(crate) const STRUCTURE_BATCH: usize = 512;

use super::search::matching;
use crate::session::{CmdError, CmdResult, Done, Session};

/// The base subject of RFC 5256 §2.1, lower-cased for comparison.
pub(crate) fn base_subject(subject: &str) -> String {
    base_subject_reply(subject).0
}

/// Step 1 of RFC 5256 §2.1: encoded words (RFC 2047) decoded to UTF-8.
fn decode_words(subject: &str) -> std::borrow::Cow<'_, str> {
    if !subject.contains("=?") {
        return subject.into();
    }
    let mut v = subject.as_bytes().to_vec();
    v.extend_from_slice(b"\r\n");
    match mail_parser::parsers::MessageStream::new(&v).parse_unstructured() {
        mail_parser::HeaderValue::Text(t) => t.into_owned().into(),
        mail_parser::HeaderValue::TextList(l) => l.join(" ").into(),
        _ => subject.into(),
    }
}

/// The base subject of RFC 5256 §2.1 (lower-cased for comparison), and
/// whether the subject is a reply or forward: whether extracting it
/// removed a `re:`/`fw:`/`fwd:` leader, a `(fwd)` trailer or a
/// `[fwd: ...]` wrapper (RFC 5256 §2.1, last paragraph; blobs alone do
/// not count).
pub(crate) fn base_subject_reply(subject: &str) -> (String, bool) {
    let subject = decode_words(subject);
    let mut reply = false;
    let mut s: String = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    loop {
        let before = s.clone();
        // (2) remove trailing "(fwd)" and whitespace.
        loop {
            let t = s.trim_end();
            let lower = t.to_ascii_lowercase();
            if lower.ends_with("(fwd)") {
                s = t[..t.len() - 5].to_string();
                reply = true;
            } else {
                s = t.to_string();
                break;
            }
        }
        // (3)-(5) remove leading "re:", "fw:", "fwd:" (with blobs) and
        // leading blobs that leave something behind.
        loop {
            let t = s.trim_start().to_string();
            let rest = match strip_refwd(&t) {
                Some(r) => {
                    reply = true;
                    Some(r)
                }
                None => strip_blob(&t).filter(|after| !after.trim().is_empty()),
            };
            match rest {
                Some(r) => s = r.to_string(),
                None => {
                    s = t;
                    break;
                }
            }
        }
        // (6) "[fwd: ...]" wrapper.
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].to_string();
            reply = true;
        }
        if s == before {
            return (s.trim().to_lowercase(), reply);
        }
    }
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP`
fn strip_blob(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find(['[', ']'])?;
    rest[end..].strip_prefix(']').map(str::trim_start)
}

/// `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"`
fn strip_refwd(s: &str) -> Option<&str> {
    let lower = s.to_ascii_lowercase();
    let n = ["fwd", "fw", "re"]
        .iter()
        .find(|p| lower.starts_with(*p))?
        .len();
    let mut rest = s[n..].trim_start();
    if let Some(r) = strip_blob(rest) {
        rest = r;
    }
    rest.strip_prefix(':')
}

/// The sent date of RFC 5256 §2.2: the Date header (`[day ","] date
/// time zone`) in seconds; None if it cannot be read.
pub(crate) fn sent_date(date: &str) -> Option<i64> {
    let date = date.split_once(',').map_or(date, |(_, rest)| rest);
    let words: Vec<&str> = date.split_whitespace().collect();
    let [d, m, y, time, ref rest @ ..] = words[..] else {
        return None;
    };
    let zone = rest.first().copied().unwrap_or("+0000");
    let year: i64 = y.parse().ok()?;
    // RFC 5322 §4.3: two-digit years.
    let year = match year {
        0..=49 => year + 2000,
        50..=999 => year + 1900,
        _ => year,
    };
    let time = if time.matches(':').count() == 1 {
        format!("{time}:00")
    } else {
        time.to_string()
    };
    let zone = match zone {
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => z.to_string(),
        _ => "+0000".to_string(),
    };
    let text = format!("{d:0>2}-{m}-{year:04} {time:0>8} {zone}");
    mailgate_imap_proto::parse_date_time(&text)
}

fn first_mailbox(list: &[Address]) -> String {
    list.iter()
        .find(|a| a.host.is_some())
        .and_then(|a| a.mailbox.clone())
        .unwrap_or_default()
        .to_lowercase()
}

fn first_display(list: &[Address]) -> String {
    list.iter()
        .find(|a| a.host.is_some())
        .map(|a| {
            a.name
                .clone()
                .filter(|n| !n.is_empty())
                .or_else(|| Some(format!("{}@{}", a.mailbox.clone()?, a.host.clone()?)))
                .unwrap_or_default()
        })
        .unwrap_or_default()
        .to_lowercase()
}

/// A sort value of one message for one key.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Num(i64),
    Text(String),
}

fn value(key: SortKey, st: &MessageStructure, internal_date: i64, size: u64) -> Value {
    let e = &st.envelope;
    match key {
        SortKey::Arrival => Value::Num(internal_date),
        SortKey::Size => Value::Num(size as i64),
        SortKey::Date => Value::Num(
            e.date
                .as_deref()
                .and_then(sent_date)
                .unwrap_or(internal_date),
        ),
        SortKey::Subject => Value::Text(base_subject(e.subject.as_deref().unwrap_or(""))),
        SortKey::From => Value::Text(first_mailbox(&e.from)),
        SortKey::To => Value::Text(first_mailbox(&e.to)),
        SortKey::Cc => Value::Text(first_mailbox(&e.cc)),
        SortKey::DisplayFrom => Value::Text(first_display(&e.from)),
        SortKey::DisplayTo => Value::Text(first_display(&e.to)),
    }
}

/// `sort = ["UID" SP] "SORT" SP sort-criteria SP search-criteria`
pub(crate) async fn sort(
    s: &mut Session,
    uid: bool,
    criteria: &[(bool, SortKey)],
    key: &SearchKey,
    out: &mut Vec<u8>,
) -> CmdResult {
    let indexes = matching(s, key).await?;
    let sel = s
        .selected
        .as_ref()
        .ok_or_else(|| CmdError::Server("no selected mailbox".into()))?;
    let mut rows = Vec::with_capacity(indexes.len());
    // The structures in batches, one store call and read transaction each.
    for chunk in indexes.chunks(STRUCTURE_BATCH) {
        let uids: Vec<_> = chunk.iter().map(|&i| sel.msgs.at(i).uid).collect();
        let fetched = s
            .ctx
            .store
            .fetch_messages(sel.id, &uids, RawPart::None, true)
            .await?;
        let details = sel.details(s.ctx.store.as_ref(), chunk).await?;
        let by_uid: std::collections::HashMap<_, _> = fetched
            .into_iter()
            .filter_map(|f| Some((f.uid, f.structure?)))
            .collect();
        for &i in chunk {
            let m = sel.msgs.at(i);
            // Gone (expunged by another session): not sorted.
            let Some(st) = by_uid.get(&m.uid) else {
                continue;
            };
            let values: Vec<Value> = criteria
                .iter()
                .map(|&(_, k)| {
                    let d = details.of(m.uid);
                    value(
                        k,
                        st,
                        d.map_or(0, |d| d.internal_date),
                        d.map_or(0, |d| d.size),
                    )
                })
                .collect();
            rows.push((i, values));
        }
    }
    rows.sort_by(|a, b| {
        for (n, &(reverse, _)) in criteria.iter().enumerate() {
            let o = a.1[n].cmp(&b.1[n]);
            let o = if reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.0.cmp(&b.0)
    });
    let mut line = String::from("* SORT");
    for (i, _) in rows {
        let n = if uid {
            sel.msgs.at(i).uid.get()
        } else {
            i as u32 + 1
        };
        line.push_str(&format!(" {n}"));
    }
    line.push_str("\r\n");
    out.extend_from_slice(line.as_bytes());
    Ok(Done::ok(if uid {
        "UID SORT completed"
    } else {
        "SORT completed"
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        for (s, want) in [
            ("Re: hello", "hello"),
            ("RE: [list] Fwd: hello (fwd)", "hello"),
            ("[fwd: Re: hi]", "hi"),
            ("  many   spaces  ", "many spaces"),
            ("[only blob]", "[only blob]"),
            ("Re[2]: x", "x"),
            ("", ""),
            ("=?UTF-8?Q?Re:_Gr=C3=BC=C3=9Fe?=", "grüße"),
            ("[fwd: Re: hi]", "hi"),
        ] {
            assert_eq!(base_subject(s), want, "{s:?}");
        }
        // Replies and forwards (RFC 5256 §2.1); a blob alone is not one.
        for (s, reply) in [
            ("Re: x", true),
            ("x (fwd)", true),
            ("[fwd: x]", true),
            ("FWD: x", true),
            ("[list] x", false),
            ("x", false),
            ("Rebecca: x", false),
        ] {
            assert_eq!(base_subject_reply(s).1, reply, "{s:?}");
        }
    }

    #[test]
    fn sent_dates() {
        assert_eq!(
            sent_date("Mon, 7 Feb 1994 21:52:25 -0800"),
            Some(760_686_745)
        );
        assert_eq!(sent_date("7 Feb 94 21:52 -0800"), Some(760_686_720));
        assert_eq!(sent_date("garbage"), None);
    }
}
