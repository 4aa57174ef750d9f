//! Deliver stage: a pool of SMTP sessions fed from a bounded queue.
//!
//! Each worker owns one connection, opens it when it first needs it and
//! again when the server closed it. A job's `sending` mark is asked of the
//! caller's [`Journal`] as the job is queued, so it is usually written by
//! the time a worker takes the job; the message itself goes only once the
//! answer came: the record is durable before the message goes. With a
//! server that offers PIPELINING, a worker runs a train: each message's
//! data goes in one write with the next message's envelope (MAIL, RCPT,
//! DATA), one round trip a message. Outcomes go to the journal, then to
//! the caller as [`JobOutcome`]s. The queue is bounded: a caller that renders
//! faster than the relay takes messages waits (back-pressure) instead of
//! buffering, and a crash leaves at most the queued jobs and two per
//! connection marked `sending` (one of which may have been handed over).
//! After too many connection failures in a row the pool stops taking work
//! and says so; so it does at the first relay problem (a refusal that is
//! the relay's, not a reader's, or a streak of identical refusals: see
//! `deliver::streak`). Once [interrupted](Interrupter::interrupt) (a
//! signal), it takes no new message either: a train's message whose
//! envelope the server took goes alone, as the transaction under way, and
//! every job still queued is settled not sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use lettre::Address;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::pace::Pace;
pub use super::relay_watch::RelayStop;
use super::relay_watch::RelayWatch;
use super::smtp::{LoginRefused, Outcome, SmtpSession, SmtpSettings, asks_to_slow_down};
use crate::address::AddressKey;

/// How many jobs the queue holds for each session.
const QUEUED_PER_SESSION: usize = 4;

/// One message to send.
#[derive(Debug)]
pub struct Job {
    pub key: AddressKey,
    pub to: Address,
    pub bytes: Vec<u8>,
    /// How many times it was tried before (the caller's count).
    pub tried: u32,
    /// The answer to its `sending` mark, asked for as it was queued.
    permit: Option<oneshot::Receiver<bool>>,
}

impl Job {
    /// A job to queue with [`Pool::submit`].
    pub fn new(key: AddressKey, to: Address, bytes: Vec<u8>, tried: u32) -> Job {
        Job {
            key,
            to,
            bytes,
            tried,
            permit: None,
        }
    }
}

impl super::relay_watch::Addressed for Job {
    fn to(&self) -> String {
        self.to.to_string()
    }
}

/// Where workers record what they do — the caller's ledger — from their
/// own threads, in the order they do it.
pub trait Journal: Send + Sync {
    /// `job`'s transaction starts: record it, then answer true on `answer`
    /// to send it, false (or nothing) to withhold it.
    fn sending(&self, job: &Job, answer: oneshot::Sender<bool>);
    /// What became of `job`'s message, before the worker takes another.
    fn settled(&self, job: &Job, outcome: &Outcome);
    /// `job`'s message was refused (`outcome`) in what may be a streak of
    /// refusals alike: record it as not sent until
    /// [`settled`](Journal::settled) says what it came to.
    fn held(&self, job: &Job, outcome: &Outcome);
    /// A worker waits for a `sending` mark: write what is asked now.
    fn hurry(&self);
    /// Whether `job`'s reader was suppressed since its `sending` mark was
    /// asked for (an unsubscribe landed while the job was queued): then the
    /// journal records the delivery suppressed, and the message does not
    /// go. Asked just before the message's MAIL FROM is written.
    fn withdrawn(&self, job: &Job) -> bool;
    /// The relay answered `reply`, asking to slow down: the pool now sends
    /// a message every `interval` at most, over `sessions` connections.
    fn slowed(&self, reply: &str, interval: Duration, sessions: usize);
}

/// What became of one job's message, for the caller.
#[derive(Debug)]
pub struct JobOutcome {
    pub key: AddressKey,
    pub tried: u32,
    pub outcome: Outcome,
    /// Held back in a streak of refusals alike: what it comes to is
    /// reported later.
    pub held: bool,
}

