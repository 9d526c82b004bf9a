//! `homeport config check`: every problem in the config file at once. `homeport reload`: the
//! agent applies the file now, and says what it did.

use std::path::Path;

use crate::Failure;

pub fn check(path: &Path) -> Result<(), Failure> {
    match homeport_config::load(path) {
        Ok(cfg) => {
            outln!(
                "{}: ok ({} environments, {} services)",
                path.display(),
                cfg.envs.len(),
                cfg.services.len()
            )?;
            Ok(())
        }
        Err(diags) => {
            for d in &diags.0 {
                eprintln!("{d}");
            }
            let n = diags.0.len();
            Err(Failure::new(
                2,
                format!(
                    "{n} problem{} in {}",
                    if n == 1 { "" } else { "s" },
                    path.display()
                ),
            ))
        }
    }
}

/// `homeport reload`: what was added, removed, restarted and left alone, by name.
pub async fn reload(path: &Path) -> Result<(), Failure> {
    let applied = match crate::client(path)?.reload().await {
        Ok(a) => a,
        // The file has mistakes: an invalid config, as `config check` says it.
        Err(e @ homeport_client::ClientError::Api { status: 422, .. }) => {
            return Err(Failure::new(2, e.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    outln!("Applied {}", applied.file)?;
    let names = |keys: &[homeport_types::ServiceKey]| {
        keys.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let failed: Vec<&homeport_types::ServiceKey> =
        applied.not_started.iter().map(|n| &n.key).collect();
    let added: Vec<String> = applied
        .added
        .iter()
        .map(|k| {
            if failed.contains(&k) {
                format!("{k} (could not start)")
            } else {
                k.to_string()
            }
        })
        .collect();
    for (what, list) in [
        ("added", added.join(", ")),
        ("removed", names(&applied.removed)),
        ("restarted", names(&applied.restarted)),
        ("changed, not running", names(&applied.updated)),
        ("unchanged", names(&applied.unchanged)),
    ] {
        let n = if list.is_empty() {
            0
        } else {
            list.split(", ").count()
        };
        if n == 0 {
            outln!("  {what:<21} 0")?;
        } else {
            outln!("  {what:<21} {n}: {list}")?;
        }
    }
    for n in &applied.not_started {
        eprintln!("homeport: {} could not start: {}", n.key, n.error);
    }
    if !applied.updated.is_empty() {
        outln!("Services that were not running start with their new config when you start them.")?;
    }
    if !applied.settings_changed.is_empty() {
        outln!(
            "Settings applied from now on (nothing restarted for them): {}.",
            applied.settings_changed.join("; ")
        )?;
    }
    if applied.needs_agent_restart {
        outln!(
            "Changed agent options ({}) apply when the agent restarts: `homeport agent restart` \
             (services keep running).",
            applied.agent_changes.join(", ")
        )?;
    }
    if applied.not_started.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            1,
            format!(
                "{} added service(s) could not start",
                applied.not_started.len()
            ),
        ))
    }
}
