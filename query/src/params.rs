//! Parameters as the command line and HTTP both give them: names (the CLI
//! flags without dashes) and string values. One parser for both, so a bad
//! `--window 7x` and a bad `?window=7x` get the same message.

use tally_event::time::{DAY_MS, parse_date_or_rfc3339};

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
}

impl RawParams {
    /// Builds from pairs; names may use `-` or `_` (`as-of` = `as_of`).
    pub fn new<K: AsRef<str>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        RawParams {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().replace('_', "-"), v.into(), false))
                .collect(),
        }
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

    /// The value of a required parameter.
    pub fn required(&mut self, name: &str) -> Result<String, QueryError> {
        self.str(name)?
            .ok_or_else(|| QueryError::bad(name, "is required"))
    }

    /// A time: a date (`2026-01-31`, UTC midnight) or RFC 3339.
    pub fn time(&mut self, name: &str) -> Result<Option<i64>, QueryError> {
        self.str(name)?
            .map(|v| parse_date_or_rfc3339(&v).map_err(|m| QueryError::bad(name, m)))
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

    /// `--from` / `--to`, defaulting to the 30 days up to the end of today (UTC).
    pub fn range(&mut self, now: i64) -> Result<(i64, i64), QueryError> {
        let to = self
            .time("to")?
            .unwrap_or_else(|| now.div_euclid(DAY_MS) * DAY_MS + DAY_MS);
        let from = self.time("from")?.unwrap_or(to - DEFAULT_RANGE_MS);
        if from >= to {
            return Err(QueryError::bad("from", "must be before --to"));
        }
        Ok((from, to))
    }

    /// Fails on the first parameter no getter asked for.
    pub fn finish(self) -> Result<(), QueryError> {
        match self.pairs.into_iter().find(|(_, _, used)| !used) {
            Some((k, _, _)) => Err(QueryError::bad(&k, "unknown parameter")),
            None => Ok(()),
        }
    }
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
    fn as_of_accepts_both_spellings() {
        let mut p = RawParams::new([("as_of", "2026-01-01")]);
        assert!(p.time("as-of").unwrap().is_some());
        p.finish().unwrap();
    }
}
