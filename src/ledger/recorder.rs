//! Ledger stage: the one writer of a send's delivery marks — and of the
//! deliveries of readers frozen while the first are sent — on a thread of
//! its own with a connection of its own, so SMTP sessions and rendering
//! never wait for the disk.
//!
//! Group commit: what is queued goes in one transaction — frozen readers,
//! the `sending` marks asked for in the last [`GROUP_WAIT`] (sooner when a
//! session waits for one) and the replies that came meanwhile — and each
//! `sending` mark is answered only once that transaction is durable. A
//! reply (`sent`, `deferred`, `failed`…) is not waited for, and does not
//! get a transaction (an `fsync`) of its own: it goes with the next
//! `sending` marks, at most [`GROUP_WAIT`] later. Lost in a crash, its
//! delivery stays `sending` and becomes `unknown`, sent again (the same
//! Message-ID) unless `delivery.resend_unknown` is false. May import what
//! `ledger` may.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, FixedOffset};
use tokio::sync::oneshot;

use super::{Ledger, Mark, NewDelivery, Writes};
use crate::address::AddressKey;

/// The most marks one transaction takes.
const MAX_BATCH: usize = 4096;
/// How long a `sending` mark (or a chunk of frozen readers) waits for
/// others to share its transaction — its `fsync` — unless a session waits
/// for it ([`RecorderHandle::hurry`]). Marks are asked for as jobs are queued,
/// usually well before a session needs them.
const GROUP_WAIT: Duration = Duration::from_millis(2);

/// What the writer is asked to do.
enum Request {
    /// A mark; a `sending` mark comes with where to say whether the
    /// message may go.
    Mark(AddressKey, Mark, Option<oneshot::Sender<bool>>),
    /// Deliveries of readers frozen now, the issue's last ones if `last`;
    /// `committed` hears how many once they are written.
    Freeze {
        deliveries: Vec<NewDelivery>,
        last: bool,
        committed: mpsc::Sender<usize>,
    },
    /// Write what is asked now: a session waits for it.
    Hurry,
    /// Say when everything asked before is committed.
    Flush(oneshot::Sender<()>),
    /// Write everything asked before, then stop.
    Stop,
}

/// The writer of one issue's delivery marks during a send.
pub struct Recorder {
    marks: RecorderHandle,
    thread: JoinHandle<Result<()>>,
}

/// A handle on the [`Recorder`]'s queue, cloned to any thread: marks,
/// frozen readers and flushes go to the writer through it.
#[derive(Clone)]
pub struct RecorderHandle {
    requests: mpsc::Sender<Request>,
}

impl Recorder {
    /// Opens a connection to the ledger at `root` and starts writing marks
    /// of `issue`, dated `at`. The write-ahead log is folded into the
    /// database first: a freeze leaves it as big as the issue, and no commit
    /// of the send should pay for copying that.
    pub fn start(root: &Path, issue: &str, at: DateTime<FixedOffset>) -> Result<Recorder> {
        let ledger = Ledger::open(root)?;
        ledger.checkpoint()?;
        let (requests, queue) = mpsc::channel();
        let issue = issue.to_string();
        let thread = std::thread::Builder::new()
            .name("ledger writer".into())
            .spawn(move || write(&ledger, &issue, at, &queue))
            .context("cannot start the ledger's writer")?;
        Ok(Recorder {
            marks: RecorderHandle { requests },
            thread,
        })
    }

    /// Where to send marks.
    pub fn marks(&self) -> &RecorderHandle {
        &self.marks
    }

    /// Whether the writer stopped: it could not write the ledger.
    pub fn stopped(&self) -> bool {
        self.thread.is_finished()
    }

    /// Writes what is queued and stops; the error that stopped the writer,
    /// if one did. Marks sent after this are dropped (a `sending` mark's
    /// answer with them: nothing is sent).
    pub fn finish(self) -> Result<()> {
        let _ = self.marks.requests.send(Request::Stop);
        self.thread
            .join()
            .map_err(|_| anyhow!("the ledger's writer panicked"))?
    }
}

