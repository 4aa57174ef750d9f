//! Send stage: a real send. The issue is frozen in the ledger — its posts,
//! then each reader's segment, variant, picks and fields — so a resumed run
//! sends the same digests whatever changed since. Every message is recorded
//! as `sending` before it is handed over and as `sent` only after the
//! server's 250; a run that dies in between leaves `unknown`, never a
//! silent duplicate.
//!
//! Four stages run at once, joined by bounded queues: a freezer thread
//! reads the subscribers file and freezes each reader, this thread streams
//! the due deliveries from the ledger a page at a time as they are
//! committed and renders each reader's message, a pool of SMTP sessions
//! sends them, and the ledger's writer commits the frozen readers and the
//! marks in batches. Memory stays flat however many readers there are:
//! only messages in flight are held.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::progress::Progress;
use super::{Run, SegmentCounts, Summary};
use crate::address::AddressKey;
use crate::audience::segments::segment_of;
use crate::audience::subscribers::{self, Status, Subscriber};
use crate::audience::suppressed::Suppressed;
use crate::config::Config;
use crate::content::{Post, Tag};
use crate::deliver::pool::{Halt, Job, Journal, Limits, Pool, Report};
use crate::deliver::smtp::{Outcome, SmtpSettings};
use crate::diagnostics::{Diagnostic, display_path};
use crate::ledger::{
    Delivery, DeliveryStatus, Due, IssueRecord, Ledger, Mark, Marks, NewDelivery, Recorder,
};
use crate::render::Renderer;
use crate::select::{self, History, Index, Issue, Pick, Reader, Reason, Score};
use crate::unsubscribe::Secret;

/// How a real send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every due message was tried.
    Done,
    /// The relay could not be reached too many times in a row: the rest is
    /// left for the next run (exit 75).
    Unreachable,
    /// The relay refused the login: fix the configuration (exit 1).
    LoginRefused,
}

/// What the ledger keeps of a reader's digest, in `deliveries.picks`:
/// a row of every reader, so it is written short — tags as `[name, key]`
/// and scores as `[tags, text, recency, total]` to four decimals (both are
/// read in either form, as earlier versions wrote them as objects).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Frozen {
    name: Option<String>,
    #[serde(serialize_with = "tags_as_pairs")]
    interests: Vec<Tag>,
    personalize: bool,
    attrs: BTreeMap<String, String>,
    picks: Vec<FrozenPick>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FrozenPick {
    slug: String,
    reason: Reason,
    #[serde(serialize_with = "score_as_array")]
    score: Score,
}

fn tags_as_pairs<S: serde::Serializer>(tags: &[Tag], out: S) -> Result<S::Ok, S::Error> {
    out.collect_seq(tags.iter().map(|tag| (&tag.name, &tag.key)))
}

fn score_as_array<S: serde::Serializer>(score: &Score, out: S) -> Result<S::Ok, S::Error> {
    let score = score.rounded();
    [score.tags, score.text, score.recency, score.total].serialize(out)
}

