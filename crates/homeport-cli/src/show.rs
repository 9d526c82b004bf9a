//! `homeport show TARGET`: everything about one service, like `pm2 show` — what runs, where, with
//! which variables (secrets masked), its ports and URL, health check and latest results, restart
//! policy and history, dependencies, log files, the release it runs and the last backup.

use std::path::Path;

use homeport_types::{EventKind, ServiceDetail, ServiceKey, Target};

use crate::output::{health_word, size, uptime};
use crate::style::{bold, dim, paint, state};
use crate::{Failure, client};

pub async fn run(config_path: &Path, target: &Target, json: bool) -> Result<(), Failure> {
    let client = client(config_path)?;
    let keys: Vec<ServiceKey> = client
        .status()
        .await?
        .services
        .into_iter()
        .map(|s| s.key)
        .collect();
    let key = one_service(target, &keys)?;
    let detail = client.service(&key).await?;
    // What the environment runs and its last backup come from other routes; a failure there
    // (no deployable source, no backups configured) only leaves those lines out.
    let release = client.apps().await.ok().and_then(|apps| {
        apps.into_iter()
            .find(|a| a.name == key.app)
            .and_then(|a| a.envs.into_iter().find(|e| e.env == key.env))
            .and_then(|e| e.current)
    });
    let env_target = Target::Env(key.app.clone(), key.env.clone());
    let last_backup = client
        .backups(&env_target)
        .await
        .ok()
        .and_then(|envs| envs.into_iter().next())
        .and_then(|e| e.backups.into_iter().next());
    if json {
        let v = serde_json::json!({
            "service": detail,
            "release": release,
            "last_backup": last_backup,
        });
        let mut text =
            serde_json::to_string_pretty(&v).map_err(|e| Failure::new(1, e.to_string()))?;
        text.push('\n');
        return crate::out::write(&text).map(drop);
    }
    let mut out = render(&detail);
    let line = |out: &mut String, label: &str, value: &str| {
        out.push_str(&format!(
            "  {}  {value}\n",
            paint(&format!("{label:<11}"), dim())
        ));
    };
    line(
        &mut out,
        "release",
        release.as_deref().unwrap_or("- (not deployed by Homeport)"),
    );
    match &last_backup {
        Some(b) => line(
            &mut out,
            "last backup",
            &format!(
                "{} at {}, {}{}",
                b.id,
                homeport_core::time::local(&b.time),
                size(b.size),
                if b.verified {
                    ", verified"
                } else {
                    ", NOT verified"
                }
            ),
        ),
        None => line(&mut out, "last backup", "-"),
    }
    out.push_str(&events(&detail));
    crate::out::write(&out).map(drop)
}

/// The one service a target names, or an error that says which ones it could mean.
fn one_service(target: &Target, keys: &[ServiceKey]) -> Result<ServiceKey, Failure> {
    let matching: Vec<&ServiceKey> = keys.iter().filter(|k| target.contains(k)).collect();
    match matching.as_slice() {
        [] => Err(crate::targets::not_found(target, keys)),
        [one] => Ok((*one).clone()),
        many => Err(Failure::new(
            2,
            format!(
                "{target} has {} services; name one: {}",
                many.len(),
                many.iter()
                    .map(|k| format!("homeport show {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn render(d: &ServiceDetail) -> String {
    let s = &d.status;
    let mut out = String::new();
    let mut head = format!(
        "{}  {}",
        paint(&s.key.to_string(), bold()),
        paint(&s.state_words(), state(s.state, s.health))
    );
    if let Some(pid) = s.pid {
        head.push_str(&format!(" (pid {pid}"));
        if let Some(u) = s.uptime_secs {
            head.push_str(&format!(", up {}", uptime(u)));
        }
        head.push(')');
    }
    out.push_str(&head);
    out.push('\n');
    if let Some(m) = &s.message {
        out.push_str(&format!("  {m}\n"));
    }
    let mut line = |label: &str, value: String| {
        out.push_str(&format!(
            "  {}  {value}\n",
            paint(&format!("{label:<11}"), dim())
        ));
    };
    line("command", shell_words(&d.command));
    line("cwd", d.cwd.clone());
    line("url", s.url.clone().unwrap_or_else(|| "-".into()));
    let mut ports: Vec<String> = s.port.map(|p| format!("{p}")).into_iter().collect();
    ports.extend(d.ports.iter().map(|(n, p)| format!("{n} {p}")));
    line(
        "ports",
        if ports.is_empty() {
            "-".into()
        } else {
            ports.join(", ")
        },
    );
    line(
        "health",
        match &d.health {
            Some(h) => format!("{h}; now {}", health_word(s.health)),
            None => "no check (running counts as ready)".into(),
        },
    );
    line("restart", d.restart.clone());
    line(
        "restarts",
        format!(
            "{}{}",
            s.restarts,
            s.last_exit
                .map(|e| format!(", last exit: {e}"))
                .unwrap_or_default()
        ),
    );
    line(
        "depends on",
        if d.depends_on.is_empty() {
            "-".into()
        } else {
            d.depends_on
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    line("autostart", if s.autostart { "yes" } else { "no" }.into());
    line(
        "cpu, memory",
        match (s.cpu_percent, s.rss_bytes) {
            (Some(c), Some(m)) => format!("{c:.1}%, {}", size(m)),
            _ => "-".into(),
        },
    );
    let name = Path::new(&d.log_file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    line(
        "log file",
        format!("{} (older lines: {name}.1, {name}.2, …)", d.log_file),
    );
    if d.env.is_empty() {
        line("env", "-".into());
    } else {
        let mut first = true;
        for (k, v) in &d.env {
            line(if first { "env" } else { "" }, format!("{k}={v}"));
            first = false;
        }
    }
    out
}

/// The recent events: health results and the restart history.
fn events(d: &ServiceDetail) -> String {
    if d.events.is_empty() {
        return String::new();
    }
    let mut out = format!("  {}\n", paint("recent events (newest first)", dim()));
    for e in d.events.iter().take(10) {
        let what = match &e.kind {
            EventKind::State {
                from,
                to,
                exit,
                message,
                ..
            } => {
                let mut w = format!(
                    "{} → {}",
                    from.word(),
                    paint(to.word(), state(*to, homeport_types::Health::Unknown))
                );
                if let Some(x) = exit {
                    w.push_str(&format!(" ({x})"));
                }
                if let Some(m) = message {
                    w.push_str(&format!(": {m}"));
                }
                w
            }
            EventKind::Health { health, message } => {
                let mut w = format!(
                    "health: {}",
                    paint(&health_word(*health), crate::style::health(*health))
                );
                if let Some(m) = message {
                    w.push_str(&format!(": {m}"));
                }
                w
            }
            // A service's own history holds only these; other outcomes have other subjects.
            _ => continue,
        };
        let again = match (&e.last_time, e.count) {
            (Some(last), n) if n > 1 => paint(
                &format!("  ×{n}, last at {}", homeport_core::time::local(last)),
                dim(),
            ),
            _ => String::new(),
        };
        out.push_str(&format!(
            "    {}  {what}{again}\n",
            paint(&homeport_core::time::local(&e.time), dim())
        ));
    }
    out
}

/// The argv as one line a person could paste into a shell.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shlex::try_quote(a).map_or_else(|_| a.clone(), |q| q.into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}
