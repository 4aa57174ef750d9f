//! Render stage: one reader's [`Email`] — their compiled digest and the
//! values of their fields — and its parts filled in on demand. Imports
//! only its siblings in `render` and lettre's mailbox.

use std::sync::Arc;

use lettre::message::Mailbox;

use super::compiled::{Compiled, Sources};
use super::splice::{Escape, Plan};

/// One reader's email, ready to be written or sent: their compiled digest
/// and the values of their fields.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: Mailbox,
    pub subject: String,
    pub preheader: String,
    /// The segment the reader is in.
    pub segment: String,
    /// The A/B variant (`default` when there is no test).
    pub variant: String,
    /// `<issue.key@host>`, key a keyed hash of the reader: the same for a
    /// re-send of the same issue, and naming no address.
    pub message_id: String,
    /// `<digest.host>` (see [`list_name`](super::list_name)).
    pub list_id: String,
    /// `<https://…?token=…>` and, when configured, `<mailto:…>`.
    pub list_unsubscribe: String,
    /// The reader's one-click unsubscribe page.
    pub unsubscribe_url: String,
    pub(super) compiled: Arc<Compiled>,
    /// The reader's field values, in field order ([`ReaderFields`]).
    pub(super) values: Vec<String>,
}

impl Email {
    fn values(&self) -> Vec<&str> {
        self.values.iter().map(String::as_str).collect()
    }

    fn source(&self, plan: impl Fn(&Sources) -> &Plan, escape: Escape) -> Option<String> {
        let sources = self.compiled.sources.as_ref()?;
        Some(plan(sources).fill(&self.values(), escape))
    }

    /// The HTML part (`None` unless the renderer keeps sources).
    pub fn html(&self) -> Option<String> {
        self.source(|s| &s.html, Escape::Html)
    }

    /// The plaintext part (`None` unless the renderer keeps sources).
    pub fn text(&self) -> Option<String> {
        self.source(|s| &s.text, Escape::Text)
    }

    /// The MJML the HTML was compiled from, filled like the HTML (`None`
    /// unless the renderer keeps sources).
    pub fn mjml(&self) -> Option<String> {
        self.source(|s| &s.mjml, Escape::Html)
    }

    /// The MIME body (both parts, encoded), appended to `out`.
    pub fn body(&self, out: &mut Vec<u8>) {
        self.compiled.body.fill(&self.values(), out);
    }

    /// About how long [`Email::body`] is, to size buffers.
    pub fn body_len(&self) -> usize {
        self.compiled.body.len()
    }

    /// The boundary between the parts of [`Email::body`].
    pub fn boundary(&self) -> &str {
        self.compiled.body.boundary()
    }
}