/// How a pool's run ended: its queue done, or why it stopped before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEnd {
    /// Every queued job was settled.
    QueueDone,
    /// Connection trouble too many times in a row.
    Unreachable,
    /// The relay refused the login.
    LoginRefused,
    /// The relay refused what it would refuse for any reader.
    RelayProblem(RelayStop),
}

/// How hard the pool may push.
#[derive(Debug, Clone)]
pub struct Limits {
    pub concurrency: usize,
    /// The shortest time between two messages ([`super::pace::interval`]).
    pub interval: Option<Duration>,
    pub max_connection_failures: u32,
    /// Permanent refusals alike in a row taken as a relay problem (0: off).
    pub refusal_streak: usize,
}

/// Shared by the workers.
struct Shared {
    settings: SmtpSettings,
    from: Address,
    jobs: Mutex<mpsc::Receiver<Job>>,
    journal: Arc<dyn Journal>,
    reports: mpsc::UnboundedSender<JobOutcome>,
    pace: Pace,
    failures: AtomicU32,
    max_failures: u32,
    stopped: AtomicBool,
    /// Set with `stopped` when the relay refused the login.
    login_refused: AtomicBool,
    /// Relay problems and the refusal streak; the first problem stops
    /// the pool.
    relay: RelayWatch<Job>,
    /// How many workers may keep a connection: fewer once the relay asked
    /// to slow down.
    sessions_allowed: AtomicUsize,
    /// How many workers are still at work.
    workers_left: AtomicUsize,
    /// Set when the run is stopping: no new message is taken.
    interrupted: AtomicBool,
    /// Woken when `interrupted` or `stopped` is set.
    interruption: tokio::sync::Notify,
}

/// What the job in hand was not sent for, when the run is interrupted.
const INTERRUPTED: &str = "the run was stopped before this message was handed over";

/// Stops a pool taking new messages, from anywhere (see [`Pool::interrupter`]).
#[derive(Clone)]
pub struct Interrupter(Arc<Shared>);

impl Interrupter {
    /// No new message is taken from now on: each job still queued is
    /// settled [`Outcome::NotOffered`]; transactions under way finish.
    pub fn interrupt(&self) {
        self.0.interrupted.store(true, Ordering::SeqCst);
        self.0.interruption.notify_waiters();
    }
}

