//! One view of a mailbox, shared by every session that has it selected.
//!
//! A mailbox's message list (UIDs and flags) is held in memory once per
//! mailbox, whatever the number of sessions: a
//! [`Snapshot`] is an immutable version of it, and a [`SharedView`] holds
//! the current version. A session keeps an `Arc` of the version it last
//! told its client about; its sequence numbers are that version's
//! positions (RFC 9051 §2.3.1.2: they change only when the client is told
//! of an EXPUNGE). To catch up, a session compares its version with the
//! current one ([`diff`]) and announces the difference.
//!
//! A snapshot is cut into chunks of at most [`CHUNK`] messages, each an
//! `Arc` of its own: a new version copies only the chunks a change
//! touches and shares the others with the version before, so
//! - a change costs one chunk per touched chunk, not a copy of the list;
//! - sessions on the same version share everything (an idle session in
//!   IDLE is always on the current version: it holds two pointers);
//! - a session a few versions behind holds only the chunks changed since;
//! - comparing two versions skips the chunks they share, so a session
//!   that was idle through many changes catches up in proportion to the
//!   changed chunks, not to the mailbox.
//!
//! The input of a view is a MODSEQ delta ([`Snapshot::apply`]): "these
//! entries changed and these UIDs were expunged, up to HIGHESTMODSEQ m"
//! ([`mailgate_store::MailboxChanges`], read by
//! [`mailgate_store::MailStore::changes_since`]). Any source of such deltas
//! can feed it: the local store after a change it announced, another
//! process's change announced through the store's `store_events` polling,
//! or, later, another node's change log.
//!
//! A chunk is compact (`chunk.rs`): UIDs as runs of consecutive values,
//! flags as a few bits a message into the chunk's palette of flag lists,
//! each an index into the version's table of distinct flag lists (kept at
//! most [`max_flag_lists`] long). A realistic mailbox costs well under a
//! byte a message. Sizes, internal dates and MODSEQs are not held: the
//! store has them, and the commands that need them read them
//! ([`mailgate_store::MailStore::message_metas`],
//! [`crate::session::Selected::details`]).
//!
//! [`MailboxViews`] is the registry: the view of a mailbox exists while a
//! session holds it and is dropped with the last one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use mailgate_store::{
    MailStore, MailboxChanges, MailboxFlags, MailboxId, MessageMeta, StoreResult, Uid,
};

mod chunk;

use chunk::{Chunk, Entry};

/// The most messages a chunk gets when it is filled by appends or
/// rebuilt. A chunk that receives a message below its largest UID (an
/// import keeping old UIDs) may grow past it until the next rebuild.
pub const CHUNK: usize = 4096;

/// The distinct flag lists of a view, each held once. Append-only along a
/// line of versions, so an index keeps its meaning in later versions of
/// the same line; a session's own version ([`Snapshot::with_entries`])
/// may add lists of its own, so versions of different lines compare
/// flags by their text.
#[derive(Debug, Clone, Default)]
struct FlagTable {
    lists: Vec<Arc<[String]>>,
    index: HashMap<Arc<[String]>, u32>,
}

impl FlagTable {
    /// The index of `flags` (sorted, no duplicates, as the store keeps
    /// them), added if new.
    fn intern(table: &mut Arc<FlagTable>, flags: &[String]) -> u32 {
        if let Some(&i) = table.index.get(flags) {
            return i;
        }
        let t = Arc::make_mut(table);
        let list: Arc<[String]> = flags.into();
        let i = t.lists.len() as u32;
        t.lists.push(Arc::clone(&list));
        t.index.insert(list, i);
        i
    }

    fn get(&self, i: u32) -> &[String] {
        self.lists.get(i as usize).map_or(&[], |l| &l[..])
    }

    /// Whether list `a` of `ta` and list `b` of `tb` hold the same flags.
    fn same(ta: &FlagTable, a: u32, tb: &FlagTable, b: u32) -> bool {
        match (ta.lists.get(a as usize), tb.lists.get(b as usize)) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y) || x == y,
            (x, y) => x.is_none() && y.is_none(),
        }
    }
}

