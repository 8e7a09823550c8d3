//! The statistics every analysis reports the same way: the median (SPEC
//! §4: "the mean of the two middle values for an even count") and rates
//! ("0 when the denominator is 0").

/// `a / b`, 0 when `b` is 0.
pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Median of millisecond durations, in seconds (millisecond precision, so a
/// median of 1 ms and 2 ms is `0.0015`); `None` when there are no values.
///
/// Reorders `ms` (a selection, not a full sort: O(n)).
pub(crate) fn median_seconds(ms: &mut [i64]) -> Option<f64> {
    let n = ms.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lower, &mut upper, _) = ms.select_nth_unstable(mid);
    // `upper` is the `mid`-th smallest value. For an even count the other
    // middle value is the largest of the `mid` values placed before it.
    let sum = if n % 2 == 1 {
        2 * i128::from(upper)
    } else {
        let below = *lower.iter().max().expect("an even count has a lower half");
        i128::from(below) + i128::from(upper)
    };
    // One rounding only: `sum` is exact in i128 and (for any real duration,
    // below 2^53 ms) exact as f64; halving and the unit change are one division.
    Some(sum as f64 / 2000.0)
}

/// Neumaier-compensated sum.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sum {
    sum: f64,
    compensation: f64,
}

impl Sum {
    pub(crate) fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub(crate) fn merge(&mut self, other: Sum) {
        self.add(other.sum);
        self.compensation += other.compensation;
    }

    pub(crate) fn value(self) -> f64 {
        self.sum + self.compensation
    }
}

#[cfg(test)]
mod tests {
    use super::median_seconds;

    #[test]
    fn empty_has_no_median() {
        assert_eq!(median_seconds(&mut []), None);
    }

    #[test]
    fn odd_count_takes_the_middle() {
        assert_eq!(median_seconds(&mut [10_000, 5_000, 2_000]), Some(5.0));
        assert_eq!(median_seconds(&mut [237_715]), Some(237.715));
    }

    #[test]
    fn even_count_takes_the_mean_of_the_middle_two() {
        assert_eq!(
            median_seconds(&mut [10_000, 5_000, 2_000, 60_000]),
            Some(7.5)
        );
        assert_eq!(median_seconds(&mut [2, 1]), Some(0.0015));
        assert_eq!(median_seconds(&mut [0, 0]), Some(0.0));
    }

    #[test]
    fn duplicates_and_zeros_count() {
        assert_eq!(median_seconds(&mut [0, 0, 0, 9_000]), Some(0.0));
        assert_eq!(median_seconds(&mut [3_000, 3_000, 1_000, 3_000]), Some(3.0));
    }
}
