//! Send stage: one send at a time — an OS file lock on `.gazette/lock`,
//! held for the whole run and freed by the OS when its holder dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// The lock, released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another send is in progress (pid {0})")]
    Held(String),
    #[error(transparent)]
    Io(#[from] anyhow::Error),
}

impl Lock {
    /// Takes the lock of the project at `root`, or says who holds it.
    pub fn acquire(root: &Path) -> Result<Lock, LockError> {
        let dir = crate::state::create_dir(root)?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held(if holder.is_empty() {
                    "unknown".into()
                } else {
                    holder.to_string()
                }));
            }
            Err(TryLockError::Error(err)) => {
                return Err(LockError::Io(
                    anyhow::Error::new(err).context(format!("cannot lock {}", path.display())),
                ));
            }
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire(dir.path()).unwrap();
        let second = Lock::acquire(dir.path()).unwrap_err();
        assert_eq!(
            second.to_string(),
            format!("another send is in progress (pid {})", std::process::id())
        );
        drop(first);
        Lock::acquire(dir.path()).unwrap();
    }
}
