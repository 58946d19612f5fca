//! The corner cases of RFC 5256 §3 REFERENCES and ORDEREDSUBJECT, with
//! answers worked out by hand from the RFC's steps.

use super::*;

/// A message: sequence number (also its number), date, own id,
/// references, subject.
fn m(seq: u32, date: i64, id: Option<&str>, refs: &[&str], subject: &str) -> ThreadMsg {
    ThreadMsg {
        number: seq,
        seq,
        date,
        message_id: id.map(|i| format!("<{i}@x>")),
        references: refs.iter().map(|r| format!("<{r}@x>")).collect(),
        subject: subject.into(),
    }
}

fn refs(msgs: &[ThreadMsg]) -> String {
    format_threads(&references(msgs))
}

#[test]
fn message_ids() {
    assert_eq!(
        msg_ids("<a@b> junk <c@d>\r\n <e\r\n @f> <nope> <<g@h>"),
        ["<a@b>", "<c@d>", "<e@f>", "<g@h>"]
    );
    assert!(msg_ids("<@b> <a@> <a@b").is_empty());
}

#[test]
fn missing_parent_in_the_middle_is_pruned() {
    // 1 <- dummy(2) <- {3, 4}: the dummy goes, its children become the
    // children of 1, sorted by date.
    let msgs = [
        m(1, 100, Some("1"), &[], "hello"),
        m(2, 300, Some("3"), &["1", "2"], "Re: hello"),
        m(3, 200, Some("4"), &["1", "2"], "Re: hello"),
    ];
    assert_eq!(refs(&msgs), "(1 (3)(2))");
}

#[test]
fn dummy_at_the_top_stays_with_several_children_only() {
    let msgs = [
        m(1, 100, Some("1"), &["root"], "a"),
        m(2, 200, Some("2"), &["root"], "b"),
    ];
    assert_eq!(refs(&msgs), "((1)(2))");
    let msgs = [m(1, 100, Some("1"), &["gone"], "a")];
    assert_eq!(refs(&msgs), "(1)");
    // A chain of dummies down to one message.
    let msgs = [m(1, 100, Some("1"), &["g1", "g2", "g3"], "a")];
    assert_eq!(refs(&msgs), "(1)");
}

#[test]
fn a_top_level_dummy_sorts_by_its_first_child() {
    let msgs = [
        m(1, 100, Some("1"), &["root"], "a"),
        m(2, 10, Some("2"), &["root"], "b"),
        m(3, 50, Some("3"), &[], "c"),
    ];
    assert_eq!(refs(&msgs), "((2)(1))(3)");
}

#[test]
fn loops_are_not_made() {
    // 1 says its parent is 2, 2 says its parent is 1: the second link
    // would close a loop and is not made.
    let msgs = [
        m(1, 100, Some("a"), &["b"], "x"),
        m(2, 100, Some("b"), &["a"], "y"),
    ];
    assert_eq!(refs(&msgs), "(2 1)");
    // A message referring to itself.
    let msgs = [m(1, 100, Some("a"), &["a"], "x")];
    assert_eq!(refs(&msgs), "(1)");
    // References that loop among themselves.
    let msgs = [m(1, 100, Some("z"), &["a", "b", "a"], "x")];
    assert_eq!(refs(&msgs), "(1)");
}

#[test]
fn the_last_reference_wins_over_an_earlier_link() {
    // Message 1's References make y a child of x; then message 2, which
    // is y, says its parent is z: the link to x is broken (step 1B).
    let msgs = [
        m(1, 100, Some("m1"), &["x", "y"], "first"),
        m(2, 200, Some("y"), &["z"], "second"),
    ];
    assert_eq!(refs(&msgs), "(2 1)");
}

#[test]
fn duplicate_and_missing_message_ids() {
    // The second <d@x> gets a unique id: 3 is a reply to 1 only.
    let msgs = [
        m(1, 100, Some("d"), &[], "a"),
        m(2, 200, Some("d"), &[], "b"),
        m(3, 300, Some("e"), &["d"], "c"),
        m(4, 400, None, &[], "d"),
        m(5, 500, None, &[], "e"),
    ];
    assert_eq!(refs(&msgs), "(1 3)(2)(4)(5)");
}

#[test]
fn threads_are_gathered_by_subject() {
    // 2 is a reply by subject only: it becomes a child of 1. 3 has the
    // same base subject and is no reply: a dummy holds 1 and 3.
    let msgs = [
        m(1, 100, Some("1"), &[], "Meeting"),
        m(2, 200, Some("2"), &[], "Re: Meeting"),
        m(3, 300, Some("3"), &[], "meeting"),
        m(4, 400, Some("4"), &[], "Other"),
    ];
    assert_eq!(refs(&msgs), "((1 2)(3))(4)");
    // The non-reply becomes the parent even when the reply is older.
    let msgs = [
        m(1, 100, Some("1"), &[], "Re: topic"),
        m(2, 200, Some("2"), &[], "topic"),
    ];
    assert_eq!(refs(&msgs), "(2 1)");
    // A dummy in the table takes the others as children; two dummies
    // with one subject become one.
    let msgs = [
        m(1, 100, Some("1"), &["r1"], "Plan"),
        m(2, 150, Some("2"), &["r1"], "Re: Plan"),
        m(3, 200, Some("3"), &["r2"], "Re: Plan"),
        m(4, 250, Some("4"), &["r2"], "Re: Plan"),
        m(5, 300, Some("5"), &[], "Re: plan"),
    ];
    assert_eq!(refs(&msgs), "((1)(2)(3)(4)(5))");
    // An empty base subject gathers nothing.
    let msgs = [
        m(1, 100, Some("1"), &[], ""),
        m(2, 200, Some("2"), &[], "Re:"),
    ];
    assert_eq!(refs(&msgs), "(1)(2)");
}

#[test]
fn equal_dates_fall_back_to_mailbox_order_and_numbers_are_answered() {
    let mut msgs = [
        m(1, 500, Some("1"), &[], "a"),
        m(2, 500, Some("2"), &["1"], "b"),
        m(3, 500, Some("3"), &["1"], "c"),
        m(4, 100, Some("4"), &[], "d"),
    ];
    for msg in &mut msgs {
        msg.number = msg.seq * 10; // UID THREAD answers UIDs
    }
    assert_eq!(refs(&msgs), "(40)(10 (20)(30))");
}

#[test]
fn deeper_trees_nest() {
    // RFC 5256 §4's example shape: (3 6 (4 23)(44 7 96)).
    let msgs = [
        m(3, 1, Some("3"), &[], "s3"),
        m(4, 3, Some("4"), &["3", "6"], "s4"),
        m(6, 2, Some("6"), &["3"], "s6"),
        m(7, 6, Some("7"), &["3", "6", "44"], "s7"),
        m(23, 4, Some("23"), &["3", "6", "4"], "s23"),
        m(44, 5, Some("44"), &["3", "6"], "s44"),
        m(96, 7, Some("96"), &["3", "6", "44", "7"], "s96"),
    ];
    assert_eq!(refs(&msgs), "(3 6 (4 23)(44 7 96))");
}

#[test]
fn ordered_subject_is_unchanged() {
    let msgs = [
        m(1, 300, None, &[], "Re: b"),
        m(2, 100, None, &[], "a"),
        m(3, 200, None, &[], "b"),
        m(4, 400, None, &[], "re: a"),
        m(5, 150, None, &[], "Fwd: a"),
    ];
    assert_eq!(format_threads(&ordered_subject(&msgs)), "(2 (5)(4))(3 1)");
}
