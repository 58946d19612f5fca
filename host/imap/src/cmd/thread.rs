//! THREAD and UID THREAD (RFC 5256 §3) with ORDEREDSUBJECT and
//! REFERENCES.
//!
//! REFERENCES follows RFC 5256 §3 step by step (see `references`):
//! message-id links from References (or the first message-id of
//! In-Reply-To), loops refused, dummy containers for referenced messages
//! that are not among the results, dummies pruned, threads gathered by
//! base subject, siblings sorted by sent date (then sequence number).
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
use mailgate_store::RawPart;

use super::search::matching;
use super::sort::{base_subject_reply, sent_date};
use crate::session::{CmdError, CmdResult, Done, Session};

/// One message to thread, as the algorithms need it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ThreadMsg {
    /// UID or sequence number, as answered.
    pub number: u32,
    /// Position in the mailbox (sequence number): breaks ties of dates.
    pub seq: u32,
    /// The sent date (RFC 5256 §2.2), internal date if there is none.
    pub date: i64,
    /// The message's own message-id, if it has a valid one.
    pub message_id: Option<String>,
    /// Its references, oldest first: the References field's message-ids,
    /// or else the first message-id of In-Reply-To (RFC 5256 §3 step 1A).
    pub references: Vec<String>,
    /// The Subject, with encoded words decoded.
    pub subject: String,
}

/// A thread as answered: a message with its replies, or (at the top
/// level only) a dummy holding threads with no common parent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Thread {
    /// A message (its number) and its children.
    Msg(u32, Vec<Thread>),
    /// A dummy: its children are siblings.
    Dummy(Vec<Thread>),
}

/// The valid message-ids (`<left@right>`) in a header value, in order;
/// white space inside one (folding) is removed.
pub(crate) fn msg_ids(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find(['>', '<']) else {
            break;
        };
        if after.as_bytes()[end] == b'<' {
            rest = &after[end..];
            continue;
        }
        let id: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if let Some((left, right)) = id.split_once('@') {
            if !left.is_empty() && !right.is_empty() {
                out.push(format!("<{id}>"));
            }
        }
        rest = &after[end + 1..];
    }
    out
}

/// A container of RFC 5256 §3 step 1: a message, or a dummy for a
/// message-id that was referenced but is not among the results.
#[derive(Debug, Clone, Default)]
struct Container {
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Arena<'a> {
    msgs: &'a [ThreadMsg],
    c: Vec<Container>,
}

