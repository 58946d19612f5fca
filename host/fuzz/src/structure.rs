//! The message-structure target: [`MessageStructure::parse`], which the
//! store runs on every delivered message and IMAP's FETCH answers from.

use mailgate_store::structure::{
    header_block_len, BodyPart, ByteRange, SectionText, MAX_DEPTH, MAX_PARTS,
};
use mailgate_store::MessageStructure;

/// `structure`: any bytes as a message. Every range lies within the
/// message and within its parent part, a part's header comes before its
/// body, nesting and part count stay within [`MAX_DEPTH`] and
/// [`MAX_PARTS`], looking up part numbers and sections never panics, and
/// the structure survives the JSON round trip the store saves it with.
pub fn structure(raw: &[u8]) {
    let s = MessageStructure::parse(raw);
    let whole = ByteRange {
        start: 0,
        end: raw.len() as u64,
    };
    let mut parts = 0;
    check_message(&s, whole, 0, &mut parts);
    assert!(parts <= MAX_PARTS + 1, "{parts} parts");
    assert!(header_block_len(raw) <= raw.len());
    assert!(s.header_len() <= raw.len() as u64);
    // Part numbers as a client could send them, made of the first bytes.
    let path: Vec<u32> = raw.iter().take(6).map(|&b| u32::from(b % 4)).collect();
    for len in 0..=path.len() {
        if let Some(part) = s.part(&path[..len]) {
            assert!(within(part.body, whole));
        }
        for text in [
            SectionText::Full,
            SectionText::Header,
            SectionText::Text,
            SectionText::Mime,
        ] {
            if let Some(range) = s.section(&path[..len], text) {
                assert!(within(range, whole), "{range:?}");
            }
        }
    }

    let json = serde_json::to_string(&s).expect("serialise");
    let back: MessageStructure = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, s);
}

fn within(inner: ByteRange, outer: ByteRange) -> bool {
    inner.start <= inner.end && outer.start <= inner.start && inner.end <= outer.end
}

fn check_message(m: &MessageStructure, bounds: ByteRange, depth: usize, parts: &mut usize) {
    check_part(&m.root, bounds, depth, parts);
}

fn check_part(p: &BodyPart, bounds: ByteRange, depth: usize, parts: &mut usize) {
    *parts += 1;
    assert!(depth <= MAX_DEPTH + 1, "depth {depth}");
    assert!(within(p.header, bounds), "{:?} in {bounds:?}", p.header);
    assert!(within(p.body, bounds), "{:?} in {bounds:?}", p.body);
    assert!(p.header.end <= p.body.start || p.header.is_empty());
    assert!(!p.media_type.is_empty() && !p.media_subtype.is_empty());
    for child in p.children() {
        check_part(child, p.body, depth + 1, parts);
    }
    if let Some(m) = p.message() {
        check_message(m, p.body, depth + 1, parts);
    }
}