/// A running pool: send jobs in, read reports out.
pub struct Pool {
    pub jobs: mpsc::Sender<Job>,
    pub reports: mpsc::UnboundedReceiver<JobOutcome>,
    shared: Arc<Shared>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Pool {
    /// Starts the workers (connections open on first use).
    pub fn start(
        settings: SmtpSettings,
        from: Address,
        limits: &Limits,
        journal: Arc<dyn Journal>,
    ) -> Pool {
        // Each queued job has its `sending` mark asked for: the queue is as
        // long as lets a mark be written (an fsync) before its job is
        // taken, and no longer (a crash leaves the queue `sending`).
        let (jobs_tx, jobs_rx) = mpsc::channel(limits.concurrency * QUEUED_PER_SESSION);
        // Never full: a worker does not wait for the caller with a server
        // waiting on it. At most the queued and in-flight jobs report.
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            settings,
            from,
            jobs: Mutex::new(jobs_rx),
            journal,
            reports: reports_tx,
            pace: Pace::new(limits.interval),
            failures: AtomicU32::new(0),
            max_failures: limits.max_connection_failures,
            stopped: AtomicBool::new(false),
            login_refused: AtomicBool::new(false),
            relay: RelayWatch::new(limits.refusal_streak),
            sessions_allowed: AtomicUsize::new(limits.concurrency),
            workers_left: AtomicUsize::new(limits.concurrency),
            interrupted: AtomicBool::new(false),
            interruption: tokio::sync::Notify::new(),
        });
        let workers = (0..limits.concurrency)
            .map(|_| tokio::spawn(work(shared.clone())))
            .collect();
        Pool {
            jobs: jobs_tx,
            reports: reports_rx,
            shared,
            workers,
        }
    }

    /// Queues `job` in the place `slot` reserved, asking for its `sending`
    /// mark now: written while the job waits, the mark is seldom waited for.
    /// Under a rate limit, where a job may wait long, the mark is asked
    /// for when a worker takes it instead.
    pub fn submit(&self, slot: mpsc::Permit<'_, Job>, mut job: Job) {
        if !self.shared.pace.limited() {
            job.permit = Some(ask(&self.shared, &mut job));
        }
        slot.send(job);
    }

    /// What stops this pool taking new messages when the run is stopping.
    pub fn interrupter(&self) -> Interrupter {
        Interrupter(self.shared.clone())
    }

    /// Whether the pool gave up after connection failures in a row.
    pub fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Closes the queue and waits for the workers, passing their last
    /// reports to `handle`; returns why the pool stopped early, if it did.
    pub async fn finish(mut self, mut handle: impl FnMut(JobOutcome)) -> PoolEnd {
        drop(self.jobs);
        let mut workers = std::mem::take(&mut self.workers);
        let waiting = async {
            for worker in workers.drain(..) {
                let _ = worker.await;
            }
        };
        tokio::pin!(waiting);
        loop {
            tokio::select! {
                report = self.reports.recv() => match report {
                    Some(report) => handle(report),
                    None => break,
                },
                () = &mut waiting => {
                    // The refusals still held stand, unless the run stopped
                    // before their streak was decided: the pool stopped, or
                    // a signal interrupted the run (more refusals alike may
                    // have been coming).
                    let stopped = self.shared.stopped.load(Ordering::SeqCst)
                        || self.shared.interrupted();
                    for (job, outcome) in self.shared.relay.undecided(stopped) {
                        record(&self.shared, job, outcome);
                    }
                    // Drain what is left.
                    while let Ok(report) = self.reports.try_recv() {
                        handle(report);
                    }
                    break;
                }
            }
        }
        let relay_stop = self.shared.relay.stop();
        if self.shared.login_refused.load(Ordering::SeqCst) {
            PoolEnd::LoginRefused
        } else if let Some(stop) = relay_stop {
            PoolEnd::RelayProblem(stop)
        } else if self.shared.stopped.load(Ordering::SeqCst) {
            PoolEnd::Unreachable
        } else {
            PoolEnd::QueueDone
        }
    }
}

async fn work(shared: Arc<Shared>) {
    let mut session: Option<SmtpSession> = None;
    // A job to try again first, with how many times this run tried it.
    let mut again: Option<(Job, u32)> = None;
    // The message whose envelope the server took: its data goes next.
    let mut ready: Option<Ready> = None;
    loop {
        // With nothing in hand, a worker over the relay's allowance leaves.
        if again.is_none() && ready.is_none() && shared.leave() {
            break;
        }
        let next = match again.take() {
            Some(retry) => Some(retry),
            // With a message ready, its data goes at once, with the next
            // envelope if a job is queued, else alone.
            None if ready.is_some() && shared.interrupted() => None,
            None if ready.is_some() => shared.try_job().map(|job| (job, 0)),
            None => match shared.job().await {
                Some(job) => Some((job, 0)),
                None => break,
            },
        };
        if let Some(Ready { mut job, permit }) = ready.take() {
            // The session that took its envelope is open: it waits for it.
            let Some(open) = session.as_mut() else {
                job.permit = Some(permit);
                let lost = Outcome::NotSent("the connection was lost".into());
                settle(&shared, job, lost).await;
                again = next;
                continue;
            };
            again = step(&shared, open, Ready { job, permit }, next, &mut ready).await;
            if open.is_broken() {
                session = None;
            }
            continue;
        }
        let Some((job, tries)) = next else { continue };
        if let Some(outcome) = halted(&shared) {
            settle(&shared, job, outcome).await;
            continue;
        }
        if !turn(&shared).await {
            let outcome =
                halted(&shared).unwrap_or_else(|| Outcome::NotOffered(INTERRUPTED.into()));
            settle(&shared, job, outcome).await;
            continue;
        }
        if let Err(outcome) = connect(&shared, &mut session).await {
            settle(&shared, job, outcome).await;
            continue;
        }
        let Some(open) = session.as_mut() else {
            continue;
        };
        if open.pipelines() {
            again = start(&shared, open, job, tries, &mut ready).await;
        } else {
            again = alone(&shared, open, job, tries).await;
        }
        if open.is_broken() {
            session = None;
        }
    }
    if let Some(session) = session {
        session.quit().await;
    }
}

