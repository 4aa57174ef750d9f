//! Send stage: freezing an issue's readers — each reader the subscribers
//! file lists now and the ledger does not gets its segment, variant, picks
//! and fields ranked once and handed to the ledger's writer a chunk at a
//! time, on a thread of its own beside the send. May import audience
//! (readers, segments, suppression), content (posts), select (ranking),
//! render (variants), unsubscribe (the key), the ledger's writer, and the
//! send's own frozen digest and progress.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::mpsc;

use super::frozen::{FrozenDigest, FrozenPick};
use super::newly_frozen::{FreezeEnds, FreezeProgress};
use super::{Run, SegmentCounts};
use crate::address::AddressKey;
use crate::audience::segments::segment_of;
use crate::audience::subscribers::{self, Subscriber};
use crate::audience::suppressed::Suppressed;
use crate::content::Post;
use crate::diagnostics::{Diagnostic, display_path};
use crate::ledger::{IssueRecord, NewDelivery, RecorderHandle};
use crate::select::{self, Index, Reader};
use crate::unsubscribe::Secret;

/// How many readers go to the ledger at a time, and how many such chunks
/// may wait to be written.
const CHUNK: usize = 1024;
const CHUNKS_WAITING: usize = 4;

/// What freezing found, for the summary.
#[derive(Default)]
pub(super) struct FreezeReport {
    /// Readers left out, by segment: not mailable, or no new post for them.
    pub(super) segments: BTreeMap<String, SegmentCounts>,
    pub(super) problems: Vec<Diagnostic>,
}

/// The readers of an issue still to freeze, and what freezing them needs.
pub(super) struct Freezer<'r> {
    pub(super) run: &'r Run<'r>,
    pub(super) record: &'r IssueRecord,
    pub(super) posts: &'r [Post],
    /// Readers the ledger has already.
    pub(super) frozen: HashSet<AddressKey>,
    pub(super) suppressed: Suppressed,
    pub(super) secret: &'r Secret,
}

/// What ranking a reader's digest works from, the same for every reader.
struct Ranking<'p> {
    index: Index<'p>,
    /// The host of Message-IDs.
    host: String,
}

impl Freezer<'_> {
    /// Freezes the readers of the issue the subscribers file lists now and
    /// the ledger does not, written by the ledger's writer (`marks`) a chunk
    /// at a time, the last chunk saying the issue is frozen. Runs beside the
    /// send, which reads the readers as `progress` says they are committed.
    pub(super) fn freeze(&self, marks: &RecorderHandle, progress: &FreezeProgress) -> FreezeReport {
        let config = self.run.config;
        let mut report = FreezeReport::default();
        let path = self.run.root.join(&config.audience.file);
        let shown = display_path(self.run.root, &path);
        let _ends = FreezeEnds(progress);
        let posts: Vec<&Post> = self.posts.iter().collect();
        let ranking = Ranking {
            // As of the issue's cutoff, so a run that carries on picks alike.
            index: Index::new(&posts, self.record.cutoff, &config.digest),
            host: config.site.host().to_string(),
        };
        let mut chunks = Chunks::new(marks, progress);
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut stopped = false;
        let found = subscribers::read(&path, &shown, &mut |subscriber| {
            if stopped {
                return;
            }
            chunks.take_written();
            let Some(delivery) = self.freeze_one(subscriber, &ranking, &mut report.segments) else {
                return;
            };
            chunk.push(delivery);
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                // A signal stops the freeze too: the next run freezes the rest.
                stopped = !chunks.send(full, false) || super::signals::received().is_some();
            }
        });
        report.problems.extend(found);
        if !stopped {
            chunks.send(chunk, true);
        }
        report
    }

    /// `subscriber`'s delivery, frozen; `None` when this run does not mail
    /// them (counted in `segments` when the summary shows it).
    fn freeze_one(
        &self,
        mut subscriber: Subscriber,
        ranking: &Ranking,
        segments: &mut BTreeMap<String, SegmentCounts>,
    ) -> Option<NewDelivery> {
        let config = self.run.config;
        if !self.run.mails(&subscriber) {
            return None;
        }
        let key = AddressKey::of(&subscriber.email);
        if self.frozen.contains(&key) {
            return None;
        }
        self.suppressed.apply(&mut subscriber);
        let segment = segment_of(&subscriber, &config.segments);
        let counts = segments.entry(segment.id.clone()).or_default();
        if !subscriber.status.mailable() {
            counts.suppressed += 1;
            return None;
        }
        let reader = Reader {
            interests: &subscriber.interests,
            personalize: subscriber.personalize,
        };
        let (_, picks) = select::digest(&ranking.index, segment, reader, &config.digest);
        if picks.is_empty() {
            counts.skipped += 1;
            return None;
        }
        let digest = FrozenDigest {
            name: subscriber.name.clone(),
            interests: subscriber.interests.clone(),
            personalize: subscriber.personalize,
            attrs: subscriber.attrs.clone(),
            picks: picks
                .iter()
                .map(|p| FrozenPick {
                    slug: p.post.slug.clone(),
                    reason: p.reason.clone(),
                    score: p.score,
                })
                .collect(),
        };
        let issue = &self.record.id;
        Some(NewDelivery {
            key,
            address: subscriber.email.clone(),
            segment: segment.id.clone(),
            variant: crate::render::variant_of(segment, issue, &subscriber.email),
            picks: serde_json::to_string(&digest).unwrap_or_default(),
            message_id: self
                .secret
                .message_id(issue, &subscriber.email, &ranking.host),
        })
    }
}