impl Arena<'_> {
    fn new_container(&mut self, msg: Option<usize>) -> usize {
        self.c.push(Container {
            msg,
            ..Container::default()
        });
        self.c.len() - 1
    }

    /// Whether `a` is `b` or one of `b`'s ancestors.
    fn is_ancestor_or_self(&self, a: usize, b: usize) -> bool {
        let mut x = Some(b);
        let mut steps = 0;
        while let Some(n) = x {
            if n == a {
                return true;
            }
            steps += 1;
            if steps > self.c.len() {
                return true; // cannot happen: links never make loops
            }
            x = self.c[n].parent;
        }
        false
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.c[child].parent.take() {
            self.c[p].children.retain(|&x| x != child);
        }
    }

    /// Makes `child` a child of `parent` unless that would close a loop.
    fn link(&mut self, parent: usize, child: usize) {
        if self.is_ancestor_or_self(child, parent) {
            return;
        }
        self.c[child].parent = Some(parent);
        self.c[parent].children.push(child);
    }

    /// The sort key of RFC 5256 §3 steps 4 and 6: sent date, then
    /// sequence number; a dummy sorts as its first child.
    fn key(&self, n: usize) -> (i64, u32) {
        match self.c[n].msg {
            Some(m) => (self.msgs[m].date, self.msgs[m].seq),
            None => self.c[n]
                .children
                .first()
                .map_or((i64::MAX, u32::MAX), |&f| self.key(f)),
        }
    }

    fn sort(&self, v: &mut [usize]) {
        v.sort_by_key(|&n| self.key(n));
    }

    /// Sorts the children of every container below `n`, deepest first.
    fn sort_tree(&mut self, n: usize) {
        let children = self.c[n].children.clone();
        for &ch in &children {
            self.sort_tree(ch);
        }
        let mut children = children;
        self.sort(&mut children);
        self.c[n].children = children;
    }

    /// Step 3: prunes dummies among `list` (recursively). A dummy without
    /// children goes; a dummy's children take its place, except that
    /// several children are not promoted to the top level.
    fn prune(&mut self, list: Vec<usize>, top: bool) -> Vec<usize> {
        let mut out = Vec::with_capacity(list.len());
        for n in list {
            let children = std::mem::take(&mut self.c[n].children);
            let children = self.prune(children, false);
            if self.c[n].msg.is_none() && (!top || children.len() <= 1) {
                for &ch in &children {
                    self.c[ch].parent = if top { None } else { Some(n) };
                }
                out.extend(children);
            } else {
                for &ch in &children {
                    self.c[ch].parent = Some(n);
                }
                self.c[n].children = children;
                out.push(n);
            }
        }
        out
    }

    /// The message a container stands for in subject matching: itself,
    /// or a dummy's first child.
    fn subject_msg(&self, n: usize) -> Option<usize> {
        match self.c[n].msg {
            Some(m) => Some(m),
            None => self.c[n].children.first().and_then(|&f| self.c[f].msg),
        }
    }

    fn to_thread(&self, n: usize) -> Thread {
        let children = self.c[n]
            .children
            .iter()
            .map(|&c| self.to_thread(c))
            .collect();
        match self.c[n].msg {
            Some(m) => Thread::Msg(self.msgs[m].number, children),
            None => Thread::Dummy(children),
        }
    }
}