/// A message whose envelope the server took, with its `sending` mark on
/// its way.
struct Ready {
    job: Job,
    permit: oneshot::Receiver<bool>,
}

impl Shared {
    /// The next job, waiting for one; `None` once the queue is closed.
    async fn job(&self) -> Option<Job> {
        self.jobs.lock().await.recv().await
    }

    /// The next job if one is queued now. A worker holding the queue
    /// waits for a job: then none is queued.
    fn try_job(&self) -> Option<Job> {
        self.jobs.try_lock().ok()?.try_recv().ok()
    }

    /// Whether this worker leaves: more are at work than the relay allows
    /// now. The last one never does.
    fn leave(&self) -> bool {
        let allowed = self.sessions_allowed.load(Ordering::SeqCst).max(1);
        self.workers_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                (left > allowed).then(|| left - 1)
            })
            .is_ok()
    }

    /// Whether the run is stopping (see [`Interrupter`]).
    fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Returns once the pool takes no new message: the run is stopping,
    /// or the pool stopped (see [`halted`]).
    async fn halted_now(&self) {
        loop {
            let notified = self.interruption.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.interrupted() || self.stopped.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// The pool stops taking work; a worker waiting for its turn hears it.
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.interruption.notify_waiters();
    }
}

/// Waits for the job in hand's turn under the rate limits; false when the
/// run is stopping, or the pool stopped, meanwhile (a turn may be long: a
/// stop does not wait, and a stopped pool hands nothing over after it).
async fn turn(shared: &Shared) -> bool {
    if !shared.pace.limited() {
        return true;
    }
    tokio::select! {
        () = shared.pace.wait_turn() => halted(shared).is_none(),
        () = shared.halted_now() => false,
    }
}

/// What becomes of the job in hand when the pool takes no new message:
/// the run is stopping, or the pool stopped (connection failures, a relay
/// problem).
fn halted(shared: &Shared) -> Option<Outcome> {
    if shared.interrupted() {
        Some(Outcome::NotOffered(INTERRUPTED.into()))
    } else if shared.stopped.load(Ordering::SeqCst) {
        Some(stopped_before(shared))
    } else {
        None
    }
}

/// Opens the session if it is not open; the outcome for the job in hand
/// when it cannot be.
async fn connect(shared: &Shared, session: &mut Option<SmtpSession>) -> Result<(), Outcome> {
    if session.as_ref().is_some_and(|open| !open.is_broken()) {
        return Ok(());
    }
    *session = None;
    match SmtpSession::open(&shared.settings).await {
        Ok(opened) => {
            *session = Some(opened);
            Ok(())
        }
        Err(err) => {
            if err.downcast_ref::<LoginRefused>().is_some() {
                // Trying again will not help: stop at once.
                shared.login_refused.store(true, Ordering::SeqCst);
                shared.stop();
            } else {
                trouble(shared);
            }
            Err(Outcome::NotSent(format!("{err:#}")))
        }
    }
}

