//! Render stage: a reader's picks → a complete [`Email`]: subject and
//! preheader (Tera), HTML (Tera → MJML → mrml), a plaintext part written
//! for reading (Tera), and the compliance headers.
//!
//! Rendering runs once per distinct digest — (segment, variant, picks) —
//! with placeholders for the reader's fields; each reader's email is that
//! compiled digest with their name, address, attributes and unsubscribe
//! link spliced in, escaped ([`splice`]). mrml never runs per reader.
//!
//! May import the stages before it — config, content, select, audience's
//! readers — and the shared words below them (diagnostics, the
//! unsubscribe key); never send, deliver, ledger or the commands.

mod cache;
pub mod check;
mod compiled;
mod email;
mod header_text;
mod list;
pub mod message;
mod mime;
mod mjml;
mod renderer;
mod sanitize;
pub mod splice;
mod template_errors;
mod template_sources;
pub mod templates;
mod trace;
mod variant_name;
mod view;

pub use compiled::Compiled;
pub use email::Email;
pub use list::list_name;
pub use renderer::Renderer;
pub use variant_name::variant_of;
pub use view::{DigestView, ReaderFields};