impl RecorderHandle {
    /// Asks for `key`'s `sending` mark, answered on `answer` once it is
    /// durable: true to send, false when the address was found suppressed
    /// (and recorded so). Dropped unanswered when the ledger could not be
    /// written.
    pub fn sending(&self, key: AddressKey, answer: oneshot::Sender<bool>) {
        // A writer that stopped drops the request, and with it the answer.
        let _ = self
            .requests
            .send(Request::Mark(key, Mark::Sending, Some(answer)));
    }

    /// Queues `mark` for `key` (written with the next batch).
    pub fn record(&self, key: AddressKey, mark: Mark) {
        // A writer that stopped reports why in `finish`.
        let _ = self.requests.send(Request::Mark(key, mark, None));
    }

    /// Queues `deliveries` of readers frozen now (the issue's last ones if
    /// `last`), written at once; `committed` hears how many once they are.
    /// False if the writer stopped.
    pub fn freeze(
        &self,
        deliveries: Vec<NewDelivery>,
        last: bool,
        committed: mpsc::Sender<usize>,
    ) -> bool {
        self.requests
            .send(Request::Freeze {
                deliveries,
                last,
                committed,
            })
            .is_ok()
    }

    /// Has what is asked written now, without the wait for more to share
    /// its transaction: a session waits for a `sending` mark.
    pub fn hurry(&self) {
        let _ = self.requests.send(Request::Hurry);
    }

    /// Waits until every mark asked for so far is committed; false if the
    /// writer stopped (`finish` says why).
    pub async fn flush(&self) -> bool {
        let (done, flushed) = oneshot::channel();
        self.requests.send(Request::Flush(done)).is_ok() && flushed.await.is_ok()
    }
}