/// Starts a train: `job`'s `sending` mark asked for, its envelope
/// written; the job is then ready, settled, or to be tried again.
async fn start(
    shared: &Shared,
    open: &mut SmtpSession,
    mut job: Job,
    tries: u32,
    ready: &mut Option<Ready>,
) -> Option<(Job, u32)> {
    if shared.journal.withdrawn(&job) {
        settle(shared, job, Outcome::Withheld).await;
        return None;
    }
    let envelope = match open.envelope_of(&shared.from, &job.to, &job.bytes) {
        Ok(envelope) => envelope,
        Err(outcome) => {
            settle(shared, job, outcome).await;
            return None;
        }
    };
    let permit = ask(shared, &mut job);
    let (_, replies) = open
        .exchange(None, Some(&envelope), shared.settings.timeout)
        .await;
    follow(shared, job, tries, permit, replies, ready, false).await
}

/// What becomes of a job after the replies to its envelope: ready for
/// its data, or concluded (`lost`: the connection died with the message
/// before it, a trouble counted already).
async fn follow(
    shared: &Shared,
    job: Job,
    tries: u32,
    permit: oneshot::Receiver<bool>,
    replies: Option<Result<(), Outcome>>,
    ready: &mut Option<Ready>,
    lost: bool,
) -> Option<(Job, u32)> {
    match replies {
        Some(Ok(())) => {
            *ready = Some(Ready { job, permit });
            None
        }
        Some(Err(outcome)) => conclude(shared, job, tries, permit, outcome, lost).await,
        None => None,
    }
}

/// One step of a train: `message`'s data (once its mark is written), with
/// `next`'s envelope when there is a next job; `next` becomes ready, or is
/// settled, or is returned to be tried again.
async fn step(
    shared: &Shared,
    open: &mut SmtpSession,
    message: Ready,
    next: Option<(Job, u32)>,
    ready: &mut Option<Ready>,
) -> Option<(Job, u32)> {
    let Ready { job, permit } = message;
    if !granted(shared, permit).await {
        // The server waits for a message it must not get: only dropping
        // the connection ends that. The next job has not been touched.
        open.hang_up();
        settle(shared, job, Outcome::Withheld).await;
        return next;
    }
    // Under a rate limit the next one waits for its turn, alone: the
    // server, waiting for this message, must not wait with it.
    let (next, later) = match next {
        Some(next) if shared.pace.limited() => (None, Some(next)),
        next => (next, None),
    };
    let halt = halted(shared);
    let next = match next {
        Some((next, _)) if shared.journal.withdrawn(&next) => {
            settle(shared, next, Outcome::Withheld).await;
            None
        }
        Some((next, tries)) if halt.is_none() => {
            match open.envelope_of(&shared.from, &next.to, &next.bytes) {
                Ok(envelope) => Some((next, tries, envelope)),
                Err(outcome) => {
                    settle(shared, next, outcome).await;
                    None
                }
            }
        }
        Some((next, _)) => {
            let outcome = halt.unwrap_or_else(|| Outcome::NotOffered(INTERRUPTED.into()));
            settle(shared, next, outcome).await;
            None
        }
        None => None,
    };
    let next = next.map(|(mut job, tries, envelope)| {
        let permit = ask(shared, &mut job);
        (job, tries, envelope, permit)
    });
    let (outcome, replies) = open
        .exchange(
            Some(&job.bytes),
            next.as_ref().map(|(_, _, envelope, _)| envelope),
            shared.settings.timeout,
        )
        .await;
    let outcome = outcome.unwrap_or_else(|| Outcome::NotSent("not written".into()));
    note(shared, &outcome);
    // A connection lost with this message is one trouble, not two.
    let lost = matches!(outcome, Outcome::Unknown(_) | Outcome::NotSent(_));
    settle(shared, job, outcome).await;
    match next {
        Some((next, tries, _, permit)) => {
            follow(shared, next, tries, permit, replies, ready, lost).await
        }
        None => later,
    }
}