/// Sends the issue due now through `smtp`.
pub fn send(
    run: &Run,
    smtp: SmtpSettings,
    quiet: bool,
) -> Result<(Summary, Vec<Diagnostic>, Ended)> {
    let config = run.config;
    let ledger = Ledger::open(run.root)?;
    let mut problems = Vec::new();
    let mut segments: BTreeMap<String, SegmentCounts> = config
        .segments
        .iter()
        .map(|s| (s.id.clone(), SegmentCounts::default()))
        .collect();
    // The issue, and — while its readers are not all frozen — those that are.
    let (record, posts, allowed, frozen) =
        match unfinished(&ledger, config.delivery.resend_unknown)? {
            Some(record) => {
                let posts: Vec<Post> = serde_json::from_str(&record.posts)
                    .with_context(|| format!("cannot read the posts of issue {}", record.id))?;
                let allowed = Allowed::Only(mailable_now(run, &mut problems)?);
                let frozen = if ledger.is_frozen(&record.id)? {
                    None
                } else {
                    Some(ledger.delivery_keys(&record.id)?)
                };
                (record, posts, allowed, frozen)
            }
            None => match open(run, &ledger)? {
                // Made just now from the subscribers file: every reader in
                // it is allowed.
                Some((record, posts)) => (record, posts, Allowed::All, Some(HashSet::new())),
                None => {
                    let summary = Summary {
                        issue: run
                            .now
                            .with_timezone(&config.site.timezone)
                            .format("%Y-%m-%d")
                            .to_string(),
                        dry_run: false,
                        posts: Vec::new(),
                        outbox: None,
                        shard: run.shard_label(),
                        segments: BTreeMap::new(),
                    };
                    return Ok((summary, problems, Ended::Done));
                }
            },
        };
    ledger.recover(&record.id, run.now)?;
    let expired = expire(&ledger, &record, run, &mut segments)?;
    if expired > 0 {
        problems.push(Diagnostic::warning(
            display_path(run.root, &crate::ledger::ledger_path(run.root)),
            format!(
                "{expired} deferred message(s) of issue {} are older than delivery.max_age_hours; counted as failed",
                record.id
            ),
        ));
    }
    let issue = Issue {
        id: record.id.clone(),
        cutoff: record.cutoff,
        since: record.since,
        posts: posts.iter().collect(),
    };
    let summary = Summary {
        issue: record.id.clone(),
        dry_run: false,
        posts: posts.iter().map(|p| p.slug.clone()).collect(),
        outbox: None,
        shard: run.shard_label(),
        segments,
    };
    let resend_unknown = config.delivery.resend_unknown;
    let attrs = match ledger.custom_columns(&record.id)? {
        Some(attrs) => attrs,
        None => columns_of_due(&ledger, &record.id, run.now, resend_unknown)?,
    };
    let secret = Secret::load(run.root)?;
    let (renderer, found) = Renderer::new(
        config,
        run.root,
        run.config_shown,
        &issue,
        secret.clone(),
        attrs,
    );
    problems.extend(found);
    let Some(renderer) = renderer else {
        return Ok((summary, problems, Ended::Done));
    };
    let from = config
        .email
        .from
        .as_ref()
        .map(|m| m.email.clone())
        .context("email.from is required to send")?;
    let limits = Limits {
        concurrency: config.delivery.concurrency,
        interval: interval(config),
        max_connection_failures: config.delivery.max_connection_failures,
    };
    let total = ledger.due_count(&record.id, run.now, resend_unknown)?;
    // Readers frozen by this run come after every delivery recorded now.
    let floor = ledger.last_row()?;
    let recorder = Recorder::start(run.root, &record.id, run.now)?;
    let freezing = Freezing::default();
    let marks = recorder.marks().clone();
    // Who may not be mailed, for the readers still to freeze.
    let freeze_with = match frozen {
        Some(frozen) => Some((frozen, Suppressed::load(run.root)?)),
        None => None,
    };
    let (summary, mut problems, ended, recorder) = std::thread::scope(|scope| {
        let freezer = freeze_with.map(|(frozen, suppressed)| {
            let readers = Readers {
                run,
                record: &record,
                posts: &posts,
                frozen,
                suppressed,
                secret: &secret,
            };
            let freezing = &freezing;
            std::thread::Builder::new()
                .name("freezer".into())
                .spawn_scoped(scope, move || freeze(&readers, &marks, freezing))
        });
        let freezer = freezer
            .transpose()
            .context("cannot start freezing readers")?;
        let growing = freezer.as_ref().map(|_| (floor, &freezing));
        let mut dispatch = Dispatch {
            policy: Policy::of(run, &record),
            run,
            ledger: &ledger,
            record: &record,
            posts: &posts,
            allowed,
            renderer,
            recorder,
            summary,
            problems,
            progress: Progress::new(total, quiet),
            in_flight: HashMap::new(),
            deferred: Vec::new(),
            freezing: &freezing,
            frozen_counted: 0,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the sending runtime")?;
        let ended = runtime.block_on(dispatch.deliver(smtp, from, &limits, growing));
        // Sessions still open (after an error) end before the last marks are
        // written.
        drop(runtime);
        let Dispatch {
            mut summary,
            mut problems,
            progress,
            renderer,
            recorder,
            ..
        } = dispatch;
        // Readers are frozen to the end, even when the relay is gone.
        if let Some(freezer) = freezer {
            let froze = freezer
                .join()
                .map_err(|_| anyhow::anyhow!("freezing readers panicked"))?;
            for (segment, counts) in froze.segments {
                let total = summary.segments.entry(segment).or_default();
                total.suppressed += counts.suppressed;
                total.skipped += counts.skipped;
            }
            // A run that carries a freeze on read the file twice: once said.
            for problem in froze.problems {
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        }
        progress.finish();
        problems.extend(renderer.take_warnings());
        anyhow::Ok((summary, problems, ended, recorder))
    })?;
    let written = recorder.finish();
    let ended = ended?;
    written?;
    // Marked `sending` without a reply: the message may have arrived.
    let unknown = ledger.recover(&record.id, run.now)?;
    if unknown > 0 {
        problems.push(Diagnostic::warning(
            display_path(run.root, &crate::ledger::ledger_path(run.root)),
            format!(
                "{unknown} message(s) were on their way but not confirmed (each may have arrived); they keep their Message-ID and are not sent again unless delivery.resend_unknown is true"
            ),
        ));
    }
    ledger.complete_if_done(&record.id, resend_unknown, run.now)?;
    Ok((summary, problems, ended))
}

/// The issue a run must finish first: one not completed, or — when
/// `resend_unknown` — the last one if it still has `unknown` messages.
fn unfinished(ledger: &Ledger, resend_unknown: bool) -> Result<Option<IssueRecord>> {
    if let Some(record) = ledger.unfinished_issue()? {
        return Ok(Some(record));
    }
    if !resend_unknown {
        return Ok(None);
    }
    match ledger.last_issue()? {
        Some(record) if ledger.counts(&record.id)?.unknown > 0 => Ok(Some(record)),
        _ => Ok(None),
    }
}

/// Which frozen readers may still be mailed.
enum Allowed {
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

/// The readers the subscribers file allows now (mailable, not suppressed),
/// sorted: a frozen issue still skips anyone who left or was removed since.
fn mailable_now(run: &Run, problems: &mut Vec<Diagnostic>) -> Result<Vec<AddressKey>> {
    let path = run.root.join(&run.config.audience.file);
    let shown = display_path(run.root, &path);
    let suppressed = Suppressed::load(run.root)?;
    let mut keys = Vec::new();
    let found = subscribers::read(&path, &shown, &mut |mut subscriber| {
        suppressed.apply(&mut subscriber);
        if subscriber.status.mailable() && run.mails(&subscriber) {
            keys.push(AddressKey::of(&subscriber.email));
        }
    });
    problems.extend(found);
    keys.sort_unstable_by_key(|key| key.0);
    keys.dedup();
    Ok(keys)
}

/// The custom columns of an issue frozen before the ledger kept them:
/// those of its due readers' frozen fields, in one pass.
fn columns_of_due(
    ledger: &Ledger,
    issue: &str,
    now: DateTime<FixedOffset>,
    resend_unknown: bool,
) -> Result<Vec<String>> {
    let mut attrs = Vec::new();
    for delivery in ledger.due(issue, now, resend_unknown)? {
        let reader = Frozen::of(&delivery?)?;
        subscribers::add_columns(&mut attrs, &reader.attrs);
    }
    Ok(attrs)
}

/// The issue made now, recorded with its posts (its readers are frozen
/// while the first are sent); `None` when nothing is new.
fn open(run: &Run, ledger: &Ledger) -> Result<Option<(IssueRecord, Vec<Post>)>> {
    let config = run.config;
    let history = history(ledger)?;
    let window = select::Window::new(config, run.now, run.since);
    let planned = select::plan(run.library, &history, window);
    if planned.posts.is_empty() {
        return Ok(None);
    }
    let posts: Vec<Post> = planned.posts.iter().map(|p| (*p).clone()).collect();
    let json = serde_json::to_string(&posts)?;
    let record = IssueRecord {
        id: ledger.next_issue_id(&planned.id)?,
        cutoff: run.now,
        since: planned.since,
        content_hash: Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        posts: json,
        created: run.now,
        completed: None,
    };
    let path = run.root.join(&config.audience.file);
    let shown = display_path(run.root, &path);
    // Every digest can use every custom column of the file, as in a dry run.
    ledger.open_issue(&record, &subscribers::columns(&path, &shown))?;
    Ok(Some((record, posts)))
}

/// How far the freezing of an issue's readers has got, for the send
/// beside it.
#[derive(Default)]
struct Freezing {
    /// Readers frozen (written or on their way to the ledger).
    frozen: AtomicU64,
    /// Set once freezing ended: every reader is frozen and written, or the
    /// ledger's writer stopped (and says why).
    done: AtomicBool,
}

/// Says freezing ended when dropped, however it ends.
struct FreezeEnds<'f>(&'f Freezing);

impl Drop for FreezeEnds<'_> {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::SeqCst);
    }
}

