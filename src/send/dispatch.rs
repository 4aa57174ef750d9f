//! Send stage: dispatching a frozen issue — the due deliveries read from
//! the ledger a page at a time (and those frozen beside the send as they
//! are committed), each reader's message rendered and queued to the pool
//! of SMTP sessions, the pool's reports counted into the summary, and what
//! was deferred tried again within the run as the retry policy says. May
//! import audience (readers and their status), content (posts), deliver
//! (the pool, outcomes, the retry policy), render, the ledger's reads and
//! marks, and the send's frozen digests and progress.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};

use super::frozen::FrozenDigest;
use super::journal::{LedgerJournal, mark_of};
use super::newly_frozen::{FreezeProgress, NewlyFrozen};
use super::progress::Progress;
use super::signals;
use super::{SegmentCounts, Summary};
use crate::address::AddressKey;
use crate::audience::subscribers::{Status, Subscriber};
use crate::content::Post;
use crate::deliver::pool::{Job, JobOutcome, Limits, Pool, PoolEnd, RelayStop};
use crate::deliver::retry::RetryPolicy;
use crate::deliver::smtp::{Outcome, SmtpSettings};
use crate::diagnostics::Diagnostic;
use crate::ledger::{Delivery, DeliveryStatus, IssueRecord, Ledger, Mark, Recorder};
use crate::render::Renderer;
use crate::select::Pick;
use crate::send::Run;

/// How a real send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendEnd {
    /// Every due message was tried.
    Done,
    /// The relay could not be reached too many times in a row: the rest is
    /// left for the next run (exit 75).
    Unreachable,
    /// The relay refused the login: fix the configuration (exit 1).
    LoginRefused,
    /// The subscribers file would have emptied the issue; nothing was
    /// recorded or sent (exit 1, `--allow-shrink` confirms).
    AudienceRefused,
    /// The relay refused what it would refuse for any reader: the run
    /// stopped, nobody was suppressed for it (exit 1 for a 5xx, 75 for a
    /// 4xx).
    RelayProblem(RelayStop),
    /// A signal (named) stopped the run: what was not handed over stays
    /// `pending` for the next run (exit 75).
    Interrupted(&'static str),
}

/// Which frozen readers may still be mailed.
pub(super) enum Allowed {
    /// All of them: the issue was frozen by this run.
    All,
    /// Those whose keys are listed (sorted): the subscribers file now.
    Only(Vec<AddressKey>),
}

impl Allowed {
    fn contains(&self, key: AddressKey) -> bool {
        match self {
            Allowed::All => true,
            Allowed::Only(keys) => keys.binary_search_by(|k| k.0.cmp(&key.0)).is_ok(),
        }
    }
}

/// Messages of the run not settled yet.
#[derive(Default)]
pub(super) struct Unsettled {
    /// Handed to the pool and not done yet, with their segment.
    in_flight: HashMap<AddressKey, String>,
    /// Deferred in the current round, for a try within the run.
    deferred: Vec<AddressKey>,
    /// Refused in what may be a streak, with their segment: what they
    /// come to is reported later.
    held: HashMap<AddressKey, String>,
    /// In flight and left `unknown` by an earlier run: counted as resent
    /// when sent.
    resending: HashSet<AddressKey>,
}

/// A send under way: the deliveries rendered into the pool, the pool's
/// reports counted into the summary.
pub(super) struct Dispatch<'r> {
    pub(super) run: &'r Run<'r>,
    /// For reading (the writer has its own connection).
    pub(super) ledger: &'r Ledger,
    pub(super) record: &'r IssueRecord,
    pub(super) posts: &'r [Post],
    pub(super) allowed: Allowed,
    pub(super) renderer: Renderer<'r>,
    pub(super) recorder: Recorder,
    pub(super) policy: RetryPolicy,
    pub(super) summary: Summary,
    pub(super) problems: Vec<Diagnostic>,
    pub(super) progress: Progress,
    pub(super) unsettled: Unsettled,
    /// Readers frozen beside the send, for `progress`.
    pub(super) freeze_progress: &'r FreezeProgress,
    /// `-q`: nothing on stderr but problems.
    pub(super) quiet: bool,
}

