//! Deliver stage: the work of one of a [`Pool`](super::Pool)'s sessions —
//! its connection, its trains (each message's data with the next one's
//! envelope), the hand-over re-check before each MAIL FROM, and what
//! becomes of each job (settled, tried again, held in a streak), under the
//! turns, stops and slow-downs the pool sets. May import what `pool` may.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::{INTERRUPTED, Job, JobOutcome, Shared};
use crate::deliver::smtp::{LoginRefused, Outcome, SmtpSession, asks_to_slow_down};

pub(super) async fn work(shared: Arc<Shared>) {
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
pub(super) fn ask(shared: &Shared, job: &mut Job) -> oneshot::Receiver<bool> {
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
pub(super) fn record(shared: &Shared, job: Job, outcome: Outcome) {
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
