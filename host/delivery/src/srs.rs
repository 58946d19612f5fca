//! The Sender Rewriting Scheme (SRS): the envelope sender of a forwarded
//! message, rewritten so that the next receiver's SPF check sees the
//! forwarder's domain, and turned back when a bounce comes to it.
//!
//! # The scheme
//! SRS has no RFC; the de-facto specification is Shevek's paper and his
//! libsrs2, which postsrsd (Postfix), Exim and the Perl `Mail::SRS` follow.
//! This module writes and reads the same addresses as libsrs2 in its
//! "guarded" mode with the default hash length (4), so an SRS address
//! written by postsrsd with the same secret reverses here and back:
//!
//! ```text
//! user@origin.test  forwarded by a.test   SRS0=HHHH=TT=origin.test=user@a.test
//! SRS0=HHHH=TT=origin.test=user@a.test
//!                   forwarded by b.test   SRS1=GGGG=a.test==HHHH=TT=origin.test=user@b.test
//! ```
//!
//! - `TT`: the day the address was made, days since the Unix epoch modulo
//!   1024, as two base32 characters (`A`-`Z`, `2`-`7`).
//! - `HHHH`: the first 4 characters of the base64 of
//!   HMAC-SHA1(secret, lower-case(TT ‖ host ‖ local)) for SRS0, and of
//!   HMAC-SHA1(secret, lower-case(host ‖ rest)) for SRS1, where `rest` is
//!   the SRS0 address's local part after `SRS0` (it starts with its
//!   separator, hence the `==`).
//! - A forwarder that receives an SRS0 address of another forwarder does
//!   not nest it: it writes SRS1, whose bounce goes straight to the first
//!   forwarder (which alone can check the SRS0 hash). An SRS1 address is
//!   rewritten again with the same first forwarder.
//!
//! Reading is case-insensitive (some MTAs lower-case local parts): the
//! tags, the timestamp and the hash compare without case, as libsrs2 does.
//! An address is accepted for [`Srs::max_age_days`] days (21 by default,
//! postsrsd's default); a timestamp "in the future" counts as expired.
//!
//! # Why our own code
//! There is no well-kept SRS crate: crates.io's `srs` is an unrelated
//! screen recorder; `rust-srs` (problame) was archived unfinished and never
//! published; `mailrs-srs` is new, single-author, and writes a hex hash
//! that libsrs2 and postsrsd do not read. (`cargo search` does not work
//! through this project's registry mirror; this was looked up by name and
//! in the crates' documentation on 2026-12-07.) The scheme is small; the
//! cryptography is RustCrypto's `hmac` and `sha1`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// How many days an SRS address is honoured by default (postsrsd's default).
pub const DEFAULT_MAX_AGE_DAYS: u32 = 21;

/// How many base64 characters of the HMAC an address carries (libsrs2's
/// and postsrsd's default: 24 bits).
pub const HASH_LENGTH: usize = 4;

/// The timestamp wraps after this many days (two base32 characters).
const TIME_SLOTS: u64 = 1024;
const SECONDS_PER_DAY: u64 = 86_400;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// The separators libsrs2 accepts after the `SRS0`/`SRS1` tag; we write `=`.
const TAG_SEPARATORS: &[char] = &['=', '-', '+'];
const SEP: char = '=';

/// Why an address could not be reversed. The SMTP side answers each with
/// `550 5.1.1` (the address does not exist for the sender); the variant
/// says why in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrsError {
    /// Not an SRS address of our domain at all (the caller looks it up as
    /// an ordinary address).
    #[error("not an SRS address of this server")]
    NotSrs,
    /// It starts like an SRS address but lacks a part (hash, timestamp,
    /// host or local part) or a part is not well formed.
    #[error("malformed SRS address")]
    Malformed,
    /// The hash does not match: not made with our secret, or altered.
    #[error("SRS hash does not match")]
    BadHash,
    /// Made more than the allowed number of days ago.
    #[error("SRS address expired")]
    Expired,
}

/// The settings and the secret; cheap to share behind an `Arc`.
#[derive(Clone)]
pub struct Srs {
    secret: Vec<u8>,
    domain: String,
    local_domains: Vec<String>,
    max_age_days: u32,
}

