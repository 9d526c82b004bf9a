//! `homeport status [TARGET]`: the agent's verdict in one line, then services as a table; or
//! the snapshot and verdict as JSON.

use std::path::Path;

use homeport_types::{ServiceKey, Target};

use crate::{Failure, client, output};

pub async fn run(config_path: &Path, target: Option<Target>, json: bool) -> Result<(), Failure> {
    let client = client(config_path)?;
    let mut report = client.status_report().await?;
    // Versions and automatic updates come with the apps; an agent too old to say leaves them out.
    let mut apps = client.apps().await.unwrap_or_default();
    if let Some(t) = &target {
        for a in &mut apps {
            a.envs.retain(|e| env_in(t, &a.name, &e.env));
        }
        apps.retain(|a| !a.envs.is_empty());
    }
    let status = &mut report.snapshot;
    if let Some(t) = &target {
        let keys: Vec<ServiceKey> = status.services.iter().map(|s| s.key.clone()).collect();
        status.services.retain(|s| t.contains(&s.key));
        if status.services.is_empty() {
            return Err(crate::targets::not_found(t, &keys));
        }
    }
    let text = if json {
        let mut value =
            serde_json::to_value(&report).map_err(|e| Failure::new(1, e.to_string()))?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert(
                "apps".into(),
                serde_json::to_value(&apps).map_err(|e| Failure::new(1, e.to_string()))?,
            );
        }
        let mut t =
            serde_json::to_string_pretty(&value).map_err(|e| Failure::new(1, e.to_string()))?;
        t.push('\n');
        t
    } else if status.services.is_empty() {
        format!(
            "No services configured. Describe your apps in {}\n{}",
            status.agent.config_path,
            agent_log_line(&status.agent)
        )
    } else {
        format!(
            "{}{}\n{}{}{}",
            crate::host().map(|h| format!("{h} · ")).unwrap_or_default(),
            output::verdict_line(&report.overall),
            output::versions(&apps),
            output::status_table(
                &output::ordered(&report.snapshot.services),
                crate::style::width()
            ),
            agent_log_line(&report.snapshot.agent)
        )
    };
    crate::out::write(&text).map(drop)
}

/// Where the agent's own warnings are, for the user who never sees its terminal (an agent the
/// tray or a service manager started).
fn agent_log_line(agent: &homeport_types::AgentInfo) -> String {
    agent
        .log
        .as_deref()
        .map(|l| format!("Agent log: {l}\n"))
        .unwrap_or_default()
}

/// Whether `target` covers environment `app/env` (a service target covers its environment).
fn env_in(target: &Target, app: &str, env: &str) -> bool {
    match target {
        Target::All => true,
        Target::App(a) => a == app,
        Target::Env(a, e) => a == app && e == env,
        Target::Service(k) => k.app == app && k.env == env,
    }
}
