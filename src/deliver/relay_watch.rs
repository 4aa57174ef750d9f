//! Deliver stage: the pool's watch for relay problems — the first refusal
//! that is the relay's and not a reader's ([`Outcome::RelayProblem`]), or
//! a [`RefusalStreak`] that tripped, stops the pool, and is kept to say
//! why; every refusal of a tripped streak is the relay's problem too (its
//! message goes back to `pending`, its reader is not suppressed). May
//! import the SMTP outcomes, the streak and std.

use std::sync::Mutex;

use super::smtp::{Outcome, RelayProblem};
use super::streak::{Decision, RefusalStreak};

/// The relay problem that stopped the pool: the first one met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStop {
    /// The reader whose message got it (the last of a streak).
    pub to: String,
    pub problem: RelayProblem,
    /// How many readers in a row were refused alike, for a streak.
    pub streak: Option<usize>,
}

/// Something refused: the pool's job, as the watch needs to see it.
pub trait Addressed {
    /// The reader it was for.
    fn to(&self) -> String;
}

/// Shared by the pool's workers.
#[derive(Debug)]
pub struct RelayWatch<T> {
    stop: Mutex<Option<RelayStop>>,
    streak: Mutex<RefusalStreak<T>>,
}

impl<T: Addressed> RelayWatch<T> {
    /// A watch whose streak trips at `refusal_streak` (0: never).
    pub fn new(refusal_streak: usize) -> RelayWatch<T> {
        RelayWatch {
            stop: Mutex::new(None),
            streak: Mutex::new(RefusalStreak::new(refusal_streak)),
        }
    }

    /// Takes in what became of `item`; returns what to record now, and
    /// whether the pool must stop. A refusal the streak holds goes to
    /// `held` first (the streak keeps it until decided).
    pub fn watch(
        &self,
        item: T,
        outcome: Outcome,
        held: impl FnOnce(&T, &Outcome),
    ) -> (Vec<(T, Outcome)>, bool) {
        if let Outcome::RelayProblem(problem) = &outcome {
            self.note(item.to(), problem.clone(), None);
            return (vec![(item, outcome)], true);
        }
        let mut streak = self.streak.lock().expect("the refusal streak");
        if streak.holds(&outcome) {
            held(&item, &outcome);
        }
        match streak.observe(item, outcome) {
            Decision::Record(record) => (record, false),
            Decision::Tripped { refusals, code } => {
                let problem = RelayProblem {
                    reply: format!(
                        "{} readers in a row refused alike ({code}), the last with: {}",
                        refusals.len(),
                        refusals.last().map_or("", |(_, outcome)| reply_of(outcome)),
                    ),
                    at: "RCPT TO or the end of the message",
                    permanent: true,
                };
                if let Some((last, _)) = refusals.last() {
                    self.note(last.to(), problem.clone(), Some(refusals.len()));
                }
                let restored = refusals
                    .into_iter()
                    .map(|(item, _)| (item, Outcome::RelayProblem(problem.clone())))
                    .collect();
                (restored, true)
            }
        }
    }

    /// The refusals still held as the pool ends: they stand, unless the
    /// pool `stopped` before their streak was decided — then their
    /// messages go again next run.
    pub fn undecided(&self, stopped: bool) -> Vec<(T, Outcome)> {
        let held = self.streak.lock().expect("the refusal streak").undecided();
        if !stopped {
            return held;
        }
        held.into_iter()
            .map(|(item, outcome)| {
                let why = format!(
                    "{}; held back as one of a streak of refusals alike, which the run stopped before deciding",
                    reply_of(&outcome)
                );
                (item, Outcome::NotSent(why))
            })
            .collect()
    }

    /// Whether a relay problem was met.
    pub fn stopped(&self) -> bool {
        self.stop.lock().expect("the relay stop").is_some()
    }

    /// The relay problem that stopped the pool, if one did.
    pub fn stop(&self) -> Option<RelayStop> {
        self.stop.lock().expect("the relay stop").clone()
    }

    /// Keeps the first relay problem.
    fn note(&self, to: String, problem: RelayProblem, streak: Option<usize>) {
        let mut stop = self.stop.lock().expect("the relay stop");
        if stop.is_none() {
            *stop = Some(RelayStop {
                to,
                problem,
                streak,
            });
        }
    }
}

/// The reply text of a refusal.
fn reply_of(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Failed(reply) | Outcome::Refused(reply) => reply,
        _ => "",
    }
}
