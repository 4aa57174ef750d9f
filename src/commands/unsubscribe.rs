//! Command `gazette unsubscribe TOKEN|EMAIL`: a reader added to the
//! ledger's suppression list, from a signed token (or the whole link) or
//! the address itself.

use anyhow::{Context, Result};

use super::Invocation;
use crate::address::AddressKey;
use crate::config::Config;
use crate::diagnostics::Report;
use crate::exit::Exit;
use crate::ledger::{Ledger, Suppression, SuppressionReason};
use crate::unsubscribe::Secret;

/// Runs `unsubscribe`; a token's signature is checked before anything is
/// recorded.
pub fn run(inv: &Invocation, target: &str) -> Result<Exit> {
    let (config, problems) = Config::load(&inv.config_path, &inv.config_shown());
    let mut report = Report::default();
    report.extend(problems);
    let Some(config) = config else {
        inv.print(&report, false)?;
        return Ok(Exit::BadInput);
    };
    let target = target.trim();
    let is_token = target.starts_with("v1.") || target.contains("token=");
    let (key, address) = if is_token {
        let Some(secret) = Secret::load_existing(&inv.root)? else {
            inv.error(
                "no key to check tokens with (set GAZETTE_SECRET or keep .gazette/secret); nobody was unsubscribed",
            );
            return Ok(Exit::BadInput);
        };
        match secret.verify(&crate::render::list_name(&config), target) {
            Ok(key) => (key, None),
            Err(err) => {
                inv.error(format_args!("{err}; nobody was unsubscribed"));
                return Ok(Exit::BadInput);
            }
        }
    } else if target.parse::<lettre::Address>().is_ok() {
        (AddressKey::of(target), Some(target))
    } else {
        inv.error(format_args!(
            "'{target}' is neither an unsubscribe token nor an email address"
        ));
        return Ok(Exit::Usage);
    };
    let ledger = match Ledger::open(&inv.root) {
        Ok(ledger) => ledger,
        Err(err) => return record_without_ledger(inv, key, err),
    };
    let new = ledger.suppress(
        key,
        address,
        SuppressionReason::Unsubscribed,
        inv.clock.now(),
    )?;
    if new {
        // The plain copy beside the project, so a lost ledger does not
        // mail this reader again.
        ledger.append_to_suppression_file(&inv.root, key)?;
    }
    if !inv.quiet {
        let who = address.map_or_else(|| "the reader of this token".to_string(), str::to_string);
        if new {
            outln!("unsubscribed {who}")?;
        } else {
            outln!("{who} was already on the suppression list")?;
        }
    }
    Ok(Exit::Done)
}

/// The ledger cannot be opened (`err`: damaged, say): the reader is kept
/// in `suppressed.csv`, which the next ledger imports, so the unsubscribe
/// is not lost; the run still fails, so the ledger gets looked at.
fn record_without_ledger(inv: &Invocation, key: AddressKey, err: anyhow::Error) -> Result<Exit> {
    let row = Suppression {
        key,
        address: None,
        reason: SuppressionReason::Unsubscribed,
        at: inv.clock.now(),
    };
    crate::ledger::record_without_ledger(&inv.root, &row)
        .with_context(|| format!("{err:#}; and the unsubscribe could not be kept either"))?;
    inv.error(format_args!(
        "{err:#}; the unsubscribe was kept in {} (the next ledger imports it), \
         but the ledger must be repaired: `gazette state restore BACKUP`",
        crate::ledger::SUPPRESSION_FILE
    ));
    Ok(Exit::BadInput)
}
