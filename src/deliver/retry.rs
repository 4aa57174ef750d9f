//! Deliver stage: the retry policy — a deferred (4xx) message waits and is
//! tried again, the wait doubling each time, until `delivery.max_attempts`
//! tries or its issue is past `delivery.max_age_hours`, when it is given
//! up; within a run, what was deferred is tried again `retries_in_run`
//! times after a pause. May import config (the delivery settings) and the
//! shared words below it; never the ledger or the send that records the
//! decisions.

use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use crate::config::DeliverySettings;

/// When deferred messages are tried again, and when they are given up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    now: DateTime<FixedOffset>,
    max_attempts: u32,
    retry_after: Duration,
    /// The issue is past `delivery.max_age_hours`: no more deferrals.
    too_old: bool,
    retries_in_run: u32,
    pause_in_run: Duration,
}

/// What becomes of a message the server deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDeferral {
    /// Tried often enough, or its issue is too old: it counts as failed.
    GiveUp,
    /// Tried again by a run from then on.
    RetryAt(DateTime<FixedOffset>),
}

impl RetryPolicy {
    /// The policy of `settings` for a run at `now` sending an issue made
    /// at `issue_made`.
    pub fn new(
        settings: &DeliverySettings,
        now: DateTime<FixedOffset>,
        issue_made: DateTime<FixedOffset>,
    ) -> RetryPolicy {
        RetryPolicy {
            now,
            max_attempts: settings.max_attempts,
            retry_after: settings.retry_after,
            too_old: too_old(settings, now, issue_made),
            retries_in_run: settings.retries_in_run,
            pause_in_run: settings.retry_in_run,
        }
    }

    /// What becomes of a message deferred now, tried `tried` times before.
    pub fn after_deferral(&self, tried: u32) -> AfterDeferral {
        let tried = tried + 1;
        if tried >= self.max_attempts || self.too_old {
            return AfterDeferral::GiveUp;
        }
        let wait = self.retry_after * 2u32.pow(tried.min(16) - 1);
        AfterDeferral::RetryAt(self.now + chrono::Duration::from_std(wait).unwrap_or_default())
    }

    /// How many times a run tries again what it deferred.
    pub fn retries_in_run(&self) -> u32 {
        self.retries_in_run
    }

    /// The pause before each of those tries (greylisting wants one).
    pub fn pause_in_run(&self) -> Duration {
        self.pause_in_run
    }
}

/// Whether an issue made at `issue_made` is past `delivery.max_age_hours`
/// at `now`: its deferred messages are given up.
pub fn too_old(
    settings: &DeliverySettings,
    now: DateTime<FixedOffset>,
    issue_made: DateTime<FixedOffset>,
) -> bool {
    let age = now - issue_made;
    chrono::Duration::from_std(settings.max_age).is_ok_and(|max| age >= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(time).unwrap()
    }

    fn policy(issue_made: &str) -> RetryPolicy {
        let settings = DeliverySettings {
            max_attempts: 4,
            retry_after: Duration::from_secs(600),
            max_age: Duration::from_secs(72 * 3600),
            ..DeliverySettings::default()
        };
        RetryPolicy::new(&settings, at("2026-06-02T06:00:00Z"), at(issue_made))
    }

    #[test]
    fn a_deferred_message_waits_twice_as_long_each_time_then_is_given_up() {
        let policy = policy("2026-06-01T06:00:00Z");
        let retry_at = |minutes| {
            AfterDeferral::RetryAt(at("2026-06-02T06:00:00Z") + chrono::Duration::minutes(minutes))
        };
        assert_eq!(policy.after_deferral(0), retry_at(10));
        assert_eq!(policy.after_deferral(1), retry_at(20));
        assert_eq!(policy.after_deferral(2), retry_at(40));
        assert_eq!(policy.after_deferral(3), AfterDeferral::GiveUp);
    }

    #[test]
    fn a_deferred_message_of_an_issue_past_its_age_is_given_up_at_once() {
        assert_eq!(
            policy("2026-05-30T06:00:00Z").after_deferral(0),
            AfterDeferral::GiveUp
        );
        // Just under the age: still tried again.
        assert!(matches!(
            policy("2026-05-30T06:00:01Z").after_deferral(0),
            AfterDeferral::RetryAt(_)
        ));
    }
}