/// A job whose envelope did not lead to its data: settled with `outcome`
/// once its mark is written, or returned to be tried again on a new
/// connection (once) when it was not handed over. `counted`: the trouble
/// that ended it was counted already (the connection died with the message
/// before it).
async fn conclude(
    shared: &Shared,
    job: Job,
    tries: u32,
    permit: oneshot::Receiver<bool>,
    outcome: Outcome,
    counted: bool,
) -> Option<(Job, u32)> {
    if !counted {
        note(shared, &outcome);
    }
    if !granted(shared, permit).await {
        settle(shared, job, Outcome::Withheld).await;
        return None;
    }
    again_or_settle(shared, job, tries, outcome).await
}

/// A job not handed over is tried again on a new connection, once (it
/// stays `sending`, and asks again); anything else is settled.
async fn again_or_settle(
    shared: &Shared,
    job: Job,
    tries: u32,
    outcome: Outcome,
) -> Option<(Job, u32)> {
    if matches!(outcome, Outcome::NotSent(_)) && tries == 0 && halted(shared).is_none() {
        return Some((job, tries + 1));
    }
    settle(shared, job, outcome).await;
    None
}

/// A message on its own, for a server without PIPELINING: its mark and
/// its transaction; returned to be tried again on a new connection (once)
/// when it was not handed over.
async fn alone(
    shared: &Shared,
    open: &mut SmtpSession,
    mut job: Job,
    tries: u32,
) -> Option<(Job, u32)> {
    if shared.journal.withdrawn(&job) {
        settle(shared, job, Outcome::Withheld).await;
        return None;
    }
    let permit = ask(shared, &mut job);
    let outcome = open
        .send(
            &shared.from,
            &job.to,
            &job.bytes,
            shared.settings.timeout,
            granted(shared, permit),
        )
        .await;
    note(shared, &outcome);
    again_or_settle(shared, job, tries, outcome).await
}

/// The answer to `job`'s `sending` mark, which says whether its data may
/// go: the one asked for as it was queued, else a new one (a job tried
/// again asks again).
fn ask(shared: &Shared, job: &mut Job) -> oneshot::Receiver<bool> {
    if let Some(permit) = job.permit.take() {
        return permit;
    }
    let (answer, answered) = oneshot::channel();
    shared.journal.sending(job, answer);
    answered
}

/// The answer to a `sending` mark; if it has not come yet, the journal is
/// told a worker waits for it.
async fn granted(shared: &Shared, mut permit: oneshot::Receiver<bool>) -> bool {
    match permit.try_recv() {
        Ok(granted) => granted,
        Err(oneshot::error::TryRecvError::Empty) => {
            shared.journal.hurry();
            permit.await.unwrap_or(false)
        }
        Err(oneshot::error::TryRecvError::Closed) => false,
    }
}

/// Counts `outcome` towards the connection failures in a row: trouble
/// with the relay adds one, a verdict on a message ends the streak. A
/// rate-limit reply slows the pool down; a message taken counts towards
/// the pace the relay takes them at.
fn note(shared: &Shared, outcome: &Outcome) {
    match outcome {
        Outcome::Sent(_) => shared.pace.taken(),
        Outcome::Deferred(reply) | Outcome::NotSent(reply) if asks_to_slow_down(reply) => {
            slow_down(shared, reply);
        }
        _ => {}
    }
    match outcome {
        Outcome::NotSent(_) | Outcome::Unknown(_) => trouble(shared),
        Outcome::Withheld | Outcome::RelayProblem(_) | Outcome::NotOffered(_) => {}
        Outcome::Sent(_) | Outcome::Deferred(_) | Outcome::Failed(_) | Outcome::Refused(_) => {
            shared.failures.store(0, Ordering::SeqCst);
        }
    }
}

