//! `homeport host add|list|remove|check`: other hosts running Homeport, reached with the user's
//! own OpenSSH. The work is in homeport-remote; this is the terminal side of it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use homeport_client::Client;
use homeport_remote::enrol::{Enrol, enrol};
use homeport_remote::{Connection, Destination, record};

use crate::Failure;

fn data_dir(config: &Path) -> std::path::PathBuf {
    homeport_config::agent_data_dir(config)
}

fn say(line: String) {
    let _ = outln!("{line}");
}

/// Tells this computer's agent (when it runs) to read the hosts again; what it says of `name`.
async fn tell_agent(config: &Path, name: &str) -> Option<homeport_types::HostInfo> {
    let client = Client::discover(&data_dir(config)).ok()?;
    let hosts = client.reload_hosts().await.ok()?;
    hosts.into_iter().find(|h| h.name == name)
}

pub async fn add(
    config: &Path,
    name: &str,
    destination: &str,
    fingerprint: Option<String>,
    yes: bool,
) -> Result<(), Failure> {
    homeport_remote::check_name(name).map_err(|e| Failure::new(2, e))?;
    let dest: Destination = destination
        .parse()
        .map_err(|e: homeport_remote::dest::BadDestination| Failure::new(2, e.to_string()))?;
    let data = data_dir(config);
    let local_bin = std::env::current_exe()
        .map_err(|e| Failure::new(1, format!("cannot find my own binary: {e}")))?;
    let enrolled = record::load(&data, name).is_ok();
    let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !enrolled && !yes && fingerprint.is_none() && !terminal {
        return Err(Failure::new(
            2,
            format!(
                "the first connection to {dest} needs a decision about its host key: run this on a \
                 terminal to be asked, or pass --fingerprint SHA256:… (what `ssh-keygen -lf \
                 /etc/ssh/ssh_host_ed25519_key.pub` prints there), or --yes to pin the key it shows"
            ),
        ));
    }
    let name_owned = name.to_owned();
    let mut ask = move |fp: &str| -> bool {
        eprint!(
            "Is {fp} the host key of {name_owned}? (There, `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` \
             prints it.) Pin it? [y/N] "
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
    };
    let confirm: Option<&mut dyn FnMut(&str) -> bool> = if yes || fingerprint.is_some() {
        None
    } else {
        Some(&mut ask)
    };
    let mut print = say;
    let record = enrol(
        &data,
        Enrol {
            name: name.to_owned(),
            dest,
            fingerprint,
            confirm,
            prompts: terminal,
            local_bin,
        },
        &mut print,
    )
    .await
    .map_err(|e| Failure::new(1, e.to_string()))?;
    outln!(
        "Enrolled {} ({}): `homeport --host {} status`, targets like {}:APP/ENV, and `host = \"{}\"` \
         on an environment to deploy it there",
        record.name,
        record.destination,
        record.name,
        record.name,
        record.name
    )?;
    match tell_agent(config, name).await {
        Some(h) => outln!(
            "This computer's agent reaches {} now ({}).",
            h.name,
            h.state
        )?,
        None => outln!(
            "This computer's agent is not running; it connects to {name} when it starts \
             (`homeport agent --detach`, or the tray)."
        )?,
    };
    Ok(())
}

pub async fn list(config: &Path, json: bool) -> Result<(), Failure> {
    let data = data_dir(config);
    let records = record::list(&data);
    let live = match Client::discover(&data) {
        Ok(c) => c.hosts().await.ok(),
        Err(_) => None,
    };
    let state_of = |name: &str| {
        live.as_ref()
            .and_then(|l| l.iter().find(|h| h.name == name).cloned())
    };
    if json {
        let rows: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "destination": r.destination,
                    "fingerprint": r.fingerprint,
                    "os": r.os,
                    "arch": r.arch,
                    "version": r.version,
                    "run_by": r.run_by,
                    "connection": state_of(&r.name),
                })
            })
            .collect();
        let text =
            serde_json::to_string_pretty(&rows).map_err(|e| Failure::new(1, e.to_string()))?;
        return outln!("{text}").map(drop);
    }
    if records.is_empty() {
        return outln!("No hosts enrolled. Add one with `homeport host add NAME user@host`.")
            .map(drop);
    }
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header([
        "HOST",
        "DESTINATION",
        "SYSTEM",
        "HOMEPORT",
        "RUN BY",
        "CONNECTION",
    ]);
    for r in &records {
        let conn = match (&live, state_of(&r.name)) {
            (None, _) => "(this computer's agent is not running)".to_owned(),
            (Some(_), None) => "not known to the agent".to_owned(),
            (Some(_), Some(h)) => describe(&h),
        };
        table.add_row([
            r.name.clone(),
            r.destination.clone(),
            format!("{}/{}", r.os, r.arch),
            r.version.clone(),
            r.run_by.clone(),
            conn,
        ]);
    }
    outln!("{table}").map(drop)
}

