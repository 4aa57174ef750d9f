//! State, at the bottom of the house: the `.gazette/` folder in the project
//! root, where gazette keeps what it must remember between runs. This
//! module is its one owner: every path into the folder, and every write to
//! it, goes through here. May import std, external crates and
//! `crate::atomic_file`; never a stage.
//!
//! What the folder holds:
//! - `secret`: the key unsubscribe links are signed with ([`key_file`]);
//! - `lock`, `lock.pid`: one send at a time ([`lock`]);
//! - `shard`: the `--shard K/N` this copy of the project sends
//!   ([`shard_claim`]);
//! - `state.db` (with SQLite's `-wal` and `-shm`): the ledger, which
//!   `crate::ledger` opens at [`ledger_file`].
//!
//! The folder holds a secret and subscriber addresses, so gazette creates
//! it owner-only (0700) with a `.gitignore` that keeps all of it out of
//! version control: a blog's repository is often public, and a published
//! key lets anyone unsubscribe anyone. A folder that already exists is left
//! as it is. Only what must be remembered creates it: reading (a dry run,
//! `status`) never does.

pub mod key_file;
pub mod lock;
pub mod shard_claim;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The ledger's file name in `.gazette/`.
const LEDGER_FILE: &str = "state.db";

/// `<root>/.gazette/state.db`, the ledger, whether or not it exists.
pub(crate) fn ledger_file(root: &Path) -> PathBuf {
    dir(root).join(LEDGER_FILE)
}

/// `<root>/.gazette`, whether or not it exists.
pub(crate) fn dir(root: &Path) -> PathBuf {
    root.join(".gazette")
}

/// `<root>/.gazette`, created if missing (`root` itself must exist).
pub(crate) fn create_dir(root: &Path) -> Result<PathBuf> {
    let dir = dir(root);
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(&dir) {
        Ok(()) => {
            let ignore = dir.join(".gitignore");
            std::fs::write(
                &ignore,
                "# gazette's state: a secret key and addresses.\n*\n",
            )
            .with_context(|| format!("cannot write {}", ignore.display()))?;
            Ok(dir)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(dir),
        Err(e) => Err(e).with_context(|| format!("cannot create folder {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_the_folder_once_and_keeps_it_out_of_git() {
        let root = tempfile::tempdir().unwrap();
        let dir = create_dir(root.path()).unwrap();
        assert_eq!(dir, root.path().join(".gazette"));
        let ignore = std::fs::read_to_string(dir.join(".gitignore")).unwrap();
        assert!(ignore.lines().any(|line| line == "*"), "{ignore}");
        std::fs::write(dir.join("kept"), "x").unwrap();
        assert_eq!(create_dir(root.path()).unwrap(), dir);
        assert!(dir.join("kept").exists());
    }

    #[cfg(unix)]
    #[test]
    fn the_folder_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = create_dir(root.path()).unwrap();
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_file_in_the_way_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(".gazette"), "x").unwrap();
        let err = create_dir(root.path()).unwrap_err();
        assert!(format!("{err:#}").contains(".gazette"), "{err:#}");
    }
}
