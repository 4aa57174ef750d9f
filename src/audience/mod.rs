//! Audience stage: who receives the digests, read from the subscribers file.

pub mod subscribers;
