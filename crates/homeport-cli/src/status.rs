//! `homeport status`: every service as a table, or the snapshot as JSON.

use std::path::Path;

use crate::{Failure, client, output};

pub async fn run(config_path: &Path, json: bool) -> Result<(), Failure> {
    let status = client(config_path)?.status().await?;
    let text = if json {
        let mut t =
            serde_json::to_string_pretty(&status).map_err(|e| Failure::new(1, e.to_string()))?;
        t.push('\n');
        t
    } else {
        output::status_table(&status)
    };
    crate::out::write(&text).map(drop)
}
