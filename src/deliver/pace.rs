//! Deliver stage: the pace of a pool under rate limits — the shortest
//! time between two messages, and each worker's turn. May import tokio
//! and std.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// The shortest time between two messages under the rate limits: with
/// both, the stricter (the longer interval), so that neither is exceeded.
pub fn interval(per_second: Option<f64>, per_hour: Option<u32>) -> Option<Duration> {
    let per_second = per_second.map(|r| Duration::from_secs_f64(1.0 / r));
    let per_hour = per_hour.map(|r| Duration::from_secs_f64(3600.0 / f64::from(r)));
    match (per_second, per_hour) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The turns the workers of a pool take under a rate limit.
pub(super) struct Pace {
    interval: Option<Duration>,
    next_slot: Mutex<Instant>,
}

impl Pace {
    pub(super) fn new(interval: Option<Duration>) -> Pace {
        Pace {
            interval,
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// Whether a rate limit holds.
    pub(super) fn limited(&self) -> bool {
        self.interval.is_some()
    }

    /// Waits for this worker's turn under the rate limit.
    pub(super) async fn wait_turn(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let wait_until = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(wait_until).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_rate_limits_combine_to_the_stricter() {
        let secs = |s: f64| Some(Duration::from_secs_f64(s));
        assert_eq!(interval(None, None), None);
        assert_eq!(interval(Some(4.0), None), secs(0.25));
        assert_eq!(interval(None, Some(7200)), secs(0.5));
        // 10 a second, but 3,600 an hour: one a second.
        assert_eq!(interval(Some(10.0), Some(3600)), secs(1.0));
        // One every 2 s, under 3,600 an hour: one every 2 s.
        assert_eq!(interval(Some(0.5), Some(3600)), secs(2.0));
    }
}
