//! State: `.gazette/secret`, the key gazette made itself to sign
//! unsubscribe links with (32 random bytes, as 64 hex digits). Only the
//! bytes live here; what they sign is the unsubscribe stage's. May import
//! what `state` may.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The bytes of a key gazette makes itself.
pub const KEY_LEN: usize = 32;

/// `<root>/.gazette/secret`, whether or not it exists.
pub fn path(root: &Path) -> PathBuf {
    super::dir(root).join("secret")
}

/// The key of the project at `root`; `None` if it has none. Never
/// creates anything.
pub fn read(root: &Path) -> Result<Option<[u8; KEY_LEN]>> {
    read_at(&path(root))
}

/// The key of the project at `root`, made if there is none.
///
/// A new key is written whole to a temporary file and linked into place
/// only if no key is there yet, so of two processes starting at once, one
/// writes the key and the other reads it: both sign with the same key, and
/// neither can read a half-written file.
pub fn read_or_make(root: &Path) -> Result<[u8; KEY_LEN]> {
    let path = path(root);
    if let Some(key) = read_at(&path)? {
        return Ok(key);
    }
    let dir = super::create_dir(root)?;
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key)
        .map_err(|e| anyhow::anyhow!("cannot get random bytes for a new key: {e}"))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".secret-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut temp = builder
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    temp.write_all(format!("{}\n", hex::encode(key)).as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    match temp.persist_noclobber(&path) {
        Ok(_) => {
            // Every link sent later is signed with this key: make its name durable too.
            #[cfg(unix)]
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("cannot sync folder {}", dir.display()))?;
            Ok(key)
        }
        Err(e) if e.error.kind() == ErrorKind::AlreadyExists => read_at(&path)?
            .with_context(|| format!("{} vanished while it was being read", path.display())),
        Err(e) => Err(e.error).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// The key in the file at `path`; `None` if there is no such file.
fn read_at(path: &Path) -> Result<Option<[u8; KEY_LEN]>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let key = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| unhex(text.trim()))
        .with_context(|| {
            format!(
                "{} is not a gazette key: it must hold 64 hex digits; if it is lost, delete \
                 the file to make a new key (unsubscribe links already sent stop working)",
                path.display()
            )
        })?;
    Ok(Some(key))
}

/// Exactly 64 hex digits (either case) as a key.
fn unhex(text: &str) -> Option<[u8; KEY_LEN]> {
    let mut key = [0u8; KEY_LEN];
    hex::decode_to_slice(text, &mut key).ok()?;
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_made_once_and_reused() {
        let root = tempfile::tempdir().unwrap();
        let first = read_or_make(root.path()).unwrap();
        let path = root.path().join(".gazette/secret");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64, "{text}");
        assert_eq!(unhex(text.trim()), Some(first), "{text}");
        let second = read_or_make(root.path()).unwrap();
        assert_eq!(second, first);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(root.path().join(".gazette"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| n == "secret" || n == ".gitignore"),
            "{names:?}"
        );
    }

    #[test]
    fn reading_never_makes_a_key() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(read(root.path()).unwrap(), None);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
        let made = read_or_make(root.path()).unwrap();
        assert_eq!(read(root.path()).unwrap(), Some(made));
    }

    #[test]
    fn different_projects_get_different_keys() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        assert_ne!(
            read_or_make(one.path()).unwrap(),
            read_or_make(two.path()).unwrap()
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        read_or_make(root.path()).unwrap();
        let mode = |p: &str| {
            std::fs::metadata(root.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(".gazette/secret"), 0o600);
        assert_eq!(mode(".gazette"), 0o700);
    }

    #[test]
    fn a_key_written_by_hand_is_used() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(".gazette")).unwrap();
        let hex = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";
        std::fs::write(root.path().join(".gazette/secret"), format!("{hex}\r\n")).unwrap();
        // 00 11 22 … ff, twice.
        let key: [u8; KEY_LEN] = std::array::from_fn(|i| u8::try_from(i % 16).unwrap() * 0x11);
        assert_eq!(read_or_make(root.path()).unwrap(), key);
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(".gazette")).unwrap();
        let path = root.path().join(".gazette/secret");
        // `+a` is not two hex digits.
        let signed = "+a".repeat(32);
        let corrupt: [&[u8]; 6] = [
            b"",
            b"not hex",
            &[b'a'; 63],
            &[b'a'; 66],
            &[0xff; 64],
            signed.as_bytes(),
        ];
        for corrupt in corrupt {
            std::fs::write(&path, corrupt).unwrap();
            let err = read_or_make(root.path()).unwrap_err();
            let message = format!("{err:#}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("64 hex digits"), "{message}");
            // Never replaced: the links already sent depend on it.
            assert_eq!(std::fs::read(&path).unwrap(), corrupt);
        }
    }

    #[test]
    fn racing_processes_end_up_with_one_key() {
        let root = tempfile::tempdir().unwrap();
        let keys: Vec<[u8; KEY_LEN]> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| read_or_make(root.path()).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
    }
}