/// A message of a snapshot as commands read it: what the view holds in
/// memory. Its size, internal date and MODSEQ are read from the store
/// when a command needs them ([`MailStore::message_metas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta<'a> {
    /// Its UID.
    pub uid: Uid,
    /// Flags and keywords, sorted, no duplicates.
    pub flags: &'a [String],
}

impl Meta<'_> {
    /// Whether the message carries this flag (case-insensitive).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}

/// One version of a mailbox's message list, in UID order (sequence
/// number n is index n - 1).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Chunks keep their places from version to version (chunk i covers
    /// the UIDs from `bounds[i]` up to `bounds[i + 1]`) until a rebuild,
    /// which takes the next layout number.
    layout: u64,
    chunks: Vec<Arc<Chunk>>,
    /// The smallest UID each chunk may hold.
    bounds: Vec<u32>,
    /// The index of each chunk's first message.
    starts: Vec<usize>,
    len: usize,
    flags: Arc<FlagTable>,
    highest_modseq: u64,
    uid_validity: u32,
    /// Every keyword seen on a message of this view (never shrinks: RFC
    /// 9051 §7.3.5 FLAGS may list flags no message has).
    keywords: Arc<BTreeSet<String>>,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot::new(Vec::new(), 0, 0)
    }
}

impl Snapshot {
    /// A snapshot with no messages yet, for the constructors to fill.
    fn empty(highest_modseq: u64, uid_validity: u32, keywords: BTreeSet<String>) -> Snapshot {
        Snapshot {
            layout: 0,
            chunks: Vec::new(),
            bounds: Vec::new(),
            starts: Vec::new(),
            len: 0,
            flags: Arc::new(FlagTable::default()),
            highest_modseq,
            uid_validity,
            keywords: Arc::new(keywords),
        }
    }

    /// A snapshot of `msgs` (ascending by UID) at `highest_modseq`.
    pub fn new(msgs: Vec<MessageMeta>, highest_modseq: u64, uid_validity: u32) -> Snapshot {
        let mut keywords = BTreeSet::new();
        for m in &msgs {
            add_keywords(&mut keywords, &m.flags);
        }
        let mut s = Snapshot::empty(highest_modseq, uid_validity, keywords);
        let entries: Vec<Entry> = msgs.iter().map(|m| s.entry(m)).collect();
        s.fill_entries(entries);
        s
    }

    /// A snapshot of a mailbox's compact list
    /// ([`MailStore::mailbox_flags`]).
    pub fn from_flags(all: &MailboxFlags) -> Snapshot {
        let mut keywords = BTreeSet::new();
        for l in &all.lists {
            add_keywords(&mut keywords, l);
        }
        let mut s = Snapshot::empty(all.highest_modseq, all.uid_validity, keywords);
        let ids: Vec<u32> = all
            .lists
            .iter()
            .map(|l| FlagTable::intern(&mut s.flags, l))
            .collect();
        // An index past the lists (a store's mistake): no flags.
        let none = if all.messages.iter().any(|m| m.1 as usize >= ids.len()) {
            FlagTable::intern(&mut s.flags, &[])
        } else {
            0
        };
        // Encoded a chunk at a time: no second list of the mailbox's size
        // is made while the store's is held.
        s.fill_from(all.messages.iter().map(|&(uid, i)| Entry {
            uid: uid.get(),
            flags: ids.get(i as usize).copied().unwrap_or(none),
        }));
        s
    }

    fn entry(&mut self, m: &MessageMeta) -> Entry {
        Entry {
            uid: m.uid.get(),
            flags: FlagTable::intern(&mut self.flags, &m.flags),
        }
    }

