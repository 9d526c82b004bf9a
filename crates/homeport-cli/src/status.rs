//! `homeport status`: the agent's verdict in one line, then every service as a table; or the
//! snapshot and verdict as JSON.

use std::path::Path;

use crate::{Failure, client, output};

pub async fn run(config_path: &Path, json: bool) -> Result<(), Failure> {
    let report = client(config_path)?.status_report().await?;
    let text = if json {
        let mut t =
            serde_json::to_string_pretty(&report).map_err(|e| Failure::new(1, e.to_string()))?;
        t.push('\n');
        t
    } else {
        format!(
            "{}\n{}",
            output::verdict_line(&report.overall),
            output::status_table(&report.snapshot)
        )
    };
    crate::out::write(&text).map(drop)
}
