//! UTC timestamps without a calendar crate: what the history and the release ids need.

/// (year, month, day, hour, minute, second) in UTC of a Unix time (Howard Hinnant's
/// civil_from_days).
pub fn civil(t: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (days, rem) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The Unix time of a UTC date (Howard Hinnant's days_from_civil).
pub fn unix(year: i64, month: i64, day: i64, h: i64, mi: i64, s: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400 + h * 3600 + mi * 60 + s
}

/// The Unix time of a [`compact`] timestamp, if it is one.
pub fn from_compact(c: &str) -> Option<i64> {
    let b = c.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = c.get(r)?;
        s.bytes()
            .all(|x| x.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d, h, mi, s) = (
        n(0..4)?,
        n(4..6)?,
        n(6..8)?,
        n(9..11)?,
        n(11..13)?,
        n(13..15)?,
    );
    let t = unix(y, mo, d, h, mi, s);
    (compact(t) == c).then_some(t)
}

/// RFC 2822's date (`Tue, 01 Dec 2026 22:36:53 +0000`), as Debian changelogs have it.
pub fn rfc2822(t: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = DAYS[t.div_euclid(86_400).rem_euclid(7) as usize];
    let m = MONTHS[(mo - 1) as usize];
    format!("{wd}, {d:02} {m} {y:04} {h:02}:{mi:02}:{s:02} +0000")
}

/// `YYYYMMDDTHHMMSSZ`: safe in a file name.
pub fn compact(t: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// The Unix time of a `YYYY-MM-DDTHH:MM:SS[.fff]Z` timestamp (what the history records).
pub fn from_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let compact = format!(
        "{}{}{}T{}{}{}Z",
        &s[0..4],
        &s[5..7],
        &s[8..10],
        &s[11..13],
        &s[14..16],
        &s[17..19]
    );
    from_compact(&compact)
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The current time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (y, mo, d, h, mi, s) = civil(now.as_secs() as i64);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_dates() {
        assert_eq!(super::compact(0), "19700101T000000Z");
        assert_eq!(super::compact(951_782_400), "20000229T000000Z");
        assert_eq!(super::compact(1_795_000_000), "20261118T110640Z");
        assert_eq!(super::compact(-1), "19691231T235959Z");
        for t in [0, 951_782_400, 1_795_000_000, 1_796_164_613] {
            assert_eq!(super::from_compact(&super::compact(t)), Some(t));
        }
        assert_eq!(super::from_compact("20261301T000000Z"), None);
        assert_eq!(
            super::from_rfc3339("2026-11-18T11:06:40.123Z"),
            Some(1_795_000_000)
        );
        assert_eq!(super::from_rfc3339("2026-11-18 11:06:40"), None);
        assert_eq!(super::from_compact("2026120xT000000Z"), None);
        assert_eq!(
            super::rfc2822(1_796_164_613),
            "Tue, 01 Dec 2026 22:36:53 +0000"
        );
    }
}
