//! `homeport logs [TARGET] [-f] [-n N] [--since T] [--grep RE]`: every line prefixed with its
//! service (`app/env/service`, in a colour of its own on a terminal).

use std::path::Path;
use std::time::SystemTime;

use futures_util::StreamExt;
use homeport_client::LogRequest;
use homeport_types::{LogStreamItem, Target};

use crate::{Failure, client, output};

pub async fn run(
    config_path: &Path,
    target: Option<Target>,
    follow: bool,
    lines: usize,
    since: Option<String>,
    grep: Option<String>,
) -> Result<(), Failure> {
    let since = since.map(|s| parse_since(&s)).transpose()?;
    if let Some(g) = &grep {
        regex::Regex::new(g).map_err(|e| Failure::new(2, format!("--grep: {e}")))?;
    }
    let target = target.unwrap_or(Target::All);
    let req = LogRequest {
        target: Some(target.clone()),
        tail: Some(lines),
        since,
        grep,
        follow,
    };
    let client = client(config_path)?;
    let stream = match client.logs(&req).await {
        Ok(s) => s,
        Err(e) => return Err(crate::targets::explain(&client, &target, e.into()).await),
    };
    let mut stream = Box::pin(stream);
    while let Some(item) = stream.next().await {
        match item? {
            LogStreamItem::Line(entry) => {
                if !outln!("{}", output::log_line(&entry))? {
                    return Ok(());
                }
            }
            LogStreamItem::Skipped { count } => {
                let what = count.map_or_else(|| "some lines".to_owned(), |n| format!("{n} lines"));
                eprintln!("homeport: {what} skipped: this reader fell behind the log rotation")
            }
        }
    }
    Ok(())
}

/// `--since`: a time on the local clock (`10:30`, `2026-12-04 10:30`), an RFC 3339 time, or
/// an age like `10m` meaning that long ago.
fn parse_since(s: &str) -> Result<String, Failure> {
    if let Some(t) =
        homeport_core::time::parse_local(s, jiff::Timestamp::now(), &jiff::tz::TimeZone::system())
    {
        return Ok(humantime::format_rfc3339_micros(SystemTime::from(t)).to_string());
    }
    let age = humantime::parse_duration(s).map_err(|_| {
        Failure::new(
            2,
            format!(
                "--since {s:?}: expected a local time such as 10:30 or \"2026-12-04 10:30\", an RFC 3339 time, or an age such as 10m"
            ),
        )
    })?;
    let t = SystemTime::now()
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(humantime::format_rfc3339_micros(t).to_string())
}