/// Chunks of frozen readers handed to the ledger's writer, and the answers
/// that say each is written.
struct Chunks<'f> {
    marks: &'f RecorderHandle,
    progress: &'f FreezeProgress,
    /// Each chunk has its own answer: one the writer drops unanswered (it
    /// stopped) says so, and nothing waits for a writer that is gone.
    unwritten: VecDeque<mpsc::Receiver<usize>>,
}

impl<'f> Chunks<'f> {
    fn new(marks: &'f RecorderHandle, progress: &'f FreezeProgress) -> Self {
        Chunks {
            marks,
            progress,
            unwritten: VecDeque::new(),
        }
    }

    /// Hands `chunk` to the writer (the issue's last if `last`, which is
    /// waited for: the issue is frozen once it is written), first waiting
    /// while too many chunks are unwritten. False if the writer stopped.
    fn send(&mut self, chunk: Vec<NewDelivery>, last: bool) -> bool {
        while self.unwritten.len() >= CHUNKS_WAITING || (last && !self.unwritten.is_empty()) {
            if !self.wait_oldest() {
                // The writer stopped: `finish` says why.
                return false;
            }
        }
        let n = chunk.len() as u64;
        let (committed, written) = mpsc::channel();
        if !self.marks.freeze(chunk, last, committed) {
            return false;
        }
        self.progress.add_frozen(n);
        self.unwritten.push_back(written);
        !last || self.wait_oldest()
    }

    /// Takes the answers of chunks written meanwhile — the send beside is
    /// woken for each as soon as the freeze hears of it, between two
    /// readers. A chunk dropped unanswered is left for [`Chunks::send`].
    fn take_written(&mut self) {
        while let Some(written) = self.unwritten.front() {
            if written.try_recv().is_err() {
                return;
            }
            self.unwritten.pop_front();
            self.progress.written();
        }
    }

    /// Waits for the oldest unwritten chunk; false if the writer stopped.
    fn wait_oldest(&mut self) -> bool {
        let written = self
            .unwritten
            .pop_front()
            .is_some_and(|written| written.recv().is_ok());
        if written {
            self.progress.written();
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::ledger::Recorder;
    use crate::send::newly_frozen::NewlyFrozen;
    use crate::send::newly_frozen::tests::{deliveries, opened, read};

    #[tokio::test]
    async fn a_chunk_written_while_the_freeze_reads_on_wakes_the_send() {
        let (root, ledger, record, floor) = opened();
        let recorder = Recorder::start(root.path(), &record.id, record.created).unwrap();
        let progress = Arc::new(FreezeProgress::default());
        // The freeze reads on (it is not done) until the send has the
        // first chunk: only the freeze hearing it was written wakes the send.
        let (read_them, them_read) = mpsc::channel::<()>();
        let freezer = {
            let (marks, progress) = (recorder.marks().clone(), progress.clone());
            std::thread::spawn(move || {
                let _ends = FreezeEnds(&progress);
                let mut chunks = Chunks::new(&marks, &progress);
                // The send is waiting by now.
                std::thread::sleep(Duration::from_millis(200));
                assert!(chunks.send(deliveries(0..3), false));
                while them_read.recv_timeout(Duration::from_millis(1))
                    == Err(mpsc::RecvTimeoutError::Timeout)
                {
                    chunks.take_written();
                }
                chunks.send(deliveries(3..5), true)
            })
        };
        let due = ledger.due_after(&record.id, record.created, false, floor);
        let mut growing = NewlyFrozen::new(due, &progress);
        assert_eq!(read(&mut growing, 3).await.len(), 3);
        drop(read_them);
        assert_eq!(read(&mut growing, 9).await.len(), 2);
        assert!(freezer.join().unwrap());
        recorder.finish().unwrap();
    }
}
