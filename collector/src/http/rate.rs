//! A per-IP rate limit on the ingest endpoints (`ingest_rate_per_ip`), so
//! that one client holding the public browser write key cannot flood the
//! store: a token bucket per client address, refilled at the rate and
//! holding two seconds' worth (a burst). Requests over it get a 429 with
//! `Retry-After`, before their body is read.
//!
//! Loopback addresses are not limited: a reverse proxy on the same host
//! (every request then comes from it; limit there, see docs/deploy.md) and
//! local tools such as `tally import --server`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Buckets kept before idle ones are dropped (a full bucket and a missing
/// one mean the same).
const MAX_BUCKETS: usize = 100_000;

/// Token buckets by client address.
pub struct RateLimit {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    /// `per_sec` requests a second per address; 0 turns the limit off.
    pub fn new(per_sec: u32) -> RateLimit {
        RateLimit {
            per_sec: f64::from(per_sec),
            burst: 2.0 * f64::from(per_sec),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `ip` at `now`; false when it has none left.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        if self.per_sec == 0.0 || ip.is_loopback() {
            return true;
        }
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&ip) {
            // Buckets refilled by now hold nothing worth keeping.
            let full = Duration::from_secs_f64(self.burst / self.per_sec);
            buckets.retain(|_, b| now.saturating_duration_since(b.at) < full);
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_address_and_loopback_is_exempt() {
        let limit = RateLimit::new(10);
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let t0 = Instant::now();
        let allowed = (0..30).filter(|_| limit.allow(a, t0)).count();
        assert_eq!(allowed, 20, "a burst of two seconds' worth");
        assert!(limit.allow(b, t0), "another address has its own bucket");
        assert!(!limit.allow(a, t0 + Duration::from_millis(50)));
        assert!(limit.allow(a, t0 + Duration::from_millis(110)), "refilled");
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..1000).all(|_| limit.allow(local, t0)));
        let off = RateLimit::new(0);
        assert!((0..1000).all(|_| off.allow(a, t0)));
    }
}