/// The deliveries a freeze beside the send adds, read as they are
/// committed: waits for more while the freeze goes on.
struct Growing<'l> {
    due: Due<'l>,
    freezing: &'l Freezing,
}

impl Iterator for Growing<'_> {
    type Item = Result<Delivery>;

    fn next(&mut self) -> Option<Result<Delivery>> {
        loop {
            // Read first: whatever was committed before it was set is then
            // seen by the look that follows.
            let done = self.freezing.done.load(Ordering::SeqCst);
            self.due.again();
            if let Some(delivery) = self.due.next() {
                return Some(delivery);
            }
            if done {
                return None;
            }
            std::thread::sleep(GROWING_WAIT);
        }
    }
}

/// How long to wait before looking for more frozen readers.
const GROWING_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// What freezing found, for the summary.
struct Froze {
    /// Readers left out, by segment: not mailable, or no new post for them.
    segments: BTreeMap<String, SegmentCounts>,
    problems: Vec<Diagnostic>,
}

/// How many readers go to the ledger at a time, and how many such chunks
/// may wait to be written.
const CHUNK: usize = 1024;
const CHUNKS_WAITING: usize = 4;

/// What freezing the readers of an issue works from.
struct Readers<'r> {
    run: &'r Run<'r>,
    record: &'r IssueRecord,
    posts: &'r [Post],
    /// Readers the ledger has already.
    frozen: HashSet<AddressKey>,
    suppressed: Suppressed,
    secret: &'r Secret,
}

