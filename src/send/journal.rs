//! Send stage: what becomes of a message's outcome in the ledger — the mark
//! the retry policy decides — and the pool's journal that records it from
//! the sessions, re-reads the suppression list before each message goes,
//! and says on stderr when the relay slowed the run down. May import
//! deliver (outcomes, the pool's journal, the retry policy) and the
//! ledger's marks and suppression list.

use std::sync::Mutex;
use std::time::Duration;

use crate::deliver::pool::{Job, Journal};
use crate::deliver::retry::{AfterDeferral, RetryPolicy};
use crate::deliver::smtp::Outcome;
use crate::ledger::{Ledger, Mark, RecorderHandle};

/// The mark for `outcome` of a message to `to` tried `tried` times before:
/// the same decision for the session that records it and for the summary
/// that counts it. `None` when there is nothing to write (unknown: left
/// `sending`; withheld: recorded as it was refused).
pub(super) fn mark_of(
    policy: &RetryPolicy,
    tried: u32,
    to: &str,
    outcome: &Outcome,
) -> Option<Mark> {
    Some(match outcome {
        Outcome::Sent(reply) => Mark::Sent(reply.clone()),
        Outcome::Deferred(reply) => match policy.after_deferral(tried) {
            AfterDeferral::GiveUp => Mark::Failed {
                reply: reply.clone(),
                bounced: None,
            },
            AfterDeferral::RetryAt(next) => Mark::Deferred(reply.clone(), next),
        },
        Outcome::Failed(reply) => Mark::Failed {
            reply: reply.clone(),
            bounced: Some(to.to_string()),
        },
        // Failed for this issue; the address stays mailable.
        Outcome::Refused(reply) => Mark::Failed {
            reply: reply.clone(),
            bounced: None,
        },
        // Not the reader's doing: the message waits for the next run, and
        // the attempt its `sending` mark counted is taken back.
        Outcome::RelayProblem(problem) => Mark::Pending(format!("relay problem: {problem}")),
        Outcome::NotSent(reply) => Mark::Pending(reply.clone()),
        Outcome::NotOffered(_) => Mark::Requeued,
        Outcome::Withheld | Outcome::Unknown(_) => return None,
    })
}

/// The pool's journal: marks straight from the sessions to the ledger's
/// writer, so a session waits for the disk and nothing else; and a
/// connection of its own to read the suppression list as each message
/// goes.
pub(super) struct LedgerJournal {
    pub(super) marks: RecorderHandle,
    pub(super) policy: RetryPolicy,
    pub(super) reads: Mutex<Ledger>,
    /// `-q`: say nothing.
    pub(super) quiet: bool,
}

impl Journal for LedgerJournal {
    fn sending(&self, job: &Job, answer: tokio::sync::oneshot::Sender<bool>) {
        self.marks.sending(job.key, answer);
    }

    fn settled(&self, job: &Job, outcome: &Outcome) {
        if let Some(mark) = mark_of(&self.policy, job.tried, job.to.as_ref(), outcome) {
            self.marks.record(job.key, mark);
        }
    }

    fn held(&self, job: &Job, outcome: &Outcome) {
        // Back to `pending` (no attempt, nobody suppressed) until the
        // streak is decided: a crash meanwhile leaves it to send again.
        let reply = match outcome {
            Outcome::Failed(reply) | Outcome::Refused(reply) => reply.as_str(),
            _ => "",
        };
        let why =
            format!("{reply} (held back: one of a streak of refusals alike, not decided yet)");
        self.marks.record(job.key, Mark::Pending(why));
    }

    fn hurry(&self) {
        self.marks.hurry();
    }

    fn withdrawn(&self, job: &Job) -> bool {
        // A list that cannot be read withdraws nothing: the `sending` mark
        // checked it as the job was queued.
        let suppressed = self
            .reads
            .lock()
            .is_ok_and(|ledger| ledger.is_suppressed(job.key).unwrap_or(false));
        if suppressed {
            self.marks.record(job.key, Mark::Suppressed);
        }
        suppressed
    }

    fn slowed(&self, reply: &str, interval: Duration, sessions: usize) {
        if !self.quiet {
            let again = self.policy.retries_in_run() > 0;
            eprintln!("{}", slowed_line(reply, interval, sessions, again));
        }
    }
}

/// What the cron log says when the relay slowed the run down; `again`:
/// what it deferred is tried again within the run.
fn slowed_line(reply: &str, interval: Duration, sessions: usize, again: bool) -> String {
    let per_minute = 60.0 / interval.as_secs_f64().max(f64::EPSILON);
    let connections = if sessions == 1 {
        "1 connection".to_string()
    } else {
        format!("{sessions} connections")
    };
    let retried = if again {
        ", and what it deferred is tried again in this run"
    } else {
        ""
    };
    format!(
        "send: the relay asks to slow down ({reply}); going on at {per_minute:.0} messages a minute at most, over {connections}{retried}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slow_down_is_said_with_the_reply_and_the_new_pace() {
        assert_eq!(
            slowed_line(
                "transient error (421): 4.7.0 too many messages",
                Duration::from_millis(500),
                2,
                true
            ),
            "send: the relay asks to slow down (transient error (421): 4.7.0 too many messages); going on at 120 messages a minute at most, over 2 connections, and what it deferred is tried again in this run"
        );
    }
}