    fn meta(&self, e: Entry) -> Meta<'_> {
        Meta {
            // UIDs in a view come from `Uid`s: never 0.
            uid: Uid(std::num::NonZeroU32::new(e.uid).unwrap_or(std::num::NonZeroU32::MAX)),
            flags: self.flags.get(e.flags),
        }
    }

    fn fill_entries(&mut self, entries: Vec<Entry>) {
        self.fill_from(entries.into_iter());
    }

    /// Lays out `entries` (ascending by UID; an entry whose UID is not
    /// above the one before is left out) in chunks of [`CHUNK`], encoding
    /// each as soon as it is full: what is held besides the chunks is one
    /// chunk's plain list, whatever the mailbox's size.
    fn fill_from(&mut self, entries: impl Iterator<Item = Entry>) {
        self.chunks.clear();
        self.bounds.clear();
        let mut part: Vec<Entry> = Vec::with_capacity(CHUNK);
        let mut last = 0u32;
        for e in entries {
            if e.uid <= last {
                continue;
            }
            last = e.uid;
            part.push(e);
            if part.len() == CHUNK {
                self.push_chunk(&part);
                part.clear();
            }
        }
        if !part.is_empty() {
            self.push_chunk(&part);
        }
        self.reindex();
    }

    fn push_chunk(&mut self, part: &[Entry]) {
        self.bounds.push(if self.chunks.is_empty() {
            1
        } else {
            part[0].uid
        });
        self.chunks.push(Arc::new(Chunk::encode(part)));
    }

    fn reindex(&mut self) {
        self.starts.clear();
        let mut n = 0;
        for c in &self.chunks {
            self.starts.push(n);
            n += c.len();
        }
        self.len = n;
    }

    /// The number of messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no message.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The HIGHESTMODSEQ this version is at.
    pub fn highest_modseq(&self) -> u64 {
        self.highest_modseq
    }

    /// The UIDVALIDITY it was read under.
    pub fn uid_validity(&self) -> u32 {
        self.uid_validity
    }

    /// The keywords seen in the mailbox (for FLAGS).
    pub fn keywords(&self) -> &Arc<BTreeSet<String>> {
        &self.keywords
    }

    /// The message at `index` (sequence number - 1).
    pub fn get(&self, index: usize) -> Option<Meta<'_>> {
        self.entry_at(index).map(|e| self.meta(e))
    }

    /// The message at `index`, which must be below [`Snapshot::len`] (an
    /// index from [`crate::session::Selected::resolve`] or a search of
    /// this snapshot).
    pub fn at(&self, index: usize) -> Meta<'_> {
        match self.get(index) {
            Some(m) => m,
            None => panic!("message index {index} out of range ({} messages)", self.len),
        }
    }

    fn entry_at(&self, index: usize) -> Option<Entry> {
        if index >= self.len {
            return None;
        }
        // The last chunk starting at or before `index` holds it (an empty
        // chunk shares its start with the next one).
        let c = self.starts.partition_point(|&s| s <= index) - 1;
        self.chunks[c].get(index - self.starts[c])
    }

    /// The index of the first message whose UID is at least `uid` (the
    /// length if none).
    pub fn lower_bound(&self, uid: u32) -> usize {
        let c = self.bounds.partition_point(|&b| b <= uid);
        if c == 0 {
            return 0;
        }
        let c = c - 1;
        let i = self.chunks[c].lower_bound(uid);
        if i < self.chunks[c].len() {
            self.starts[c] + i
        } else {
            self.starts.get(c + 1).copied().unwrap_or(self.len)
        }
    }

    /// The index (sequence number - 1) of a UID, if present.
    pub fn index_of(&self, uid: Uid) -> Option<usize> {
        let i = self.lower_bound(uid.get());
        (self.entry_at(i)?.uid == uid.get()).then_some(i)
    }

    /// The UIDs of some indexes (ascending indexes give ascending UIDs);
    /// indexes past the end are left out.
    pub fn uids_of(&self, indexes: &[usize]) -> Vec<Uid> {
        indexes
            .iter()
            .filter_map(|&i| self.get(i))
            .map(|m| m.uid)
            .collect()
    }

    /// The largest UID, 0 if empty.
    pub fn largest_uid(&self) -> u32 {
        self.chunks
            .iter()
            .rev()
            .find_map(|c| c.last_uid())
            .unwrap_or(0)
    }

    /// The messages in sequence order.
    pub fn iter(&self) -> impl Iterator<Item = Meta<'_>> + '_ {
        self.entries().map(|e| self.meta(e))
    }

    fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.chunks.iter().flat_map(|c| c.iter_from(0))
    }

    /// The messages from index `start` on, in sequence order.
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = Meta<'_>> + '_ {
        let c = if start >= self.len {
            self.chunks.len()
        } else {
            self.starts.partition_point(|&s| s <= start) - 1
        };
        let skip = start.saturating_sub(self.starts.get(c).copied().unwrap_or(0));
        self.chunks[c..]
            .iter()
            .enumerate()
            .flat_map(move |(k, ch)| ch.iter_from(if k == 0 { skip } else { 0 }))
            .map(|e| self.meta(e))
    }

    /// The distinct flag lists of this version, and for each message, in
    /// sequence order, the index of its list: a search that reads only
    /// flags decides once per list, not once per message.
    pub fn flag_lists(&self) -> (&[Arc<[String]>], impl Iterator<Item = usize> + '_) {
        (
            &self.flags.lists,
            self.chunks
                .iter()
                .flat_map(|c| c.flag_ids())
                .map(|f| f as usize),
        )
    }

    /// Heap bytes held by this version's message list (chunks, their
    /// places, the flag lists' indexes; not the flag text), for tests and
    /// figures.
    pub fn heap_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.heap_bytes() + std::mem::size_of::<Chunk>())
            .sum::<usize>()
            + self.chunks.len() * (8 + 4 + 8)
    }

    /// Adds the keywords of `flags` that this version does not list to
    /// `keywords`, a copy of this version's made on the first new one
    /// (`None` while there is none).
    fn note_keywords(&self, keywords: &mut Option<BTreeSet<String>>, flags: &[String]) {
        if flags
            .iter()
            .any(|f| !f.starts_with('\\') && !self.keywords.contains(f))
        {
            add_keywords(
                keywords.get_or_insert_with(|| (*self.keywords).clone()),
                flags,
            );
        }
    }

    /// The chunk index that holds (or would hold) `uid`.
    fn chunk_of(&self, uid: u32) -> usize {
        self.bounds.partition_point(|&b| b <= uid).saturating_sub(1)
    }

    /// Encodes the edited chunks again, keeping a chunk whose content did
    /// not change (so that a difference skips it).
    fn store_edits(&mut self, edited: BTreeMap<usize, Vec<Entry>>) {
        for (c, v) in edited {
            let chunk = Chunk::encode(&v);
            if *self.chunks[c] != chunk {
                self.chunks[c] = Arc::new(chunk);
            }
        }
    }

    /// This version with a MODSEQ delta applied: the next version, at
    /// `changes.highest_modseq`. Entries in `changes.changed` replace the
    /// ones with their UID or are added; UIDs in `changes.expunged` are
    /// removed. Only the chunks touched are encoded again.
    pub fn apply(&self, changes: &MailboxChanges) -> Snapshot {
        let mut next = self.clone();
        next.highest_modseq = changes.highest_modseq.max(self.highest_modseq);
        let mut keywords: Option<BTreeSet<String>> = None;
        for m in &changes.changed {
            self.note_keywords(&mut keywords, &m.flags);
        }
        if let Some(k) = keywords {
            next.keywords = Arc::new(k);
        }
        let largest = self.largest_uid();
        let mut edited: BTreeMap<usize, Vec<Entry>> = BTreeMap::new();
        for &uid in &changes.expunged {
            let c = next.chunk_of(uid.get());
            let Some(chunk) = next.chunks.get(c) else {
                continue;
            };
            let v = edited.entry(c).or_insert_with(|| chunk.decode());
            if let Ok(i) = v.binary_search_by_key(&uid.get(), |e| e.uid) {
                v.remove(i);
            }
        }
        let mut tail: Vec<Entry> = Vec::new();
        for m in &changes.changed {
            let e = next.entry(m);
            if e.uid > largest {
                tail.push(e);
                continue;
            }
            let c = next.chunk_of(e.uid);
            let chunk = &next.chunks[c];
            let v = edited.entry(c).or_insert_with(|| chunk.decode());
            match v.binary_search_by_key(&e.uid, |x| x.uid) {
                Ok(i) => v[i] = e,
                Err(i) => v.insert(i, e),
            }
        }
        next.store_edits(edited);
        if !tail.is_empty() {
            // The last of several entries for one UID wins.
            tail.reverse();
            tail.sort_by_key(|e| e.uid);
            tail.dedup_by_key(|e| e.uid);
            let mut tail = &tail[..];
            if let Some(last) = next.chunks.last_mut() {
                if last.len() < CHUNK {
                    let take = tail.len().min(CHUNK - last.len());
                    let mut v = last.decode();
                    v.extend_from_slice(&tail[..take]);
                    *last = Arc::new(Chunk::encode(&v));
                    tail = &tail[take..];
                }
            }
            for part in tail.chunks(CHUNK) {
                next.bounds.push(if next.chunks.is_empty() {
                    1
                } else {
                    part[0].uid
                });
                next.chunks.push(Arc::new(Chunk::encode(part)));
            }
        }
        next.reindex();
        // Many emptied or overfull chunks: lay the list out again.
        let wanted = next.len.div_ceil(CHUNK);
        if next.chunks.len() > 2 * wanted + 8 || next.chunks.iter().any(|c| c.len() > 2 * CHUNK) {
            let all: Vec<Entry> = next.entries().collect();
            next.layout = self.layout + 1;
            next.fill_entries(all);
        }
        next.bound_flag_lists();
        next
    }

    /// This version with some entries replaced by newer ones (this
    /// session's own STORE, or `\Seen` set by its FETCH): UIDs not in the
    /// snapshot are ignored, nothing is added or removed, so sequence
    /// numbers stay. Used while the session may not yet catch up.
    /// The snapshot's HIGHESTMODSEQ becomes at least theirs, so that the
    /// session knows to read the view again before it next catches up.
    pub fn with_entries(&self, metas: &[MessageMeta]) -> Snapshot {
        let mut next = self.clone();
        next.highest_modseq = metas
            .iter()
            .map(|m| m.modseq)
            .fold(self.highest_modseq, u64::max);
        let mut keywords: Option<BTreeSet<String>> = None;
        let mut edited: BTreeMap<usize, Vec<Entry>> = BTreeMap::new();
        for m in metas {
            let c = next.chunk_of(m.uid.get());
            let Some(chunk) = next.chunks.get(c) else {
                continue;
            };
            let Some(p) = chunk
                .get(chunk.lower_bound(m.uid.get()))
                .filter(|e| e.uid == m.uid.get())
                .map(|_| chunk.lower_bound(m.uid.get()))
            else {
                continue;
            };
            let v = edited.entry(c).or_insert_with(|| chunk.decode());
            let e = next.entry(m);
            v[p] = e;
            self.note_keywords(&mut keywords, &m.flags);
        }
        next.store_edits(edited);
        if let Some(k) = keywords {
            next.keywords = Arc::new(k);
        }
        next.bound_flag_lists();
        next
    }

    /// Keeps the table of flag lists (and the keywords) in proportion to
    /// the messages: a client storing ever new keyword combinations adds
    /// a list each time, and lists no message uses any more stay in the
    /// table. Past [`max_flag_lists`] lists, the table is made again from
    /// the lists in use and the keywords from their keywords (the next
    /// FLAGS response then lists fewer), in a new layout.
    fn bound_flag_lists(&mut self) {
        if self.flags.lists.len() <= max_flag_lists(self.len) {
            return;
        }
        let old = std::mem::take(&mut self.flags);
        let mut keywords = BTreeSet::new();
        let entries: Vec<Entry> = self
            .entries()
            .collect::<Vec<_>>()
            .into_iter()
            .map(|mut e| {
                let flags = old.get(e.flags);
                add_keywords(&mut keywords, flags);
                e.flags = FlagTable::intern(&mut self.flags, flags);
                e
            })
            .collect();
        self.keywords = Arc::new(keywords);
        self.layout += 1;
        self.fill_entries(entries);
    }
}

