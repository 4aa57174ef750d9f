//! Send stage: following a freeze that runs beside the send — how far it
//! has got ([`FreezeProgress`]), and the deliveries it commits, read as
//! they come ([`NewlyFrozen`]). The freezer thread says when readers were
//! written or the freeze ended; the send awaits that without holding a
//! thread. The freezer learns of a commit between the subscriber rows it
//! reads and whenever it waits on the writer, so a long stretch of rows
//! that are skipped (or a slow file) delays the send's next look by that
//! long — never past the freeze's end, which always wakes it. May import
//! the ledger's reads (deliveries due).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Result;
use tokio::sync::Notify;

use crate::ledger::{Delivery, Due};

/// How far the freezing of an issue's readers has got, for the send
/// beside it.
#[derive(Default)]
pub(super) struct FreezeProgress {
    /// Readers frozen (written or on their way to the ledger).
    frozen: AtomicU64,
    /// Set once freezing ended: every reader is frozen and written, or the
    /// ledger's writer stopped (and says why).
    done: AtomicBool,
    /// Wakes the send waiting for more readers. One send waits, and a
    /// wake-up given while it is not waiting is kept for its next wait, so
    /// none is lost between its last look and its wait.
    more: Notify,
}

impl FreezeProgress {
    /// Readers frozen so far.
    pub(super) fn frozen(&self) -> u64 {
        self.frozen.load(Ordering::SeqCst)
    }

    /// `n` more readers are on their way to the ledger.
    pub(super) fn add_frozen(&self, n: u64) {
        self.frozen.fetch_add(n, Ordering::SeqCst);
    }

    /// Frozen readers were committed: the send looks for them.
    pub(super) fn written(&self) {
        self.more.notify_one();
    }

    /// Freezing ended, however it ended: the send reads what was committed
    /// and stops waiting.
    pub(super) fn end(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.more.notify_one();
    }
}

/// Says freezing ended when dropped, however it ends.
pub(super) struct FreezeEnds<'f>(pub(super) &'f FreezeProgress);

impl Drop for FreezeEnds<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The deliveries a freeze beside the send adds, read as they are
/// committed: waits for more while the freeze goes on.
pub(super) struct NewlyFrozen<'l> {
    due: Due<'l>,
    progress: &'l FreezeProgress,
}

impl<'l> NewlyFrozen<'l> {
    /// The deliveries `due` reads (those after the freeze began), followed
    /// as `progress` says more are written.
    pub(super) fn new(due: Due<'l>, progress: &'l FreezeProgress) -> Self {
        NewlyFrozen { due, progress }
    }