impl std::fmt::Debug for Srs {
    // The secret stays out of debug output and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Srs")
            .field("domain", &self.domain)
            .field("local_domains", &self.local_domains)
            .field("max_age_days", &self.max_age_days)
            .finish_non_exhaustive()
    }
}

impl Srs {
    /// Rewrites into `domain` (the SRS domain: its SPF record must allow
    /// this server, and its mail must reach this server for bounces).
    /// Senders in `local_domains` (and in `domain`) are never rewritten:
    /// this server may send for them anyway.
    pub fn new(secret: impl Into<Vec<u8>>, domain: &str, local_domains: &[String]) -> Srs {
        Srs {
            secret: secret.into(),
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            local_domains: local_domains
                .iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            max_age_days: DEFAULT_MAX_AGE_DAYS,
        }
    }

    /// Honour addresses for `days` days instead of [`DEFAULT_MAX_AGE_DAYS`]
    /// (at most 1023: the timestamp wraps after 1024 days).
    pub fn with_max_age_days(mut self, days: u32) -> Srs {
        self.max_age_days = days.min(TIME_SLOTS as u32 - 1);
        self
    }

    /// The SRS domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// How many days an address is honoured.
    pub fn max_age_days(&self) -> u32 {
        self.max_age_days
    }

    /// The envelope sender to use when forwarding a message whose sender
    /// is `reverse_path` (without angle brackets; empty for the null
    /// sender). Unchanged: the null sender, an address without a domain,
    /// a sender in a local domain or in the SRS domain (ours already).
    pub fn forward(&self, reverse_path: &str) -> String {
        self.forward_at(reverse_path, SystemTime::now())
    }

    /// [`Srs::forward`] at a given time (for tests).
    pub fn forward_at(&self, reverse_path: &str, now: SystemTime) -> String {
        let Some((local, host)) = reverse_path.rsplit_once('@') else {
            return reverse_path.to_string();
        };
        if local.is_empty() || host.is_empty() || self.is_local_domain(host) {
            return reverse_path.to_string();
        }
        if let Some(rest) = strip_tag(local, "SRS1") {
            // SRS1=GGGG=first==HHHH=TT=origin=user@previous: keep the first
            // forwarder, sign again with our secret.
            let old_hash_dropped = rest.split_once(SEP).map(|(_, r)| r);
            if let Some((first, opaque)) = old_hash_dropped.and_then(split_srs1_rest) {
                let hash = self.hash(&[first, opaque]);
                return format!("SRS1{SEP}{hash}{SEP}{first}{SEP}{opaque}@{}", self.domain);
            }
        } else if local.len() > 4 && strip_tag(local, "SRS0").is_some() {
            // The first forwarder's SRS0: its part after the tag, separator
            // included, as libsrs2 does (hence `==`).
            let opaque = &local[4..];
            let hash = self.hash(&[host, opaque]);
            return format!("SRS1{SEP}{hash}{SEP}{host}{SEP}{opaque}@{}", self.domain);
        }
        let stamp = timestamp(now);
        let hash = self.hash(&[&stamp, host, local]);
        format!(
            "SRS0{SEP}{hash}{SEP}{stamp}{SEP}{host}{SEP}{local}@{}",
            self.domain
        )
    }

    /// The address a bounce to `address` goes to: the original sender for
    /// SRS0, the first forwarder's SRS0 address for SRS1.
    /// [`SrsError::NotSrs`] when `address` is not in the SRS domain or its
    /// local part does not start with an SRS tag.
    pub fn reverse(&self, address: &str) -> Result<String, SrsError> {
        self.reverse_at(address, SystemTime::now())
    }

