//! Calendar time in a zone (`--tz`, SPEC §3): local dates, the first
//! instant of a local day, and the local buckets of trends.
//!
//! The zone database is jiff's bundled copy of the IANA tzdb, compiled
//! into the binary: no file is read, so the crate stays free of I/O.
//!
//! Days are handled as *civil day numbers*: days since 1970-01-01 of the
//! local calendar date (the same numbering UTC days always had here), so
//! `ms_to_date(day * DAY_MS)` is the date of day number `day` whatever the
//! zone. Only the instant a day starts at depends on the zone.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde::{Deserialize, Serialize};
use tally_event::time::{DAY_MS, ms_to_date};

use chrono::Datelike as _;

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// An IANA time zone (`--tz`), `UTC` by default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Zone {
    name: String,
    tz: TimeZone,
    /// True for UTC (and zones that are UTC forever): arithmetic fast path.
    utc: bool,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl Default for Zone {
    fn default() -> Self {
        Zone::utc()
    }
}

impl TryFrom<String> for Zone {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Zone::parse(&name)
    }
}

impl From<Zone> for String {
    fn from(z: Zone) -> String {
        z.name
    }
}

impl Zone {
    /// UTC.
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
            utc: true,
        }
    }

    /// An IANA name such as `Europe/Berlin` (as the tzdb spells it; the
    /// lookup ignores ASCII case, as jiff's does).
    pub fn parse(name: &str) -> Result<Zone, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("is empty (expected an IANA time zone such as Europe/Berlin)".into());
        }
        let tz = jiff::tz::db().get(name).map_err(|_| {
            format!(
                "unknown time zone '{name}' (expected an IANA name such as Europe/Berlin or UTC)"
            )
        })?;
        let utc = tz == TimeZone::UTC
            || (tz.to_offset(Timestamp::MIN).seconds() == 0
                && tz.following(Timestamp::MIN).next().is_none());
        Ok(Zone {
            name: tz.iana_name().unwrap_or(name).to_string(),
            tz,
            utc,
        })
    }

    /// The zone's name, as the tzdb spells it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The UTC offset in force at `ms`, in milliseconds.
    pub fn offset_ms(&self, ms: i64) -> i64 {
        if self.utc {
            return 0;
        }
        i64::from(self.tz.to_offset(timestamp(ms)).seconds()) * 1000
    }

    /// The civil day number of the local date containing `ms`.
    pub fn local_day(&self, ms: i64) -> i64 {
        (ms + self.offset_ms(ms)).div_euclid(DAY_MS)
    }

    /// The first instant of local day `day` (a civil day number): its
    /// midnight, or the end of the gap when a DST change skips midnight;
    /// the earlier midnight when one repeats.
    pub fn day_start(&self, day: i64) -> i64 {
        if self.utc {
            return day.saturating_mul(DAY_MS);
        }
        let Some(date) = civil_date(day) else {
            return day.saturating_mul(DAY_MS);
        };
        let midnight = date.to_datetime(jiff::civil::Time::midnight());
        let local_ms = day * DAY_MS;
        match self.tz.to_ambiguous_timestamp(midnight).offset() {
            AmbiguousOffset::Unambiguous { offset } => local_ms - offset_ms(offset),
            AmbiguousOffset::Fold { before, .. } => local_ms - offset_ms(before),
            AmbiguousOffset::Gap { before, .. } => {
                // Read with the offset before the gap, midnight is at or
                // after the transition; the day starts at the transition.
                let guess = local_ms - offset_ms(before);
                self.tz
                    .preceding(timestamp(guess + 1))
                    .next()
                    .map_or(guess, |t| t.timestamp().as_millisecond())
            }
        }
    }

    /// The first transition (offset change) strictly after `ms`, if any.
    fn next_transition(&self, ms: i64) -> Option<i64> {
        if self.utc {
            return None;
        }
        self.tz
            .following(timestamp(ms))
            .next()
            .map(|t| t.timestamp().as_millisecond())
    }

    /// The last transition at or before `ms`, if any.
    fn last_transition(&self, ms: i64) -> Option<i64> {
        if self.utc {
            return None;
        }
        self.tz
            .preceding(timestamp(ms + 1))
            .next()
            .map(|t| t.timestamp().as_millisecond())
    }

    /// `ms` as local time with its offset, to the minute:
    /// `2026-03-29T01:00+01:00`.
    pub fn local_minute(&self, ms: i64) -> String {
        let offset = self.offset_ms(ms);
        let local = ms + offset;
        let date = ms_to_date(local);
        let minute = local.rem_euclid(DAY_MS) / 60_000;
        let off_min = offset / 60_000;
        let sign = if off_min < 0 { '-' } else { '+' };
        format!(
            "{date}T{:02}:{:02}{sign}{:02}:{:02}",
            minute / 60,
            minute % 60,
            off_min.abs() / 60,
            off_min.abs() % 60
        )
    }
}

