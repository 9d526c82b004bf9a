//! `homeport deploy|promote|rollback|update APP`, `homeport releases APP`.

use std::path::Path;

use futures_util::StreamExt;
use homeport_types::{DeployEvent, DeployKind, DeployRequest, DeployResult, StepStatus};

use crate::progress::{self, Spinner};
use crate::style::{bad, dim, ok, paint};
use crate::{Failure, client};

pub async fn run(
    config_path: &Path,
    app: String,
    env: String,
    kind: DeployKind,
    from_env: Option<String>,
) -> Result<(), Failure> {
    stream(
        config_path,
        DeployRequest {
            app,
            env,
            kind,
            from_env,
            release: None,
        },
    )
    .await
}

pub async fn rollback(
    config_path: &Path,
    app: String,
    env: String,
    release: Option<String>,
) -> Result<(), Failure> {
    stream(
        config_path,
        DeployRequest {
            app,
            env,
            kind: DeployKind::Rollback,
            from_env: None,
            release,
        },
    )
    .await
}

pub async fn update(
    config_path: &Path,
    app: String,
    env: String,
    check: bool,
) -> Result<(), Failure> {
    if !check {
        return run(config_path, app, env, DeployKind::Update, None).await;
    }
    let (behind, ahead) = client(config_path)?.update_check(&app).await?;
    match (behind, ahead) {
        (0, _) => outln!("{app} is up to date with its upstream")?,
        (b, 0) => outln!(
            "Update available ({b} commit{})",
            if b == 1 { "" } else { "s" }
        )?,
        (b, a) => outln!("{app} has diverged: {b} upstream, {a} local commits")?,
    };
    Ok(())
}

pub async fn resume_updates(config_path: &Path, app: &str, env: &str) -> Result<(), Failure> {
    let state = client(config_path)?.resume_updates(app, env).await?;
    let window = state
        .window
        .map(|w| format!(" within {w} UTC"))
        .unwrap_or_default();
    outln!(
        "Automatic updates of {app}/{env} resumed: the upstream is checked now, then every {}{window}",
        state.every
    )?;
    if let Some(c) = state.failed_commit {
        outln!(
            "{} failed last and is not tried again until the upstream moves; deploy it by hand to retry it",
            &c[..c.len().min(7)]
        )?;
    }
    Ok(())
}

pub async fn releases(config_path: &Path, app: &str) -> Result<(), Failure> {
    for r in client(config_path)?.releases(app).await? {
        let live = if r.current_in.is_empty() {
            String::new()
        } else {
            format!("  ← {}", r.current_in.join(", "))
        };
        outln!(
            "{}  {}  {}{}  {}{live}",
            r.id,
            r.version,
            &r.commit[..r.commit.len().min(10)],
            if r.dirty { " dirty" } else { "" },
            r.time
        )?;
    }
    Ok(())
}

/// Runs a deploy and prints its steps as they happen: on a terminal, the running step with a
/// spinner and its time so far, each finished step as a line with its duration; into a pipe,
/// the same lines without the spinner.
async fn stream(config_path: &Path, req: DeployRequest) -> Result<(), Failure> {
    let mut events = Box::pin(client(config_path)?.deploy(&req).await?);
    let live = progress::live();
    let mut spinner: Option<Spinner> = None;
    while let Some(ev) = events.next().await {
        match ev? {
            DeployEvent::Step {
                name,
                status,
                ms,
                detail,
            } => {
                if status == StepStatus::Started {
                    if live {
                        spinner = Some(Spinner::start(&name));
                    } else {
                        outln!("▸ {name}")?;
                    }
                    continue;
                }
                if let Some(s) = spinner.take() {
                    s.finish();
                }
                let (mark, style) = match status {
                    StepStatus::Ok => ("✔", ok()),
                    StepStatus::Failed => ("✘", bad()),
                    StepStatus::Started => ("·", dim()),
                };
                let took = ms.map(|ms| format!(" ({})", progress::duration(ms)));
                outln!(
                    "{} {name}{}{}{}",
                    paint(mark, style),
                    if status == StepStatus::Ok {
                        String::new()
                    } else {
                        format!(": {}", status.as_str())
                    },
                    paint(&took.unwrap_or_default(), dim()),
                    detail.map(|d| format!(" — {d}")).unwrap_or_default()
                )?;
            }
            DeployEvent::Output { line, .. } => match &spinner {
                Some(s) => s.println(&format!("    {line}")).map(drop)?,
                None => outln!("    {line}").map(drop)?,
            },
            DeployEvent::Done { record } => {
                if let Some(s) = spinner.take() {
                    s.finish();
                }
                if record.result == DeployResult::Succeeded {
                    outln!(
                        "{} {}/{}: {} is live",
                        record.kind.as_str(),
                        record.app,
                        record.env,
                        paint(&record.release.unwrap_or_default(), ok())
                    )?;
                    return Ok(());
                }
                return Err(Failure::new(
                    1,
                    format!(
                        "{} of {}/{} failed: {}{}",
                        record.kind.as_str(),
                        record.app,
                        record.env,
                        record.error.unwrap_or_default(),
                        if record.diagnostics.is_some() {
                            " (diagnostics saved with the deploy)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        };
    }
    Err(Failure::new(1, "the agent ended the deploy stream early"))
}