/// Freezes the readers of the issue the subscribers file lists now and the
/// ledger does not: each one's segment, variant, picks and fields, written
/// by the ledger's writer a chunk at a time, the last chunk saying the
/// issue is frozen. Runs beside the send, which reads the readers as they
/// are committed.
fn freeze(readers: &Readers, marks: &Marks, freezing: &Freezing) -> Froze {
    let Readers {
        run,
        record,
        posts,
        frozen,
        suppressed,
        secret,
    } = readers;
    let config = run.config;
    let mut froze = Froze {
        segments: BTreeMap::new(),
        problems: Vec::new(),
    };
    let path = run.root.join(&config.audience.file);
    let shown = display_path(run.root, &path);
    let _ends = FreezeEnds(freezing);
    let posts: Vec<&Post> = posts.iter().collect();
    // As of the issue's cutoff, so a run that carries on picks alike.
    let index = Index::new(&posts, record.cutoff, &config.digest);
    let host = config
        .site
        .base_url
        .host_str()
        .unwrap_or("localhost")
        .to_string();
    let mut chunk = Vec::with_capacity(CHUNK);
    // Each chunk has its own answer: one the writer drops unanswered (it
    // stopped) says so, and nothing waits for a writer that is gone.
    let mut waiting: VecDeque<mpsc::Receiver<usize>> = VecDeque::new();
    let mut stopped = false;
    let send = |chunk: Vec<NewDelivery>, last: bool, waiting: &mut VecDeque<_>| {
        while waiting.len() >= CHUNKS_WAITING || (last && !waiting.is_empty()) {
            let written: Option<mpsc::Receiver<usize>> = waiting.pop_front();
            if written.is_none_or(|written| written.recv().is_err()) {
                // The writer stopped: `finish` says why.
                return false;
            }
        }
        let n = chunk.len() as u64;
        let (committed, written) = mpsc::channel();
        if !marks.freeze(chunk, last, committed) {
            return false;
        }
        freezing.frozen.fetch_add(n, Ordering::SeqCst);
        if last {
            // The issue is frozen once its last chunk is written.
            return written.recv().is_ok();
        }
        waiting.push_back(written);
        true
    };
    let found = subscribers::read(&path, &shown, &mut |mut subscriber| {
        if stopped || !run.mails(&subscriber) {
            return;
        }
        let key = AddressKey::of(&subscriber.email);
        if frozen.contains(&key) {
            return;
        }
        suppressed.apply(&mut subscriber);
        let segment = segment_of(&subscriber, &config.segments);
        let counts = froze.segments.entry(segment.id.clone()).or_default();
        if !subscriber.status.mailable() {
            counts.suppressed += 1;
            return;
        }
        let reader = Reader {
            interests: &subscriber.interests,
            personalize: subscriber.personalize,
        };
        let (_, picks) = select::digest(&index, segment, reader, &config.digest);
        if picks.is_empty() {
            counts.skipped += 1;
            return;
        }
        let digest = Frozen {
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
        chunk.push(NewDelivery {
            key,
            address: subscriber.email.clone(),
            segment: segment.id.clone(),
            variant: crate::render::variant_of(segment, &record.id, &subscriber.email),
            picks: serde_json::to_string(&digest).unwrap_or_default(),
            message_id: secret.message_id(&record.id, &subscriber.email, &host),
        });
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            stopped = !send(full, false, &mut waiting);
        }
    });
    froze.problems.extend(found);
    if !stopped {
        send(chunk, true, &mut waiting);
    }
    froze
}

