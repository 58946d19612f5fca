//! The shared view without a store: versions, deltas and differences
//! checked against a plain list (the model).

use super::*;

fn meta(uid: u32, modseq: u64, flags: &[&str]) -> MessageMeta {
    MessageMeta {
        uid: Uid::new(uid).unwrap(),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        internal_date: 0,
        size: 10,
        modseq,
        blob: uid as i64,
    }
}

fn as_meta(m: &MessageMeta) -> Meta<'_> {
    Meta {
        uid: m.uid,
        flags: &m.flags,
    }
}

fn uids(s: &Snapshot) -> Vec<u32> {
    s.iter().map(|m| m.uid.get()).collect()
}

fn changes(modseq: u64, changed: Vec<MessageMeta>, expunged: &[u32]) -> MailboxChanges {
    MailboxChanges {
        highest_modseq: modseq,
        uid_validity: 7,
        changed,
        expunged: expunged.iter().map(|&u| Uid::new(u).unwrap()).collect(),
    }
}

#[test]
fn indexes_and_lookups_across_chunks() {
    let n = CHUNK * 3 + 17;
    let msgs: Vec<_> = (1..=n as u32).map(|u| meta(u * 2, 1, &[])).collect();
    let s = Snapshot::new(msgs, 5, 7);
    assert_eq!(s.len(), n);
    for i in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, n - 1] {
        assert_eq!(s.at(i).uid.get(), (i as u32 + 1) * 2);
        assert_eq!(s.index_of(s.at(i).uid), Some(i));
        assert_eq!(s.lower_bound(s.at(i).uid.get()), i);
        assert_eq!(s.lower_bound(s.at(i).uid.get() - 1), i);
        assert_eq!(s.index_of(Uid::new(s.at(i).uid.get() + 1).unwrap()), None);
        assert_eq!(s.iter_from(i).next().map(|m| m.uid), Some(s.at(i).uid));
    }
    assert!(s.get(n).is_none());
    assert_eq!(s.lower_bound(u32::MAX), n);
    assert_eq!(s.largest_uid(), n as u32 * 2);
    assert_eq!(s.iter_from(n).count(), 0);
}

#[test]
fn apply_matches_a_plain_list_and_copies_only_touched_chunks() {
    let n = CHUNK * 4;
    let msgs: Vec<_> = (1..=n as u32).map(|u| meta(u, 1, &[])).collect();
    let mut model: Vec<MessageMeta> = msgs.clone();
    let s0 = Snapshot::new(msgs, 1, 7);
    // Expunge two in chunk 1, flag one in chunk 2, append three.
    let gone = [CHUNK as u32 + 3, CHUNK as u32 + 9];
    let flagged = meta(2 * CHUNK as u32 + 5, 2, &["\\Seen", "$Work"]);
    let new: Vec<_> = (n as u32 + 1..=n as u32 + 3)
        .map(|u| meta(u, 3, &[]))
        .collect();
    let mut changed = vec![flagged.clone()];
    changed.extend(new.iter().cloned());
    let s1 = s0.apply(&changes(3, changed, &gone));
    model.retain(|m| !gone.contains(&m.uid.get()));
    let i = model.iter().position(|m| m.uid == flagged.uid).unwrap();
    model[i] = flagged.clone();
    model.extend(new);
    assert_eq!(
        uids(&s1),
        model.iter().map(|m| m.uid.get()).collect::<Vec<_>>()
    );
    assert!(s1.iter().eq(model.iter().map(as_meta)));
    assert_eq!(s1.highest_modseq(), 3);
    assert!(s1.keywords().contains("$Work"));
    // Chunk 0 untouched: shared with the old version.
    assert!(Arc::ptr_eq(&s0.chunks[0], &s1.chunks[0]));
    assert!(!Arc::ptr_eq(&s0.chunks[1], &s1.chunks[1]));
    // The old version is unchanged.
    assert_eq!(s0.len(), n);
    assert_eq!(s0.at(CHUNK + 2).uid.get(), CHUNK as u32 + 3);

    let d = diff(&s0, &s1);
    assert_eq!(
        d.expunged,
        vec![
            (CHUNK + 2, Uid::new(gone[0]).unwrap()),
            (CHUNK + 8, Uid::new(gone[1]).unwrap())
        ]
    );
    assert_eq!(d.changed.len(), 1);
    assert_eq!(d.changed[0].0, i);
    assert_eq!(d.changed[0].2, as_meta(&flagged));
    assert_eq!(d.changed[0].1.flags, &[] as &[String]);
    assert_eq!(d.added, 3);
    assert_eq!(diff(&s1, &s1), Difference::default());
}