/// The deliveries one round sends, in order: `settled` (read without
/// waiting), then — in the first round of a send that freezes readers
/// beside it — those the freeze commits meanwhile.
struct RoundQueue<'l, I> {
    settled: Option<I>,
    newly_frozen: Option<NewlyFrozen<'l>>,
}

impl<'l, I: Iterator<Item = Result<Delivery>>> RoundQueue<'l, I> {
    fn new(settled: I, newly_frozen: Option<NewlyFrozen<'l>>) -> Self {
        RoundQueue {
            settled: Some(settled),
            newly_frozen,
        }
    }

    /// The next delivery to send: the settled ones first, then those
    /// frozen beside the send, waited for as they are committed.
    async fn next(&mut self) -> Option<Result<Delivery>> {
        if let Some(settled) = &mut self.settled {
            match settled.next() {
                Some(delivery) => return Some(delivery),
                None => self.settled = None,
            }
        }
        let next = self.newly_frozen.as_mut()?.next().await;
        if next.is_none() {
            self.newly_frozen = None;
        }
        next
    }
}

impl Dispatch<'_> {
    /// Sends what is due, then — `retries_in_run` times — what was
    /// deferred meanwhile, after a pause (greylisting wants one). The pool
    /// is finished whatever happens: the jobs it holds, whose `sending`
    /// marks are written, go before this returns.
    pub(super) async fn deliver(
        &mut self,
        smtp: SmtpSettings,
        from: lettre::Address,
        limits: &Limits,
        growing: Option<(i64, &FreezeProgress)>,
    ) -> Result<SendEnd> {
        let journal = LedgerJournal {
            marks: self.recorder.marks().clone(),
            policy: self.policy,
            reads: std::sync::Mutex::new(Ledger::open(self.run.root)?),
            quiet: self.quiet,
        };
        let mut pool = Pool::start(smtp, from, limits, std::sync::Arc::new(journal));
        // A signal stops the pool taking messages, whatever it waits for,
        // and the rounds queueing them; what they queued is settled.
        let interrupter = pool.interrupter();
        let stop = tokio::spawn(async move {
            signals::stopped().await;
            interrupter.interrupt();
        });
        let rounds = tokio::select! {
            biased;
            () = signals::stopped() => Ok(()),
            rounds = self.rounds(&mut pool, growing) => rounds,
        };
        let halt = pool.finish(|report| self.count(report)).await;
        stop.abort();
        rounds?;
        if let PoolEnd::RelayProblem(stop) = &halt {
            self.summary.stopped = Some(relay_problem_text(stop));
        }
        // A relay problem or a refused login is what the operator must act
        // on, even when a signal came too.
        if let (Some(signal), false) = (
            signals::received(),
            matches!(halt, PoolEnd::RelayProblem(_) | PoolEnd::LoginRefused),
        ) {
            return Ok(SendEnd::Interrupted(signal));
        }
        Ok(match halt {
            PoolEnd::QueueDone => SendEnd::Done,
            PoolEnd::Unreachable => SendEnd::Unreachable,
            PoolEnd::LoginRefused => SendEnd::LoginRefused,
            PoolEnd::RelayProblem(stop) => SendEnd::RelayProblem(stop),
        })
    }

    /// The rounds of [`deliver`](Dispatch::deliver): the due deliveries —
    /// those recorded before the run, then (`growing`: from which rowid)
    /// those frozen beside it — then the deferred ones again.
    async fn rounds(
        &mut self,
        pool: &mut Pool,
        growing: Option<(i64, &FreezeProgress)>,
    ) -> Result<()> {
        let (ledger, issue) = (self.ledger, self.record.id.as_str());
        let (now, resend_unknown) = (self.run.now, self.run.config.delivery.resend_unknown);
        let due = ledger.due(issue, now, resend_unknown)?;
        let queue = match growing {
            Some((floor, progress)) => {
                let frozen = ledger.due_after(issue, now, resend_unknown, floor);
                RoundQueue::new(due.up_to(floor), Some(NewlyFrozen::new(frozen, progress)))
            }
            None => RoundQueue::new(due, None),
        };
        self.round(pool, queue, false).await?;
        for _ in 0..self.policy.retries_in_run() {
            if !self.retry_deferred(pool).await? {
                break;
            }
        }
        Ok(())
    }

    /// Once the round's messages are settled, what it deferred is tried
    /// again after the pause; false when nothing was (or the pool or the
    /// ledger's writer stopped).
    async fn retry_deferred(&mut self, pool: &mut Pool) -> Result<bool> {
        while !self.unsettled.in_flight.is_empty() {
            match pool.reports.recv().await {
                Some(report) => self.count(report),
                None => break,
            }
        }
        // The deferred marks are read back: they must be written first.
        let keys = std::mem::take(&mut self.unsettled.deferred);
        if keys.is_empty() || pool.stopped() || !self.recorder.marks().flush().await {
            return Ok(false);
        }
        tokio::time::sleep(self.policy.pause_in_run()).await;
        // Read one at a time, as they are sent: a relay may defer everyone.
        let (ledger, issue) = (self.ledger, self.record.id.as_str());
        let again = keys
            .into_iter()
            .filter_map(|key| match ledger.delivery(issue, key) {
                Ok(Some(delivery)) => {
                    (delivery.status == DeliveryStatus::Deferred).then_some(Ok(delivery))
                }
                Ok(None) => None,
                Err(err) => Some(Err(err)),
            });
        self.round(pool, RoundQueue::new(again, None), true).await?;
        Ok(true)
    }

    /// Renders `queue` into the pool as fast as the pool takes messages,
    /// counting the pool's reports in between; `again` when it is what
    /// this run deferred (counted as deferred until tried again).
    async fn round(
        &mut self,
        pool: &mut Pool,
        mut queue: RoundQueue<'_, impl Iterator<Item = Result<Delivery>>>,
        again: bool,
    ) -> Result<()> {
        let mut pending: Option<(Job, String)> = None;
        loop {
            while let Ok(report) = pool.reports.try_recv() {
                self.count(report);
            }
            if self.recorder.stopped() {
                break;
            }
            if pending.is_none() && !pool.stopped() {
                pending = self.next_job(&mut queue, again).await?;
            }
            let Some((job, segment)) = pending.take() else {
                break;
            };
            tokio::select! {
                biased;
                report = pool.reports.recv() => {
                    pending = Some((job, segment));
                    if let Some(report) = report {
                        self.count(report);
                    }
                }
                permit = pool.jobs.reserve() => match permit {
                    Ok(permit) => {
                        self.unsettled.in_flight.insert(job.key, segment);
                        pool.submit(permit, job);
                    }
                    Err(_) => break,
                },
            }
        }
        Ok(())
    }

    /// The next delivery of `queue` still to be mailed, rendered; readers
    /// no longer allowed are recorded `suppressed` and passed over.
    async fn next_job(
        &mut self,
        queue: &mut RoundQueue<'_, impl Iterator<Item = Result<Delivery>>>,
        again: bool,
    ) -> Result<Option<(Job, String)>> {
        while let Some(delivery) = queue.next().await {
            let delivery = delivery?;
            self.progress.frozen_so_far(self.freeze_progress.frozen());
            if again {
                let counts = self.counts(&delivery.segment);
                counts.deferred = counts.deferred.saturating_sub(1);
            }
            // A reader already handed to the pool is not queued again.
            if self.unsettled.in_flight.contains_key(&delivery.key) {
                continue;
            }
            if !self.allowed.contains(delivery.key) {
                self.recorder.marks().record(delivery.key, Mark::Suppressed);
                self.counts(&delivery.segment).suppressed += 1;
                continue;
            }
            let unknown = delivery.status == DeliveryStatus::Unknown;
            if let Some(job) = self.job_of(delivery)? {
                if unknown {
                    self.unsettled.resending.insert(job.0.key);
                }
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// `delivery`'s message rendered from its frozen digest, as a job for
    /// the pool with its segment; `None` when it cannot be rendered (the
    /// problem is reported once).
    fn job_of(&mut self, delivery: Delivery) -> Result<Option<(Job, String)>> {
        let config = self.run.config;
        let reader = FrozenDigest::of(&delivery)?;
        let segment = config
            .segments
            .iter()
            .find(|s| s.id == delivery.segment)
            .or(config.segments.last())
            .context("no segment to render with")?;
        let subscriber = Subscriber {
            email: delivery.address.clone(),
            name: reader.name,
            segment: Some(delivery.segment.clone()),
            interests: reader.interests,
            status: Status::Active,
            timezone: None,
            locale: None,
            personalize: reader.personalize,
            attrs: reader.attrs,
            line: 0,
        };
        let picks: Vec<Pick> = reader
            .picks
            .into_iter()
            .filter_map(|p| {
                let post = self.posts.iter().find(|post| post.slug == p.slug)?;
                Some(Pick {
                    post,
                    score: p.score,
                    reason: p.reason,
                })
            })
            .collect();
        let mut email = match self.renderer.email(segment, &subscriber, &picks) {
            Ok(email) => email,
            Err(problem) => {
                if !self.problems.contains(&problem) {
                    self.problems.push(problem);
                }
                return Ok(None);
            }
        };
        email.message_id = delivery.message_id;
        let bytes = self.renderer.eml(&email, self.run.now)?;
        let to = delivery
            .address
            .parse()
            .with_context(|| format!("cannot address {}", delivery.address))?;
        let job = Job::new(delivery.key, to, bytes, delivery.attempts);
        Ok(Some((job, delivery.segment)))
    }

    /// Counts what became of a message (its journal recorded it).
    fn count(&mut self, report: JobOutcome) {
        let unsettled = &mut self.unsettled;
        if report.held {
            if let Some(segment) = unsettled.in_flight.remove(&report.key) {
                unsettled.held.insert(report.key, segment);
            }
            return;
        }
        self.progress.step();
        let Some(segment) = (unsettled.in_flight.remove(&report.key))
            .or_else(|| unsettled.held.remove(&report.key))
        else {
            return;
        };
        let mark = mark_of(&self.policy, report.tried, "", &report.outcome);
        if let Some(Mark::Deferred(..)) = mark {
            self.unsettled.deferred.push(report.key);
        }
        if self.unsettled.resending.remove(&report.key) && matches!(mark, Some(Mark::Sent(_))) {
            self.summary.resent += 1;
        }
        let counts = self.counts(&segment);
        match mark {
            Some(Mark::Sent(_)) => counts.sent += 1,
            Some(Mark::Failed { .. }) => counts.failed += 1,
            Some(Mark::Pending(_) | Mark::Requeued | Mark::Deferred(..)) => counts.deferred += 1,
            Some(Mark::Sending | Mark::Suppressed) => {}
            // Refused by the writer as the address was suppressed (or the
            // writer stopped, and the run with it).
            None if report.outcome == Outcome::Withheld => counts.suppressed += 1,
            // Left `sending`: recovered as `unknown` at the end.
            None => {}
        }
    }

    /// The counts of `segment` in the summary.
    fn counts(&mut self, segment: &str) -> &mut SegmentCounts {
        if !self.summary.segments.contains_key(segment) {
            self.summary
                .segments
                .insert(segment.to_string(), SegmentCounts::default());
        }
        self.summary
            .segments
            .get_mut(segment)
            .expect("inserted above")
    }
}

/// What the operator reads of the relay problem that stopped a run.
pub fn relay_problem_text(stop: &RelayStop) -> String {
    let whose = match stop.streak {
        Some(_) => "the relay's, not the readers' (delivery.refusal_streak)",
        None => "the relay's, not the reader's",
    };
    format!(
        "the relay refused the message to {}: {}; a problem {whose}: the run stopped, nobody was suppressed for it, and the messages not sent wait for the next run",
        stop.to, stop.problem
    )
}
