//! Deliver stage: where finished messages go — for now an [`EmlDir`] of
//! `.eml` files (dry runs); SMTP joins it here. Only this stage will touch
//! the network.

mod files;

pub use files::EmlDir;