#[test]
fn relayout_after_many_expunges_still_diffs() {
    let n = CHUNK * 20;
    let msgs: Vec<_> = (1..=n as u32).map(|u| meta(u, 1, &[])).collect();
    let s0 = Snapshot::new(msgs, 1, 7);
    let gone: Vec<u32> = (1..=n as u32).filter(|u| u % 10 != 0).collect();
    let s1 = s0.apply(&changes(2, Vec::new(), &gone));
    assert_ne!(s0.layout, s1.layout, "emptied chunks are laid out again");
    assert_eq!(s1.len(), n / 10);
    let d = diff(&s0, &s1);
    assert_eq!(d.expunged.len(), gone.len());
    assert!(d.changed.is_empty());
    assert_eq!(d.added, 0);
}

#[test]
fn own_changes_keep_numbers() {
    let msgs: Vec<_> = (1..=10).map(|u| meta(u, 1, &[])).collect();
    let s0 = Snapshot::new(msgs, 1, 7);
    let s1 = s0.with_entries(&[meta(4, 9, &["\\Seen"]), meta(99, 9, &[])]);
    assert_eq!(s1.len(), 10);
    assert_eq!(s1.at(3).flags, &["\\Seen".to_string()][..]);
    assert_eq!(s1.highest_modseq(), 9);
    // The shared version with the same change: no difference to announce.
    let shared = s0.apply(&changes(9, vec![meta(4, 9, &["\\Seen"])], &[]));
    assert_eq!(diff(&s1, &shared), Difference::default());
}

#[test]
fn empty_and_growing_from_nothing() {
    let s0 = Snapshot::default();
    assert!(s0.is_empty());
    assert_eq!(s0.largest_uid(), 0);
    assert_eq!(s0.index_of(Uid::new(1).unwrap()), None);
    let added: Vec<_> = (1..=(CHUNK as u32 + 1)).map(|u| meta(u, 2, &[])).collect();
    let s1 = s0.apply(&changes(2, added, &[]));
    assert_eq!(s1.len(), CHUNK + 1);
    assert_eq!(s1.chunks.len(), 2);
    assert_eq!(diff(&s0, &s1).added, CHUNK + 1);
    let s2 = s1.apply(&changes(3, Vec::new(), &[1, CHUNK as u32 + 1]));
    assert_eq!(uids(&s2), (2..=CHUNK as u32).collect::<Vec<_>>());
}

#[test]
fn flag_lists_are_held_once() {
    let msgs: Vec<_> = (1..=3000)
        .map(|u| meta(u, 1, if u % 2 == 0 { &["\\Seen"] } else { &[] }))
        .collect();
    let s0 = Snapshot::new(msgs, 1, 7);
    assert_eq!(s0.flags.lists.len(), 2);
    // A session's own version adds a list of its own; the shared one
    // another at the same index: compared by text, not by index.
    let own = s0.with_entries(&[meta(1, 5, &["$A"])]);
    let shared = s0.apply(&changes(5, vec![meta(1, 5, &["$B"])], &[]));
    let d = diff(&own, &shared);
    assert_eq!(d.changed.len(), 1);
    assert_eq!(d.changed[0].1.flags, &["$A".to_string()][..]);
    assert_eq!(d.changed[0].2.flags, &["$B".to_string()][..]);
}

