//! Integration tests: the real `gazette` binary on real project folders.
//!
//! One test binary with a module per feature (as ripgrep and mdBook do);
//! fixtures live under `tests/fixtures/<case>/`.

mod support;

mod audience;
mod calendar;
mod cli;
mod config;
mod content;
mod feeds;
mod reference;
mod render;
mod send;
mod smtp;
