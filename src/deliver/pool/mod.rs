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

mod worker;

use worker::{ask, record, work};

use super::pace::Pace;
pub use super::relay_watch::RelayStop;
use super::relay_watch::RelayWatch;
use super::smtp::{Outcome, SmtpSettings};
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
    /// or the pool stopped.
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