/// What earlier issues sent: the last cutoff and every post's slug.
pub fn history(ledger: &Ledger) -> Result<History> {
    let mut sent = HashSet::new();
    for json in ledger.issue_posts()? {
        let posts: Vec<Post> =
            serde_json::from_str(&json).context("cannot read an earlier issue")?;
        sent.extend(posts.into_iter().map(|p| p.slug));
    }
    Ok(History {
        last_cutoff: ledger.last_issue()?.map(|r| r.cutoff),
        sent,
    })
}

impl Frozen {
    /// The digest frozen for `delivery`'s reader.
    fn of(delivery: &Delivery) -> Result<Frozen> {
        serde_json::from_str(&delivery.picks)
            .with_context(|| format!("cannot read the digest of {}", delivery.address))
    }
}

/// What becomes of a message's outcome in the ledger: the same decision
/// for the worker that records it and for the summary that counts it.
#[derive(Debug, Clone, Copy)]
struct Policy {
    now: DateTime<FixedOffset>,
    max_attempts: u32,
    retry_after: std::time::Duration,
    /// The issue is past `delivery.max_age_hours`: no more deferrals.
    too_old: bool,
}

impl Policy {
    fn of(run: &Run, record: &IssueRecord) -> Policy {
        let delivery = &run.config.delivery;
        Policy {
            now: run.now,
            max_attempts: delivery.max_attempts,
            retry_after: delivery.retry_after,
            too_old: too_old(run, record.created),
        }
    }

    /// The mark for `outcome` of a message to `to` tried `tried` times
    /// before; `None` when there is nothing to write (unknown: left
    /// `sending`; withheld: recorded as it was refused).
    fn mark(&self, tried: u32, to: &str, outcome: &Outcome) -> Option<Mark> {
        Some(match outcome {
            Outcome::Sent(reply) => Mark::Sent(reply.clone()),
            Outcome::Deferred(reply) => {
                let tried = tried + 1;
                if tried >= self.max_attempts || self.too_old {
                    Mark::Failed {
                        reply: reply.clone(),
                        bounced: None,
                    }
                } else {
                    let wait = self.retry_after * 2u32.pow(tried.min(16) - 1);
                    let next = self.now + chrono::Duration::from_std(wait).unwrap_or_default();
                    Mark::Deferred(reply.clone(), next)
                }
            }
            Outcome::Failed(reply) => Mark::Failed {
                reply: reply.clone(),
                bounced: Some(to.to_string()),
            },
            Outcome::NotSent(reply) => Mark::Pending(reply.clone()),
            Outcome::Withheld | Outcome::Unknown(_) => return None,
        })
    }
}

