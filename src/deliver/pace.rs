//! Deliver stage: the pace of a pool — the shortest time between two
//! messages under the rate limits, each worker's turn, and the slower
//! pace a relay asks for when it answers with a rate-limit reply. May
//! import tokio and std.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// The slowest pace a relay's rate limiting brings a run down to.
const SLOWEST: Duration = Duration::from_secs(30);
/// Rate-limit replies within this long of a slow-down are one episode:
/// every connection hears them at once, and the pace halves once.
const EPISODE: Duration = Duration::from_secs(5);
/// The shortest time the pace the relay took messages at is taken over.
const OBSERVED_AT_LEAST: Duration = Duration::from_secs(1);
/// The pace of a run throttled before any message went through.
const FIRST_SLOW_PACE: Duration = Duration::from_secs(1);

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

/// The turns the workers of a pool take under a rate limit, which the
/// relay can make stricter while the run goes on.
pub(super) struct Pace {
    state: StdMutex<PaceState>,
    next_slot: Mutex<Instant>,
}

struct PaceState {
    interval: Option<Duration>,
    started: Instant,
    /// Messages the relay took so far, for the pace it was taking them at.
    taken: u64,
    /// When the pace was last slowed down.
    slowed: Option<Instant>,
}

impl PaceState {
    /// See [`Pace::slow_down`]; `now` is when the reply came.
    fn slow_down(&mut self, now: Instant) -> Option<Duration> {
        if self
            .slowed
            .is_some_and(|slowed| now.duration_since(slowed) < EPISODE)
        {
            return None;
        }
        // Over a second at least: a burst the relay took at the start says
        // nothing of the pace it keeps.
        let observed = (self.taken > 0).then(|| {
            let taken = u32::try_from(self.taken).unwrap_or(u32::MAX);
            now.duration_since(self.started).max(OBSERVED_AT_LEAST) / taken
        });
        let slower = match (self.interval, observed) {
            (Some(limit), Some(observed)) => limit.max(observed) * 2,
            (Some(pace), None) | (None, Some(pace)) => pace * 2,
            (None, None) => FIRST_SLOW_PACE,
        };
        let slower = slower.clamp(Duration::from_millis(1), SLOWEST);
        self.interval = Some(slower);
        self.slowed = Some(now);
        Some(slower)
    }
}

impl Pace {
    pub(super) fn new(interval: Option<Duration>) -> Pace {
        let now = Instant::now();
        Pace {
            state: StdMutex::new(PaceState {
                interval,
                started: now,
                taken: 0,
                slowed: None,
            }),
            next_slot: Mutex::new(now),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PaceState> {
        // The state stays whole whatever panicked while it was held.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a rate limit holds (configured, or asked for by the relay).
    pub(super) fn limited(&self) -> bool {
        self.state().interval.is_some()
    }

    /// The relay took a message.
    pub(super) fn taken(&self) {
        self.state().taken += 1;
    }

    /// The relay answered with a rate-limit reply: from now on, half the
    /// pace it took messages at so far (or half the configured limit, if
    /// that is slower), down to one message every [`SLOWEST`]. The new
    /// interval, or `None` when this reply belongs to an episode already
    /// answered.
    pub(super) fn slow_down(&self) -> Option<Duration> {
        self.state().slow_down(Instant::now())
    }

    /// Waits for this worker's turn under the rate limit.
    pub(super) async fn wait_turn(&self) {
        let Some(interval) = self.state().interval else {
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

    fn state(interval: Option<Duration>, taken: u64, started: Instant) -> PaceState {
        PaceState {
            interval,
            started,
            taken,
            slowed: None,
        }
    }

    #[test]
    fn a_rate_limit_reply_halves_the_pace_the_relay_was_taking() {
        // 100 messages in 10 s: 10 a second, one every 100 ms.
        let start = Instant::now();
        let mut pace = state(None, 100, start);
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(pace.slow_down(at(10)), Some(Duration::from_millis(200)));
        // The other connections' replies of the same episode change nothing.
        assert_eq!(pace.slow_down(at(11)), None);
        // A later episode halves it again: the pace set is now the slower.
        assert_eq!(pace.slow_down(at(16)), Some(Duration::from_millis(400)));
    }

    #[test]
    fn the_pace_slows_from_the_configured_limit_and_no_further_than_the_slowest() {
        let start = Instant::now();
        let mut limited = state(Some(Duration::from_secs(20)), 0, start);
        assert_eq!(limited.slow_down(start), Some(SLOWEST));
        let mut fresh = state(None, 0, start);
        assert_eq!(fresh.slow_down(start), Some(FIRST_SLOW_PACE));
        // 10 taken in the first 50 ms: 10 a second at most, so one every 200 ms.
        let mut burst = state(None, 10, start);
        let soon = start + Duration::from_millis(50);
        assert_eq!(burst.slow_down(soon), Some(Duration::from_millis(200)));
        let pace = Pace::new(None);
        assert!(!pace.limited());
        pace.slow_down();
        assert!(pace.limited());
    }
}