/// THREAD=REFERENCES, RFC 5256 §3. `msgs` in mailbox order.
pub(crate) fn references(msgs: &[ThreadMsg]) -> Vec<Thread> {
    let mut a = Arena {
        msgs,
        c: Vec::with_capacity(msgs.len() * 2),
    };
    let mut ids: HashMap<&str, usize> = HashMap::new();
    // Step 1.
    for (m, msg) in msgs.iter().enumerate() {
        // A message without a (valid) Message-ID, or with one an earlier
        // message already has, gets a unique one (a container of its own).
        let own = match msg.message_id.as_deref() {
            Some(id) => match ids.get(id) {
                Some(&n) if a.c[n].msg.is_none() => {
                    a.c[n].msg = Some(m);
                    n
                }
                Some(_) => a.new_container(Some(m)),
                None => {
                    let n = a.new_container(Some(m));
                    ids.insert(id, n);
                    n
                }
            },
            None => a.new_container(Some(m)),
        };
        // 1A: link the references in order, where no link exists yet and
        // no loop would be made.
        let mut prev: Option<usize> = None;
        for r in &msg.references {
            let n = match ids.get(r.as_str()) {
                Some(&n) => n,
                None => {
                    let n = a.new_container(None);
                    ids.insert(r.as_str(), n);
                    n
                }
            };
            if let Some(p) = prev {
                if a.c[n].parent.is_none() && p != n {
                    a.link(p, n);
                }
            }
            prev = Some(n);
        }
        // 1B: the last reference is the parent; an existing parent (from
        // a truncated References elsewhere) gives way.
        a.unlink(own);
        if let Some(p) = prev {
            a.link(p, own);
        }
    }
    // Step 2.
    let roots: Vec<usize> = (0..a.c.len())
        .filter(|&n| a.c[n].parent.is_none())
        .collect();
    // Step 3.
    let mut roots = a.prune(roots, true);
    // Step 4: sort the top level (a dummy by its sorted first child).
    for &r in &roots {
        if a.c[r].msg.is_none() {
            let mut ch = a.c[r].children.clone();
            a.sort(&mut ch);
            a.c[r].children = ch;
        }
    }
    a.sort(&mut roots);
    // Step 5: gather threads by base subject.
    let subject = |a: &Arena<'_>, n: usize| -> Option<(String, bool)> {
        let m = a.subject_msg(n)?;
        let (base, reply) = base_subject_reply(&msgs[m].subject);
        (!base.is_empty()).then_some((base, reply))
    };
    let is_dummy = |a: &Arena<'_>, n: usize| a.c[n].msg.is_none();
    let mut table: HashMap<String, usize> = HashMap::new();
    let mut replies: HashMap<usize, bool> = HashMap::new();
    for &r in &roots {
        let Some((base, reply)) = subject(&a, r) else {
            continue;
        };
        replies.insert(r, reply && !is_dummy(&a, r));
        match table.get(&base) {
            None => {
                table.insert(base, r);
            }
            Some(&t) => {
                let t_reply = replies.get(&t).copied().unwrap_or(false);
                if !is_dummy(&a, t) && (is_dummy(&a, r) || (t_reply && !reply)) {
                    table.insert(base, r);
                }
            }
        }
    }
    let mut slots: Vec<Option<usize>> = roots.iter().map(|&r| Some(r)).collect();
    let mut slot_of: HashMap<usize, usize> =
        roots.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    for &r in &roots {
        let Some((base, _)) = subject(&a, r) else {
            continue;
        };
        let Some(&t) = table.get(&base) else {
            continue;
        };
        if t == r {
            continue;
        }
        let r_reply = replies.get(&r).copied().unwrap_or(false);
        let t_reply = replies.get(&t).copied().unwrap_or(false);
        let r_slot = slot_of[&r];
        match (is_dummy(&a, t), is_dummy(&a, r)) {
            (true, true) => {
                let moved = std::mem::take(&mut a.c[r].children);
                for &ch in &moved {
                    a.c[ch].parent = Some(t);
                }
                a.c[t].children.extend(moved);
                slots[r_slot] = None;
            }
            (true, false) => {
                a.c[t].children.push(r);
                a.c[r].parent = Some(t);
                slots[r_slot] = None;
            }
            _ if r_reply && !t_reply => {
                a.c[t].children.push(r);
                a.c[r].parent = Some(t);
                slots[r_slot] = None;
            }
            _ => {
                let d = a.new_container(None);
                a.c[d].children = vec![t, r];
                a.c[t].parent = Some(d);
                a.c[r].parent = Some(d);
                slots[r_slot] = None;
                let t_slot = slot_of[&t];
                slots[t_slot] = Some(d);
                slot_of.insert(d, t_slot);
                table.insert(base, d);
            }
        }
    }
    // Step 6: sort every set of siblings, deepest first.
    let mut roots: Vec<usize> = slots.into_iter().flatten().collect();
    for &r in &roots {
        a.sort_tree(r);
    }
    a.sort(&mut roots);
    roots.iter().map(|&r| a.to_thread(r)).collect()
}

/// THREAD=ORDEREDSUBJECT, RFC 5256 §3: group by base subject, sort each
/// group by sent date; the first is the parent of all others; threads
/// ordered by their first message's date.
pub(crate) fn ordered_subject(msgs: &[ThreadMsg]) -> Vec<Thread> {
    let key = |m: usize| (msgs[m].date, msgs[m].seq);
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    for (m, msg) in msgs.iter().enumerate() {
        groups
            .entry(base_subject_reply(&msg.subject).0)
            .or_default()
            .push(m);
    }
    let mut threads: Vec<Vec<usize>> = groups
        .into_values()
        .map(|mut g| {
            g.sort_by_key(|&m| key(m));
            g
        })
        .collect();
    threads.sort_by_key(|g| key(g[0]));
    threads
        .into_iter()
        .map(|g| {
            let children = g[1..]
                .iter()
                .map(|&m| Thread::Msg(msgs[m].number, Vec::new()))
                .collect();
            Thread::Msg(msgs[g[0]].number, children)
        })
        .collect()
}

