//! Deliver stage, SMTP: lettre's async connection on a socket of ours, one
//! recipient per transaction, each outcome classified for the ledger.
//! Files: `settings` (the URL), `socket` (TCP and implicit TLS), `session`
//! (connect, login, one transaction), `pipelining` (RFC 2920 trains),
//! `payload` (the dot-stuffed message), `reply` (what a reply means),
//! `idn` (the envelope for a relay without SMTPUTF8). May import lettre,
//! tokio, url, idna and std; nothing else of the crate.

mod idn;
mod payload;
mod pipelining;
mod reply;
mod session;
mod settings;
mod socket;

#[cfg(test)]
mod reply_table;
#[cfg(test)]
mod test_servers;

pub use payload::Payload;
pub use pipelining::Envelope;
pub(crate) use reply::asks_to_slow_down;
pub use reply::{Outcome, RelayProblem, refusal_code};
pub use session::{LoginRefused, SmtpSession};
pub use settings::{Security, SmtpSettings};
