//! `homeport deploy|promote|rollback|update APP`, `homeport releases APP`,
//! `homeport deploys [APP] [ID]`.

use std::path::Path;

use futures_util::StreamExt;
use homeport_types::{
    DeployDetail, DeployEvent, DeployKind, DeployRecord, DeployRequest, DeployResult, Discarded,
    StepStatus,
};

use crate::progress::{self, Spinner};
use crate::style::{bad, dim, ok, paint};
use crate::{Failure, client};

pub async fn run(
    config_path: &Path,
    app: String,
    env: String,
    kind: DeployKind,
    from_env: Option<String>,
    git_ref: Option<String>,
    build_on_host: bool,
) -> Result<(), Failure> {
    stream(
        config_path,
        DeployRequest {
            app,
            env,
            kind,
            from_env,
            release: None,
            git_ref,
            build_on_host,
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
            git_ref: None,
            build_on_host: false,
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
        return run(config_path, app, env, DeployKind::Update, None, None, false).await;
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
        .map(|w| format!(" within {w}"))
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
            homeport_core::time::local(&r.time)
        )?;
    }
    Ok(())
}

/// What a rollback discarded, one line per database: how many rows, where they are kept, and
/// how to get them out.
fn discarded_lines(app: &str, env: &str, d: &[Discarded]) -> Vec<String> {
    d.iter()
        .map(|d| {
            let rows = match d.rows {
                Some(0) => "no rows written since the backup were lost".to_owned(),
                Some(n) => {
                    let tables: Vec<String> = d
                        .tables
                        .iter()
                        .map(|t| format!("{} in {}", t.rows, t.table))
                        .collect();
                    format!(
                        "{n} row{} written since the backup are not in it ({})",
                        if n == 1 { "" } else { "s" },
                        tables.join(", ")
                    )
                }
                None if d.server => "what was written since the backup is not in it".to_owned(),
                None => "what was written since the backup is not in it (too large to count)"
                    .to_owned(),
            };
            let kept = match d.backup {
                Some(id) if d.rows != Some(0) => format!(
                    "; kept in {} (safety backup {id}: `homeport restore {app}/{env} {id} --to FILE` writes it out)",
                    d.copy
                ),
                _ => String::new(),
            };
            format!(
                "database {} ({}) was put back as it was before the deploy: {rows}{kept}",
                d.database, d.path
            )
        })
        .collect()
}

/// Runs a deploy and prints its steps as they happen: on a terminal, the running step with a
/// spinner and its time so far, each finished step as a line with its duration; into a pipe,
/// the same lines without the spinner. The last line says how it ended, how long it took and
/// where its record is.
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
                return finished(&record);
            }
        };
    }
    Err(Failure::new(1, "the agent ended the deploy stream early"))
}

fn took(r: &DeployRecord) -> String {
    r.ms.map(|ms| format!(" in {}", progress::duration(ms)))
        .unwrap_or_default()
}

/// The end of a deploy as the person who started it reads it.
fn finished(r: &DeployRecord) -> Result<(), Failure> {
    let what = format!("{} of {}/{}", r.kind.as_str(), r.app, r.env);
    for line in discarded_lines(&r.app, &r.env, &r.discarded) {
        outln!("{line}")?;
    }
    if r.result == DeployResult::Succeeded {
        outln!(
            "{what}: {} is live (took{})",
            paint(r.release.as_deref().unwrap_or_default(), ok()),
            took(r).trim_start_matches(" in")
        )?;
        return Ok(());
    }
    Err(Failure::new(
        1,
        format!(
            "{what} failed{}: {}\nsteps, output and diagnostics: homeport deploys {} {}",
            took(r).replacen(" in", " after", 1),
            r.error.as_deref().unwrap_or("it did not finish"),
            r.app,
            r.id
        ),
    ))
}