/// The writer's loop: a transaction for whatever is queued, until the
/// queue is closed or a transaction fails.
fn write(
    ledger: &Ledger,
    issue: &str,
    at: DateTime<FixedOffset>,
    queue: &mpsc::Receiver<Request>,
) -> Result<()> {
    let mut batch = Batch::default();
    // When the batch must be written: soon after a `sending` mark or frozen
    // readers came, later after a reply.
    let mut due: Option<Instant> = None;
    loop {
        let first = match due {
            None => match queue.recv() {
                Ok(request) => request,
                Err(_) => break,
            },
            Some(deadline) => {
                match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(request) => request,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        batch.commit(ledger, issue, at)?;
                        due = None;
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        let mut stop = false;
        let mut next = Some(first);
        while let Some(request) = next.take() {
            let now = Instant::now();
            let wait = match request {
                Request::Mark(key, mark, answer) => {
                    // A reply waits as long: a 250 lost in a crash makes an
                    // `unknown` message of one that arrived.
                    if let Some(answer) = answer {
                        batch.answers.push((batch.writes.marks.len(), answer));
                    }
                    batch.writes.marks.push((key, mark));
                    GROUP_WAIT
                }
                Request::Freeze {
                    deliveries,
                    last,
                    committed,
                } => {
                    // Sessions wait for these readers to be readable.
                    batch.committed.push((committed, deliveries.len()));
                    batch.writes.deliveries.extend(deliveries);
                    batch.writes.frozen |= last;
                    GROUP_WAIT
                }
                Request::Hurry => Duration::ZERO,
                Request::Flush(done) => {
                    batch.flushes.push(done);
                    Duration::ZERO
                }
                Request::Stop => {
                    stop = true;
                    Duration::ZERO
                }
            };
            due = Some(due.map_or(now + wait, |due| due.min(now + wait)));
            if !stop && batch.len() < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if stop {
            break;
        }
        if batch.len() >= MAX_BATCH || due.is_some_and(|due| due <= Instant::now()) {
            batch.commit(ledger, issue, at)?;
            due = None;
        }
    }
    batch.commit(ledger, issue, at)
}

/// What is not written yet, and who waits for it.
#[derive(Default)]
struct Batch {
    writes: Writes,
    /// Where to answer each `sending` mark, by its place in the marks.
    answers: Vec<(usize, oneshot::Sender<bool>)>,
    /// Where to say how many frozen deliveries are written.
    committed: Vec<(mpsc::Sender<usize>, usize)>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Batch {
    /// How many rows it writes.
    fn len(&self) -> usize {
        self.writes.marks.len() + self.writes.deliveries.len()
    }

    /// Writes everything in one transaction, then answers.
    fn commit(&mut self, ledger: &Ledger, issue: &str, at: DateTime<FixedOffset>) -> Result<()> {
        if self.len() > 0 || self.writes.frozen {
            let went = ledger.write(issue, &self.writes, at)?;
            for (index, answer) in self.answers.drain(..) {
                let _ = answer.send(went.get(index).copied().unwrap_or(false));
            }
            for (committed, n) in self.committed.drain(..) {
                let _ = committed.send(n);
            }
            self.writes = Writes::default();
        }
        for done in self.flushes.drain(..) {
            let _ = done.send(());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fixtures::{create, issue, ledger, time};
    use crate::ledger::{DeliveryStatus, SuppressionReason};

    const ISSUE: &str = "2026-06-01";

    /// A ledger with issue [`ISSUE`] to `addresses`, and a writer for it.
    fn writer(addresses: &[&str]) -> (tempfile::TempDir, Ledger, Recorder) {
        let (root, ledger) = ledger();
        let record = issue(ISSUE, "2026-06-01T06:00:00Z");
        create(&ledger, &record, addresses);
        let recorder = Recorder::start(root.path(), ISSUE, record.created).unwrap();
        (root, ledger, recorder)
    }

    #[tokio::test]
    async fn sending_marks_are_answered_once_written_and_replies_follow() {
        let (_root, ledger, recorder) = writer(&["ana@example.com", "bo@example.com"]);
        let at = time("2026-06-01T06:00:00Z");
        let (ana, bo) = (
            AddressKey::of("ana@example.com"),
            AddressKey::of("bo@example.com"),
        );
        ledger
            .suppress(bo, None, SuppressionReason::Unsubscribed, at)
            .unwrap();
        let (answer, answered) = oneshot::channel();
        recorder.marks().sending(ana, answer);
        assert_eq!(answered.await, Ok(true));
        let sending = ledger.delivery(ISSUE, ana).unwrap().unwrap();
        assert_eq!(sending.status, DeliveryStatus::Sending);
        let (answer, answered) = oneshot::channel();
        recorder.marks().sending(bo, answer);
        assert_eq!(answered.await, Ok(false));
        recorder.marks().record(ana, Mark::Sent("250 OK".into()));
        assert!(recorder.marks().flush().await);
        let sent = ledger.delivery(ISSUE, ana).unwrap().unwrap();
        assert_eq!(sent.status, DeliveryStatus::Sent);
        let bo_now = ledger.delivery(ISSUE, bo).unwrap().unwrap();
        assert_eq!(bo_now.status, DeliveryStatus::Suppressed);
        recorder.finish().unwrap();
    }

    #[tokio::test]
    async fn a_reply_alone_is_written_after_a_short_wait() {
        let (_root, ledger, recorder) = writer(&["ana@example.com"]);
        let ana = AddressKey::of("ana@example.com");
        let (answer, answered) = oneshot::channel();
        recorder.marks().sending(ana, answer);
        assert_eq!(answered.await, Ok(true));
        recorder.marks().record(ana, Mark::Sent("250 OK".into()));
        tokio::time::sleep(GROUP_WAIT * 50).await;
        let sent = ledger.delivery(ISSUE, ana).unwrap().unwrap();
        assert_eq!(sent.status, DeliveryStatus::Sent);
        recorder.finish().unwrap();
    }

    #[tokio::test]
    async fn a_writer_that_cannot_write_withholds_and_says_why() {
        let (_root, ledger, recorder) = writer(&["ana@example.com"]);
        // A delivery the issue does not have: the batch fails.
        recorder
            .marks()
            .record(AddressKey::of("bo@example.com"), Mark::Suppressed);
        let (answer, answered) = oneshot::channel();
        recorder
            .marks()
            .sending(AddressKey::of("ana@example.com"), answer);
        assert!(answered.await.is_err());
        assert!(!recorder.marks().flush().await);
        let message = format!("{:#}", recorder.finish().unwrap_err());
        assert!(message.contains("no such delivery"), "{message}");
        let ana = ledger
            .delivery(ISSUE, AddressKey::of("ana@example.com"))
            .unwrap()
            .unwrap();
        assert_eq!(ana.status, DeliveryStatus::Pending);
    }
}
