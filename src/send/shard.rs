//! Send stage: a state directory belongs to one shard. The first real
//! send records its `--shard K/N` (in `.gazette/shard`, through
//! `state::shard_claim`); a later send with another shard (or none) from
//! the same directory is refused, since it would mail readers another host
//! owns or leave its own unfinished. May import `audience`
//! (for the shard), `ledger` and `state`.

use std::path::Path;

use anyhow::{Result, bail};

use crate::audience::shard::Shard;
use crate::ledger::Ledger;
use crate::state::{self, shard_claim};

/// Records `shard` for the state directory of `root`, or checks it is the
/// one recorded.
pub fn claim(root: &Path, shard: Shard) -> Result<()> {
    let recorded = shard_claim::recorded(root)?;
    let wanted = shard.to_string();
    match recorded {
        Some(recorded) if recorded == wanted => Ok(()),
        Some(recorded) => bail!(
            "this project's state ({}) sends shard {recorded}; a send {} from here \
             would overlap another host's readers (use a separate copy of the \
             project per shard)",
            state::dir(root).display(),
            if shard.is_all() {
                "without --shard".to_string()
            } else {
                format!("of shard {wanted}")
            }
        ),
        None if shard.is_all() => Ok(()),
        None => {
            // An issue begun for the whole audience must end that way: its
            // frozen readers include other shards'.
            if let Some(ledger) = Ledger::open_existing(root)?
                && let Some(issue) = ledger.unfinished_issue()?
            {
                bail!(
                    "issue {} was started without --shard and is not finished; finish it \
                     with `gazette send` before sending shard {wanted} from here",
                    issue.id
                );
            }
            shard_claim::record(root, &wanted)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_directory_keeps_its_shard() {
        let root = tempfile::tempdir().unwrap();
        let two: Shard = "2/3".parse().unwrap();
        claim(root.path(), Shard::ALL).unwrap();
        assert!(!shard_claim::path(root.path()).exists());
        claim(root.path(), two).unwrap();
        claim(root.path(), two).unwrap();
        let other = claim(root.path(), "1/3".parse().unwrap()).unwrap_err();
        assert!(other.to_string().contains("sends shard 2/3"), "{other}");
        let none = claim(root.path(), Shard::ALL).unwrap_err();
        assert!(none.to_string().contains("without --shard"), "{none}");
    }
}