/// The most flag lists a view's table holds before it is made again from
/// the lists in use: twice the messages, and 64.
pub fn max_flag_lists(messages: usize) -> usize {
    2 * messages + 64
}

fn add_keywords(set: &mut BTreeSet<String>, flags: &[String]) {
    for f in flags.iter().filter(|f| !f.starts_with('\\')) {
        if !set.contains(f) {
            set.insert(f.clone());
        }
    }
}

/// What differs between the version a session knows and a newer one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Difference<'a> {
    /// Messages gone: their index in the old version and UID, ascending.
    pub expunged: Vec<(usize, Uid)>,
    /// Messages in both whose flags changed: index in the new version,
    /// the old entry and the new one, ascending.
    pub changed: Vec<(usize, Meta<'a>, Meta<'a>)>,
    /// Messages only in the new version.
    pub added: usize,
}

/// Compares `old` with `new`, skipping the chunks they share: in
/// proportion to the chunks changed between them, unless the newer one
/// was laid out again (then to the mailbox, once).
pub fn diff<'a>(old: &'a Snapshot, new: &'a Snapshot) -> Difference<'a> {
    let mut d = Difference::default();
    if old.layout == new.layout {
        for c in 0..old.chunks.len().max(new.chunks.len()) {
            match (old.chunks.get(c), new.chunks.get(c)) {
                (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {}
                (a, b) => merge(
                    (old, &a.map(|a| a.decode()).unwrap_or_default()),
                    old.starts.get(c).copied().unwrap_or(old.len),
                    (new, &b.map(|b| b.decode()).unwrap_or_default()),
                    new.starts.get(c).copied().unwrap_or(new.len),
                    &mut d,
                ),
            }
        }
    } else {
        let a: Vec<Entry> = old.entries().collect();
        let b: Vec<Entry> = new.entries().collect();
        merge((old, &a), 0, (new, &b), 0, &mut d);
    }
    d
}

fn merge<'a>(
    (sa, a): (&'a Snapshot, &[Entry]),
    a0: usize,
    (sb, b): (&'a Snapshot, &[Entry]),
    b0: usize,
    d: &mut Difference<'a>,
) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x.uid == y.uid => {
                if !FlagTable::same(&sa.flags, x.flags, &sb.flags, y.flags) {
                    d.changed.push((b0 + j, sa.meta(x), sb.meta(y)));
                }
                i += 1;
                j += 1;
            }
            (Some(&x), Some(&y)) if x.uid < y.uid => {
                d.expunged.push((a0 + i, sa.meta(x).uid));
                i += 1;
            }
            (Some(&x), None) => {
                d.expunged.push((a0 + i, sa.meta(x).uid));
                i += 1;
            }
            (_, Some(_)) => {
                d.added += 1;
                j += 1;
            }
            (None, None) => break,
        }
    }
}

