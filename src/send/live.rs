//! Send stage: a real send. The issue is frozen in the ledger at its first
//! attempt — its posts, and each reader's segment, variant, picks and
//! fields — so a resumed run sends the same digests whatever changed since.
//! Every message is recorded as `sending` before it is handed over and as
//! `sent` only after the server's 250; a run that dies in between leaves
//! `unknown`, never a silent duplicate.
//!
//! Three stages run at once, joined by bounded queues: this thread streams
//! the due deliveries from the ledger a page at a time and renders each
//! reader's message, a pool of SMTP sessions sends them, and the ledger's
//! writer commits their marks in batches. Memory stays flat however many
//! readers there are: only messages in flight are held.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::progress::Progress;
use super::{Run, SegmentCounts, Summary};
use crate::audience::segments::segment_of;
use crate::audience::subscribers::{self, Status, Subscriber};
use crate::audience::suppressed::Suppressed;
use crate::config::Config;
use crate::content::{Post, Tag};
use crate::deliver::pool::{Halt, Job, Journal, Limits, Pool, Report};
use crate::deliver::smtp::{Outcome, SmtpSettings};
use crate::diagnostics::{Diagnostic, display_path};
use crate::ledger::{
    Delivery, DeliveryStatus, IssueRecord, Ledger, Mark, Marks, NewDelivery, Recorder,
};
use crate::render::Renderer;
use crate::select::{self, History, Index, Issue, Pick, Reader, Reason, Score};
use crate::unsubscribe::{AddressKey, Secret};

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

/// What the ledger keeps of a reader's digest, in `deliveries.picks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Frozen {
    name: Option<String>,
    interests: Vec<Tag>,
    personalize: bool,
    attrs: BTreeMap<String, String>,
    picks: Vec<FrozenPick>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FrozenPick {
    slug: String,
    reason: Reason,
    score: Score,
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
    let (record, posts, allowed) = match unfinished(&ledger, config.delivery.resend_unknown)? {
        Some(record) => {
            let posts: Vec<Post> = serde_json::from_str(&record.posts)
                .with_context(|| format!("cannot read the posts of issue {}", record.id))?;
            let allowed = Allowed::Only(mailable_now(run, &mut problems)?);
            (record, posts, allowed)
        }
        None => match freeze(run, &ledger, &mut problems, &mut segments)? {
            // Frozen just now from the subscribers file: every reader in it
            // is allowed.
            Some((record, posts)) => (record, posts, Allowed::All),
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
    let (renderer, found) =
        Renderer::new(config, run.root, run.config_shown, &issue, secret, attrs);
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
    let recorder = Recorder::start(run.root, &record.id, run.now)?;
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
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the sending runtime")?;
    let ended = runtime.block_on(dispatch.deliver(smtp, from, &limits));
    // Sessions still open (after an error) end before the last marks are
    // written.
    drop(runtime);
    let Dispatch {
        summary,
        mut problems,
        progress,
        renderer,
        recorder,
        ..
    } = dispatch;
    let written = recorder.finish();
    progress.finish();
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
    problems.extend(renderer.take_warnings());
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

/// The issue made now, frozen with its deliveries as the subscribers file
/// is read (one transaction); `None` when nothing is new. Readers left out
/// at this point are counted into `segments` (suppressed: not mailable;
/// skipped: no new post for them).
fn freeze(
    run: &Run,
    ledger: &Ledger,
    problems: &mut Vec<Diagnostic>,
    segments: &mut BTreeMap<String, SegmentCounts>,
) -> Result<Option<(IssueRecord, Vec<Post>)>> {
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
    let index = Index::new(&planned.posts, run.now, &config.digest);
    let path = run.root.join(&config.audience.file);
    let shown = display_path(run.root, &path);
    let suppressed = Suppressed::load(run.root)?;
    let secret = Secret::load(run.root)?;
    let host = config
        .site
        .base_url
        .host_str()
        .unwrap_or("localhost")
        .to_string();
    let mut freezing = ledger.freeze_issue(&record, run.now)?;
    let mut failure = None;
    problems.extend(subscribers::read(&path, &shown, &mut |mut subscriber| {
        if failure.is_some() || !run.mails(&subscriber) {
            return;
        }
        suppressed.apply(&mut subscriber);
        let segment = segment_of(&subscriber, &config.segments);
        let counts = segments.entry(segment.id.clone()).or_default();
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
        let frozen = Frozen {
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
        let delivery = NewDelivery {
            key: AddressKey::of(&subscriber.email),
            address: subscriber.email.clone(),
            segment: segment.id.clone(),
            variant: crate::render::variant_of(segment, &record.id, &subscriber.email),
            picks: serde_json::to_string(&frozen).unwrap_or_default(),
            message_id: secret.message_id(&record.id, &subscriber.email, &host),
        };
        if let Err(err) = freezing.add(&delivery) {
            failure = Some(err);
        }
    }));
    if let Some(err) = failure {
        return Err(err);
    }
    // Every digest can use every custom column of the file, as in a dry run.
    freezing.finish(&subscribers::columns(&path, &shown))?;
    Ok(Some((record, posts)))
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
}

impl Dispatch<'_> {
    /// Sends what is due, then — `retries_in_run` times — what was
    /// deferred meanwhile, after a pause (greylisting wants one).
    async fn deliver(
        &mut self,
        smtp: SmtpSettings,
        from: lettre::Address,
        limits: &Limits,
    ) -> Result<Ended> {
        let config = self.run.config;
        let journal = Ledgered {
            marks: self.recorder.marks().clone(),
            policy: self.policy,
        };
        let mut pool = Pool::start(smtp, from, limits, std::sync::Arc::new(journal));
        let due = self.ledger.due(
            &self.record.id,
            self.run.now,
            config.delivery.resend_unknown,
        )?;
        self.round(&mut pool, due, false).await?;
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
            self.round(&mut pool, again, true).await?;
        }
        let halt = pool.finish(|report| self.count(report)).await;
        Ok(match halt {
            Halt::No => Ended::Done,
            Halt::Unreachable => Ended::Unreachable,
            Halt::LoginRefused => Ended::LoginRefused,
        })
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
            if again {
                let counts = self.counts(&delivery.segment);
                counts.deferred = counts.deferred.saturating_sub(1);
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
