//! Parameters as the command line and HTTP both give them: names (the CLI
//! flags without dashes) and string values. One parser for both, so a bad
//! `--window 7x` and a bad `?window=7x` get the same message.

use tally_event::time::{DAY_MS, parse_date_or_rfc3339};

use crate::calendar::Zone;
use crate::error::QueryError;

/// How far back `--from` defaults when not given.
pub const DEFAULT_RANGE_MS: i64 = 30 * DAY_MS;

/// Shortest `--window` / `--within`: 1 second.
pub const MIN_WINDOW_MS: i64 = 1000;
/// Longest `--window` / `--within`: 3650 days.
pub const MAX_WINDOW_MS: i64 = 3650 * DAY_MS;

/// Checks a `--window` / `--within` duration against 1 s ..= 3650 d.
pub(crate) fn check_window(param: &str, ms: i64) -> Result<(), QueryError> {
    if (MIN_WINDOW_MS..=MAX_WINDOW_MS).contains(&ms) {
        Ok(())
    } else {
        Err(QueryError::bad(
            param,
            format!(
                "{} is out of range (expected 1s to 3650d)",
                crate::render::human_duration(ms as f64 / 1000.0)
            ),
        ))
    }
}

/// Raw `name = value` parameters, consumed by typed getters; [`RawParams::finish`]
/// rejects whatever was not consumed (a misspelt flag is an error, not ignored).
#[derive(Debug, Clone, Default)]
pub struct RawParams {
    pairs: Vec<(String, String, bool)>,
    /// `--tz`, once read.
    zone: Option<Zone>,
}