/// The current version of one mailbox's list, shared by the sessions
/// that have it selected, and how it is brought up to date.
#[derive(Debug)]
pub struct SharedView {
    id: MailboxId,
    current: Mutex<Arc<Snapshot>>,
    /// A change was announced that may not be applied yet.
    dirty: AtomicBool,
    /// One refresh at a time: the others wait and use its result.
    refreshing: tokio::sync::Mutex<()>,
}

impl SharedView {
    /// The mailbox.
    pub fn id(&self) -> MailboxId {
        self.id
    }

    /// The current version (as last refreshed).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Notes that the store announced a change (or that announcements
    /// were lost): the next [`SharedView::refresh`] asks the store.
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Notes an announcement of appended UIDs: unless the current version
    /// holds them already (another session refreshed since), the view is
    /// dirty.
    pub fn note_appended(&self, uids: &[Uid]) {
        let largest = self.snapshot().largest_uid();
        if uids.iter().any(|u| u.get() > largest) {
            self.mark_dirty();
        }
    }

    /// Notes an announcement of expunged UIDs: unless the current version
    /// has none of them any more, the view is dirty.
    pub fn note_expunged(&self, uids: &[Uid]) {
        let snap = self.snapshot();
        if uids.iter().any(|&u| snap.index_of(u).is_some()) {
            self.mark_dirty();
        }
    }