#[test]
fn flag_lists_stay_in_proportion_to_messages() {
    let msgs: Vec<_> = (1..=10).map(|u| meta(u, 1, &[])).collect();
    let mut s = Snapshot::new(msgs, 1, 7);
    // A client stores a new keyword on message 1 again and again.
    for i in 0..500u64 {
        let k = format!("$k{i}");
        s = s.apply(&changes(2 + i, vec![meta(1, 2 + i, &[k.as_str()])], &[]));
        assert!(s.flags.lists.len() <= max_flag_lists(10));
        assert!(s.keywords().len() <= max_flag_lists(10));
        assert_eq!(s.at(0).flags, &[k][..]);
    }
    assert_eq!(s.len(), 10);
    assert!(s.iter().skip(1).all(|m| m.flags.is_empty()));
}

/// A small deterministic generator (xorshift64*), so that a failing case
/// can be run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const FLAG_SETS: &[&[&str]] = &[
    &[],
    &["\\Seen"],
    &["\\Flagged", "\\Seen"],
    &["\\Answered", "\\Seen"],
    &["$Label1", "\\Seen"],
    &["$Forwarded"],
    &["\\Deleted"],
];

fn random_flags(rng: &mut Rng) -> Vec<String> {
    if rng.chance(3) {
        // Now and then a list of its own.
        return vec![format!("$k{}", rng.below(1000))];
    }
    FLAG_SETS[rng.below(FLAG_SETS.len() as u64) as usize]
        .iter()
        .map(|f| f.to_string())
        .collect()
}

#[test]
fn chunk_round_trips_and_lookups_match_a_plain_list() {
    let mut rng = Rng(0x5eed_1234);
    for round in 0..300 {
        let n = match round % 4 {
            0 => rng.below(8) as usize,
            1 => rng.below(CHUNK as u64) as usize,
            _ => rng.below(600) as usize,
        };
        let distinct = [1, 2, 3, 5, 17, 300, 5000][round % 7];
        let mut uid = rng.below(3) as u32 + 1;
        let mut entries = Vec::new();
        for _ in 0..n {
            entries.push(Entry {
                uid,
                flags: rng.below(distinct) as u32 * 7,
            });
            uid += if rng.chance(90) {
                1
            } else {
                1 + rng.below(50) as u32
            };
        }
        if round == 5 && !entries.is_empty() {
            // The largest UIDs there are.
            let k = entries.len() as u32;
            for (i, e) in entries.iter_mut().enumerate() {
                e.uid = u32::MAX - k + 1 + i as u32;
            }
        }
        let c = chunk::Chunk::encode(&entries);
        assert_eq!(c.len(), entries.len());
        assert_eq!(c.decode(), entries, "round {round}");
        assert_eq!(c.last_uid(), entries.last().map(|e| e.uid));
        assert_eq!(c.get(entries.len()), None);
        for p in 0..entries.len() {
            assert_eq!(c.get(p), Some(entries[p]));
            assert_eq!(c.iter_from(p).next(), Some(entries[p]));
            assert_eq!(c.iter_from(p).count(), entries.len() - p);
        }
        for probe in 0..40 {
            let u = match probe % 3 {
                0 => rng.below(uid as u64 + 5) as u32,
                1 => entries
                    .get(rng.below(n as u64 + 1) as usize)
                    .map_or(0, |e| e.uid),
                _ => entries
                    .get(rng.below(n as u64 + 1) as usize)
                    .map_or(0, |e| e.uid + 1),
            };
            let want = entries.partition_point(|e| e.uid < u);
            assert_eq!(c.lower_bound(u), want, "round {round} uid {u}");
        }
        assert_eq!(
            c.lower_bound(u32::MAX),
            entries.partition_point(|e| e.uid < u32::MAX)
        );
        let ids: Vec<u32> = c.flag_ids().collect();
        assert_eq!(ids, entries.iter().map(|e| e.flags).collect::<Vec<_>>());
    }
}

