//! Send stage: a real send. The issue is frozen in the ledger at its first
//! attempt — its posts, and each reader's segment, variant, picks and
//! fields — so a resumed run sends the same digests whatever changed since.
//! Every message is recorded as `sending` before it is handed over and as
//! `sent` only after the server's 250; a run that dies in between leaves
//! `unknown`, never a silent duplicate.

use std::cell::RefCell;
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
use crate::deliver::pool::{Event, Halt, Job, Limits, Pool};
use crate::deliver::smtp::{Outcome, SmtpSettings};
use crate::diagnostics::{Diagnostic, display_path};
use crate::ledger::{DeliveryStatus, IssueRecord, Ledger, NewDelivery, Reason as Bounce};
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
    // Who the subscribers file allows now: read while freezing a new
    // issue, or once more when resuming one.
    let (record, posts, allowed) = match unfinished(&ledger, config.delivery.resend_unknown)? {
        Some(record) => {
            let posts: Vec<Post> = serde_json::from_str(&record.posts)
                .with_context(|| format!("cannot read the posts of issue {}", record.id))?;
            let allowed = mailable_now(run, &mut problems)?;
            (record, posts, allowed)
        }
        None => match freeze(run, &ledger, &mut problems, &mut segments)? {
            Some(frozen) => frozen,
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
    let mut summary = Summary {
        issue: record.id.clone(),
        dry_run: false,
        posts: posts.iter().map(|p| p.slug.clone()).collect(),
        outbox: None,
        shard: run.shard_label(),
        segments,
    };
    let due = ledger.due(&record.id, run.now, config.delivery.resend_unknown)?;
    let mut attrs: Vec<String> = Vec::new();
    let mut frozen: HashMap<AddressKey, Frozen> = HashMap::new();
    for delivery in &due {
        let reader: Frozen = serde_json::from_str(&delivery.picks)
            .with_context(|| format!("cannot read the digest of {}", delivery.address))?;
        subscribers::add_columns(&mut attrs, &reader.attrs);
        frozen.insert(delivery.key, reader);
    }
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
    let segment_of_key: HashMap<AddressKey, String> =
        due.iter().map(|d| (d.key, d.segment.clone())).collect();
    let attempts: HashMap<AddressKey, u32> = due.iter().map(|d| (d.key, d.attempts)).collect();
    let limits = Limits {
        concurrency: config.delivery.concurrency,
        interval: interval(config),
        max_connection_failures: config.delivery.max_connection_failures,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the sending runtime")?;
    let mut errors: Vec<anyhow::Error> = Vec::new();
    let mut progress = Progress::new(due.len() as u64, quiet);
    let attempts = RefCell::new(attempts);
    // Keys deferred in the current round, for the retries within the run.
    let deferred_now: RefCell<Vec<AddressKey>> = RefCell::new(Vec::new());
    let ended = runtime.block_on(async {
        let mut pool = Pool::start(smtp, from, &limits);
        let mut in_flight = 0usize;
        let mut record_event = |event: Event, summary: &mut Summary, in_flight: &mut usize| {
            if matches!(event, Event::Done(..)) {
                progress.step();
                *in_flight = in_flight.saturating_sub(1);
            }
            let result = apply(
                &ledger,
                &record,
                event,
                run,
                &attempts.borrow(),
                &segment_of_key,
                summary,
            );
            match result {
                Ok(Some(key)) => deferred_now.borrow_mut().push(key),
                Ok(None) => {}
                Err(err) => errors.push(err),
            }
        };
        let mut round_due: Vec<crate::ledger::Delivery> = due.clone();
        for round in 0..=config.delivery.retries_in_run {
            if round > 0 {
                // Wait until this round settled, then give the deferred a
                // second chance after a pause (greylisting wants one).
                while in_flight > 0 {
                    match pool.events.recv().await {
                        Some(event) => record_event(event, &mut summary, &mut in_flight),
                        None => break,
                    }
                }
                let keys = std::mem::take(&mut *deferred_now.borrow_mut());
                if keys.is_empty() || pool.stopped() {
                    break;
                }
                tokio::time::sleep(config.delivery.retry_in_run).await;
                round_due.clear();
                for key in keys {
                    if let Some(delivery) = ledger.delivery(&record.id, key)?
                        && delivery.status == DeliveryStatus::Deferred
                    {
                        attempts.borrow_mut().insert(key, delivery.attempts);
                        let counts = summary
                            .segments
                            .entry(delivery.segment.clone())
                            .or_default();
                        counts.deferred = counts.deferred.saturating_sub(1);
                        round_due.push(delivery);
                    }
                }
            }
            let mut queue = round_due.iter();
            let mut pending: Option<Job> = None;
            loop {
                if pending.is_none() && !pool.stopped() {
                    pending = next_job(
                        &mut queue,
                        &allowed,
                        &ledger,
                        &record.id,
                        &posts,
                        &frozen,
                        config,
                        &renderer,
                        run.now,
                        &mut summary,
                        &mut problems,
                    )?;
                }
                let Some(job) = pending.take() else { break };
                tokio::select! {
                    permit = pool.jobs.reserve() => match permit {
                        Ok(permit) => {
                            permit.send(job);
                            in_flight += 1;
                        }
                        Err(_) => break,
                    },
                    event = pool.events.recv() => {
                        pending = Some(job);
                        if let Some(event) = event {
                            record_event(event, &mut summary, &mut in_flight);
                        }
                    }
                }
            }
        }
        let halt = pool
            .finish(|event| record_event(event, &mut summary, &mut in_flight))
            .await;
        Ok::<Ended, anyhow::Error>(match halt {
            Halt::No => Ended::Done,
            Halt::Unreachable => Ended::Unreachable,
            Halt::LoginRefused => Ended::LoginRefused,
        })
    })?;
    progress.finish();
    if let Some(err) = errors.into_iter().next() {
        return Err(err);
    }
    // Handed over without a reply: the message may have arrived.
    let unknown = ledger.recover(&record.id, run.now)?;
    if unknown > 0 {
        problems.push(Diagnostic::warning(
            display_path(run.root, &crate::ledger::ledger_path(run.root)),
            format!(
                "{unknown} message(s) were handed over but not confirmed; they keep their Message-ID and are not sent again unless delivery.resend_unknown is true"
            ),
        ));
    }
    problems.extend(renderer.take_warnings());
    ledger.complete_if_done(&record.id, config.delivery.resend_unknown, run.now)?;
    Ok((summary, problems, ended))
}

/// An issue as a run works on it: its record, its frozen posts, and the
/// readers the subscribers file allows now.
type FrozenIssue = (IssueRecord, Vec<Post>, HashSet<AddressKey>);

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

/// The readers the subscribers file allows now (mailable, not suppressed):
/// a frozen issue still skips anyone who left or was removed since.
fn mailable_now(run: &Run, problems: &mut Vec<Diagnostic>) -> Result<HashSet<AddressKey>> {
    let path = run.root.join(&run.config.audience.file);
    let shown = display_path(run.root, &path);
    let suppressed = Suppressed::load(run.root)?;
    let mut keys = HashSet::new();
    let found = subscribers::read(&path, &shown, &mut |mut subscriber| {
        suppressed.apply(&mut subscriber);
        if subscriber.status.mailable() && run.mails(&subscriber) {
            keys.insert(AddressKey::of(&subscriber.email));
        }
    });
    problems.extend(found);
    Ok(keys)
}

/// The issue made now, frozen with its deliveries; `None` when nothing is new.
/// Readers left out at this point are counted into `segments`
/// (suppressed: not mailable; skipped: no new post for them); the
/// mailable readers' keys come back with the issue.
fn freeze(
    run: &Run,
    ledger: &Ledger,
    problems: &mut Vec<Diagnostic>,
    segments: &mut BTreeMap<String, SegmentCounts>,
) -> Result<Option<FrozenIssue>> {
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
    let mut deliveries = Vec::new();
    let mut allowed = HashSet::new();
    problems.extend(subscribers::read(&path, &shown, &mut |mut subscriber| {
        if !run.mails(&subscriber) {
            return;
        }
        suppressed.apply(&mut subscriber);
        let segment = segment_of(&subscriber, &config.segments);
        let counts = segments.entry(segment.id.clone()).or_default();
        if !subscriber.status.mailable() {
            counts.suppressed += 1;
            return;
        }
        allowed.insert(AddressKey::of(&subscriber.email));
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
        deliveries.push(NewDelivery {
            key: AddressKey::of(&subscriber.email),
            address: subscriber.email.clone(),
            segment: segment.id.clone(),
            variant: crate::render::variant_of(segment, &record.id, &subscriber.email),
            picks: serde_json::to_string(&frozen).unwrap_or_default(),
            message_id: secret.message_id(&record.id, &subscriber.email, &host),
        });
    }));
    ledger.create_issue(&record, &mut deliveries.into_iter(), run.now)?;
    Ok(Some((record, posts, allowed)))
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

/// The next delivery that is still to be mailed, rendered; suppressed
/// readers are recorded and passed over.
#[allow(clippy::too_many_arguments)]
fn next_job<'d>(
    queue: &mut impl Iterator<Item = &'d crate::ledger::Delivery>,
    allowed: &HashSet<AddressKey>,
    ledger: &Ledger,
    issue_id: &str,
    posts: &[Post],
    frozen: &HashMap<AddressKey, Frozen>,
    config: &Config,
    renderer: &Renderer,
    now: DateTime<FixedOffset>,
    summary: &mut Summary,
    problems: &mut Vec<Diagnostic>,
) -> Result<Option<Job>> {
    for delivery in queue.by_ref() {
        let counts = summary
            .segments
            .entry(delivery.segment.clone())
            .or_default();
        // Re-checked right before each message: an unsubscribe recorded
        // during a long run takes effect at once.
        if !allowed.contains(&delivery.key) || ledger.suppression(delivery.key)?.is_some() {
            ledger.mark_suppressed(issue_id, delivery.key, now)?;
            counts.suppressed += 1;
            continue;
        }
        let Some(reader) = frozen.get(&delivery.key) else {
            continue;
        };
        let segment = config
            .segments
            .iter()
            .find(|s| s.id == delivery.segment)
            .or(config.segments.last())
            .context("no segment to render with")?;
        let subscriber = Subscriber {
            email: delivery.address.clone(),
            name: reader.name.clone(),
            segment: Some(delivery.segment.clone()),
            interests: reader.interests.clone(),
            status: Status::Active,
            timezone: None,
            locale: None,
            personalize: reader.personalize,
            attrs: reader.attrs.clone(),
            line: 0,
        };
        let picks: Vec<Pick> = reader
            .picks
            .iter()
            .filter_map(|p| {
                let post = posts.iter().find(|post| post.slug == p.slug)?;
                Some(Pick {
                    post,
                    score: p.score,
                    reason: p.reason.clone(),
                })
            })
            .collect();
        let email = match renderer.email(segment, &subscriber, &picks) {
            Ok(email) => email,
            Err(problem) => {
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
                continue;
            }
        };
        let mut email = email;
        email.message_id = delivery.message_id.clone();
        let bytes = renderer.eml(&email, now)?;
        let to = delivery
            .address
            .parse()
            .with_context(|| format!("cannot address {}", delivery.address))?;
        return Ok(Some(Job {
            key: delivery.key,
            to,
            bytes,
        }));
    }
    Ok(None)
}

/// Records one event of the pool; returns the key of a message it
/// deferred (to be tried again within the run).
fn apply(
    ledger: &Ledger,
    record: &IssueRecord,
    event: Event,
    run: &Run,
    attempts: &HashMap<AddressKey, u32>,
    segments: &HashMap<AddressKey, String>,
    summary: &mut Summary,
) -> Result<Option<AddressKey>> {
    let now = run.now;
    let issue_id = record.id.as_str();
    match event {
        Event::HandingOver(key, ack) => {
            // The last moment to honour an unsubscribe recorded during the
            // run: an unanswered ack means the message is not handed over.
            if ledger.suppression(key)?.is_some() {
                ledger.mark_suppressed(issue_id, key, now)?;
                return Ok(None);
            }
            ledger.mark_sending(issue_id, key, now)?;
            let _ = ack.send(());
        }
        Event::Done(key, outcome) => {
            let segment = segments.get(&key).cloned().unwrap_or_default();
            let counts = summary.segments.entry(segment).or_default();
            match outcome {
                Outcome::Sent(reply) => {
                    ledger.mark_sent(issue_id, key, &reply, now)?;
                    counts.sent += 1;
                }
                Outcome::Deferred(reply) => {
                    let tried = attempts.get(&key).copied().unwrap_or(0) + 1;
                    if tried >= run.config.delivery.max_attempts || too_old(run, record.created) {
                        ledger.mark_failed(issue_id, key, &reply, now)?;
                        counts.failed += 1;
                    } else {
                        let wait = run.config.delivery.retry_after * 2u32.pow(tried.min(16) - 1);
                        let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                        ledger.mark_deferred(issue_id, key, &reply, next, now)?;
                        counts.deferred += 1;
                        return Ok(Some(key));
                    }
                }
                Outcome::Failed(reply) => {
                    ledger.mark_failed(issue_id, key, &reply, now)?;
                    if let Some(delivery) = ledger.delivery(issue_id, key)? {
                        ledger.suppress(key, Some(&delivery.address), Bounce::Bounced, now)?;
                    }
                    counts.failed += 1;
                }
                Outcome::NotSent(reply) => {
                    let suppressed = ledger
                        .delivery(issue_id, key)?
                        .is_some_and(|d| d.status == DeliveryStatus::Suppressed);
                    if suppressed {
                        counts.suppressed += 1;
                    } else {
                        ledger.mark_pending(issue_id, key, &reply, now)?;
                        counts.deferred += 1;
                    }
                }
                Outcome::Unknown(_) => {
                    // Left `sending`: recovered as `unknown` at the end.
                }
            }
        }
    }
    Ok(None)
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
    let far = run.now + chrono::Duration::days(36_500);
    let mut expired = 0;
    for delivery in ledger.due(&record.id, far, false)? {
        if delivery.status == DeliveryStatus::Deferred {
            let reply = delivery
                .last_reply
                .unwrap_or_else(|| "deferred until too late".into());
            ledger.mark_failed(&record.id, delivery.key, &reply, run.now)?;
            segments.entry(delivery.segment.clone()).or_default().failed += 1;
            expired += 1;
        }
    }
    Ok(expired)
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