    /// Brings the view up to date if a change was announced (always if
    /// `force`) and returns the current version: one
    /// [`MailStore::changes_since`] call from the view's HIGHESTMODSEQ,
    /// made by one session for all. A view whose UIDVALIDITY no longer
    /// matches (the mailbox was deleted, or adopted another) is read
    /// again whole.
    pub async fn refresh(&self, store: &dyn MailStore, force: bool) -> StoreResult<Arc<Snapshot>> {
        if !force && !self.dirty.load(Ordering::Acquire) {
            return Ok(self.snapshot());
        }
        let _one = self.refreshing.lock().await;
        if !force && !self.dirty.load(Ordering::Acquire) {
            return Ok(self.snapshot());
        }
        self.dirty.store(false, Ordering::Release);
        let cur = self.snapshot();
        let changes = match store.changes_since(self.id, cur.highest_modseq).await {
            Ok(c) => c,
            Err(e) => {
                self.mark_dirty();
                return Err(e);
            }
        };
        if changes.uid_validity == cur.uid_validity
            && changes.changed.is_empty()
            && changes.expunged.is_empty()
            && changes.highest_modseq <= cur.highest_modseq
        {
            return Ok(cur);
        }
        let next = if changes.uid_validity == cur.uid_validity {
            cur.apply(&changes)
        } else {
            match load(store, self.id).await {
                Ok(s) => s,
                Err(e) => {
                    self.mark_dirty();
                    return Err(e);
                }
            }
        };
        let next = Arc::new(next);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&next);
        Ok(next)
    }
}

