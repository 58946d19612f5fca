//! Dates of IMAP (RFC 9051 §9):
//!
//! ```abnf
//! date-time       = DQUOTE date-day-fixed "-" date-month "-" date-year
//!                   SP time SP zone DQUOTE
//! date            = date-text / DQUOTE date-text DQUOTE
//! date-text       = date-day "-" date-month "-" date-year
//! zone            = ("+" / "-") 4DIGIT
//! ```
//!
//! Written by hand (civil-from-days arithmetic) so that this crate needs
//! no date library.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn month(s: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(s))
        .map(|i| i as u32 + 1)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `date-text` (`1-Feb-1994`) as days since the epoch; None if invalid.
pub fn parse_date_text(s: &str) -> Option<i64> {
    let mut it = s.split('-');
    let (d, m, y) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || d.is_empty() || d.len() > 2 || y.len() != 4 {
        return None;
    }
    let d: u32 = d.parse().ok()?;
    let m = month(m)?;
    let y: i64 = y.parse().ok()?;
    (1..=days_in_month(y, m))
        .contains(&d)
        .then(|| days_from_civil(y, m, d))
}

/// The inside of a `date-time` (without quotes) as seconds since the
/// epoch, e.g. `17-Jul-1996 02:44:25 -0700`. None when malformed.
pub fn parse_date_time(s: &str) -> Option<i64> {
    let (date, rest) = s.trim_start().split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let day = parse_date_text(date)?;
    let t: Vec<&str> = time.split(':').collect();
    let [h, mi, se] = t[..] else { return None };
    if h.len() != 2 || mi.len() != 2 || se.len() != 2 {
        return None;
    }
    let (h, mi, se): (i64, i64, i64) = (h.parse().ok()?, mi.parse().ok()?, se.parse().ok()?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let zb = zone.as_bytes();
    if zb.len() != 5 || !matches!(zb[0], b'+' | b'-') || !zb[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let zh: i64 = zone[1..3].parse().ok()?;
    let zm: i64 = zone[3..5].parse().ok()?;
    let offset = (zh * 60 + zm) * 60 * if zb[0] == b'-' { -1 } else { 1 };
    Some(day * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Formats seconds since the epoch as the inside of a `date-time`, in
/// UTC: `17-Jul-1996 09:44:25 +0000`.
pub fn format_date_time(t: i64) -> String {
    let day = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(day);
    format!(
        "{:02}-{}-{:04} {:02}:{:02}:{:02} +0000",
        d,
        MONTHS[(m as usize - 1) % 12],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = parse_date_time("17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!(t, 837_596_665);
        assert_eq!(format_date_time(t), "17-Jul-1996 09:44:25 +0000");
        assert_eq!(
            parse_date_time(" 1-Jan-2000 00:00:00 +0000"),
            Some(946_684_800)
        );
        assert_eq!(format_date_time(0), "01-Jan-1970 00:00:00 +0000");
    }

    #[test]
    fn rejects_nonsense() {
        for s in [
            "",
            "32-Jan-2000 00:00:00 +0000",
            "29-Feb-2001 00:00:00 +0000",
            "1-Foo-2000 00:00:00 +0000",
            "1-Jan-2000 24:00:00 +0000",
            "1-Jan-2000 00:00:00 0000",
            "1-Jan-2000 00:00 +0000",
            "1-Jan-20000 00:00:00 +0000",
        ] {
            assert_eq!(parse_date_time(s), None, "{s}");
        }
        assert_eq!(
            parse_date_text("29-Feb-2000"),
            Some(days_from_civil(2000, 2, 29))
        );
    }
}
