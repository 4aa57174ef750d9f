//! Send stage: what becomes of a message's outcome in the ledger — the mark
//! the retry policy decides — and the pool's journal that records it from
//! the sessions. May import deliver (outcomes, the pool's journal, the
//! retry policy) and the ledger's marks.

use crate::deliver::pool::{Job, Journal};
use crate::deliver::retry::{AfterDeferral, RetryPolicy};
use crate::deliver::smtp::Outcome;
use crate::ledger::{Mark, RecorderHandle};

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
        Outcome::Withheld | Outcome::Unknown(_) => return None,
    })
}

/// The pool's journal: marks straight from the sessions to the ledger's
/// writer, so a session waits for the disk and nothing else.
pub(super) struct LedgerJournal {
    pub(super) marks: RecorderHandle,
    pub(super) policy: RetryPolicy,
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
}