#[test]
fn random_edits_match_a_plain_list() {
    let mut rng = Rng(0xfeed_beef);
    for round in 0..8 {
        let n = [0, 5, CHUNK - 1, CHUNK * 2 + 3][round % 4];
        let mut next_uid = 1u32;
        let mut model: Vec<MessageMeta> = Vec::new();
        for _ in 0..n {
            model.push(meta(next_uid, 1, &[]));
            model.last_mut().unwrap().flags = random_flags(&mut rng);
            next_uid += if rng.chance(97) { 1 } else { 2 };
        }
        let mut snap = Snapshot::new(model.clone(), 1, 7);
        let mut modseq = 1;
        for step in 0..40 {
            modseq += 1;
            let old = snap.clone();
            let old_model = model.clone();
            let mut changed = Vec::new();
            let mut expunged = Vec::new();
            for _ in 0..rng.below(40) {
                match rng.below(4) {
                    0 if !model.is_empty() => {
                        let i = rng.below(model.len() as u64) as usize;
                        let gone = model.remove(i).uid;
                        changed.retain(|m: &MessageMeta| m.uid != gone);
                        expunged.push(gone.get());
                    }
                    1 if !model.is_empty() => {
                        let i = rng.below(model.len() as u64) as usize;
                        model[i].flags = random_flags(&mut rng);
                        model[i].modseq = modseq;
                        changed.retain(|m: &MessageMeta| m.uid != model[i].uid);
                        changed.push(model[i].clone());
                    }
                    2 => {
                        // An import below the largest UID, or an append.
                        let uid = if rng.chance(30) {
                            rng.below(next_uid as u64) as u32 + 1
                        } else {
                            next_uid += 1 + rng.below(3) as u32;
                            next_uid
                        };
                        let at = model.partition_point(|x| x.uid.get() < uid);
                        if model.get(at).is_some_and(|m| m.uid.get() == uid)
                            || expunged.contains(&uid)
                        {
                            continue;
                        }
                        let mut m = meta(uid, modseq, &[]);
                        m.flags = random_flags(&mut rng);
                        let at = model.partition_point(|x| x.uid.get() < uid);
                        model.insert(at, m.clone());
                        changed.push(m);
                    }
                    _ if rng.chance(10) => {
                        // A bulk append.
                        for _ in 0..rng.below(CHUNK as u64 / 2) {
                            next_uid += 1;
                            let m = meta(next_uid, modseq, &["\\Seen"]);
                            model.push(m.clone());
                            changed.push(m);
                        }
                    }
                    _ => {}
                }
            }
            changed.sort_by_key(|m| m.uid);
            expunged.sort_unstable();
            snap = snap.apply(&changes(modseq, changed, &expunged));
            let ctx = format!("round {round} step {step}");
            assert_eq!(snap.len(), model.len(), "{ctx}");
            assert!(snap.iter().eq(model.iter().map(as_meta)), "{ctx}");
            assert_eq!(
                snap.largest_uid(),
                model.last().map_or(0, |m| m.uid.get()),
                "{ctx}"
            );
            for _ in 0..20 {
                let u = rng.below(next_uid as u64 + 2) as u32;
                let want = model.partition_point(|m| m.uid.get() < u);
                assert_eq!(snap.lower_bound(u), want, "{ctx} uid {u}");
                if let Some(uid) = Uid::new(u) {
                    assert_eq!(
                        snap.index_of(uid),
                        model.iter().position(|m| m.uid == uid),
                        "{ctx}"
                    );
                }
                let i = rng.below(model.len() as u64 + 1) as usize;
                assert_eq!(snap.get(i), model.get(i).map(as_meta), "{ctx}");
                assert!(snap
                    .iter_from(i)
                    .eq(model[i.min(model.len())..].iter().map(as_meta)));
            }
            let (lists, ids) = snap.flag_lists();
            assert!(ids
                .zip(&model)
                .all(|(id, m)| lists[id].as_ref() == m.flags.as_slice()));
            // The difference from the version before, applied to the model
            // before, gives the model now.
            let d = diff(&old, &snap);
            let mut replay = old_model.clone();
            for (i, uid) in d.expunged.iter().rev() {
                assert_eq!(replay[*i].uid, *uid, "{ctx}");
                replay.remove(*i);
            }
            for (i, before, after) in &d.changed {
                // `i` is the index in the new version.
                assert_eq!(snap.at(*i).uid, after.uid, "{ctx}");
                let j = replay.partition_point(|m| m.uid < after.uid);
                assert_eq!(replay[j].flags.as_slice(), before.flags, "{ctx}");
                replay[j].flags = after.flags.to_vec();
            }
            let kept = replay.len();
            let before: std::collections::HashSet<Uid> = old_model.iter().map(|m| m.uid).collect();
            let added: Vec<_> = model.iter().filter(|m| !before.contains(&m.uid)).collect();
            assert_eq!(d.added, added.len(), "{ctx}");
            assert_eq!(kept + d.added, model.len(), "{ctx}");
            // A session's own entries: numbers stay, flags change.
            if let Some(m) = model.first().cloned() {
                let mut own = m.clone();
                own.flags = vec!["$Own".into()];
                own.modseq = modseq + 100;
                let mine = snap.with_entries(&[own.clone(), meta(u32::MAX, 1, &[])]);
                assert_eq!(mine.len(), snap.len());
                assert_eq!(mine.at(0).flags, &["$Own".to_string()][..]);
                assert!(mine.iter().skip(1).eq(snap.iter().skip(1)));
                assert_eq!(diff(&snap, &mine).changed.len(), 1);
            }
        }
    }
}

