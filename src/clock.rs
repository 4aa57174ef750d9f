//! Clock: the one place that reads the current time.
//!
//! Everything that depends on "now" (scheduled posts, the issue window, the
//! Date header, the ledger's times) asks this module, so tests can pin time with the
//! `GAZETTE_NOW` environment variable (an RFC 3339 timestamp).

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset, Timelike, Utc};

/// The environment variable that pins the clock, for tests and reproducible runs.
pub const PIN_VAR: &str = "GAZETTE_NOW";

/// A point in time fixed for the whole run: read once, used everywhere.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    now: DateTime<FixedOffset>,
}

impl Clock {
    /// Reads `GAZETTE_NOW` if set, else the system clock.
    pub fn from_env() -> Result<Clock> {
        match std::env::var(PIN_VAR) {
            Ok(pinned) => Clock::pinned(&pinned),
            #[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
            // Whole seconds: what mail headers and the ledger show.
            Err(_) => {
                let now = Utc::now().fixed_offset();
                Ok(Clock {
                    now: now.with_nanosecond(0).unwrap_or(now),
                })
            }
        }
    }

    /// A clock fixed at an RFC 3339 timestamp.
    pub fn pinned(rfc3339: &str) -> Result<Clock> {
        let now = DateTime::parse_from_rfc3339(rfc3339.trim())
            .with_context(|| format!("{PIN_VAR}={rfc3339:?} is not an RFC 3339 timestamp"))?;
        Ok(Clock { now })
    }

    /// The current time of this run.
    pub fn now(&self) -> DateTime<FixedOffset> {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_clock_returns_the_pinned_time() {
        let clock = Clock::pinned("2026-01-02T03:04:05+01:00").unwrap();
        assert_eq!(clock.now().to_rfc3339(), "2026-01-02T03:04:05+01:00");
    }

    #[test]
    fn pinned_clock_rejects_garbage() {
        let err = Clock::pinned("yesterday").unwrap_err();
        assert!(err.to_string().contains("GAZETTE_NOW"), "{err}");
    }
}
