//! Audience stage: who receives the digests, read from the subscribers file.
//!
//! May import `config` and the shared words below the stages (`address`,
//! `diagnostics`, `tag`, `yaml`), and, the one arrow the architecture
//! names, the suppression list of `ledger`; never a later stage
//! (`select`, `render`, `deliver`, `send`) nor `unsubscribe`.

pub mod segments;
pub mod shard;
pub mod subscribers;
pub mod suppressed;