/// "connected", "unreachable since 12:03:04 (…)".
pub fn describe(h: &homeport_types::HostInfo) -> String {
    use homeport_types::HostState;
    let since = if h.since.is_empty() {
        String::new()
    } else {
        format!(" since {}", homeport_core::time::local(&h.since))
    };
    let why = h
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    match h.state {
        HostState::Connected => match &h.overall {
            Some(v) => format!("connected; {}: {}", v.level.word(), v.reason),
            None => "connected".to_owned(),
        },
        s => format!("{s}{since}{why}"),
    }
}

pub async fn remove(config: &Path, name: &str) -> Result<(), Failure> {
    let data = data_dir(config);
    let r = record::load(&data, name).map_err(|e| Failure::new(2, e.to_string()))?;
    record::remove(&data, name).map_err(|e| Failure::new(1, e.to_string()))?;
    let _ = tell_agent(config, name).await;
    outln!(
        "Forgot {name}: its record and pinned host key are gone from this computer. Homeport on \
         {name} keeps running its apps; to remove it there: ssh {} homeport uninstall",
        r.destination
    )
    .map(drop)
}

pub async fn check(config: &Path, name: &str) -> Result<(), Failure> {
    let data = data_dir(config);
    let r = record::load(&data, name).map_err(|e| Failure::new(2, e.to_string()))?;
    outln!("{} ({})", r.name, r.destination)?;
    let conn = Connection::open(&data, &r, &format!("cli-{}", std::process::id()))
        .await
        .map_err(|e| Failure::new(1, e.to_string()))?;
    outln!(
        "  host key   {} {} — the pinned one",
        r.key_type,
        r.fingerprint
    )?;
    let h = conn.hello();
    outln!("  system     {}/{}", h.os, h.arch)?;
    let ours = env!("CARGO_PKG_VERSION");
    let mut problems = Vec::new();
    if h.version == ours {
        outln!("  homeport   {} (the same as here)", h.version)?;
    } else {
        outln!("  homeport   {} (this computer runs {ours})", h.version)?;
        problems.push(format!(
            "{name} runs homeport {} and this computer {ours}: upgrade it with `homeport host add {name} {}`",
            h.version, r.destination
        ));
    }
    if let Some(free) = h.free_bytes {
        outln!(
            "  disk       {} free in {}",
            crate::output::size(free),
            h.data_dir
        )?;
    }
    outln!("  PATH       {}", r.path)?;
    match conn.client() {
        Some(client) => match client.status_report().await {
            Ok(s) => {
                outln!(
                    "  agent      pid {} answers, run by {}; {} service(s)",
                    s.snapshot.agent.pid,
                    s.snapshot
                        .agent
                        .service_manager
                        .clone()
                        .unwrap_or_else(|| "no service manager (detached)".into()),
                    s.snapshot.services.len()
                )?;
                outln!(
                    "  status     {}: {}",
                    s.overall.level.word(),
                    s.overall.reason
                )?;
            }
            Err(e) => {
                outln!("  agent      does not answer: {e}")?;
                problems.push(format!("the agent on {name} does not answer: {e}"));
            }
        },
        None => {
            outln!("  agent      not running")?;
            problems.push(format!(
                "no agent runs on {name}: start it there (`homeport agent --detach`, or \
                 `systemctl --user start homeport`), or run `homeport host add {name} {}` again",
                r.destination
            ));
        }
    }
    if let Ok(local) = Client::discover(&data)
        && let Ok(hosts) = local.hosts().await
        && let Some(l) = hosts.iter().find(|x| x.name == name)
    {
        outln!("  this agent {}", describe(l))?;
    }
    drop(conn);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(1, problems.join("; ")))
    }
}
