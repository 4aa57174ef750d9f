//! Deliver stage: the refusal streak. Permanent refusals of different
//! readers in a row with the same reply code and enhanced code (`550
//! 5.1.1` to everyone) more likely say that the relay refuses every
//! reader than that every one of them bounced. So each such refusal is
//! held back — its message recorded `pending`, nobody suppressed — until
//! the streak is decided: a message the relay takes, or a different
//! refusal, breaks it, and the refusals held stand (they bounce); reaching
//! `delivery.refusal_streak` trips it, and they are all the relay's
//! problem. A deferral, a dropped connection or a withheld message neither
//! breaks nor extends a streak. Pure: may import the SMTP outcomes and std.

use super::smtp::{Outcome, refusal_code};

/// Identical permanent refusals in a row, held until decided; `T` is what
/// each refusal was the outcome of (the pool's job).
#[derive(Debug)]
pub struct RefusalStreak<T> {
    /// How many trip it; 0: never (every refusal stands at once).
    limit: usize,
    /// The refusal code of the streak held, and its refusals.
    code: Option<String>,
    held: Vec<(T, Outcome)>,
    /// The code of a streak that tripped: later refusals alike are the
    /// relay's problem at once.
    tripped: Option<String>,
}

/// What becomes of outcomes after [`RefusalStreak::observe`].
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<T> {
    /// Record these as they are, in order: refusals released by a broken
    /// streak, then the outcome observed unless it was held.
    Record(Vec<(T, Outcome)>),
    /// The streak tripped: every refusal in it (the one observed last),
    /// all alike (`code`), is the relay's problem.
    Tripped {
        refusals: Vec<(T, Outcome)>,
        code: String,
    },
}

impl<T> RefusalStreak<T> {
    /// A streak that trips at `limit` refusals alike (0: never).
    pub fn new(limit: usize) -> RefusalStreak<T> {
        RefusalStreak {
            limit,
            code: None,
            held: Vec::new(),
            tripped: None,
        }
    }

    /// Whether [`observe`](RefusalStreak::observe) holds `outcome` back
    /// (then its message is recorded `pending` meanwhile).
    pub fn holds(&self, outcome: &Outcome) -> bool {
        self.limit > 0 && refusal(outcome).is_some()
    }

    /// Takes in the outcome of the next message, to `item`.
    pub fn observe(&mut self, item: T, outcome: Outcome) -> Decision<T> {
        if self.limit == 0 {
            return Decision::Record(vec![(item, outcome)]);
        }
        let Some(code) = refusal(&outcome).map(refusal_code) else {
            let mut record = match outcome {
                // Taken: whatever the streak was, it is broken.
                Outcome::Sent(_) => self.release(),
                _ => Vec::new(),
            };
            record.push((item, outcome));
            return Decision::Record(record);
        };
        if self.tripped.as_ref() == Some(&code) {
            let refusals = vec![(item, outcome)];
            return Decision::Tripped { refusals, code };
        }
        let released = if self.code.as_ref() == Some(&code) {
            Vec::new()
        } else {
            let released = self.release();
            self.code = Some(code.clone());
            released
        };
        self.held.push((item, outcome));
        if self.held.len() >= self.limit {
            self.code = None;
            self.tripped = Some(code.clone());
            let refusals = std::mem::take(&mut self.held);
            return Decision::Tripped { refusals, code };
        }
        Decision::Record(released)
    }

    /// The refusals held, undecided, taking them out (the run is over).
    pub fn undecided(&mut self) -> Vec<(T, Outcome)> {
        self.release()
    }

    fn release(&mut self) -> Vec<(T, Outcome)> {
        self.code = None;
        std::mem::take(&mut self.held)
    }
}

/// The reply of a permanent refusal of a reader, which a streak is made of.
fn refusal(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Failed(reply) | Outcome::Refused(reply) => Some(reply),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounce(who: &str) -> Outcome {
        Outcome::Failed(format!("550 5.1.1 <{who}@example.com>: no such user"))
    }

    fn recorded(decision: Decision<&'static str>) -> Vec<&'static str> {
        match decision {
            Decision::Record(record) => record.into_iter().map(|(who, _)| who).collect(),
            Decision::Tripped { .. } => panic!("tripped: {decision:?}"),
        }
    }

    #[test]
    fn refusals_alike_up_to_the_limit_trip_and_are_all_handed_back() {
        let mut streak = RefusalStreak::new(3);
        assert!(streak.holds(&bounce("ana")));
        assert!(recorded(streak.observe("ana", bounce("ana"))).is_empty());
        // A deferral and a dropped connection neither break nor extend it.
        let later = Outcome::Deferred("451 4.3.0 later".into());
        assert!(!streak.holds(&later));
        assert_eq!(recorded(streak.observe("bo", later)), ["bo"]);
        let lost = Outcome::NotSent("connection lost".into());
        assert_eq!(recorded(streak.observe("cy", lost)), ["cy"]);
        assert!(recorded(streak.observe("di", bounce("di"))).is_empty());
        match streak.observe("ed", bounce("ed")) {
            Decision::Tripped { refusals, code } => {
                let who: Vec<_> = refusals.iter().map(|(who, _)| *who).collect();
                assert_eq!(who, ["ana", "di", "ed"]);
                assert_eq!(code, "550 5.1.1");
            }
            other => panic!("{other:?}"),
        }
        // Once tripped, a refusal alike is the relay's at once; another
        // starts a streak of its own.
        assert!(matches!(
            streak.observe("fi", bounce("fi")),
            Decision::Tripped { refusals, .. } if refusals.len() == 1
        ));
        let full = Outcome::Refused("552 5.2.2 mailbox full".into());
        assert!(recorded(streak.observe("gu", full)).is_empty());
        assert_eq!(streak.undecided().len(), 1);
    }

    #[test]
    fn a_message_taken_or_a_different_refusal_breaks_the_streak_and_its_refusals_stand() {
        let mut streak = RefusalStreak::new(3);
        assert!(recorded(streak.observe("ana", bounce("ana"))).is_empty());
        assert!(recorded(streak.observe("bo", bounce("bo"))).is_empty());
        let sent = Outcome::Sent("250 ok".into());
        assert_eq!(recorded(streak.observe("cy", sent)), ["ana", "bo", "cy"]);
        assert!(recorded(streak.observe("di", bounce("di"))).is_empty());
        let disabled = Outcome::Failed("550 5.2.1 mailbox disabled".into());
        assert_eq!(recorded(streak.observe("ed", disabled)), ["di"]);
        assert_eq!(recorded(streak.observe("fi", bounce("fi"))), ["ed"]);
        assert!(recorded(streak.observe("gu", bounce("gu"))).is_empty());
        let undecided: Vec<_> = streak.undecided().into_iter().map(|(who, _)| who).collect();
        assert_eq!(undecided, ["fi", "gu"]);
    }

    #[test]
    fn a_limit_of_0_holds_nothing() {
        let mut streak = RefusalStreak::new(0);
        assert!(!streak.holds(&bounce("ana")));
        for who in ["ana", "bo", "cy", "di"] {
            assert_eq!(recorded(streak.observe(who, bounce(who))), [who]);
        }
    }
}
