//! `homeport status [TARGET]`: the agent's verdict in one line, then services as a table; or
//! the snapshot and verdict as JSON.

use std::path::Path;

use homeport_types::{ServiceKey, Target};

use crate::{Failure, client, output};

pub async fn run(config_path: &Path, target: Option<Target>, json: bool) -> Result<(), Failure> {
    let mut report = client(config_path)?.status_report().await?;
    let status = &mut report.snapshot;
    if let Some(t) = &target {
        let keys: Vec<ServiceKey> = status.services.iter().map(|s| s.key.clone()).collect();
        status.services.retain(|s| t.contains(&s.key));
        if status.services.is_empty() {
            return Err(crate::targets::not_found(t, &keys));
        }
    }
    let text = if json {
        let mut t =
            serde_json::to_string_pretty(&report).map_err(|e| Failure::new(1, e.to_string()))?;
        t.push('\n');
        t
    } else if status.services.is_empty() {
        format!(
            "No services configured. Describe your apps in {}\n",
            status.agent.config_path
        )
    } else {
        format!(
            "{}\n{}",
            output::verdict_line(&report.overall),
            output::status_table(
                &output::ordered(&report.snapshot.services),
                crate::style::width()
            )
        )
    };
    crate::out::write(&text).map(drop)
}
