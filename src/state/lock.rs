//! State: one send at a time — an OS file lock on `.gazette/lock`, held
//! for the whole run and freed by the OS when its holder dies; the holder's
//! pid in `.gazette/lock.pid`, to name it. May import what `state` may.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use anyhow::{Context, Result};

/// The lock, released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    pid_file: std::path::PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Best effort: a holder that crashed leaves a pid nobody has.
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another send is in progress (pid {0})")]
    Held(String),
    #[error(transparent)]
    Io(#[from] anyhow::Error),
}

/// The pid the lock's holder wrote. Just after another run took the lock
/// the file may still name an earlier holder, who has exited: wait
/// (briefly) for a pid that is alive.
fn holder(dir: &Path) -> String {
    let mut last = None;
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(dir.join("lock.pid")) {
            let pid = text.trim().to_string();
            if !pid.is_empty() {
                if alive(&pid) {
                    return pid;
                }
                last = Some(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    last.unwrap_or_else(|| "unknown".into())
}

/// Whether process `pid` exists (where `/proc` says; elsewhere, assume so).
fn alive(pid: &str) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid).exists()
}

impl Lock {
    /// Takes the lock of the project at `root`, or says who holds it.
    pub fn acquire(root: &Path) -> Result<Lock, LockError> {
        let dir = super::create_dir(root)?;
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LockError::Held(holder(&dir))),
            Err(TryLockError::Error(err)) => {
                return Err(LockError::Io(
                    anyhow::Error::new(err).context(format!("cannot lock {}", path.display())),
                ));
            }
        }
        // The holder's pid goes to its own file, replaced whole, so a
        // reader never sees it half-written.
        let pid_file = dir.join("lock.pid");
        crate::atomic_file::write_atomic(
            &pid_file,
            format!("{}\n", std::process::id()).as_bytes(),
        )?;
        Ok(Lock {
            _file: file,
            pid_file,
        })
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