/// What became of `job`: to the journal, then to the caller, through the
/// relay watch (a relay problem stops the pool; a refusal may be held in
/// a streak, see [`RelayWatch::watch`]). A job whose `sending` mark is still on
/// its way waits for it first: if the address was found suppressed, that
/// is what became of it.
async fn settle(shared: &Shared, mut job: Job, mut outcome: Outcome) {
    if let Some(permit) = job.permit.take()
        && !granted(shared, permit).await
    {
        outcome = Outcome::Withheld;
    }
    let held = |job: &Job, outcome: &Outcome| {
        shared.journal.held(job, outcome);
        let report = JobOutcome {
            key: job.key,
            tried: job.tried,
            outcome: outcome.clone(),
            held: true,
        };
        let _ = shared.reports.send(report);
    };
    let (settled, stop) = shared.relay.watch(job, outcome, held);
    if stop {
        shared.stop();
    }
    for (job, outcome) in settled {
        record(shared, job, outcome);
    }
}

/// What became of `job`: to the journal, then to the caller.
fn record(shared: &Shared, job: Job, outcome: Outcome) {
    shared.journal.settled(&job, &outcome);
    let report = JobOutcome {
        key: job.key,
        tried: job.tried,
        outcome,
        held: false,
    };
    let _ = shared.reports.send(report);
}

/// The relay asked to slow down with `reply`: half the pace and half the
/// connections (at least one) for the rest of the run, once an episode.
fn slow_down(shared: &Shared, reply: &str) {
    let Some(interval) = shared.pace.slow_down() else {
        return;
    };
    let halved = |allowed: usize| Some((allowed / 2).max(1));
    let before = shared
        .sessions_allowed
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, halved)
        .unwrap_or(1);
    let sessions = halved(before).unwrap_or(1);
    shared.journal.slowed(reply, interval, sessions);
}

/// One more connection problem in a row; too many stop the pool.
fn trouble(shared: &Shared) {
    let failures = shared.failures.fetch_add(1, Ordering::SeqCst) + 1;
    if failures >= shared.max_failures {
        shared.stop();
    }
}