#[test]
fn a_realistic_mailbox_costs_well_under_a_byte_a_message() {
    let mut rng = Rng(42);
    let n = 100_000u32;
    let mut msgs = Vec::new();
    for u in 1..=n {
        if rng.chance(3) {
            continue; // expunged
        }
        let mut flags = Vec::new();
        if rng.chance(85) {
            flags.push("\\Seen".to_string());
        }
        if rng.chance(2) {
            flags.push("\\Flagged".to_string());
        }
        if rng.chance(1) {
            flags.push("$Label1".to_string());
        }
        flags.sort();
        msgs.push(MessageMeta {
            flags,
            ..meta(u, u as u64, &[])
        });
    }
    let len = msgs.len();
    let s = Snapshot::new(msgs, n as u64, 7);
    assert_eq!(s.len(), len);
    let bytes = s.heap_bytes();
    assert!(bytes < len, "{bytes} bytes for {len} messages");
    // Consecutive UIDs and one flag list: next to nothing.
    let plain: Vec<_> = (1..=n).map(|u| meta(u, 1, &["\\Seen"])).collect();
    let s = Snapshot::new(plain, 1, 7);
    assert!(s.heap_bytes() < 8 * 1024, "{} bytes", s.heap_bytes());
}

#[test]
fn a_view_from_the_compact_list_is_the_same_as_from_entries() {
    let mut rng = Rng(7);
    let mut msgs: Vec<MessageMeta> = Vec::new();
    for u in 1..=3 * CHUNK as u32 {
        if rng.chance(3) {
            continue;
        }
        let mut m = meta(u, 1, &[]);
        m.flags = random_flags(&mut rng);
        msgs.push(m);
    }
    let compact = MailboxFlags::from_entries(9, 7, msgs.iter().map(|m| (m.uid, m.flags.clone())));
    assert!(compact.lists.len() < msgs.len() / 10);
    let a = Snapshot::from_flags(&compact);
    let b = Snapshot::new(msgs.clone(), 9, 7);
    assert!(a.iter().eq(b.iter()));
    assert!(a.iter().eq(msgs.iter().map(as_meta)));
    assert_eq!(a.keywords(), b.keywords());
    assert_eq!((a.highest_modseq(), a.uid_validity()), (9, 7));
    assert_eq!(diff(&a, &b), Difference::default());
}
