//! gazette: a folder of blog posts in, reader feeds and personalized email
//! digests out.
//!
//! The stages follow one another in one direction (see `ARCHITECTURE.md`):
//! [`config`] and [`content`] read the project, [`feed`] writes the feeds;
//! [`cli`] ties them to the command line and decides the exit code.

pub mod address;
pub mod audience;
pub mod cli;
pub mod clock;
pub mod config;
pub mod content;
pub mod deliver;
pub mod diagnostics;
pub mod explain;
pub mod feed;
mod hex;
mod init;
pub mod ledger;
mod output;
pub mod preview;
pub mod render;
pub mod select;
pub mod send;
mod state;
pub mod unsubscribe;

pub use cli::main;