    /// The next delivery frozen beside the send, once it is committed;
    /// `None` once the freeze ended and every one was read.
    pub(super) async fn next(&mut self) -> Option<Result<Delivery>> {
        loop {
            // Read first: whatever was committed before it was set is then
            // seen by the look that follows.
            let done = self.progress.done.load(Ordering::SeqCst);
            self.due.again();
            if let Some(delivery) = self.due.next() {
                return Some(delivery);
            }
            if done {
                return None;
            }
            self.progress.more.notified().await;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use chrono::DateTime;

    use super::*;
    use crate::address::AddressKey;
    use crate::ledger::{IssueRecord, Ledger, NewDelivery};

    const AT: &str = "2026-06-01T06:00:00Z";
    /// Far longer than any wake-up takes: a wait this long was not woken.
    const NEVER: Duration = Duration::from_secs(10);

    /// A ledger with an issue opened, and where its deliveries start.
    pub(in crate::send) fn opened() -> (tempfile::TempDir, Ledger, IssueRecord, i64) {
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(root.path()).unwrap();
        let at = DateTime::parse_from_rfc3339(AT).unwrap();
        let record = IssueRecord {
            id: "2026-06-01".into(),
            cutoff: at,
            since: None,
            posts: "[]".into(),
            content_hash: String::new(),
            created: at,
            completed: None,
        };
        ledger.open_issue(&record, &[], &[]).unwrap();
        let floor = ledger.last_row().unwrap();
        (root, ledger, record, floor)
    }

    /// Deliveries to readers `readers`, as the freezer makes them.
    pub(in crate::send) fn deliveries(readers: std::ops::Range<u32>) -> Vec<NewDelivery> {
        readers
            .map(|n| {
                let address = format!("reader{n}@example.com");
                NewDelivery {
                    key: AddressKey::of(&address),
                    address,
                    segment: "all".into(),
                    variant: "a".into(),
                    picks: "{}".into(),
                    message_id: format!("<{n}@example.com>"),
                }
            })
            .collect()
    }

    /// Freezes readers `readers` of `record`, as the freezer does.
    fn freeze_readers(ledger: &Ledger, record: &IssueRecord, readers: std::ops::Range<u32>) {
        let writes = crate::ledger::Writes {
            deliveries: deliveries(readers),
            ..Default::default()
        };
        ledger.write(&record.id, &writes, record.created).unwrap();
    }

    /// Up to `n` deliveries of `newly_frozen`, by address.
    pub(in crate::send) async fn read(newly_frozen: &mut NewlyFrozen<'_>, n: usize) -> Vec<String> {
        let mut read = Vec::new();
        while read.len() < n {
            match tokio::time::timeout(NEVER, newly_frozen.next()).await {
                Ok(Some(delivery)) => read.push(delivery.unwrap().address),
                Ok(None) => break,
                Err(_) => panic!("not woken: read {read:?}"),
            }
        }
        read
    }

    #[tokio::test]
    async fn readers_frozen_beside_the_send_are_read_to_the_last() {
        let (_root, ledger, record, floor) = opened();
        freeze_readers(&ledger, &record, 0..2);
        let progress = FreezeProgress::default();
        let due = ledger.due_after(&record.id, record.created, false, floor);
        let mut growing = NewlyFrozen::new(due, &progress);
        assert_eq!(
            read(&mut growing, 2).await,
            ["reader0@example.com", "reader1@example.com"]
        );
        // More come, and the freeze ends, before the send looks again.
        freeze_readers(&ledger, &record, 2..5);
        progress.end();
        assert_eq!(read(&mut growing, 9).await.len(), 3);
    }

    #[tokio::test]
    async fn the_due_walk_stops_where_the_freeze_beside_it_starts() {
        let (_root, ledger, record, floor) = opened();
        // Committed by the freezer before the walk of the due ones began.
        freeze_readers(&ledger, &record, 0..5);
        let progress = FreezeProgress::default();
        progress.end();
        let at = record.created;
        let mut growing =
            NewlyFrozen::new(ledger.due_after(&record.id, at, false, floor), &progress);
        let due = ledger.due(&record.id, at, false).unwrap().up_to(floor);
        let mut all: Vec<String> = due.map(|d| d.unwrap().address).collect();
        all.extend(read(&mut growing, 99).await);
        assert_eq!(all.len(), 5, "{all:?}");
    }

    #[tokio::test]
    async fn a_send_waiting_for_readers_wakes_when_they_are_written_and_when_the_freeze_ends() {
        let (root, ledger, record, floor) = opened();
        let progress = std::sync::Arc::new(FreezeProgress::default());
        // The freeze ends only once the send has its readers: they must
        // come from the wake-up of their commit, not of the end.
        let (read_them, them_read) = std::sync::mpsc::channel::<()>();
        let freezer = {
            let (progress, record) = (progress.clone(), record.clone());
            let root = root.path().to_path_buf();
            std::thread::spawn(move || {
                let ledger = Ledger::open(&root).unwrap();
                // The send is waiting by now: each wake-up comes after it.
                std::thread::sleep(Duration::from_millis(200));
                freeze_readers(&ledger, &record, 0..3);
                progress.written();
                let _ = them_read.recv();
                std::thread::sleep(Duration::from_millis(200));
                progress.end();
            })
        };
        let due = ledger.due_after(&record.id, record.created, false, floor);
        let mut growing = NewlyFrozen::new(due, &progress);
        let first = tokio::time::timeout(NEVER, growing.next()).await;
        let first = first.expect("woken when readers were written");
        assert_eq!(first.unwrap().unwrap().address, "reader0@example.com");
        assert_eq!(read(&mut growing, 2).await.len(), 2);
        drop(read_them);
        let last = tokio::time::timeout(NEVER, growing.next()).await;
        assert!(last.expect("woken when the freeze ended").is_none());
        freezer.join().unwrap();
    }
}
