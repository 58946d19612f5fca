//! Date parts for `date` and `currentdate` (RFC 5260 section 4).

use mail_parser::DateTime;

/// The date parts RFC 5260 defines.
pub const PARTS: &[&str] = &[
    "year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601",
    "std11", "zone", "weekday",
];

/// `+hhmm` / `-hhmm` to minutes east of UTC.
pub fn parse_zone(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 5 || !(b[0] == b'+' || b[0] == b'-') || !b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let h: i32 = s[1..3].parse().ok()?;
    let m: i32 = s[3..5].parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    let v = h * 60 + m;
    Some(if b[0] == b'-' { -v } else { v })
}

/// A date header's value as (seconds since 1970 UTC, its zone in minutes).
pub fn parse_header_date(value: &str) -> Option<(i64, i32)> {
    let dt = DateTime::parse_rfc822(value.trim())?;
    if !dt.is_valid() {
        return None;
    }
    let off = i32::from(dt.tz_hour) * 60 + i32::from(dt.tz_minute);
    let off = if dt.tz_before_gmt { -off } else { off };
    Some((dt.to_timestamp(), off))
}

/// One part of the instant `ts` seen in zone `offset` (minutes east).
pub fn part(ts: i64, offset: i32, part: &str) -> Option<String> {
    let local = ts.checked_add(i64::from(offset) * 60)?;
    let d = DateTime::from_timestamp(local);
    let sign = if offset < 0 { '-' } else { '+' };
    let (oh, om) = (offset.unsigned_abs() / 60, offset.unsigned_abs() % 60);
    Some(match part {
        "year" => format!("{:04}", d.year),
        "month" => format!("{:02}", d.month),
        "day" => format!("{:02}", d.day),
        "date" => format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
        // Modified Julian Day: days since 1858-11-17.
        "julian" => (local.div_euclid(86_400) + 40_587).to_string(),
        "hour" => format!("{:02}", d.hour),
        "minute" => format!("{:02}", d.minute),
        "second" => format!("{:02}", d.second),
        "time" => format!("{:02}:{:02}:{:02}", d.hour, d.minute, d.second),
        "iso8601" => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{oh:02}:{om:02}",
            d.year, d.month, d.day, d.hour, d.minute, d.second
        ),
        "std11" => {
            const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            format!(
                "{}, {:02} {} {:04} {:02}:{:02}:{:02} {sign}{oh:02}{om:02}",
                DAYS[usize::from(weekday(local))],
                d.day,
                MONTHS[usize::from(d.month.clamp(1, 12) - 1)],
                d.year,
                d.hour,
                d.minute,
                d.second
            )
        }
        "zone" => format!("{sign}{oh:02}{om:02}"),
        "weekday" => weekday(local).to_string(),
        _ => return None,
    })
}

/// 0 is Sunday; 1970-01-01 was a Thursday.
fn weekday(local: i64) -> u8 {
    (local.div_euclid(86_400) + 4).rem_euclid(7) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let (ts, off) = parse_header_date("Sun, 14 Aug 2005 12:30:05 -0700").unwrap();
        assert_eq!(off, -420);
        assert_eq!(part(ts, off, "date").unwrap(), "2005-08-14");
        assert_eq!(part(ts, off, "weekday").unwrap(), "0");
        assert_eq!(
            part(ts, off, "iso8601").unwrap(),
            "2005-08-14T12:30:05-07:00"
        );
        assert_eq!(
            part(ts, off, "std11").unwrap(),
            "Sun, 14 Aug 2005 12:30:05 -0700"
        );
        assert_eq!(part(ts, 0, "time").unwrap(), "19:30:05");
        assert_eq!(part(ts, 0, "zone").unwrap(), "+0000");
        assert_eq!(part(ts, off, "julian").unwrap(), "53596");
        assert_eq!(part(ts, off, "bogus"), None);
        assert_eq!(parse_zone("+0130"), Some(90));
        assert_eq!(parse_zone("-2400"), None);
        assert_eq!(parse_header_date("not a date"), None);
    }
}
