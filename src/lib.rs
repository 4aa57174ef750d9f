//! gazette: a folder of blog posts in, reader feeds and personalized email
//! digests out.
//!
//! The stages follow one another in one direction, content → feed /
//! audience → select → render → deliver, with the ledger and the clock as
//! the only state and time; shared words (exit codes, addresses, tags,
//! located YAML) sit below them, and [`commands`] and [`cli`] on top.
//! `docs/src/internals/architecture.md` has the flow and the layering
//! rule, which `scripts/check_layers.py` checks.

pub mod address;
mod atomic_file;
pub mod audience;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod content;
pub mod deliver;
pub mod diagnostics;
pub mod exit;
pub mod feed;
pub mod ledger;
pub mod render;
pub mod select;
pub mod send;
mod state;
pub mod tag;
pub mod unsubscribe;
pub mod yaml;

pub use cli::main;