/// The pool's journal: marks straight from the sessions to the ledger's
/// writer, so a session waits for the disk and nothing else.
struct Ledgered {
    marks: Marks,
    policy: Policy,
}

impl Journal for Ledgered {
    fn sending(&self, job: &Job, answer: tokio::sync::oneshot::Sender<bool>) {
        self.marks.sending(job.key, answer);
    }

    fn settled(&self, job: &Job, outcome: &Outcome) {
        if let Some(mark) = self.policy.mark(job.tried, job.to.as_ref(), outcome) {
            self.marks.record(job.key, mark);
        }
    }

    fn hurry(&self) {
        self.marks.hurry();
    }
}

/// A send under way: the deliveries rendered into the pool, the pool's
/// reports counted into the summary.
struct Dispatch<'r> {
    run: &'r Run<'r>,
    /// For reading (the writer has its own connection).
    ledger: &'r Ledger,
    record: &'r IssueRecord,
    posts: &'r [Post],
    allowed: Allowed,
    renderer: Renderer<'r>,
    recorder: Recorder,
    policy: Policy,
    summary: Summary,
    problems: Vec<Diagnostic>,
    progress: Progress,
    /// Messages handed to the pool and not done yet, with their segment.
    in_flight: HashMap<AddressKey, String>,
    /// Messages deferred in the current round, for a try within the run.
    deferred: Vec<AddressKey>,
    /// Readers frozen beside the send, and how many of them `progress`
    /// counts.
    freezing: &'r Freezing,
    frozen_counted: u64,
}