    /// [`Srs::reverse`] at a given time (for tests).
    pub fn reverse_at(&self, address: &str, now: SystemTime) -> Result<String, SrsError> {
        let (local, host) = address.rsplit_once('@').ok_or(SrsError::NotSrs)?;
        if !host
            .trim_end_matches('.')
            .eq_ignore_ascii_case(&self.domain)
        {
            return Err(SrsError::NotSrs);
        }
        if let Some(rest) = strip_tag(local, "SRS1") {
            let (hash, rest) = rest.split_once(SEP).ok_or(SrsError::Malformed)?;
            let (first, opaque) = split_srs1_rest(rest).ok_or(SrsError::Malformed)?;
            self.check_hash(hash, &[first, opaque])?;
            return Ok(format!("SRS0{opaque}@{first}"));
        }
        if let Some(rest) = strip_tag(local, "SRS0") {
            let mut parts = rest.splitn(4, SEP);
            let (Some(hash), Some(stamp), Some(orig_host), Some(orig_local)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(SrsError::Malformed);
            };
            if orig_host.is_empty() || orig_local.is_empty() {
                return Err(SrsError::Malformed);
            }
            let then = decode_timestamp(stamp).ok_or(SrsError::Malformed)?;
            self.check_hash(hash, &[stamp, orig_host, orig_local])?;
            if !self.fresh(then, now) {
                return Err(SrsError::Expired);
            }
            return Ok(format!("{orig_local}@{orig_host}"));
        }
        Err(SrsError::NotSrs)
    }

    /// Whether `address` looks like an SRS address in the SRS domain
    /// (without checking it): what RCPT asks before [`Srs::reverse`].
    pub fn is_srs_address(&self, address: &str) -> bool {
        !matches!(self.reverse_at(address, UNIX_EPOCH), Err(SrsError::NotSrs))
    }

    fn is_local_domain(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        host.eq_ignore_ascii_case(&self.domain)
            || self
                .local_domains
                .iter()
                .any(|d| host.eq_ignore_ascii_case(d))
    }

    fn hash(&self, parts: &[&str]) -> String {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC accepts a key of any length");
        for part in parts {
            mac.update(part.to_ascii_lowercase().as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        let mut text = base64::engine::general_purpose::STANDARD.encode(digest);
        text.truncate(HASH_LENGTH);
        text
    }

    fn check_hash(&self, given: &str, parts: &[&str]) -> Result<(), SrsError> {
        if given.len() != HASH_LENGTH {
            return Err(SrsError::BadHash);
        }
        // Case-insensitive as in libsrs2: a lower-casing MTA on the way
        // must not break bounces (it costs the hash about 4 of its 24 bits).
        if self.hash(parts).eq_ignore_ascii_case(given) {
            Ok(())
        } else {
            Err(SrsError::BadHash)
        }
    }

    fn fresh(&self, then: u64, now: SystemTime) -> bool {
        let mut today = day(now) % TIME_SLOTS;
        if today < then {
            today += TIME_SLOTS;
        }
        today - then <= u64::from(self.max_age_days)
    }
}

/// `local` without its tag and the separator after it (`SRS0=`, `srs0-`),
/// or `None` when it does not start with `tag` and a separator.
fn strip_tag<'a>(local: &'a str, tag: &str) -> Option<&'a str> {
    let head = local.get(..tag.len())?;
    if !head.eq_ignore_ascii_case(tag) {
        return None;
    }
    let rest = &local[tag.len()..];
    let sep = rest.chars().next()?;
    TAG_SEPARATORS
        .contains(&sep)
        .then(|| &rest[sep.len_utf8()..])
}

/// `first=opaque` of an SRS1 address (after its hash): the first
/// forwarder's host and the SRS0 part that starts with its separator.
fn split_srs1_rest(rest: &str) -> Option<(&str, &str)> {
    let (first, opaque) = rest.split_once(SEP)?;
    if first.is_empty() || opaque.is_empty() {
        return None;
    }
    Some((first, opaque))
}

fn day(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / SECONDS_PER_DAY)
        .unwrap_or(0)
}

fn timestamp(now: SystemTime) -> String {
    let t = day(now) % TIME_SLOTS;
    let hi = BASE32[((t >> 5) & 31) as usize] as char;
    let lo = BASE32[(t & 31) as usize] as char;
    format!("{hi}{lo}")
}

