//! `homeport backup APP/ENV`, `backup verify [ID]`, `backups [TARGET]`, `restore APP/ENV [ID]`.

use std::path::{Path, PathBuf};

use homeport_types::Target;

use crate::progress::{self, Spinner};
use crate::{Failure, client, output};

pub async fn take(config_path: &Path, target: Option<Target>) -> Result<(), Failure> {
    let target = target.ok_or_else(|| {
        Failure::new(
            2,
            "name the environment to back up: homeport backup APP/ENV",
        )
    })?;
    let client = client(config_path)?;
    let spinner = Spinner::start(&format!("backing up {target}"));
    let b = match client.backup(&target).await {
        Ok(b) => b,
        Err(e) => return Err(crate::targets::explain(&client, &target, e.into()).await),
    };
    spinner.finish();
    outln!(
        "backup {}: {target}, {} in {}{}, verified",
        b.id,
        output::size(b.size),
        progress::duration(b.duration_ms),
        progress::rate(b.size, b.duration_ms)
    )?;
    for a in &b.artifacts {
        outln!(
            "  {} ({}, sha256 {})",
            a.file,
            output::size(a.size),
            &a.sha256[..16]
        )?;
    }
    Ok(())
}

/// Checks one backup or all of them. Every one is checked even when the reader has gone: the
/// check also records the result.
pub async fn verify(config_path: &Path, id: Option<i64>) -> Result<(), Failure> {
    let c = client(config_path)?;
    let ids: Vec<i64> = match id {
        Some(id) => vec![id],
        None => c
            .backups(&Target::All)
            .await?
            .iter()
            .flat_map(|e| e.backups.iter().map(|b| b.id))
            .collect(),
    };
    let mut bad = 0;
    for id in ids {
        let v = c.verify_backup(id).await?;
        if v.ok {
            outln!("backup {id}: ok")?;
        } else {
            bad += 1;
            eprintln!("backup {id}: FAILED: {}", v.problems.join("; "));
        }
    }
    if bad > 0 {
        return Err(Failure::new(
            1,
            format!("{bad} backup(s) failed verification"),
        ));
    }
    Ok(())
}

pub async fn list(config_path: &Path, target: Option<Target>) -> Result<(), Failure> {
    let list = client(config_path)?
        .backups(&target.unwrap_or(Target::All))
        .await?;
    crate::out::write(&output::backups_table(&list)).map(drop)
}

pub async fn restore(
    config_path: &Path,
    target: Target,
    backup: Option<i64>,
    db: Option<String>,
    file: Option<String>,
    to: Option<PathBuf>,
) -> Result<(), Failure> {
    let req = homeport_types::RestoreRequest {
        target,
        backup,
        database: db,
        path: file,
        to: to.map(|p| std::path::absolute(&p).unwrap_or(p).display().to_string()),
    };
    let client = client(config_path)?;
    let target = req.target.clone();
    let spinner = Spinner::start(&format!("restoring {target}"));
    let started = std::time::Instant::now();
    let out = match client.restore(&req).await {
        Ok(o) => o,
        Err(e) => return Err(crate::targets::explain(&client, &target, e.into()).await),
    };
    spinner.finish();
    let ms = started.elapsed().as_millis() as u64;
    // The backup's size, for the rate; the list is small and a failure only drops the figure.
    let size = client
        .backups(&target)
        .await
        .ok()
        .into_iter()
        .flatten()
        .flat_map(|e| e.backups)
        .find(|b| b.id == out.backup)
        .map(|b| b.size);
    let how = match size {
        Some(s) => format!(
            " ({} in {}{})",
            output::size(s),
            progress::duration(ms),
            progress::rate(s, ms)
        ),
        None => format!(" (in {})", progress::duration(ms)),
    };
    for r in &out.restored {
        outln!("restored {r} from backup {}{how}", out.backup)?;
    }
    if let Some(id) = out.safety_backup {
        outln!(
            "what was replaced is kept as backup {id} (restore it to undo: homeport restore {target} {id})"
        )?;
    }
    for s in &out.safety_copies {
        outln!("the previous data is kept in {s}")?;
    }
    Ok(())
}