fn timestamp(ms: i64) -> Timestamp {
    let ms = ms.clamp(
        Timestamp::MIN.as_millisecond(),
        Timestamp::MAX.as_millisecond(),
    );
    Timestamp::from_millisecond(ms).expect("clamped into range")
}

fn offset_ms(offset: jiff::tz::Offset) -> i64 {
    i64::from(offset.seconds()) * 1000
}

/// The civil date of day number `day`, if jiff can represent it.
fn civil_date(day: i64) -> Option<Date> {
    if day.unsigned_abs() > 3_000_000 {
        return None;
    }
    let d = ms_to_date(day * DAY_MS);
    Date::new(
        i16::try_from(d.year()).ok()?,
        i8::try_from(d.month()).ok()?,
        i8::try_from(d.day()).ok()?,
    )
    .ok()
}

/// The civil day number of the Monday starting the ISO week of day `day`.
pub fn monday_of(day: i64) -> i64 {
    // 1970-01-01 (day 0) was a Thursday, three days after a Monday.
    day - (day + 3).rem_euclid(7)
}

/// The civil day number of the first day of the month of day `day`.
pub fn first_of_month(day: i64) -> i64 {
    let d = ms_to_date(day * DAY_MS);
    day - i64::from(d.day0())
}

/// The civil day number of the first day of the month after day `day`'s.
pub fn first_of_next_month(day: i64) -> i64 {
    let d = ms_to_date(day * DAY_MS);
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    let next = chrono::NaiveDate::from_ymd_opt(y, m, 1).expect("a valid first of month");
    tally_event::time::date_to_ms(next) / DAY_MS
}

/// The local date of civil day number `day`, `YYYY-MM-DD`.
pub fn date_label(day: i64) -> String {
    ms_to_date(day * DAY_MS).to_string()
}

/// A calendar interval of trend buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// Local clock hours.
    Hour,
    /// Local days.
    #[default]
    Day,
    /// ISO weeks (Monday) of local days.
    Week,
    /// Local calendar months.
    Month,
}

impl Interval {
    /// `hour`, `day`, `week` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }
}

impl std::str::FromStr for Interval {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hour" => Ok(Interval::Hour),
            "day" => Ok(Interval::Day),
            "week" => Ok(Interval::Week),
            "month" => Ok(Interval::Month),
            _ => Err(format!(
                "unknown interval '{s}' (expected hour, day, week or month)"
            )),
        }
    }
}

impl Zone {
    /// The start of the `interval` containing `ms`.
    pub fn bucket_start(&self, interval: Interval, ms: i64) -> i64 {
        let day = self.local_day(ms);
        match interval {
            Interval::Hour => {
                // The local clock hour, but never before the last offset
                // change: a bucket never straddles one (so a repeated hour
                // is two buckets, and a 30-minute change starts a bucket).
                let hour = ms - (ms + self.offset_ms(ms)).rem_euclid(HOUR_MS);
                self.last_transition(ms).map_or(hour, |t| hour.max(t))
            }
            Interval::Day => self.day_start(day),
            Interval::Week => self.day_start(monday_of(day)),
            Interval::Month => self.day_start(first_of_month(day)),
        }
    }

