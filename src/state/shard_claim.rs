//! State: `.gazette/shard`, the `--shard K/N` the first real send from
//! this copy of the project recorded. Only reads and writes the file; the
//! rule about who may send from here is the send stage's. May import what
//! `state` may.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::atomic_file::write_atomic;

/// `<root>/.gazette/shard`, whether or not it exists.
pub fn path(root: &Path) -> PathBuf {
    super::dir(root).join("shard")
}

/// The shard recorded for the project at `root`, as written (`K/N`);
/// `None` when none is.
pub fn recorded(root: &Path) -> Result<Option<String>> {
    let path = path(root);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => bail!("cannot read {}: {err}", path.display()),
    }
}

/// Records `shard` (`K/N`) for the project at `root`, creating
/// `.gazette/` if need be.
pub fn record(root: &Path, shard: &str) -> Result<()> {
    super::create_dir(root)?;
    write_atomic(&path(root), format!("{shard}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_shard_reads_back_trimmed() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(recorded(root.path()).unwrap(), None);
        assert!(
            !super::super::dir(root.path()).exists(),
            "reading creates nothing"
        );
        record(root.path(), "2/3").unwrap();
        assert_eq!(recorded(root.path()).unwrap().as_deref(), Some("2/3"));
        assert_eq!(std::fs::read_to_string(path(root.path())).unwrap(), "2/3\n");
    }
}