/// The outcome of a job the pool, stopped, no longer sends.
fn stopped_before(shared: &Shared) -> Outcome {
    Outcome::NotOffered(if shared.relay.stopped() {
        "the run stopped at a relay problem before this message".into()
    } else {
        "the run stopped after connection failures".into()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A relay without PIPELINING: `mail(n)` answers the n-th MAIL FROM
    /// (from 0), `rcpt` every RCPT; returns its port and how many messages
    /// it took.
    async fn relay(mail: fn(usize) -> &'static str, rcpt: &'static str) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let taken = Arc::new(AtomicUsize::new(0));
        let mails = Arc::new(AtomicUsize::new(0));
        let counted = taken.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (taken, mails) = (counted.clone(), mails.clone());
                tokio::spawn(async move {
                    let _ = stream.write_all(b"220 fake\r\n").await;
                    let mut pending = Vec::new();
                    let mut buffer = vec![0; 65536];
                    let mut in_data = false;
                    loop {
                        let n = match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buffer[..n]);
                        while let Some(end) = pending.windows(2).position(|w| w == b"\r\n") {
                            let line: Vec<u8> = pending.drain(..end + 2).collect();
                            let line = String::from_utf8_lossy(&line).into_owned();
                            let reply = if in_data {
                                if line != ".\r\n" {
                                    continue;
                                }
                                in_data = false;
                                taken.fetch_add(1, Ordering::SeqCst);
                                "250 queued"
                            } else {
                                match line.get(..4).unwrap_or("") {
                                    "EHLO" | "HELO" => "250 fake",
                                    "MAIL" => mail(mails.fetch_add(1, Ordering::SeqCst)),
                                    "RCPT" => rcpt,
                                    "DATA" => {
                                        in_data = true;
                                        "354 go on"
                                    }
                                    "QUIT" => {
                                        let _ = stream.write_all(b"221 bye\r\n").await;
                                        return;
                                    }
                                    _ => "250 ok",
                                }
                            };
                            let _ = stream.write_all(format!("{reply}\r\n").as_bytes()).await;
                        }
                    }
                });
            }
        });
        (port, taken)
    }

    /// A journal that grants every mark and keeps what was settled.
    #[derive(Default)]
    struct Notes {
        settled: StdMutex<Vec<(String, Outcome)>>,
    }

    impl Journal for Notes {
        fn sending(&self, _job: &Job, answer: oneshot::Sender<bool>) {
            let _ = answer.send(true);
        }
        fn settled(&self, job: &Job, outcome: &Outcome) {
            let mut settled = self.settled.lock().unwrap();
            settled.push((job.to.to_string(), outcome.clone()));
        }
        fn held(&self, _job: &Job, _outcome: &Outcome) {}
        fn hurry(&self) {}
        fn withdrawn(&self, _job: &Job) -> bool {
            false
        }
        fn slowed(&self, _reply: &str, _interval: Duration, _sessions: usize) {}
    }

    fn job(to: &str) -> Job {
        Job::new(
            AddressKey::of(to),
            to.parse().unwrap(),
            b"Hi.\r\n".to_vec(),
            0,
        )
    }

    fn start(port: u16, limits: &Limits) -> (Pool, Arc<Notes>) {
        let url = format!("smtp://127.0.0.1:{port}?tls=none");
        let settings = SmtpSettings::parse(&url, None, Duration::from_secs(5)).unwrap();
        let notes = Arc::new(Notes::default());
        let from = "news@example.com".parse().unwrap();
        (Pool::start(settings, from, limits, notes.clone()), notes)
    }

    async fn submit(pool: &Pool, to: &str) {
        let slot = pool.jobs.reserve().await.unwrap();
        pool.submit(slot, job(to));
    }

    /// Refusals held in a streak that a signal cut short were not decided:
    /// they must not stand as bounces (their readers suppressed for good).
    #[tokio::test]
    async fn refusals_held_when_a_signal_stops_the_run_are_not_bounces() {
        let (port, _) = relay(|_| "250 ok", "550 5.1.1 no such user").await;
        let limits = Limits {
            concurrency: 1,
            interval: None,
            max_connection_failures: 5,
            refusal_streak: 3,
        };
        let (mut pool, notes) = start(port, &limits);
        submit(&pool, "ana@example.com").await;
        submit(&pool, "bo@example.com").await;
        let mut held = 0;
        while held < 2 {
            let report = pool.reports.recv().await.unwrap();
            assert!(report.held, "{report:?}");
            held += 1;
        }
        // SIGTERM: the run stops before the streak (3) is decided.
        pool.interrupter().interrupt();
        let end = pool.finish(|_| {}).await;
        assert_eq!(end, PoolEnd::QueueDone);
        let settled = notes.settled.lock().unwrap().clone();
        assert_eq!(settled.len(), 2, "{settled:?}");
        for (to, outcome) in settled {
            assert!(
                matches!(outcome, Outcome::NotSent(_)),
                "{to} settled {outcome:?}: a bounce the run never decided"
            );
        }
    }

    /// Under a rate limit, a worker waiting for its turn when the pool
    /// stops at a relay problem must not then hand its message over.
    #[tokio::test]
    async fn a_job_waiting_for_its_turn_is_not_sent_after_a_relay_problem() {
        let (port, taken) = relay(
            |n| {
                if n == 0 {
                    "554 5.7.1 not authorized"
                } else {
                    "250 ok"
                }
            },
            "250 ok",
        )
        .await;
        let limits = Limits {
            concurrency: 2,
            interval: Some(Duration::from_secs(2)),
            max_connection_failures: 5,
            refusal_streak: 10,
        };
        let (pool, notes) = start(port, &limits);
        submit(&pool, "ana@example.com").await;
        submit(&pool, "bo@example.com").await;
        let started = tokio::time::Instant::now();
        let end = pool.finish(|_| {}).await;
        assert!(matches!(end, PoolEnd::RelayProblem(_)), "{end:?}");
        let settled = notes.settled.lock().unwrap().clone();
        assert_eq!(
            taken.load(Ordering::SeqCst),
            0,
            "a message went after the relay problem stopped the pool: {settled:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the stop waited for a turn: {:?}",
            started.elapsed()
        );
    }
}
