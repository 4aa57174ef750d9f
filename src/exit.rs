//! Shared vocabulary: how a run ends, as the process exit code. Imports
//! nothing from the crate; every command returns one of these.
//!
//! The codes are a contract with scripts and cron: 0 done, 1 bad input or
//! messages that failed for good, 2 usage error, 75 try again later
//! (`EX_TEMPFAIL` from sysexits.h).

use std::process::ExitCode;

/// How a run ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; also "nothing new to send".
    Done = 0,
    /// Bad input, config or content; or some messages failed permanently.
    BadInput = 1,
    /// The command line was wrong.
    Usage = 2,
    /// A temporary failure (the relay unreachable, another send running):
    /// cron may simply try again.
    TryLater = 75,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}
