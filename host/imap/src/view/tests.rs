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
        internal_date: m.internal_date,
        size: m.size,
        modseq: m.modseq,
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
    assert_eq!(std::mem::size_of::<Entry>(), 32);
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
