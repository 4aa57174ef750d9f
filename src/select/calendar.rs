//! Select stage: what an issue tells the operator about the calendar —
//! the posts it takes although they are dated before the previous issue
//! (written after it, or back-dated), and a clock behind the previous
//! issue's cutoff. Neither changes the choice of posts: the issue holds
//! the posts no earlier issue saw. May import what `select` may.

use std::path::Path;

use chrono::{DateTime, FixedOffset};

use super::{Basis, Issue};
use crate::content::Post;
use crate::diagnostics::Diagnostic;

impl Issue<'_> {
    /// The warnings of [`Issue::clock_warning`] (at `ledger`, the file that
    /// holds the cutoff) and [`Issue::late_notes`] (at each post's file).
    pub fn calendar_warnings(&self, ledger: &Path) -> Vec<Diagnostic> {
        let clock = self.clock_warning().map(|w| Diagnostic::warning(ledger, w));
        let late = self
            .late_notes()
            .into_iter()
            .map(|(post, note)| Diagnostic::warning(&post.source, note));
        clock.into_iter().chain(late).collect()
    }

    /// One note per post of the issue dated at or before the previous
    /// issue's cutoff: no earlier issue saw it, so it goes in this one.
    /// None when that cutoff is ahead of this issue's clock (then every
    /// post is "before" it: [`Issue::clock_warning`] says so instead).
    pub fn late_notes(&self) -> Vec<(&Post, String)> {
        let Some(last) = self.last_cutoff.filter(|last| *last <= self.cutoff) else {
            return Vec::new();
        };
        if self.basis != Basis::Unseen {
            return Vec::new();
        }
        self.posts
            .iter()
            .filter(|post| post.date <= last)
            .map(|post| {
                let note = format!(
                    "post '{}' is dated {}, before the last issue (cutoff {}); no issue carried it, so it goes in this one",
                    post.slug,
                    self.shown(post.date),
                    self.shown(last)
                );
                (*post, note)
            })
            .collect()
    }

    /// A warning when the clock reads earlier than the previous issue's
    /// cutoff: this clock is behind, or that issue was made with a clock
    /// ahead. Either way the posts are chosen as always.
    pub fn clock_warning(&self) -> Option<String> {
        let last = self.last_cutoff.filter(|last| *last > self.cutoff)?;
        Some(format!(
            "the clock reads {}, earlier than the last issue's cutoff {}: this clock is behind, \
             or that issue was made with a clock ahead; posts are still chosen by what earlier \
             issues saw, not by their dates",
            self.shown(self.cutoff),
            self.shown(last)
        ))
    }

    /// `at` in the site's timezone, as notes show times.
    fn shown(&self, at: DateTime<FixedOffset>) -> String {
        at.with_timezone(&self.timezone).to_rfc3339()
    }
}
