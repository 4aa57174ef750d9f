//! Command `gazette status [--issue ID] [--format text|json]`: every issue
//! with its cutoff, posts and deliveries by state, read from the ledger;
//! or every reader of one issue not sent, and why.

use anyhow::Result;

use super::{Format, Invocation};
use crate::exit::Exit;
use crate::ledger::Ledger;

/// Runs `status`; a project that never sent prints that it has no issue.
pub fn run(inv: &Invocation, format: Format) -> Result<Exit> {
    let Some(ledger) = Ledger::open_existing(&inv.root)? else {
        match format {
            Format::Json => outln!("[]")?,
            Format::Text => outln!("no issue sent yet (no .gazette/state.db)")?,
        }
        return Ok(Exit::Done);
    };
    let issues = ledger.issues()?;
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = issues
                .iter()
                .map(|(issue, c)| {
                    let posts: Vec<serde_json::Value> =
                        serde_json::from_str(&issue.posts).unwrap_or_default();
                    serde_json::json!({
                        "issue": issue.id,
                        "cutoff": issue.cutoff.to_rfc3339(),
                        "posts": posts.len(),
                        "created": issue.created.to_rfc3339(),
                        "completed": issue.completed.map(|d| d.to_rfc3339()),
                        "deliveries": {
                            "pending": c.pending, "sending": c.sending, "sent": c.sent,
                            "deferred": c.deferred, "failed": c.failed,
                            "unknown": c.unknown, "suppressed": c.suppressed,
                        },
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        }
        Format::Text => {
            outln!(
                "{:<14} {:<26} {:>5} {:>7} {:>7} {:>8} {:>6} {:>7} {:>10}  completed",
                "issue",
                "cutoff",
                "posts",
                "sent",
                "pending",
                "deferred",
                "failed",
                "unknown",
                "suppressed"
            )?;
            for (issue, c) in &issues {
                let posts: Vec<serde_json::Value> =
                    serde_json::from_str(&issue.posts).unwrap_or_default();
                outln!(
                    "{:<14} {:<26} {:>5} {:>7} {:>7} {:>8} {:>6} {:>7} {:>10}  {}",
                    issue.id,
                    issue.cutoff.to_rfc3339(),
                    posts.len(),
                    c.sent,
                    c.pending + c.sending,
                    c.deferred,
                    c.failed,
                    c.unknown,
                    c.suppressed,
                    issue.completed.map_or("no".to_string(), |d| d.to_rfc3339())
                )?;
            }
        }
    }
    Ok(Exit::Done)
}

/// Runs `status --issue ID`: each reader of the issue not `sent`, with
/// its state, attempts, next try and the last reply (or why there was
/// none), in the order the readers were frozen.
pub fn not_sent(inv: &Invocation, issue: &str, format: Format) -> Result<Exit> {
    let Some(ledger) = Ledger::open_existing(&inv.root)? else {
        inv.error("no issue sent yet (no .gazette/state.db)");
        return Ok(Exit::BadInput);
    };
    if !ledger.issue_ids()?.contains(issue) {
        inv.error(format_args!(
            "the ledger has no issue '{issue}' (`gazette status` lists them)"
        ));
        return Ok(Exit::BadInput);
    }
    let rows = ledger.not_sent(issue)?;
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = rows
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "address": d.address,
                        "segment": d.segment,
                        "status": d.status.as_str(),
                        "attempts": d.attempts,
                        "next_attempt": d.next_attempt.map(|t| t.to_rfc3339()),
                        "last_reply": d.last_reply,
                        "message_id": d.message_id,
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        }
        Format::Text if rows.is_empty() => outln!("issue {issue}: every reader was sent")?,
        Format::Text => {
            outln!(
                "{:<32} {:<10} {:>8}  {:<25}  last reply",
                "address",
                "state",
                "attempts",
                "next try"
            )?;
            for d in &rows {
                outln!(
                    "{:<32} {:<10} {:>8}  {:<25}  {}",
                    d.address,
                    d.status.as_str(),
                    d.attempts,
                    d.next_attempt.map_or("-".to_string(), |t| t.to_rfc3339()),
                    d.last_reply.as_deref().unwrap_or("-")
                )?;
            }
        }
    }
    Ok(Exit::Done)
}
