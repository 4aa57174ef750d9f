//! Deliver stage: where finished messages go — an [`EmlDir`] of `.eml`
//! files (dry runs), or an SMTP relay through a [`pool::Pool`] of
//! sessions. Only this stage touches the network.

mod files;
pub mod pool;
pub mod retry;
pub mod smtp;

pub use files::EmlDir;
