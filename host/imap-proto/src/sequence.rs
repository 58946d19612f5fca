//! Sequence sets (RFC 9051 §9):
//!
//! ```abnf
//! sequence-set    = (seq-number / seq-range) ["," sequence-set]
//! seq-range       = seq-number ":" seq-number
//! seq-number      = nz-number / "*"
//! ```

/// One end of a range: a number or `*` (the largest in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNumber {
    /// A number, never zero.
    Value(u32),
    /// `*`
    Largest,
}

impl SeqNumber {
    fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNumber::Value(v) => v,
            SeqNumber::Largest => largest,
        }
    }
}

/// A parsed sequence set: ranges as written (either end may be larger).
///
/// RFC 5182 `$` ("seq-last-command": the result saved by the last
/// `SEARCH RETURN (SAVE)`) is the set with no ranges,
/// [`SequenceSet::saved`]; the session replaces it by the saved
/// messages before using it (unreplaced, it matches nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSet(pub Vec<(SeqNumber, SeqNumber)>);

impl SequenceSet {
    /// `$`, the saved search result (RFC 5182 §2.1).
    pub fn saved() -> SequenceSet {
        SequenceSet(Vec::new())
    }

    /// Whether this is `$`.
    pub fn is_saved(&self) -> bool {
        self.0.is_empty()
    }

    /// The set of exactly these numbers (ascending runs become ranges);
    /// empty if `numbers` is (which matches nothing once resolved).
    pub fn from_numbers(numbers: impl IntoIterator<Item = u32>) -> SequenceSet {
        let mut ranges: Vec<(SeqNumber, SeqNumber)> = Vec::new();
        for n in numbers {
            match ranges.last_mut() {
                Some((_, SeqNumber::Value(hi))) if hi.checked_add(1) == Some(n) => *hi = n,
                _ => ranges.push((SeqNumber::Value(n), SeqNumber::Value(n))),
            }
        }
        SequenceSet(ranges)
    }

    /// Parses a sequence set; None when malformed.
    pub fn parse(s: &[u8]) -> Option<SequenceSet> {
        if s.is_empty() {
            return None;
        }
        let mut ranges = Vec::new();
        for item in s.split(|&b| b == b',') {
            let mut ends = item.splitn(2, |&b| b == b':');
            let a = number(ends.next()?)?;
            let b = match ends.next() {
                Some(b) => number(b)?,
                None => a,
            };
            ranges.push((a, b));
        }
        Some(SequenceSet(ranges))
    }

    /// Whether `n` is in the set, `*` meaning `largest`.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        self.0.iter().any(|&(a, b)| {
            let (a, b) = (a.resolve(largest), b.resolve(largest));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            (lo..=hi).contains(&n)
        })
    }

    /// The ranges with `*` resolved, each as `(low, high)`.
    pub fn resolved(&self, largest: u32) -> Vec<(u32, u32)> {
        self.0
            .iter()
            .map(|&(a, b)| {
                let (a, b) = (a.resolve(largest), b.resolve(largest));
                if a <= b {
                    (a, b)
                } else {
                    (b, a)
                }
            })
            .collect()
    }

    /// Whether any end is `*`.
    pub fn has_star(&self) -> bool {
        self.0
            .iter()
            .any(|&(a, b)| a == SeqNumber::Largest || b == SeqNumber::Largest)
    }
}

fn number(s: &[u8]) -> Option<SeqNumber> {
    if s == b"*" {
        return Some(SeqNumber::Largest);
    }
    if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v: u32 = std::str::from_utf8(s).ok()?.parse().ok()?;
    (v != 0).then_some(SeqNumber::Value(v))
}

/// Writes ascending numbers compactly as a sequence set (`1:3,7`); empty
/// input gives an empty string.
pub fn format_set(numbers: impl IntoIterator<Item = u32>) -> String {
    let mut out = String::new();
    let mut run: Option<(u32, u32)> = None;
    let push = |out: &mut String, (a, b): (u32, u32)| {
        if !out.is_empty() {
            out.push(',');
        }
        if a == b {
            out.push_str(&a.to_string());
        } else {
            out.push_str(&format!("{a}:{b}"));
        }
    };
    for n in numbers {
        run = match run {
            Some((a, b)) if b.checked_add(1) == Some(n) => Some((a, n)),
            Some(r) => {
                push(&mut out, r);
                Some((n, n))
            }
            None => Some((n, n)),
        };
    }
    if let Some(r) = run {
        push(&mut out, r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contains() {
        let s = SequenceSet::parse(b"1,3:5,9:*").unwrap();
        assert!(s.contains(1, 20));
        assert!(!s.contains(2, 20));
        assert!(s.contains(4, 20));
        assert!(s.contains(20, 20));
        let s = SequenceSet::parse(b"5:2").unwrap();
        assert_eq!(s.resolved(9), [(2, 5)]);
        for bad in [
            &b""[..],
            b"0",
            b"1:",
            b",1",
            b"a",
            b"1:0",
            b"99999999999",
            b"4294967296",
        ] {
            assert!(SequenceSet::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn formats_runs() {
        assert_eq!(format_set([1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(format_set([]), "");
        assert_eq!(format_set([u32::MAX]), "4294967295");
    }
}
