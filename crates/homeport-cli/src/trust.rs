//! `homeport trust install|uninstall|status`: the local CA that the router's HTTPS certificates
//! chain to, in the system store and the browsers' NSS databases — each store reported on its
//! own line. The CA is made on first use (key 0600 in the data folder).

use std::path::Path;

use homeport_router::LocalCa;
use homeport_router::trust::{Outcome, Stores, Trust};

use crate::Failure;

pub enum Op {
    Install,
    Uninstall,
    Status,
}

pub fn run(config_path: &Path, op: Op, system: bool, nss: bool) -> Result<(), Failure> {
    let data = homeport_config::agent_data_dir(config_path);
    let ca_dir = homeport_core::routing::ca_dir(&data);
    let ca = LocalCa::load_or_create(&ca_dir).map_err(|e| Failure::new(1, e.to_string()))?;
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .ok_or_else(|| Failure::new(1, "HOME is not set: cannot find the browsers' databases"))?;
    let trust = Trust::new(&ca, &home);
    // Neither flag: every store.
    let stores = if system || nss {
        Stores { system, nss }
    } else {
        Stores::ALL
    };
    let reports = match op {
        Op::Install => trust.install(stores),
        Op::Uninstall => trust.uninstall(stores),
        Op::Status => trust.status(),
    };
    let mut text = format!("{} ({})\n", ca.name(), ca.cert_path().display());
    let mut failed = 0;
    for r in &reports {
        let what = match &r.outcome {
            Outcome::Trusted => "trusted".to_owned(),
            Outcome::NotTrusted => "not trusted".to_owned(),
            Outcome::Skipped(why) => format!("skipped: {why}"),
            Outcome::Failed(why) => {
                failed += 1;
                format!("FAILED: {why}")
            }
        };
        text.push_str(&format!("  {}: {what}\n", r.store));
    }
    if matches!(op, Op::Install) && failed == 0 {
        text.push_str("Restart the browser if it was open.\n");
    }
    crate::out::write(&text)?;
    if failed > 0 {
        return Err(Failure::new(1, format!("{failed} store(s) failed")));
    }
    Ok(())
}