/// Writes the inside of one thread-list (without its parentheses).
fn write_members(t: &Thread, out: &mut String) {
    match t {
        Thread::Msg(n, children) => {
            out.push_str(&n.to_string());
            match children.as_slice() {
                [] => {}
                [only] => {
                    out.push(' ');
                    write_members(only, out);
                }
                many => {
                    out.push(' ');
                    for c in many {
                        out.push('(');
                        write_members(c, out);
                        out.push(')');
                    }
                }
            }
        }
        Thread::Dummy(children) => match children.as_slice() {
            [only] => write_members(only, out),
            many => {
                for c in many {
                    out.push('(');
                    write_members(c, out);
                    out.push(')');
                }
            }
        },
    }
}

/// The `thread-list`s of a THREAD response.
pub(crate) fn format_threads(threads: &[Thread]) -> String {
    let mut out = String::new();
    for t in threads {
        out.push('(');
        write_members(t, &mut out);
        out.push(')');
    }
    out
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
    let mut msgs = Vec::with_capacity(indexes.len());
    // Structures (and for REFERENCES the header blocks) in batches, one
    // store call and read transaction each.
    let raw_part = if algorithm == ThreadAlgorithm::References {
        RawPart::Header
    } else {
        RawPart::None
    };
    let mut loaded = HashMap::new();
    // Internal dates (for a message without a usable Date field).
    let details = sel.details(s.ctx.store.as_ref(), &indexes).await?;
    for chunk in indexes.chunks(super::sort::STRUCTURE_BATCH) {
        let uids: Vec<_> = chunk.iter().map(|&i| sel.msgs.at(i).uid).collect();
        let fetched = s
            .ctx
            .store
            .fetch_messages(sel.id, &uids, raw_part, true)
            .await?;
        for f in fetched {
            if let Some(st) = f.structure {
                loaded.insert(f.uid, (st, f.raw));
            }
        }
    }
    for i in indexes {
        let m = sel.msgs.at(i);
        // Gone (expunged by another session): not threaded.
        let Some((st, header)) = loaded.get(&m.uid) else {
            continue;
        };
        let e = &st.envelope;
        let mut references = Vec::new();
        if algorithm == ThreadAlgorithm::References {
            if let Some(header) = header {
                for f in header_fields(header).iter().filter(|f| f.is("References")) {
                    references.extend(msg_ids(&String::from_utf8_lossy(f.value)));
                }
            }
            if references.is_empty() {
                references.extend(
                    e.in_reply_to
                        .as_deref()
                        .and_then(|v| msg_ids(v).into_iter().next()),
                );
            }
        }
        msgs.push(ThreadMsg {
            number: if uid { m.uid.get() } else { i as u32 + 1 },
            seq: i as u32 + 1,
            date: e
                .date
                .as_deref()
                .and_then(sent_date)
                .unwrap_or_else(|| details.of(m.uid).map_or(0, |d| d.internal_date)),
            message_id: e
                .message_id
                .as_deref()
                .and_then(|v| msg_ids(v).into_iter().next()),
            references,
            subject: e.subject.clone().unwrap_or_default(),
        });
    }
    let threads = match algorithm {
        ThreadAlgorithm::OrderedSubject => ordered_subject(&msgs),
        ThreadAlgorithm::References => references(&msgs),
    };
    let mut line = String::from("* THREAD");
    if !threads.is_empty() {
        line.push(' ');
        line.push_str(&format_threads(&threads));
    }
    line.push_str("\r\n");
    out.extend_from_slice(line.as_bytes());
    Ok(Done::ok(if uid {
        "UID THREAD completed"
    } else {
        "THREAD completed"
    }))
}

#[cfg(test)]
mod tests;
