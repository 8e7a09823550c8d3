//! Which periods a KPI is reported for (SPEC §6): the latest calendar
//! period that has ended by `as_of` and is mature for the KPI, and the one
//! before it.

use serde::{Deserialize, Serialize};

use crate::calendar::{Interval, Zone};

/// `--period`: the review's cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReviewPeriod {
    /// Local days.
    Day,
    /// Local ISO weeks (Monday).
    #[default]
    Week,
    /// Local calendar months.
    Month,
}

impl ReviewPeriod {
    /// `day`, `week` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewPeriod::Day => "day",
            ReviewPeriod::Week => "week",
            ReviewPeriod::Month => "month",
        }
    }
}

impl std::str::FromStr for ReviewPeriod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "day" => Ok(ReviewPeriod::Day),
            "week" => Ok(ReviewPeriod::Week),
            "month" => Ok(ReviewPeriod::Month),
            _ => Err(format!(
                "unknown period '{s}' (expected day, week or month)"
            )),
        }
    }
}

/// The period reported and the one before it, each `(from, to)` in Unix
/// ms: the latest `interval` of `zone` whose end plus `maturity_ms` is at
/// or before `as_of`. Periods are calendar buckets (a DST week is 7 local
/// days, 167 or 169 hours); the maturity lag is elapsed time.
pub fn reported_periods(
    interval: Interval,
    zone: &Zone,
    as_of: i64,
    maturity_ms: i64,
) -> ((i64, i64), (i64, i64)) {
    // A period [s, e) is reportable when e <= as_of - lag. The bucket
    // holding that instant has not ended by then, so the latest
    // reportable period is the one ending where that bucket starts.
    let latest_end = as_of.saturating_sub(maturity_ms);
    let end = zone.bucket_start(interval, latest_end);
    let start = zone.bucket_start(interval, end - 1);
    let before = zone.bucket_start(interval, start - 1);
    ((start, end), (before, start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_event::time::{DAY_MS, parse_rfc3339};

    fn t(s: &str) -> i64 {
        parse_rfc3339(s).unwrap()
    }

    fn utc() -> Zone {
        Zone::utc()
    }

    #[test]
    fn weekly_counts_report_the_last_whole_iso_week() {
        // Wednesday 2026-03-11: the week of Monday 2026-03-02 is the latest
        // ended one, and the week before it is 2026-02-23.
        let ((s, e), (ps, pe)) =
            reported_periods(Interval::Week, &utc(), t("2026-03-11T15:00:00Z"), 0);
        assert_eq!(
            (s, e),
            (t("2026-03-02T00:00:00Z"), t("2026-03-09T00:00:00Z"))
        );
        assert_eq!((ps, pe), (t("2026-02-23T00:00:00Z"), s));
    }

    #[test]
    fn a_period_ending_exactly_at_as_of_has_ended() {
        let ((s, e), _) = reported_periods(Interval::Week, &utc(), t("2026-03-09T00:00:00Z"), 0);
        assert_eq!(
            (s, e),
            (t("2026-03-02T00:00:00Z"), t("2026-03-09T00:00:00Z"))
        );
        // One millisecond earlier it has not.
        let ((s, _), _) =
            reported_periods(Interval::Week, &utc(), t("2026-03-08T23:59:59.999Z"), 0);
        assert_eq!(s, t("2026-02-23T00:00:00Z"));
    }

    #[test]
    fn a_30_day_activation_reports_the_latest_week_30_days_past_its_end() {
        let within = 30 * DAY_MS;
        // as_of 2026-03-11: weeks ending on or before 2026-02-09 are mature;
        // 2026-02-09 is a Monday, so the week of 2026-02-02 is reported.
        let ((s, e), (ps, _)) =
            reported_periods(Interval::Week, &utc(), t("2026-03-11T15:00:00Z"), within);
        assert_eq!(
            (s, e),
            (t("2026-02-02T00:00:00Z"), t("2026-02-09T00:00:00Z"))
        );
        assert_eq!(ps, t("2026-01-26T00:00:00Z"));
        // End + within exactly at as_of is mature ("has passed" is inclusive).
        let ((s, _), _) =
            reported_periods(Interval::Week, &utc(), t("2026-03-11T00:00:00Z"), within);
        assert_eq!(s, t("2026-02-02T00:00:00Z"));
        let ((s, _), _) = reported_periods(
            Interval::Week,
            &utc(),
            t("2026-03-10T23:59:59.999Z"),
            within,
        );
        assert_eq!(s, t("2026-01-26T00:00:00Z"));
    }

    #[test]
    fn retention_waits_k_plus_one_periods() {
        // Week-4 retention (L = 7 d): mature when end + 35 d has passed.
        let lag = 5 * 7 * DAY_MS;
        let ((s, e), _) = reported_periods(Interval::Week, &utc(), t("2026-03-11T00:00:00Z"), lag);
        assert!(e + lag <= t("2026-03-11T00:00:00Z"));
        assert_eq!(s, t("2026-01-26T00:00:00Z"));
    }

    #[test]
    fn iso_weeks_across_a_year_boundary() {
        // 2026-01-01 is a Thursday: its ISO week began Monday 2025-12-29.
        let ((s, e), (ps, _)) =
            reported_periods(Interval::Week, &utc(), t("2026-01-06T12:00:00Z"), 0);
        assert_eq!(
            (s, e),
            (t("2025-12-29T00:00:00Z"), t("2026-01-05T00:00:00Z"))
        );
        assert_eq!(ps, t("2025-12-22T00:00:00Z"));
    }

    #[test]
    fn months_of_28_to_31_days() {
        let month = |as_of: &str| reported_periods(Interval::Month, &utc(), t(as_of), 0);
        let ((s, e), (ps, pe)) = month("2026-03-15T00:00:00Z");
        assert_eq!(
            (s, e),
            (t("2026-02-01T00:00:00Z"), t("2026-03-01T00:00:00Z"))
        );
        assert_eq!((e - s) / DAY_MS, 28);
        assert_eq!((ps, pe), (t("2026-01-01T00:00:00Z"), s));
        assert_eq!((pe - ps) / DAY_MS, 31);
        // A leap February, and a 30-day month.
        let ((s, e), _) = month("2028-03-02T00:00:00Z");
        assert_eq!((e - s) / DAY_MS, 29);
        let ((s, e), _) = month("2026-05-01T00:00:00Z");
        assert_eq!((s, (e - s) / DAY_MS), (t("2026-04-01T00:00:00Z"), 30));
    }

    #[test]
    fn days_and_weeks_in_a_zone_with_dst() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // The week of Monday 2026-03-23 holds the spring change (Sunday
        // 2026-03-29): it starts at local midnight (+01:00) and ends at the
        // next local midnight (+02:00), 167 hours later.
        let ((s, e), (ps, pe)) =
            reported_periods(Interval::Week, &berlin, t("2026-03-31T12:00:00Z"), 0);
        assert_eq!(
            (s, e),
            (t("2026-03-22T23:00:00Z"), t("2026-03-29T22:00:00Z"))
        );
        assert_eq!(e - s, 167 * 3_600_000);
        assert_eq!((ps, pe), (t("2026-03-15T23:00:00Z"), s));
        // The autumn week is 169 hours.
        let ((s, e), _) = reported_periods(Interval::Week, &berlin, t("2026-10-27T12:00:00Z"), 0);
        assert_eq!(
            (s, e),
            (t("2026-10-18T22:00:00Z"), t("2026-10-25T23:00:00Z"))
        );
        assert_eq!(e - s, 169 * 3_600_000);
        // The 23-hour day itself, as a daily period.
        let ((s, e), _) = reported_periods(Interval::Day, &berlin, t("2026-03-30T08:00:00Z"), 0);
        assert_eq!(
            (s, e),
            (t("2026-03-28T23:00:00Z"), t("2026-03-29T22:00:00Z"))
        );
        // A 7-day lag is elapsed time, not local days: as_of Monday
        // 2026-04-06 00:30 local (+02:00) minus 7 × 24 h is 2026-03-29
        // 23:30 local, after the DST week's end, so it is mature.
        let ((s, _), _) = reported_periods(
            Interval::Week,
            &berlin,
            t("2026-04-05T22:30:00Z"),
            7 * DAY_MS,
        );
        assert_eq!(s, t("2026-03-22T23:00:00Z"));
    }

    #[test]
    fn periods_parse() {
        assert_eq!("month".parse::<ReviewPeriod>(), Ok(ReviewPeriod::Month));
        assert!(
            "year"
                .parse::<ReviewPeriod>()
                .unwrap_err()
                .contains("day, week or month")
        );
    }
}
