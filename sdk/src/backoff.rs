//! Retry policy: which failures are retried, and how long to wait.

use std::time::Duration;

use rand::Rng;

/// Longest `Retry-After` honoured; a larger value is clamped to it.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Exponential backoff with full jitter (AWS's "full jitter"): retry `n`
/// (counted from 0) waits a uniformly random time in `[0, min(max, base × 2ⁿ)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max }
    }

    /// The shortest wait the backoff starts from.
    pub(crate) fn base(&self) -> Duration {
        self.base
    }

    /// The upper bound of the wait before retry `n`: `min(max, base × 2ⁿ)`.
    pub(crate) fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u128.checked_shl(retry).unwrap_or(u128::MAX);
        let nanos = self
            .base
            .as_nanos()
            .saturating_mul(factor)
            .min(self.max.as_nanos());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// A random wait before retry `n`, in `[0, ceiling(n)]`.
    pub(crate) fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }
}

/// Whether an HTTP status is worth retrying: `429` and every `5xx`. Other
/// non-200 statuses (`400`, `401`, `413`, ...) will not change on a retry.
pub(crate) fn retryable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// Parses a `Retry-After` header given in seconds (the HTTP-date form is
/// not used by Tally and is ignored). Clamped to [`MAX_RETRY_AFTER`].
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let b = Backoff::new(100 * MS, 10_000 * MS);
        let want = [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000];
        for (n, ms) in want.into_iter().enumerate() {
            assert_eq!(b.ceiling(n as u32), ms * MS, "retry {n}");
        }
        // No overflow however many retries.
        assert_eq!(b.ceiling(64), 10_000 * MS);
        assert_eq!(b.ceiling(200), 10_000 * MS);
        assert_eq!(b.ceiling(u32::MAX), 10_000 * MS);
        assert_eq!(Backoff::new(Duration::ZERO, MS).ceiling(5), Duration::ZERO);
    }

    #[test]
    fn jitter_covers_the_whole_range() {
        // Full jitter: draws spread over [0, ceiling], not clustered at the top.
        let b = Backoff::new(100 * MS, 10_000 * MS);
        let mut rng = StdRng::seed_from_u64(7);
        let draws: Vec<Duration> = (0..2000).map(|_| b.delay(3, &mut rng)).collect();
        let ceiling = b.ceiling(3);
        assert!(draws.iter().all(|d| *d <= ceiling));
        assert!(draws.iter().any(|d| *d < ceiling / 10));
        assert!(draws.iter().any(|d| *d > ceiling * 9 / 10));
    }

    proptest! {
        #[test]
        fn delays_are_bounded_by_base_times_two_to_the_n_and_the_cap(
            base_ms in 0u64..5_000,
            max_ms in 0u64..120_000,
            retry in 0u32..100,
            seed: u64,
        ) {
            let base = Duration::from_millis(base_ms);
            let max = Duration::from_millis(max_ms);
            let b = Backoff::new(base, max);
            let ceiling = b.ceiling(retry);
            prop_assert!(ceiling <= max);
            // The model: min(max, base * 2^n), computed in floating point.
            let model = (base_ms as f64 * 2f64.powi(retry as i32)).min(max_ms as f64);
            prop_assert!((ceiling.as_secs_f64() * 1000.0 - model).abs() < 1e-3);
            let mut rng = StdRng::seed_from_u64(seed);
            for _ in 0..8 {
                let d = b.delay(retry, &mut rng);
                prop_assert!(d <= ceiling && d <= max);
            }
        }
    }

    #[test]
    fn retry_classification() {
        for s in [429, 500, 502, 503, 504, 599] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 201, 301, 400, 401, 403, 404, 408, 413, 422, 600] {
            assert!(!retryable_status(s), "{s}");
        }
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("1.5"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
