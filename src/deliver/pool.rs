//! Deliver stage: a pool of SMTP sessions fed from a bounded queue.
//!
//! Each worker owns one connection, opens it when it first needs it and
//! again when the server closed it. As a message's transaction starts
//! (MAIL) a worker asks the caller's [`Journal`] to record it, and goes on
//! with MAIL and RCPT while that is written; the message itself goes only
//! once the answer came, so the record is durable before the message goes
//! and the wait overlaps the round trips. The outcome goes to the journal
//! before the worker takes another message, then to the caller as a
//! [`Report`]. The queue is bounded: a caller that renders faster than the
//! relay takes messages waits (back-pressure) instead of buffering. After
//! too many connection failures in a row the pool stops taking work and
//! says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use lettre::Address;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;

use super::smtp::{LoginRefused, Outcome, Session, SmtpSettings};
use crate::unsubscribe::AddressKey;

/// One message to send.
#[derive(Debug)]
pub struct Job {
    pub key: AddressKey,
    pub to: Address,
    pub bytes: Vec<u8>,
    /// How many times it was tried before (the caller's count).
    pub tried: u32,
}

/// Where workers record what they do — the caller's ledger — from their
/// own threads, in the order they do it.
pub trait Journal: Send + Sync {
    /// `job`'s transaction starts: record it, then answer true on `answer`
    /// to send it, false (or nothing) to withhold it.
    fn sending(&self, job: &Job, answer: oneshot::Sender<bool>);
    /// What became of `job`'s message, before the worker takes another.
    fn settled(&self, job: &Job, outcome: &Outcome);
}

/// What became of one message, for the caller.
#[derive(Debug)]
pub struct Report {
    pub key: AddressKey,
    pub tried: u32,
    pub outcome: Outcome,
}

/// Why a pool stopped before its queue was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    No,
    /// Connection trouble too many times in a row.
    Unreachable,
    /// The relay refused the login.
    LoginRefused,
}

/// How hard the pool may push.
#[derive(Debug, Clone)]
pub struct Limits {
    pub concurrency: usize,
    /// The shortest time between two messages (from the rate limits).
    pub interval: Option<Duration>,
    pub max_connection_failures: u32,
}

/// Shared by the workers.
struct Shared {
    settings: SmtpSettings,
    from: Address,
    jobs: Mutex<mpsc::Receiver<Job>>,
    journal: Arc<dyn Journal>,
    reports: mpsc::Sender<Report>,
    next_slot: Mutex<Instant>,
    interval: Option<Duration>,
    failures: AtomicU32,
    max_failures: u32,
    stopped: AtomicBool,
    /// Set with `stopped` when the relay refused the login.
    login_refused: AtomicBool,
}

/// A running pool: send jobs in, read reports out.
pub struct Pool {
    pub jobs: mpsc::Sender<Job>,
    pub reports: mpsc::Receiver<Report>,
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
        let (jobs_tx, jobs_rx) = mpsc::channel(limits.concurrency * 2);
        let (reports_tx, reports_rx) = mpsc::channel(limits.concurrency * 4);
        let shared = Arc::new(Shared {
            settings,
            from,
            jobs: Mutex::new(jobs_rx),
            journal,
            reports: reports_tx,
            next_slot: Mutex::new(Instant::now()),
            interval: limits.interval,
            failures: AtomicU32::new(0),
            max_failures: limits.max_connection_failures,
            stopped: AtomicBool::new(false),
            login_refused: AtomicBool::new(false),
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

    /// Whether the pool gave up after connection failures in a row.
    pub fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Closes the queue and waits for the workers, passing their last
    /// reports to `handle`; returns why the pool stopped early, if it did.
    pub async fn finish(mut self, mut handle: impl FnMut(Report)) -> Halt {
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
                    // Drain what is left.
                    while let Ok(report) = self.reports.try_recv() {
                        handle(report);
                    }
                    break;
                }
            }
        }
        if self.shared.login_refused.load(Ordering::SeqCst) {
            Halt::LoginRefused
        } else if self.shared.stopped.load(Ordering::SeqCst) {
            Halt::Unreachable
        } else {
            Halt::No
        }
    }
}

async fn work(shared: Arc<Shared>) {
    let mut session: Option<Session> = None;
    loop {
        let job = { shared.jobs.lock().await.recv().await };
        let Some(job) = job else { break };
        let outcome = if shared.stopped.load(Ordering::SeqCst) {
            Outcome::NotSent("the run stopped after connection failures".into())
        } else {
            send_one(&shared, &mut session, &job).await
        };
        shared.journal.settled(&job, &outcome);
        let report = Report {
            key: job.key,
            tried: job.tried,
            outcome,
        };
        let _ = shared.reports.send(report).await;
    }
    if let Some(session) = session {
        session.quit().await;
    }
}

/// Sends one job, opening (or reopening once) the connection as needed.
/// Connection trouble — a refused or broken connection, a refused sender,
/// no reply — counts towards the failures in a row that stop the pool; a
/// verdict on the message (sent, deferred, failed) ends the streak.
async fn send_one(shared: &Shared, session: &mut Option<Session>, job: &Job) -> Outcome {
    // Once per message, before any connection is opened: a connection is
    // never left idle waiting for the rate limit.
    pace(shared).await;
    let mut last = Outcome::NotSent("not tried".into());
    for _ in 0..2 {
        if session.as_ref().is_none_or(Session::is_broken) {
            *session = None;
            match Session::open(&shared.settings).await {
                Ok(opened) => *session = Some(opened),
                Err(err) => {
                    if err.downcast_ref::<LoginRefused>().is_some() {
                        // Trying again will not help: stop at once.
                        shared.login_refused.store(true, Ordering::SeqCst);
                        shared.stopped.store(true, Ordering::SeqCst);
                    } else {
                        trouble(shared);
                    }
                    return Outcome::NotSent(format!("{err:#}"));
                }
            }
        }
        let Some(open) = session.as_mut() else {
            continue;
        };
        let (answer, answered) = oneshot::channel();
        shared.journal.sending(job, answer);
        let outcome = open
            .send(
                &shared.from,
                &job.to,
                &job.bytes,
                shared.settings.timeout,
                async { answered.await.unwrap_or(false) },
            )
            .await;
        if open.is_broken() {
            *session = None;
        }
        match outcome {
            // Not handed over: try once more on a new connection (a server
            // may close a connection that was idle).
            Outcome::NotSent(_) => {
                trouble(shared);
                last = outcome;
            }
            Outcome::Unknown(_) => {
                trouble(shared);
                return outcome;
            }
            // Not a verdict on the relay either way.
            Outcome::Withheld => return outcome,
            verdict => {
                shared.failures.store(0, Ordering::SeqCst);
                return verdict;
            }
        }
        if shared.stopped.load(Ordering::SeqCst) {
            break;
        }
    }
    last
}

/// One more connection problem in a row; too many stop the pool.
fn trouble(shared: &Shared) {
    let failures = shared.failures.fetch_add(1, Ordering::SeqCst) + 1;
    if failures >= shared.max_failures {
        shared.stopped.store(true, Ordering::SeqCst);
    }
}

/// Waits for this worker's turn under the rate limit.
async fn pace(shared: &Shared) {
    let Some(interval) = shared.interval else {
        return;
    };
    let wait_until = {
        let mut next = shared.next_slot.lock().await;
        let now = Instant::now();
        let slot = (*next).max(now);
        *next = slot + interval;
        slot
    };
    tokio::time::sleep_until(wait_until).await;
}