/// Reads a mailbox's whole list in compact form (UIDs and flag lists,
/// each distinct list once: a few bytes a message while it is read) with
/// HIGHESTMODSEQ and UIDVALIDITY, in one transaction.
async fn load(store: &dyn MailStore, id: MailboxId) -> StoreResult<Snapshot> {
    let all = store.mailbox_flags(id).await?;
    if all.uid_validity == 0 {
        // A store without a MODSEQ index (or a mailbox gone): the list
        // as it is now.
        return Ok(Snapshot::new(
            store.list_messages(id).await.unwrap_or_default(),
            all.highest_modseq,
            0,
        ));
    }
    Ok(Snapshot::from_flags(&all))
}

/// The shared views of the mailboxes selected by some session: the view
/// of a mailbox exists while a session holds it.
#[derive(Debug, Default)]
pub struct MailboxViews {
    views: Mutex<HashMap<MailboxId, Weak<SharedView>>>,
}

impl MailboxViews {
    /// An empty registry.
    pub fn new() -> MailboxViews {
        MailboxViews::default()
    }

    /// The view of mailbox `id`, up to date: the one other sessions hold
    /// (refreshed), or a new one read from the store.
    pub async fn open(&self, store: &dyn MailStore, id: MailboxId) -> StoreResult<Arc<SharedView>> {
        if let Some(v) = self.lookup(id) {
            v.refresh(store, true).await?;
            return Ok(v);
        }
        let snap = load(store, id).await?;
        let view = Arc::new(SharedView {
            id,
            current: Mutex::new(Arc::new(snap)),
            dirty: AtomicBool::new(false),
            refreshing: tokio::sync::Mutex::new(()),
        });
        // Another session may have made one meanwhile: use that one.
        let existing = {
            let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
            match views.get(&id).and_then(Weak::upgrade) {
                Some(v) => Some(v),
                None => {
                    views.retain(|_, w| w.strong_count() > 0);
                    views.insert(id, Arc::downgrade(&view));
                    None
                }
            }
        };
        match existing {
            Some(v) => {
                v.refresh(store, true).await?;
                Ok(v)
            }
            None => Ok(view),
        }
    }

    fn lookup(&self, id: MailboxId) -> Option<Arc<SharedView>> {
        self.views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .and_then(Weak::upgrade)
    }

    /// How many views are alive (for tests and figures).
    pub fn live(&self) -> usize {
        self.views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests;
