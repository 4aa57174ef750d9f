//! Render stage: a digest compiled once (Tera → MJML → mrml), cut at the
//! reader's fields, that every reader with the same digest shares.
//! Imports only its siblings in `render`.

use super::mime;
use super::splice::Plan;

/// A digest rendered once, cut at the reader's fields.
#[derive(Debug)]
pub struct Compiled {
    pub subject: Plan,
    pub preheader: Plan,
    /// Both parts as the message body, encoded.
    pub(super) body: mime::Body,
    /// The parts as text, kept only for `preview` (see
    /// [`Renderer::keep_sources`]): a send needs the body alone.
    pub(super) sources: Option<Sources>,
    pub variant: String,
}

/// A compiled digest's parts as text, cut at the reader's fields.
#[derive(Debug)]
pub(super) struct Sources {
    pub(super) html: Plan,
    pub(super) text: Plan,
    /// The MJML the template produced (for preview and comparison).
    pub(super) mjml: Plan,
}
