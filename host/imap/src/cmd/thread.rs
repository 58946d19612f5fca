//! THREAD and UID THREAD (RFC 5256 §3) with ORDEREDSUBJECT and
//! REFERENCES.
//!
//! REFERENCES is a simplified form of RFC 5256 §2.3: a message's parent is
//! the last message of its References (or its In-Reply-To) that is among
//! the results, links that would make a loop are dropped, siblings and
//! roots are ordered by sent date. Not yet done: dummy parents for
//! missing messages and the merging of threads by subject (steps 4-5).
//!
//! ```abnf
//! thread-data     = "THREAD" [SP 1*thread-list]
//! thread-list     = "(" (thread-members / thread-nested) ")"
//! thread-members  = thread-member *(SP thread-member) [SP thread-nested]
//! thread-nested   = 2*thread-list
//! ```

use std::collections::HashMap;

use mailgate_imap_proto::{SearchKey, ThreadAlgorithm};
use mailgate_store::structure::header_fields;

use super::search::matching;
use super::sort::{base_subject, sent_date};
use crate::session::{CmdError, CmdResult, Done, Session};

struct Node {
    /// UID or sequence number, as answered.
    number: u32,
    date: i64,
    children: Vec<usize>,
}

/// The message-ids (`<...>`) in a header value, in order.
fn msg_ids(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(end) = rest[start..].find('>') else {
            break;
        };
        out.push(rest[start..start + end + 1].to_string());
        rest = &rest[start + end + 1..];
    }
    out
}

fn write_node(nodes: &[Node], n: usize, out: &mut String) {
    out.push_str(&nodes[n].number.to_string());
    match nodes[n].children.as_slice() {
        [] => {}
        [only] => {
            out.push(' ');
            write_node(nodes, *only, out);
        }
        many => {
            out.push(' ');
            for &c in many {
                out.push('(');
                write_node(nodes, c, out);
                out.push(')');
            }
        }
    }
}

/// `thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria`
pub(crate) async fn thread(
    s: &mut Session,
    uid: bool,
    algorithm: ThreadAlgorithm,
    key: &SearchKey,
    out: &mut Vec<u8>,
) -> CmdResult {
    let indexes = matching(s, key).await?;
    let sel = s
        .selected
        .as_ref()
        .ok_or_else(|| CmdError::Server("no selected mailbox".into()))?;
    let mut nodes: Vec<Node> = Vec::new();
    let mut subjects = Vec::new();
    let mut ids: Vec<Option<String>> = Vec::new();
    let mut parents_wanted: Vec<Vec<String>> = Vec::new();
    for i in indexes {
        let m = &sel.msgs[i];
        let Some(st) = s.ctx.store.message_structure(sel.id, m.uid).await? else {
            continue;
        };
        let e = &st.envelope;
        let mut refs = Vec::new();
        if algorithm == ThreadAlgorithm::References {
            if let Some(raw) = s.ctx.store.message_raw(sel.id, m.uid).await? {
                let header = st.root.header.slice(&raw);
                if let Some(f) = header_fields(header)
                    .into_iter()
                    .find(|f| f.is("References"))
                {
                    refs = msg_ids(&String::from_utf8_lossy(f.value));
                }
            }
            if let Some(irt) = e.in_reply_to.as_deref() {
                refs.extend(msg_ids(irt).into_iter().take(1));
            }
        }
        nodes.push(Node {
            number: if uid { m.uid.get() } else { i as u32 + 1 },
            date: e
                .date
                .as_deref()
                .and_then(sent_date)
                .unwrap_or(m.internal_date),
            children: Vec::new(),
        });
        subjects.push(base_subject(e.subject.as_deref().unwrap_or("")));
        ids.push(
            e.message_id
                .as_deref()
                .and_then(|v| msg_ids(v).into_iter().next()),
        );
        parents_wanted.push(refs);
    }
    let order =
        |nodes: &[Node], v: &mut Vec<usize>| v.sort_by_key(|&n| (nodes[n].date, nodes[n].number));
    let mut roots = Vec::new();
    match algorithm {
        ThreadAlgorithm::OrderedSubject => {
            // RFC 5256 §2.1 ORDEREDSUBJECT: group by base subject, sort
            // each group by sent date; the first is the parent of all
            // others; threads ordered by their first message's date.
            let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
            for (n, subject) in subjects.iter().enumerate() {
                groups.entry(subject.as_str()).or_default().push(n);
            }
            for (_, mut members) in groups {
                order(&nodes, &mut members);
                let first = members[0];
                nodes[first].children = members[1..].to_vec();
                roots.push(first);
            }
        }
        ThreadAlgorithm::References => {
            let by_id: HashMap<&str, usize> = ids
                .iter()
                .enumerate()
                .filter_map(|(n, id)| Some((id.as_deref()?, n)))
                .collect();
            let mut parent: Vec<Option<usize>> = vec![None; nodes.len()];
            for n in 0..nodes.len() {
                let candidate = parents_wanted[n]
                    .iter()
                    .rev()
                    .find_map(|r| by_id.get(r.as_str()).copied())
                    .filter(|&p| p != n);
                if let Some(p) = candidate {
                    // Refuse a link that would close a loop.
                    let mut a = Some(p);
                    let mut steps = 0;
                    while let Some(x) = a {
                        if x == n || steps > nodes.len() {
                            break;
                        }
                        a = parent[x];
                        steps += 1;
                    }
                    if a.is_none() {
                        parent[n] = Some(p);
                    }
                }
            }
            for (n, p) in parent.iter().enumerate() {
                match *p {
                    Some(p) => nodes[p].children.push(n),
                    None => roots.push(n),
                }
            }
            for n in 0..nodes.len() {
                let mut c = std::mem::take(&mut nodes[n].children);
                order(&nodes, &mut c);
                nodes[n].children = c;
            }
        }
    }
    order(&nodes, &mut roots);
    let mut line = String::from("* THREAD");
    if !roots.is_empty() {
        line.push(' ');
    }
    for r in roots {
        line.push('(');
        write_node(&nodes, r, &mut line);
        line.push(')');
    }
    line.push_str("\r\n");
    out.extend_from_slice(line.as_bytes());
    Ok(Done::ok(if uid {
        "UID THREAD completed"
    } else {
        "THREAD completed"
    }))
}