/// `homeport deploys [APP] [ID]`: the history (of every app, or of one), or one deploy with its
/// steps, output and diagnostics.
pub async fn deploys(
    config_path: &Path,
    app: Option<String>,
    id: Option<i64>,
) -> Result<(), Failure> {
    let c = client(config_path)?;
    if let Some(id) = id {
        let d = c.deploy_detail(id).await?;
        if let Some(app) = &app
            && &d.record.app != app
        {
            return Err(Failure::new(
                4,
                format!(
                    "deploy {id} is of {}, not {app}: homeport deploys {} {id}",
                    d.record.app, d.record.app
                ),
            ));
        }
        return detail(&d);
    }
    let list = c.deploys(app.as_deref()).await?;
    // Environments on another host keep their deploys there, where they ran.
    let elsewhere: Vec<String> = c
        .apps()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|a| app.as_ref().is_none_or(|name| &a.name == name))
        .flat_map(|a| {
            a.envs.into_iter().filter_map(move |e| {
                e.host.map(|h| {
                    format!(
                        "{}/{} runs on {h}: its deploys are kept there — homeport --host {h} deploys {}",
                        a.name, e.env, a.name
                    )
                })
            })
        })
        .collect();
    if list.is_empty() {
        outln!("no deploys yet")?;
        for line in &elsewhere {
            outln!("{}", paint(line, dim()))?;
        }
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .force_no_tty()
        .set_header([
            "ID",
            "STARTED",
            "ENVIRONMENT",
            "WHAT",
            "RESULT",
            "TOOK",
            "RELEASE",
        ]);
    for r in &list {
        table.add_row([
            r.id.to_string(),
            homeport_core::time::local(&r.started),
            format!("{}/{}", r.app, r.env),
            r.kind.as_str().to_owned(),
            r.result.as_str().to_owned(),
            r.ms.map(progress::duration).unwrap_or_default(),
            r.release.clone().unwrap_or_default(),
        ]);
    }
    outln!("{}", table.trim_fmt())?;
    for line in &elsewhere {
        outln!("{}", paint(line, dim()))?;
    }
    outln!(
        "{}",
        paint(
            "one deploy's steps, output and diagnostics: homeport deploys APP ID",
            dim()
        )
    )?;
    Ok(())
}

fn detail(d: &DeployDetail) -> Result<(), Failure> {
    let r = &d.record;
    let result = match r.result {
        DeployResult::Succeeded => paint("succeeded", ok()),
        DeployResult::Running => paint("running", dim()),
        other => paint(other.as_str(), bad()),
    };
    outln!(
        "{} {} of {}/{}: {result}{}",
        r.kind.as_str(),
        r.id,
        r.app,
        r.env,
        took(r)
    )?;
    outln!(
        "  started {}{}",
        homeport_core::time::local(&r.started),
        r.finished
            .as_deref()
            .map(|f| format!(", finished {}", homeport_core::time::local(f)))
            .unwrap_or_default()
    )?;
    if let Some(rel) = &r.release {
        outln!(
            "  release {rel}{}{}",
            r.commit
                .as_deref()
                .map(|c| format!(" (commit {})", &c[..c.len().min(10)]))
                .unwrap_or_default(),
            r.previous
                .as_deref()
                .map(|p| format!("; before it: {p}"))
                .unwrap_or_default()
        )?;
    }
    if let Some(e) = &r.error {
        outln!("{} {e}", paint("error:", bad()))?;
    }
    for line in discarded_lines(&r.app, &r.env, &r.discarded) {
        outln!("{} {line}", paint("data:", bad()))?;
    }
    outln!("\nsteps:")?;
    for s in &r.steps {
        let (mark, style) = if s.ok { ("✔", ok()) } else { ("✘", bad()) };
        outln!(
            "  {} {} {}{}",
            paint(mark, style),
            s.name,
            paint(&format!("({})", progress::duration(s.ms)), dim()),
            s.detail
                .as_deref()
                .map(|d| format!(" — {d}"))
                .unwrap_or_default()
        )?;
        for l in &s.output {
            outln!("      {l}")?;
        }
    }
    if !d.output.is_empty() {
        outln!("\noutput:")?;
        for l in &d.output {
            outln!("  {l}")?;
        }
    }
    if let Some(diag) = &r.diagnostics {
        outln!("\ndiagnostics:")?;
        for l in diag.lines() {
            outln!("  {l}")?;
        }
    }
    Ok(())
}
