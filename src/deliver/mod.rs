//! Deliver stage: where finished messages go — an [`EmlDir`] of `.eml`
//! files (dry runs), or an SMTP relay through a [`pool::Pool`] of
//! sessions, paced by the rate limits. Only this stage touches the
//! network. May import the crate's shared vocabulary (addresses) and
//! nothing of the stages above it (send, render).

mod files;
pub mod pace;
pub mod pool;
mod relay_watch;
pub mod retry;
pub mod smtp;
mod streak;

pub use files::EmlDir;
