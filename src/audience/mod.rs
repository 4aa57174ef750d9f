//! Audience stage: who receives the digests, read from the subscribers file.
//!
//! May import the shared words below the stages (`address`, `diagnostics`),
//! the tag words of `content` and the YAML helpers of `config`, and, the one
//! arrow the architecture names, the suppression list of `ledger`; never a
//! later stage (`select`, `render`, `deliver`, `send`) nor `unsubscribe`.

pub mod segments;
pub mod shard;
pub mod subscribers;
pub mod suppressed;