fn decode_timestamp(stamp: &str) -> Option<u64> {
    let bytes = stamp.as_bytes();
    if bytes.len() != 2 {
        return None;
    }
    let value = |b: u8| {
        let b = b.to_ascii_uppercase();
        BASE32.iter().position(|&c| c == b).map(|v| v as u64)
    };
    Some((value(bytes[0])? << 5) | value(bytes[1])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at_day(day: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(day * SECONDS_PER_DAY + 3600)
    }

    fn srs() -> Srs {
        Srs::new(
            "tops3cr3t",
            "a.test",
            &["a.test".into(), "local.test".into()],
        )
    }

    // 2026-12-07 is day 20794 since the epoch; 20794 % 1024 = 314 = 9*32+26
    // → "J2". The hashes were computed apart from this code, with Python's
    // hmac module: base64(HMAC-SHA1(b"tops3cr3t", b"j2origin.testuser"))[:4].
    const TODAY: u64 = 20794;

    #[test]
    fn srs0_known_vector() {
        assert_eq!(timestamp(at_day(TODAY)), "J2");
        let fwd = srs().forward_at("user@origin.test", at_day(TODAY));
        assert_eq!(fwd, "SRS0=NZhV=J2=origin.test=user@a.test");
    }

    #[test]
    fn srs1_known_vector_from_another_forwarders_srs0() {
        let fwd = srs().forward_at("SRS0=abcd=J2=origin.test=user@b.test", at_day(TODAY));
        assert_eq!(fwd, "SRS1=b1M1=b.test==abcd=J2=origin.test=user@a.test");
    }

    #[test]
    fn srs1_rewritten_again_keeps_the_first_forwarder() {
        let fwd = srs().forward_at(
            "SRS1=zzzz=b.test==abcd=J2=origin.test=user@c.test",
            at_day(TODAY),
        );
        assert_eq!(fwd, "SRS1=b1M1=b.test==abcd=J2=origin.test=user@a.test");
    }

    #[test]
    fn round_trips() {
        let s = srs();
        for sender in [
            "user@origin.test",
            "first.last+tag@sub.origin.test",
            "a=b@x.test",
        ] {
            let fwd = s.forward_at(sender, at_day(TODAY));
            assert!(fwd.starts_with("SRS0="), "{fwd}");
            assert_eq!(s.reverse_at(&fwd, at_day(TODAY)).as_deref(), Ok(sender));
            assert_eq!(
                s.reverse_at(&fwd, at_day(TODAY + 21)).as_deref(),
                Ok(sender)
            );
        }
        let srs1 = s.forward_at("SRS0=abcd=J2=origin.test=user@b.test", at_day(TODAY));
        assert_eq!(
            s.reverse_at(&srs1, at_day(TODAY + 500)).as_deref(),
            Ok("SRS0=abcd=J2=origin.test=user@b.test"),
            "SRS1 carries no timestamp of its own"
        );
    }

    #[test]
    fn two_forwarders_then_the_bounce_goes_back_through_both() {
        let a = Srs::new("secret-a", "a.test", &[]);
        let b = Srs::new("secret-b", "b.test", &[]);
        let at_a = a.forward_at("user@origin.test", at_day(TODAY));
        let at_b = b.forward_at(&at_a, at_day(TODAY));
        assert!(at_b.starts_with("SRS1="), "{at_b}");
        let back_to_a = b.reverse_at(&at_b, at_day(TODAY)).unwrap();
        assert_eq!(back_to_a, at_a);
        assert_eq!(
            a.reverse_at(&back_to_a, at_day(TODAY)).as_deref(),
            Ok("user@origin.test")
        );
    }

    #[test]
    fn verification_ignores_case() {
        let s = srs();
        let fwd = s.forward_at("User@Origin.test", at_day(TODAY));
        let lower = fwd.to_ascii_lowercase();
        assert_eq!(
            s.reverse_at(&lower, at_day(TODAY)).as_deref(),
            Ok("user@origin.test")
        );
        let upper = fwd.to_ascii_uppercase();
        assert_eq!(
            s.reverse_at(&upper, at_day(TODAY)).as_deref(),
            Ok("USER@ORIGIN.TEST")
        );
    }

    #[test]
    fn other_separators_after_the_tag_are_read() {
        let s = srs();
        let fwd = s.forward_at("user@origin.test", at_day(TODAY));
        let plus = fwd.replacen("SRS0=", "SRS0+", 1);
        assert_eq!(
            s.reverse_at(&plus, at_day(TODAY)).as_deref(),
            Ok("user@origin.test")
        );
    }

    #[test]
    fn expired_and_future_timestamps() {
        let s = srs();
        let fwd = s.forward_at("user@origin.test", at_day(TODAY));
        assert_eq!(
            s.reverse_at(&fwd, at_day(TODAY + 22)),
            Err(SrsError::Expired)
        );
        assert_eq!(
            s.reverse_at(&fwd, at_day(TODAY - 1)),
            Err(SrsError::Expired)
        );
        let long = srs().with_max_age_days(30);
        assert!(long.reverse_at(&fwd, at_day(TODAY + 30)).is_ok());
        // Across the wrap of the 1024-day counter.
        let wrap = 1023 + 1024 * 20;
        let fwd = s.forward_at("user@origin.test", at_day(wrap));
        assert!(s.reverse_at(&fwd, at_day(wrap + 5)).is_ok());
    }

    #[test]
    fn bad_hashes_are_refused() {
        let s = srs();
        let fwd = s.forward_at("user@origin.test", at_day(TODAY));
        let other = Srs::new("another secret", "a.test", &[]);
        assert_eq!(
            other.reverse_at(&fwd, at_day(TODAY)),
            Err(SrsError::BadHash)
        );
        // The sender's local part changed: the hash no longer matches.
        let forged = fwd.replace("=user@", "=admin@");
        assert_eq!(s.reverse_at(&forged, at_day(TODAY)), Err(SrsError::BadHash));
        let short = fwd.replacen(&fwd[5..9], "ab", 1);
        assert_eq!(s.reverse_at(&short, at_day(TODAY)), Err(SrsError::BadHash));
    }

    #[test]
    fn malformed_and_foreign_addresses() {
        let s = srs();
        let now = at_day(TODAY);
        for addr in [
            "SRS0=abcd=J2=origin.test@a.test",
            "SRS0=abcd=J2=@a.test",
            "SRS0=abcd=J2==user@a.test",
            "SRS0=abcd=J!=origin.test=user@a.test",
            "SRS0=abcd=JJJ=origin.test=user@a.test",
            "SRS0=@a.test",
            "SRS1=abcd@a.test",
            "SRS1=abcd=b.test@a.test",
            "SRS1=abcd==x@a.test",
        ] {
            assert_eq!(s.reverse_at(addr, now), Err(SrsError::Malformed), "{addr}");
        }
        for addr in [
            "user@a.test",
            "SRS0=abcd=J2=o.test=u@b.test",
            "SRS0",
            "",
            "@",
            "SRS2=x@a.test",
            "SRS0@a.test",
        ] {
            assert_eq!(s.reverse_at(addr, now), Err(SrsError::NotSrs), "{addr}");
        }
        assert!(s.is_srs_address("srs0=abcd=J2=origin.test=user@A.TEST"));
        assert!(!s.is_srs_address("user@a.test"));
    }

    #[test]
    fn what_is_not_rewritten() {
        let s = srs();
        let now = at_day(TODAY);
        for sender in [
            "",
            "postmaster",
            "user@a.test",
            "user@LOCAL.test",
            "SRS0=x=J2=o.test=u@a.test",
            "@x.test",
            "user@",
        ] {
            assert_eq!(s.forward_at(sender, now), sender);
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // A small deterministic generator over the characters that matter.
        let alphabet: Vec<char> = "SRS01=+-@.aZ2é\u{0}x".chars().collect();
        let s = srs();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let text: String = (0..len)
                .map(|i| alphabet[((state >> (i % 16 * 4)) as usize + i) % alphabet.len()])
                .collect();
            let _ = s.forward_at(&text, at_day(TODAY));
            let _ = s.reverse_at(&text, at_day(TODAY));
            let _ = s.reverse_at(&format!("{text}@a.test"), at_day(TODAY));
            let _ = s.reverse_at(&format!("SRS0={text}@a.test"), at_day(TODAY));
            let _ = s.reverse_at(&format!("SRS1={text}@a.test"), at_day(TODAY));
        }
    }
}
