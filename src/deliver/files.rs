//! Deliver stage: the file sink — one RFC 5322 `.eml` per message under
//! `outbox/<issue>/`, named safely for any address, plus `summary.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::address::AddressKey;
use crate::atomic_file::write_atomic;

/// A folder of `.eml` files for one issue.
#[derive(Debug)]
pub struct EmlDir {
    dir: PathBuf,
}

impl EmlDir {
    /// `<outbox>/<issue>/`, emptied of the `.eml` files of an earlier dry
    /// run of the same issue (so the folder shows exactly this run).
    pub fn create(outbox: &Path, issue: &str) -> Result<EmlDir> {
        let dir = outbox.join(issue);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "eml") {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        Ok(EmlDir { dir })
    }

    /// Writes one message for `address`.
    pub fn write(&self, address: &str, message: &[u8]) -> Result<PathBuf> {
        let path = self.dir.join(file_name(address));
        write_atomic(&path, message)?;
        Ok(path)
    }

    /// Writes `summary.json` beside the messages.
    pub fn summary(&self, json: &[u8]) -> Result<()> {
        write_atomic(&self.dir.join("summary.json"), json)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A file name for any address: its readable part cut to safe characters
/// (letters, digits, `.`, `-`, `_`, `@` as `_at_`), then 8 hex digits of
/// its key, so different addresses never share a name and none can name a
/// path outside the folder.
pub fn file_name(address: &str) -> String {
    let mut readable = String::new();
    for c in address.chars() {
        match c {
            '@' => readable.push_str("_at_"),
            c if c.is_ascii_alphanumeric() || "._-".contains(c) => {
                readable.push(c.to_ascii_lowercase())
            }
            _ => readable.push('_'),
        }
        if readable.len() >= 60 {
            break;
        }
    }
    let readable = readable.trim_start_matches('.');
    let key = AddressKey::of(address).hex();
    format!("{readable}-{}.eml", &key[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_address_gets_a_safe_distinct_name() {
        assert!(file_name("ada@example.com").starts_with("ada_at_example.com-"));
        let odd = file_name("../../etc/passwd\"@x.example");
        assert!(!odd.contains('/') && !odd.starts_with('.'), "{odd}");
        assert_ne!(file_name("a+b@x.example"), file_name("a-b@x.example"));
        assert_eq!(
            file_name("Ada@Example.com").len(),
            file_name("ada@example.com").len()
        );
        assert!(file_name(&"x".repeat(500)).len() < 80);
    }
}
