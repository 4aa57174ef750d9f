//! Audience stage: who receives the digests, read from the subscribers file.

pub mod segments;
pub mod shard;
pub mod subscribers;
pub mod suppressed;