impl RawParams {
    /// Builds from pairs; names may use `-` or `_` (`as-of` = `as_of`).
    pub fn new<K: AsRef<str>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        RawParams {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().replace('_', "-"), v.into(), false))
                .collect(),
            zone: None,
        }
    }

    /// `--tz`: an IANA zone, UTC when not given. Dates in times are local
    /// midnights in it.
    pub fn zone(&mut self) -> Result<Zone, QueryError> {
        if let Some(z) = &self.zone {
            return Ok(z.clone());
        }
        let zone = match self.str("tz")? {
            None => Zone::utc(),
            Some(name) => Zone::parse(&name).map_err(|m| QueryError::bad("tz", m))?,
        };
        self.zone = Some(zone.clone());
        Ok(zone)
    }

    /// The value of `name`, if given. A parameter given twice is an error.
    pub fn str(&mut self, name: &str) -> Result<Option<String>, QueryError> {
        let mut found: Option<String> = None;
        for (k, v, used) in &mut self.pairs {
            if k == name {
                if found.is_some() {
                    return Err(QueryError::bad(name, "given more than once"));
                }
                *used = true;
                found = Some(v.clone());
            }
        }
        Ok(found)
    }

    /// Every value of a repeatable parameter (`--where`), in the order
    /// given; none is an empty list.
    pub fn all(&mut self, name: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (k, v, used) in &mut self.pairs {
            if k == name {
                *used = true;
                found.push(v.clone());
            }
        }
        found
    }

    /// The value of a required parameter.
    pub fn required(&mut self, name: &str) -> Result<String, QueryError> {
        self.str(name)?
            .ok_or_else(|| QueryError::bad(name, "is required"))
    }

    /// A time: a date (`2026-01-31`, the first instant of that day in
    /// `--tz`) or RFC 3339.
    pub fn time(&mut self, name: &str) -> Result<Option<i64>, QueryError> {
        let zone = self.zone()?;
        self.str(name)?
            .map(|v| parse_time(&v, &zone).map_err(|m| QueryError::bad(name, m)))
            .transpose()
    }

    /// A duration such as `90s`, `30m`, `24h`, `7d`, `2w`, in milliseconds.
    pub fn duration(&mut self, name: &str) -> Result<Option<i64>, QueryError> {
        self.str(name)?
            .map(|v| parse_duration(&v).map_err(|m| QueryError::bad(name, m)))
            .transpose()
    }

    /// A whole number within `range`.
    pub fn int(
        &mut self,
        name: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, QueryError> {
        let Some(v) = self.str(name)? else {
            return Ok(None);
        };
        let n: i64 = v
            .trim()
            .parse()
            .map_err(|_| QueryError::bad(name, format!("'{v}' is not a whole number")))?;
        if !range.contains(&n) {
            return Err(QueryError::bad(
                name,
                format!(
                    "{n} is out of range (expected {} to {})",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(Some(n))
    }

    /// `--from` / `--to`, defaulting to the 30 days up to the end of today
    /// (in `--tz`); or `--last 30d` / `--last 2w` (see [`last_range`]).
    pub fn range(&mut self, now: i64) -> Result<(i64, i64), QueryError> {
        if let Some(range) = self.last(now)? {
            return Ok(range);
        }
        let zone = self.zone()?;
        let to = match self.time("to")? {
            Some(to) => to,
            None => zone.day_start(zone.local_day(now) + 1),
        };
        let from = match self.time("from")? {
            Some(from) => from,
            // 30 local days before a local midnight; else 30 × 24 h.
            None if zone.day_start(zone.local_day(to)) == to => {
                zone.day_start(zone.local_day(to) - DEFAULT_RANGE_MS / DAY_MS)
            }
            None => to - DEFAULT_RANGE_MS,
        };
        if from >= to {
            return Err(QueryError::bad("from", "must be before --to"));
        }
        Ok((from, to))
    }

    /// `--from` / `--to` defaulting to all time (`tally events`, export),
    /// or `--last`.
    pub fn range_or_all(&mut self, now: i64) -> Result<(i64, i64), QueryError> {
        if let Some(range) = self.last(now)? {
            return Ok(range);
        }
        let from = self.time("from")?.unwrap_or(i64::MIN);
        let to = self.time("to")?.unwrap_or(i64::MAX);
        if from >= to {
            return Err(QueryError::bad("from", "must be before --to"));
        }
        Ok((from, to))
    }

    /// `--last`, which may not be combined with `--from` or `--to`.
    fn last(&mut self, now: i64) -> Result<Option<(i64, i64)>, QueryError> {
        let Some(last) = self.str("last")? else {
            return Ok(None);
        };
        for other in ["from", "to"] {
            if self.str(other)?.is_some() {
                return Err(QueryError::bad(
                    "last",
                    format!(
                        "cannot be combined with --{other} (give either --last or --from/--to)"
                    ),
                ));
            }
        }
        let zone = self.zone()?;
        last_range_in(&last, now, &zone)
            .map(Some)
            .map_err(|m| QueryError::bad("last", m))
    }

    /// Fails on the first parameter no getter asked for.
    pub fn finish(self) -> Result<(), QueryError> {
        match self.pairs.into_iter().find(|(_, _, used)| !used) {
            Some((k, _, _)) => Err(QueryError::bad(&k, "unknown parameter")),
            None => Ok(()),
        }
    }
}

/// A date (`2026-01-31`: the first instant of that day in `zone`) or an
/// RFC 3339 time.
pub fn parse_time(s: &str, zone: &Zone) -> Result<i64, String> {
    let ms = parse_date_or_rfc3339(s)?;
    // Exactly what `parse_date_or_rfc3339` reads as a date (UTC midnight).
    if s.len() == 10 {
        return Ok(zone.day_start(ms.div_euclid(DAY_MS)));
    }
    Ok(ms)
}

/// `--last 30d` / `--last 2w` in UTC (see [`last_range_in`]).
pub fn last_range(s: &str, now: i64) -> Result<(i64, i64), String> {
    last_range_in(s, now, &Zone::utc())
}

/// `--last 30d` / `--last 2w`: the whole local days ending with today, so
/// `from` is the local midnight `N - 1` days before today's and `to` the
/// local midnight after today (SPEC §3).
pub fn last_range_in(s: &str, now: i64, zone: &Zone) -> Result<(i64, i64), String> {
    let s = s.trim();
    let days = match s.strip_suffix('d') {
        Some(n) => n.parse::<i64>().ok(),
        None => s
            .strip_suffix('w')
            .and_then(|n| n.parse::<i64>().ok())
            .and_then(|n| n.checked_mul(7)),
    };
    let days = days.ok_or_else(|| {
        format!("'{s}' is not a number of days or weeks (expected e.g. 30d or 2w)")
    })?;
    if !(1..=36_500).contains(&days) {
        return Err(format!("'{s}' is out of range (expected 1d to 36500d)"));
    }
    let tomorrow = zone.local_day(now) + 1;
    Ok((zone.day_start(tomorrow - days), zone.day_start(tomorrow)))
}

/// Parses `90s`, `30m`, `24h`, `7d`, `2w` into milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "'{s}' is not a duration (expected a whole number and a unit: 90s, 30m, 24h, 7d, 2w)"
        ));
    }
    let unit_ms = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        "w" => 7 * DAY_MS,
        "" => {
            return Err(format!(
                "'{s}' has no unit (expected s, m, h, d or w, e.g. 7d)"
            ));
        }
        other => {
            return Err(format!(
                "unknown duration unit '{other}' in '{s}' (expected s, m, h, d or w)"
            ));
        }
    };
    num.parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90_000));
        assert_eq!(parse_duration("30m"), Ok(1_800_000));
        assert_eq!(parse_duration("24h"), Ok(DAY_MS));
        assert_eq!(parse_duration("7d"), Ok(7 * DAY_MS));
        assert_eq!(parse_duration("2w"), Ok(14 * DAY_MS));
        assert!(
            parse_duration("7x")
                .unwrap_err()
                .contains("unknown duration unit 'x'")
        );
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("-1d").is_err());
        assert!(parse_duration("1.5d").is_err());
    }

    #[test]
    fn unknown_and_repeated_parameters_are_errors() {
        let mut p = RawParams::new([("from", "2026-01-01"), ("windw", "7d")]);
        assert!(p.time("from").unwrap().is_some());
        let err = p.finish().unwrap_err().to_string();
        assert_eq!(err, "--windw: unknown parameter");
        let mut p = RawParams::new([("to", "2026-01-01"), ("to", "2026-01-02")]);
        assert!(p.time("to").is_err());
    }

    #[test]
    fn last_is_whole_days_ending_with_today() {
        let now = parse_date_or_rfc3339("2026-03-10T15:30:00Z").unwrap();
        let day = |d: &str| parse_date_or_rfc3339(d).unwrap();
        // 30d: from the midnight 29 days before today, to the one after.
        assert_eq!(
            last_range("30d", now),
            Ok((day("2026-02-09"), day("2026-03-11")))
        );
        assert_eq!(
            last_range("2w", now),
            Ok((day("2026-02-25"), day("2026-03-11")))
        );
        assert_eq!(
            last_range("1d", now),
            Ok((day("2026-03-10"), day("2026-03-11")))
        );
        // At midnight exactly, today is the day that just began.
        assert_eq!(
            last_range("1d", day("2026-03-10")),
            Ok((day("2026-03-10"), day("2026-03-11")))
        );
        for bad in ["30", "24h", "0d", "-1d", "x", "1.5d"] {
            assert!(last_range(bad, now).is_err(), "{bad}");
        }
        // Through the parameters, and the same for range_or_all.
        let mut p = RawParams::new([("last", "7d")]);
        assert_eq!(
            p.range(now).unwrap(),
            (day("2026-03-04"), day("2026-03-11"))
        );
        p.finish().unwrap();
        let mut p = RawParams::new([("last", "7d")]);
        assert_eq!(
            p.range_or_all(now).unwrap(),
            (day("2026-03-04"), day("2026-03-11"))
        );
        // Combined with --from or --to: a usage error naming both.
        for other in ["from", "to"] {
            let mut p = RawParams::new([("last", "7d"), (other, "2026-01-01")]);
            let err = p.range(now).unwrap_err().to_string();
            assert!(err.starts_with("--last:") && err.contains(other), "{err}");
        }
        // range_or_all defaults to all time.
        let mut p = RawParams::new(Vec::<(&str, &str)>::new());
        assert_eq!(p.range_or_all(now).unwrap(), (i64::MIN, i64::MAX));
    }

    #[test]
    fn repeatable_parameters_keep_their_order() {
        let mut p = RawParams::new([
            ("where", "a = 1"),
            ("from", "2026-01-01"),
            ("where", "b = 2"),
        ]);
        assert_eq!(p.all("where"), ["a = 1", "b = 2"]);
        assert!(p.all("by").is_empty());
        assert!(p.time("from").unwrap().is_some());
        p.finish().unwrap();
    }

    #[test]
    fn as_of_accepts_both_spellings() {
        let mut p = RawParams::new([("as_of", "2026-01-01")]);
        assert!(p.time("as-of").unwrap().is_some());
        p.finish().unwrap();
    }
}
