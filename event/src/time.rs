//! Timestamps as Unix milliseconds, and the strict RFC 3339 dialect of SPEC §1.
//!
//! Parsing is hand-written rather than delegated to chrono because the
//! contract is narrower than what general parsers accept: a space separator,
//! a leap second `:60` and non-padded fields must be rejected, and digits
//! below the millisecond are truncated rather than rounded.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;

/// 2000-01-01T00:00:00Z, the earliest timestamp an event may carry.
pub const MIN_EVENT_MS: i64 = 946_684_800_000;

/// 9999-12-31T23:59:59.999Z: the last instant RFC 3339 can write (a
/// four-digit year), so that every stored event exports and re-imports.
pub const MAX_RFC3339_MS: i64 = 253_402_300_799_999;

/// Latest accepted timestamp relative to the time received (one hour ahead).
pub const MAX_FUTURE_MS: i64 = 3_600_000;

/// Current wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Parses an RFC 3339 date-time (`2026-01-31T12:00:00.123Z`,
/// `2026-01-31t12:00:00+02:00`) into Unix milliseconds.
///
/// Returns a short description of what is wrong on failure.
pub fn parse_rfc3339(s: &str) -> Result<i64, &'static str> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return Err("too short for an RFC 3339 date-time (expected YYYY-MM-DDThh:mm:ssZ)");
    }
    let year = digits(b, 0, 4)?;
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    match b[10] {
        b'T' | b't' => {}
        b' ' => return Err("date and time must be separated by 'T', not a space"),
        _ => return Err("expected 'T' between date and time"),
    }
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b':')?;
    let second = digits(b, 17, 2)?;
    if hour > 23 || minute > 59 {
        return Err("hour or minute out of range");
    }
    if second == 60 {
        return Err("leap seconds (:60) are not accepted");
    }
    if second > 59 {
        return Err("second out of range");
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            // Only the first three fractional digits matter: the rest are truncated.
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err("expected digits after '.'");
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_ms = match b.get(i) {
        None => {
            return Err(
                "the time zone is missing: add 'Z' for UTC or an offset like \
                        '+02:00' at the end",
            );
        }
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            let oh = digits(b, i + 1, 2)?;
            expect(b, i + 3, b':')?;
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err("UTC offset out of range");
            }
            let off = (oh * 60 + om) * 60_000;
            if sign == b'+' { off } else { -off }
        }
        _ => return Err("expected a UTC offset ('Z' or '+hh:mm') at the end"),
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)
        .ok_or("not a valid calendar date")?;
    let days = i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE;
    Ok(days * DAY_MS + hour * 3_600_000 + minute * 60_000 + second * 1000 + millis - offset_ms)
}

/// `1970-01-01` counted as chrono's days from the Common Era.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

fn digits(b: &[u8], at: usize, n: usize) -> Result<i64, &'static str> {
    let part = b.get(at..at + n).ok_or("truncated date-time")?;
    let mut v = 0i64;
    for &c in part {
        if !c.is_ascii_digit() {
            return Err("expected a digit");
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Ok(v)
}

fn expect(b: &[u8], at: usize, c: u8) -> Result<(), &'static str> {
    match b.get(at) {
        Some(&x) if x == c => Ok(()),
        _ => Err("malformed date-time"),
    }
}

/// Parses a command-line / query-parameter time: a date (`2026-01-31`,
/// meaning UTC midnight) or an RFC 3339 date-time.
pub fn parse_date_or_rfc3339(s: &str) -> Result<i64, String> {
    if s.len() == 10 {
        let bad = || format!("'{s}' is not a valid date (expected YYYY-MM-DD)");
        // chrono's `%Y`/`%m` also take signs and unpadded numbers: insist on
        // exactly four, two and two digits.
        let b = s.as_bytes();
        let shaped = b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
        if !shaped {
            return Err(bad());
        }
        let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())?;
        return Ok(date_to_ms(date));
    }
    parse_rfc3339(s)
        .map_err(|why| format!("'{s}' is not a date (YYYY-MM-DD) or an RFC 3339 time: {why}"))
}

/// UTC midnight of `date` in Unix milliseconds.
pub fn date_to_ms(date: NaiveDate) -> i64 {
    (i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE) * DAY_MS
}

/// The UTC calendar date containing `ms`.
pub fn ms_to_date(ms: i64) -> NaiveDate {
    let days = ms.div_euclid(DAY_MS) + UNIX_EPOCH_DAYS_FROM_CE;
    NaiveDate::from_num_days_from_ce_opt(days as i32).unwrap_or(NaiveDate::MIN)
}

/// Formats Unix milliseconds as RFC 3339 UTC: `2026-01-31T00:00:00Z`, with
/// `.sss` only when the milliseconds are not zero.
pub fn format_rfc3339(ms: i64) -> String {
    let Some(dt) = DateTime::<Utc>::from_timestamp_millis(ms) else {
        return ms.to_string();
    };
    if ms.rem_euclid(1000) == 0 {
        dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_accepted_forms() {
        assert_eq!(parse_rfc3339("2000-01-01T00:00:00Z"), Ok(MIN_EVENT_MS));
        assert_eq!(parse_rfc3339("2000-01-01t00:00:00z"), Ok(MIN_EVENT_MS));
        assert_eq!(parse_rfc3339("2000-01-01T01:00:00+01:00"), Ok(MIN_EVENT_MS));
        assert_eq!(parse_rfc3339("1999-12-31T23:00:00-01:00"), Ok(MIN_EVENT_MS));
        assert_eq!(
            parse_rfc3339("2000-01-01T00:00:00.5Z"),
            Ok(MIN_EVENT_MS + 500)
        );
        // Digits below the millisecond are truncated, never rounded up.
        assert_eq!(
            parse_rfc3339("2000-01-01T00:00:00.123999Z"),
            Ok(MIN_EVENT_MS + 123)
        );
    }

    #[test]
    fn rejects_what_spec_rejects() {
        for bad in [
            "2000-01-01 00:00:00Z",
            "2000-01-01T23:59:60Z",
            "2000-01-01T00:00:00",
            "2000-02-30T00:00:00Z",
            "2000-1-01T00:00:00Z",
            "2000-01-01T00:00:00.Z",
            "2000-01-01T24:00:00Z",
            "2000-01-01T00:00:00+0100",
            "2000-01-01T00:00:00Zjunk",
            "1700000000000",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn a_missing_zone_is_named() {
        for s in ["2026-01-31T12:00:00", "2026-01-31T12:00:00.123"] {
            let e = parse_rfc3339(s).unwrap_err();
            assert!(e.contains("time zone is missing"), "{s}: {e}");
            let e = parse_date_or_rfc3339(s).unwrap_err();
            assert!(e.contains("time zone is missing"), "{s}: {e}");
        }
        assert!(
            parse_rfc3339("2026-01-31T12:00")
                .unwrap_err()
                .contains("too short")
        );
    }

    #[test]
    fn dates_and_formatting() {
        assert_eq!(parse_date_or_rfc3339("2000-01-01"), Ok(MIN_EVENT_MS));
        assert!(parse_date_or_rfc3339("2000-13-01").is_err());
        assert_eq!(format_rfc3339(MIN_EVENT_MS), "2000-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(MIN_EVENT_MS + 7), "2000-01-01T00:00:00.007Z");
        assert_eq!(ms_to_date(MIN_EVENT_MS - 1).to_string(), "1999-12-31");
    }
}
