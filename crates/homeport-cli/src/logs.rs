//! `homeport logs [TARGET] [-f] [-n N] [--since T] [--grep RE]`: every line prefixed with its
//! service (`app/env/service`, in a colour of its own on a terminal). A follow outlives the
//! agent: when it restarts, `-f` waits for the new one and goes on with no gap and no repeat.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::stream::LocalBoxStream;
use homeport_client::LogRequest;
use homeport_types::{LogEntry, LogStreamItem, Target};

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
    let started = SystemTime::now();
    // Before a reconnect every line the agent sends was asked for; after one, a service none of
    // whose lines were shown had none before the follow started.
    let mut floor: Option<SystemTime> = None;
    let mut req = LogRequest {
        target: Some(target.clone()),
        tail: Some(lines),
        since,
        grep,
        follow,
    };
    let client = client(config_path)?;
    let mut stream: Lines = match client.logs(&req).await {
        Ok(s) => s.boxed_local(),
        Err(e) => return Err(crate::targets::explain(&client, &target, e.into()).await),
    };
    let mut seen = Seen::default();
    loop {
        let lost = loop {
            match stream.next().await {
                Some(Ok(LogStreamItem::Line(entry))) => {
                    if !seen.first_time(&entry, floor) {
                        continue;
                    }
                    if !outln!("{}", output::log_line(&entry))? {
                        return Ok(());
                    }
                }
                Some(Ok(LogStreamItem::Skipped { count })) => {
                    let what =
                        count.map_or_else(|| "some lines".to_owned(), |n| format!("{n} lines"));
                    eprintln!("homeport: {what} skipped: this reader fell behind the log rotation")
                }
                Some(Err(e)) if follow => break e.to_string(),
                Some(Err(e)) => return Err(e.into()),
                None if follow => break "the agent ended the stream".to_owned(),
                None => return Ok(()),
            }
        };
        // The agent went away (restarted, upgraded) while the services and their log files
        // carry on: wait for it, then go on from the last line shown, none twice.
        eprintln!("homeport: lost the agent ({lost}); following again when it is back…");
        req.tail = None;
        req.since = Some(
            seen.resume_from()
                .unwrap_or_else(|| humantime::format_rfc3339_micros(started).to_string()),
        );
        floor = Some(started);
        stream = reconnect(config_path, &req).await;
    }
}

/// A followed log, whichever agent serves it.
type Lines = LocalBoxStream<'static, Result<LogStreamItem, homeport_client::ClientError>>;

/// Waits until an agent answers the log request again (the new agent of a restart).
async fn reconnect(config_path: &Path, req: &LogRequest) -> Lines {
    let mut wait = Duration::from_millis(100);
    loop {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
        // Found afresh: a new agent may listen on another port.
        if let Ok(c) = client(config_path)
            && let Ok(s) = c.logs(req).await
        {
            return s.boxed_local();
        }
    }
}

/// The lines shown lately (bounded), and the newest time among them: after a reconnect the
/// follow starts again a little before that time, and skips what it showed already (lines of
/// several services do not arrive in time order, so a cut at one time could lose some). Lines
/// older than the first one shown of their service were not asked for (`-n` cut them), so the
/// overlap does not bring them in either.
#[derive(Default)]
struct Seen {
    newest: Option<SystemTime>,
    /// Per service, the time of the oldest line shown.
    floor: HashMap<String, SystemTime>,
    keys: HashSet<(String, String, String)>,
    order: VecDeque<(String, String, String)>,
}

impl Seen {
    const KEEP: usize = 20_000;
    /// How far before the newest line a follow starts again.
    const OVERLAP: Duration = Duration::from_secs(5);

    /// Whether `entry` is to be shown: not shown yet, and not older than what was asked for
    /// (`since`: lines of a service none of whose lines were shown yet). Remembers it.
    fn first_time(&mut self, entry: &LogEntry, since: Option<SystemTime>) -> bool {
        let service = entry.service.to_string();
        let time = humantime::parse_rfc3339_weak(&entry.line.time).ok();
        if let Some(t) = time {
            let floor = self.floor.get(&service).copied().or(since);
            if floor.is_some_and(|f| t < f) {
                return false;
            }
        }
        let key = (service, entry.line.time.clone(), entry.line.text.clone());
        if !self.keys.insert(key.clone()) {
            return false;
        }
        if let Some(t) = time {
            let floor = self.floor.entry(key.0.clone()).or_insert(t);
            *floor = (*floor).min(t);
            self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
        }
        self.order.push_back(key);
        if self.order.len() > Self::KEEP
            && let Some(old) = self.order.pop_front()
        {
            self.keys.remove(&old);
        }
        true
    }

    /// Where a follow starts again: a little before the newest line shown.
    fn resume_from(&self) -> Option<String> {
        let from = self
            .newest?
            .checked_sub(Self::OVERLAP)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Some(humantime::format_rfc3339_micros(from).to_string())
    }
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