impl Dispatch<'_> {
    /// Sends what is due, then — `retries_in_run` times — what was
    /// deferred meanwhile, after a pause (greylisting wants one). The pool
    /// is finished whatever happens: the jobs it holds, whose `sending`
    /// marks are written, go before this returns.
    async fn deliver(
        &mut self,
        smtp: SmtpSettings,
        from: lettre::Address,
        limits: &Limits,
        growing: Option<(i64, &Freezing)>,
    ) -> Result<Ended> {
        let journal = Ledgered {
            marks: self.recorder.marks().clone(),
            policy: self.policy,
        };
        let mut pool = Pool::start(smtp, from, limits, std::sync::Arc::new(journal));
        let rounds = self.rounds(&mut pool, growing).await;
        let halt = pool.finish(|report| self.count(report)).await;
        rounds?;
        Ok(match halt {
            Halt::No => Ended::Done,
            Halt::Unreachable => Ended::Unreachable,
            Halt::LoginRefused => Ended::LoginRefused,
        })
    }

    /// The rounds of [`deliver`](Dispatch::deliver): the due deliveries —
    /// those recorded before the run, then (`growing`: from which rowid)
    /// those frozen beside it — then the deferred ones again.
    async fn rounds(&mut self, pool: &mut Pool, growing: Option<(i64, &Freezing)>) -> Result<()> {
        let config = self.run.config;
        let resend_unknown = config.delivery.resend_unknown;
        let due = self
            .ledger
            .due(&self.record.id, self.run.now, resend_unknown)?;
        let (due, growing) = match growing {
            Some((floor, freezing)) => {
                let frozen =
                    self.ledger
                        .due_after(&self.record.id, self.run.now, resend_unknown, floor);
                let growing = Growing {
                    due: frozen,
                    freezing,
                };
                (due.up_to(floor), Some(growing))
            }
            None => (due, None),
        };
        self.round(pool, due.chain(growing.into_iter().flatten()), false)
            .await?;
        for _ in 0..config.delivery.retries_in_run {
            while !self.in_flight.is_empty() {
                match pool.reports.recv().await {
                    Some(report) => self.count(report),
                    None => break,
                }
            }
            // The deferred marks are read back: they must be written first.
            let keys = std::mem::take(&mut self.deferred);
            if keys.is_empty() || pool.stopped() || !self.recorder.marks().flush().await {
                break;
            }
            tokio::time::sleep(config.delivery.retry_in_run).await;
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
            self.round(pool, again, true).await?;
        }
        Ok(())
    }

    /// Renders `queue` into the pool as fast as the pool takes messages,
    /// counting the pool's reports in between; `again` when it is what
    /// this run deferred (counted as deferred until tried again).
    async fn round(
        &mut self,
        pool: &mut Pool,
        mut queue: impl Iterator<Item = Result<Delivery>>,
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
                pending = self.next_job(&mut queue, again)?;
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
                        self.in_flight.insert(job.key, segment);
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
    fn next_job(
        &mut self,
        queue: &mut impl Iterator<Item = Result<Delivery>>,
        again: bool,
    ) -> Result<Option<(Job, String)>> {
        let config = self.run.config;
        for delivery in queue.by_ref() {
            let delivery = delivery?;
            let frozen = self.freezing.frozen.load(Ordering::SeqCst);
            if frozen > self.frozen_counted {
                self.progress.add(frozen - self.frozen_counted);
                self.frozen_counted = frozen;
            }
            if again {
                let counts = self.counts(&delivery.segment);
                counts.deferred = counts.deferred.saturating_sub(1);
            }
            // A reader already handed to the pool is not queued again.
            if self.in_flight.contains_key(&delivery.key) {
                continue;
            }
            if !self.allowed.contains(delivery.key) {
                self.recorder.marks().record(delivery.key, Mark::Suppressed);
                self.counts(&delivery.segment).suppressed += 1;
                continue;
            }
            let reader = Frozen::of(&delivery)?;
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
            let email = match self.renderer.email(segment, &subscriber, &picks) {
                Ok(email) => email,
                Err(problem) => {
                    if !self.problems.contains(&problem) {
                        self.problems.push(problem);
                    }
                    continue;
                }
            };
            let mut email = email;
            email.message_id = delivery.message_id;
            let bytes = self.renderer.eml(&email, self.run.now)?;
            let to = delivery
                .address
                .parse()
                .with_context(|| format!("cannot address {}", delivery.address))?;
            let job = Job::new(delivery.key, to, bytes, delivery.attempts);
            return Ok(Some((job, delivery.segment)));
        }
        Ok(None)
    }

    /// Counts what became of a message (its journal recorded it).
    fn count(&mut self, report: Report) {
        self.progress.step();
        let Some(segment) = self.in_flight.remove(&report.key) else {
            return;
        };
        let mark = self.policy.mark(report.tried, "", &report.outcome);
        if let Some(Mark::Deferred(..)) = mark {
            self.deferred.push(report.key);
        }
        let counts = self.counts(&segment);
        match mark {
            Some(Mark::Sent(_)) => counts.sent += 1,
            Some(Mark::Failed { .. }) => counts.failed += 1,
            Some(Mark::Pending(_) | Mark::Deferred(..)) => counts.deferred += 1,
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

/// Whether an issue made at `created` is past `delivery.max_age_hours`.
fn too_old(run: &Run, created: DateTime<FixedOffset>) -> bool {
    let age = run.now - created;
    chrono::Duration::from_std(run.config.delivery.max_age).is_ok_and(|max| age >= max)
}

/// Deferred messages of an issue past its age: failed, so it can complete.
fn expire(
    ledger: &Ledger,
    record: &IssueRecord,
    run: &Run,
    segments: &mut BTreeMap<String, SegmentCounts>,
) -> Result<u64> {
    if !too_old(run, record.created) {
        return Ok(0);
    }
    let expired = ledger.expire_deferred(&record.id, "deferred until too late", run.now)?;
    for (segment, n) in &expired {
        segments.entry(segment.clone()).or_default().failed += n;
    }
    Ok(expired.values().sum())
}

/// The shortest time between two messages under the rate limits.
fn interval(config: &Config) -> Option<std::time::Duration> {
    let per_second = config
        .delivery
        .per_second
        .map(|r| std::time::Duration::from_secs_f64(1.0 / r));
    let per_hour = config
        .delivery
        .per_hour
        .map(|r| std::time::Duration::from_secs_f64(3600.0 / f64::from(r)));
    match (per_second, per_hour) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: &str = "2026-06-01T06:00:00Z";

    /// A ledger with an issue opened, and where its deliveries start.
    fn opened() -> (tempfile::TempDir, Ledger, IssueRecord, i64) {
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
        ledger.open_issue(&record, &[]).unwrap();
        let floor = ledger.last_row().unwrap();
        (root, ledger, record, floor)
    }

    /// Freezes readers `readers` of `record`, as the freezer does.
    fn freeze_readers(ledger: &Ledger, record: &IssueRecord, readers: std::ops::Range<u32>) {
        let deliveries = readers
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
            .collect();
        let writes = crate::ledger::Writes {
            deliveries,
            ..Default::default()
        };
        ledger.write(&record.id, &writes, record.created).unwrap();
    }

    #[test]
    fn readers_frozen_beside_the_send_are_read_to_the_last() {
        let (_root, ledger, record, floor) = opened();
        freeze_readers(&ledger, &record, 0..2);
        let freezing = Freezing::default();
        let mut growing = Growing {
            due: ledger.due_after(&record.id, record.created, false, floor),
            freezing: &freezing,
        };
        let mut read = |n| {
            (&mut growing)
                .take(n)
                .map(|delivery| delivery.unwrap().address)
                .collect::<Vec<_>>()
        };
        assert_eq!(read(2), ["reader0@example.com", "reader1@example.com"]);
        // More come, and the freeze ends, before the send looks again.
        freeze_readers(&ledger, &record, 2..5);
        freezing.done.store(true, Ordering::SeqCst);
        assert_eq!(read(9).len(), 3);
    }

    #[test]
    fn the_due_walk_stops_where_the_freeze_beside_it_starts() {
        let (_root, ledger, record, floor) = opened();
        // Committed by the freezer before the walk of the due ones began.
        freeze_readers(&ledger, &record, 0..5);
        let freezing = Freezing::default();
        freezing.done.store(true, Ordering::SeqCst);
        let at = record.created;
        let growing = Growing {
            due: ledger.due_after(&record.id, at, false, floor),
            freezing: &freezing,
        };
        let due = ledger.due(&record.id, at, false).unwrap().up_to(floor);
        let all: Vec<String> = due.chain(growing).map(|d| d.unwrap().address).collect();
        assert_eq!(all.len(), 5, "{all:?}");
    }

    #[test]
    fn a_frozen_digest_is_written_short_and_read_in_either_form() {
        let tag = Tag {
            name: "Rust".into(),
            key: "rust".into(),
        };
        let score = Score {
            tags: 1.0,
            text: 0.884_404_582_786_735_5,
            recency: 0.950_411_156_943_017_4,
            total: 1.465_726_264_003_349_3,
        };
        let frozen = Frozen {
            name: Some("Ana".into()),
            interests: vec![tag.clone()],
            personalize: true,
            attrs: BTreeMap::new(),
            picks: vec![FrozenPick {
                slug: "hello".into(),
                reason: Reason::SomethingDifferent,
                score,
            }],
        };
        let json = serde_json::to_string(&frozen).unwrap();
        assert_eq!(
            json,
            r#"{"name":"Ana","interests":[["Rust","rust"]],"personalize":true,"attrs":{},"picks":[{"slug":"hello","reason":"SomethingDifferent","score":[1.0,0.8844,0.9504,1.4657]}]}"#
        );
        let read: Frozen = serde_json::from_str(&json).unwrap();
        assert_eq!(read.interests, std::slice::from_ref(&tag));
        assert_eq!(read.picks[0].score, score.rounded());
        // As earlier versions wrote it.
        let old = r#"{"name":null,"interests":[{"name":"Rust","key":"rust"}],"personalize":false,"attrs":{"role":"cto"},"picks":[{"slug":"hello","reason":{"Follows":"rust"},"score":{"tags":1.0,"text":0.5,"recency":0.25,"total":2.0}}]}"#;
        let read: Frozen = serde_json::from_str(old).unwrap();
        assert_eq!(read.interests, [tag]);
        assert_eq!(read.picks[0].score.total, 2.0);
        assert_eq!(read.attrs["role"], "cto");
    }
}