    /// The start of the `interval` after the one starting at `start`.
    pub fn bucket_end(&self, interval: Interval, start: i64) -> i64 {
        let day = self.local_day(start);
        match interval {
            Interval::Hour => {
                let hour = start + HOUR_MS - (start + self.offset_ms(start)).rem_euclid(HOUR_MS);
                self.next_transition(start).map_or(hour, |t| hour.min(t))
            }
            Interval::Day => self.day_start(day + 1),
            Interval::Week => self.day_start(monday_of(day) + 7),
            Interval::Month => self.day_start(first_of_next_month(day)),
        }
    }

    /// The label of the bucket starting at `start`: its local date, or for
    /// hours its local time with the offset.
    pub fn bucket_label(&self, interval: Interval, start: i64) -> String {
        match interval {
            Interval::Hour => self.local_minute(start),
            _ => date_label(self.local_day(start)),
        }
    }

    /// The boundaries of every `interval` overlapping `[from, to)`: the
    /// start of each, then the end of the last; `None` when there would be
    /// more than `max` buckets.
    pub fn buckets(&self, interval: Interval, from: i64, to: i64, max: usize) -> Option<Vec<i64>> {
        let mut bounds = vec![self.bucket_start(interval, from)];
        let mut at = bounds[0];
        while at < to {
            if bounds.len() > max {
                return None;
            }
            let next = self.bucket_end(interval, at);
            // Never stall, even on data the tzdb would not produce.
            at = if next > at { next } else { at + HOUR_MS };
            bounds.push(at);
        }
        Some(bounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_event::time::parse_rfc3339;

    fn t(s: &str) -> i64 {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn unknown_zone_is_an_error_naming_it() {
        let err = Zone::parse("Mars/Olympus").unwrap_err();
        assert!(err.contains("Mars/Olympus"), "{err}");
        assert_eq!(
            Zone::parse("Europe/Berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert!(Zone::parse("UTC").unwrap().utc);
    }

    #[test]
    fn berlin_days_around_dst() {
        let z = Zone::parse("Europe/Berlin").unwrap();
        let day = |d: &str| tally_event::time::parse_date_or_rfc3339(d).unwrap() / DAY_MS;
        assert_eq!(z.day_start(day("2026-03-29")), t("2026-03-28T23:00:00Z"));
        assert_eq!(z.day_start(day("2026-03-30")), t("2026-03-29T22:00:00Z"));
        assert_eq!(z.day_start(day("2026-10-25")), t("2026-10-24T22:00:00Z"));
        assert_eq!(z.day_start(day("2026-10-26")), t("2026-10-25T23:00:00Z"));
        assert_eq!(
            z.local_day(t("2026-03-29T21:59:59.999Z")),
            day("2026-03-29")
        );
        assert_eq!(z.local_day(t("2026-03-29T22:00:00Z")), day("2026-03-30"));
    }

    #[test]
    fn santiago_day_starts_at_the_end_of_the_midnight_gap() {
        // tzdb (southamerica, Rule Chile): on 2026-09-06 at 04:00 UTC
        // Chile moves from -04 to -03, so local midnight of 2026-09-06
        // does not exist: the day starts at 01:00 -03 (04:00 UTC).
        let z = Zone::parse("America/Santiago").unwrap();
        let day = tally_event::time::parse_date_or_rfc3339("2026-09-06").unwrap() / DAY_MS;
        assert_eq!(z.day_start(day), t("2026-09-06T04:00:00Z"));
        assert_eq!(z.day_start(day - 1), t("2026-09-05T04:00:00Z"));
        assert_eq!(z.day_start(day + 1), t("2026-09-07T03:00:00Z"));
    }

    #[test]
    fn hour_labels_repeat_with_two_offsets_on_fall_back() {
        let z = Zone::parse("Europe/Berlin").unwrap();
        let b = z
            .buckets(
                Interval::Hour,
                t("2026-10-24T23:00:00Z"),
                t("2026-10-25T03:00:00Z"),
                100,
            )
            .unwrap();
        let labels: Vec<String> = b[..b.len() - 1]
            .iter()
            .map(|&s| z.bucket_label(Interval::Hour, s))
            .collect();
        assert_eq!(
            labels,
            [
                "2026-10-25T01:00+02:00",
                "2026-10-25T02:00+02:00",
                "2026-10-25T02:00+01:00",
                "2026-10-25T03:00+01:00"
            ]
        );
    }
}
