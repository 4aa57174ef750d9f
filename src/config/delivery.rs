//! Config stage: `delivery:` — how `gazette send` talks to the relay and
//! when it gives up, raw and checked.
//!
//! Imports: nothing of the crate.

use std::time::Duration;

use serde::Deserialize;

/// `delivery:` — the relay and the limits of a send.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// `smtp://host:port`, `smtp://host:587?tls=required`, `smtps://host`;
    /// `GAZETTE_SMTP_URL` and `--smtp` override it. None: dry runs only.
    pub smtp: Option<String>,
    /// Connections used at once.
    pub concurrency: usize,
    /// Most messages per second and per hour, if limited.
    pub per_second: Option<f64>,
    pub per_hour: Option<u32>,
    /// How long to wait for the server at each step.
    pub timeout: Duration,
    /// Attempts of a deferred (4xx) message before it counts as failed.
    pub max_attempts: u32,
    /// The wait before the first retry of a deferred message; it doubles.
    pub retry_after: Duration,
    /// Second tries of deferred messages within the run, and the pause
    /// before each (greylisting wants one).
    pub retries_in_run: u32,
    pub retry_in_run: Duration,
    /// How long after its issue was made a deferred message is still
    /// tried; after that it counts as failed.
    pub max_age: Duration,
    /// Connection failures in a row after which the run stops (exit 75).
    pub max_connection_failures: u32,
    /// Whether messages whose 250 was lost in flight are sent again (the
    /// default); false is the explicit at-most-once choice.
    pub resend_unknown: bool,
    /// Permanent refusals alike (same reply and enhanced code) of
    /// different readers in a row taken as a relay problem; 0: never.
    pub refusal_streak: usize,
}

impl Default for DeliverySettings {
    /// The documented defaults (docs/src/reference/config.md).
    fn default() -> Self {
        DeliverySettings {
            smtp: None,
            concurrency: 4,
            per_second: None,
            per_hour: None,
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            retry_after: Duration::from_secs(15 * 60),
            retries_in_run: 1,
            retry_in_run: Duration::from_secs(60),
            max_age: Duration::from_secs(72 * 3600),
            max_connection_failures: 5,
            resend_unknown: true,
            refusal_streak: 10,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDelivery {
    smtp: Option<String>,
    concurrency: usize,
    per_second: Option<f64>,
    per_hour: Option<u32>,
    timeout_seconds: u64,
    max_attempts: u32,
    retry_after_minutes: u64,
    retries_in_run: u32,
    retry_in_run_seconds: u64,
    max_age_hours: u64,
    max_connection_failures: u32,
    resend_unknown: bool,
    refusal_streak: usize,
}

impl Default for RawDelivery {
    fn default() -> Self {
        let d = DeliverySettings::default();
        RawDelivery {
            smtp: None,
            concurrency: d.concurrency,
            per_second: None,
            per_hour: None,
            timeout_seconds: d.timeout.as_secs(),
            max_attempts: d.max_attempts,
            retry_after_minutes: d.retry_after.as_secs() / 60,
            retries_in_run: d.retries_in_run,
            retry_in_run_seconds: d.retry_in_run.as_secs(),
            max_age_hours: d.max_age.as_secs() / 3600,
            max_connection_failures: d.max_connection_failures,
            resend_unknown: d.resend_unknown,
            refusal_streak: d.refusal_streak,
        }
    }
}

impl RawDelivery {
    pub fn check(self, fail: &mut impl FnMut(&str, String)) -> DeliverySettings {
        if !(1..=64).contains(&self.concurrency) {
            fail(
                "delivery.concurrency",
                "concurrency must be from 1 to 64 connections".into(),
            );
        }
        if self.per_second.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            fail(
                "delivery.per_second",
                "per_second must be a number above 0".into(),
            );
        }
        if self.per_hour == Some(0) {
            fail("delivery.per_hour", "per_hour must be at least 1".into());
        }
        if self.timeout_seconds == 0 {
            fail(
                "delivery.timeout_seconds",
                "timeout_seconds must be at least 1".into(),
            );
        }
        if self.max_attempts == 0 {
            fail(
                "delivery.max_attempts",
                "max_attempts must be at least 1".into(),
            );
        }
        if self.retries_in_run > 5 || self.retry_in_run_seconds > 900 {
            fail(
                "delivery.retries_in_run",
                "at most 5 retries within a run, at most 900 seconds apart (later runs retry too)"
                    .into(),
            );
        }
        if self.max_age_hours == 0 {
            fail(
                "delivery.max_age_hours",
                "max_age_hours must be at least 1".into(),
            );
        }
        if self.max_connection_failures == 0 {
            fail(
                "delivery.max_connection_failures",
                "max_connection_failures must be at least 1".into(),
            );
        }
        if self.refusal_streak == 1 {
            fail(
                "delivery.refusal_streak",
                "refusal_streak must be 0 (off) or at least 2: one refusal is no streak".into(),
            );
        }
        if let Some(text) = &self.smtp {
            match url::Url::parse(text.trim()) {
                Ok(url) if url.password().is_some() => fail(
                    "delivery.smtp",
                    "put the SMTP password in GAZETTE_SMTP_PASSWORD, not in gazette.yaml".into(),
                ),
                Ok(url) if matches!(url.scheme(), "smtp" | "smtps") => {}
                _ => fail(
                    "delivery.smtp",
                    format!(
                        "smtp must be a URL such as smtp://localhost:1025 or smtps://mail.example.com, got '{text}'"
                    ),
                ),
            }
        }
        DeliverySettings {
            smtp: self.smtp,
            concurrency: self.concurrency,
            per_second: self.per_second,
            per_hour: self.per_hour,
            timeout: Duration::from_secs(self.timeout_seconds),
            max_attempts: self.max_attempts,
            retry_after: Duration::from_secs(self.retry_after_minutes * 60),
            retries_in_run: self.retries_in_run,
            retry_in_run: Duration::from_secs(self.retry_in_run_seconds),
            max_age: Duration::from_secs(self.max_age_hours.saturating_mul(3600)),
            max_connection_failures: self.max_connection_failures,
            resend_unknown: self.resend_unknown,
            refusal_streak: self.refusal_streak,
        }
    }
}
