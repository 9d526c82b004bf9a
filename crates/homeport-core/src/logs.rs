//! Reading and following the services' log files: the history merged by time, then new lines
//! as they are written, with no gap and no repeat between the two.

use std::path::PathBuf;
use std::time::Duration;

use homeport_supervisor::logfile::{self, LogQuery, Position, Stopped};
use homeport_types::{LogEntry, LogStreamItem, ServiceKey, Target};
use tokio::sync::mpsc;

use crate::{Core, NotFound};

impl Core {
    /// Log lines of the services of `target`, merged by time, the newest `query.tail` of them,
    /// and where each file ended, for [`Core::follow`].
    pub fn logs(
        &self,
        target: &Target,
        query: &LogQuery,
    ) -> Result<(Vec<LogEntry>, LogCursor), LogError> {
        let keys = self.supervisor.resolve(target)?;
        let keep = self.config().agent.log_keep;
        let mut all = Vec::new();
        let mut cursor = LogCursor(Vec::new());
        for key in keys {
            let path = self.supervisor.log_path(&key);
            let (lines, end) =
                logfile::read_lines(&path, keep, query).map_err(|e| read_error(&key, e))?;
            all.extend(lines.into_iter().map(|line| LogEntry {
                service: key.clone(),
                line,
            }));
            cursor.0.push((key, path, end));
        }
        // Stable: lines of one service that share a timestamp keep their file order.
        all.sort_by(|a, b| a.line.time.cmp(&b.line.time));
        if let Some(n) = query.tail {
            let skip = all.len().saturating_sub(n);
            all.drain(..skip);
        }
        Ok((all, cursor))
    }

    /// Lines written after `cursor` (from [`Core::logs`]), so history and live lines meet without
    /// a gap or a repeat. Delivery is through a bounded queue: a reader that falls behind gets a
    /// [`LogStreamItem::Skipped`] marker instead of making the agent buffer without bound. The
    /// follow ends when the receiver is dropped.
    pub fn follow(
        &self,
        cursor: LogCursor,
        grep: Option<regex::Regex>,
    ) -> mpsc::Receiver<LogStreamItem> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(follow_files(
            cursor,
            self.config().agent.log_keep,
            grep,
            tx,
            self.shutdown_signal(),
        ));
        rx
    }
}

/// Where each followed log file was last read.
#[derive(Debug, Clone)]
pub struct LogCursor(Vec<(ServiceKey, PathBuf, Position)>);

/// A search stopped by its budget is said as such; any other failure names the service.
fn read_error(key: &ServiceKey, e: std::io::Error) -> LogError {
    if e.get_ref().is_some_and(|i| i.is::<Stopped>()) {
        let kind = e.kind();
        if let Some(Ok(stopped)) = e.into_inner().map(|i| i.downcast::<Stopped>()) {
            tracing::info!("a log search in {key} stopped: {stopped}");
            return LogError::Stopped(*stopped);
        }
        return LogError::Io(key.clone(), kind.into());
    }
    LogError::Io(key.clone(), e)
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    NotFound(#[from] NotFound),
    /// The search went over its budget, or its client went away.
    #[error(transparent)]
    Stopped(#[from] Stopped),
    #[error("cannot read the log of {0}: {1}")]
    Io(ServiceKey, #[source] std::io::Error),
    #[error("cannot read state.db: {0}")]
    Store(#[source] rusqlite::Error),
}

/// Reads new lines as they are written, polling every 100 ms only while someone follows and
/// there is nothing new. Delivery waits for the reader (the channel is small): the log file,
/// not agent memory, is the buffer of a slow reader, and the service writing it is never slowed.
/// Only if the reader falls so far behind that its file rotates out of `log_keep` does it get a
/// [`LogStreamItem::Skipped`] marker.
async fn follow_files(
    cursor: LogCursor,
    keep: u32,
    grep: Option<regex::Regex>,
    tx: mpsc::Sender<LogStreamItem>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        () = follow_loop(cursor, keep, grep, tx) => {}
        () = stop => {}
    }
}

async fn follow_loop(
    cursor: LogCursor,
    keep: u32,
    grep: Option<regex::Regex>,
    tx: mpsc::Sender<LogStreamItem>,
) {
    const CHUNK: u64 = 1024 * 1024;
    let mut cursors = cursor.0;
    loop {
        let mut idle = true;
        for (key, path, pos) in &mut cursors {
            let Ok(got) = logfile::read_new_lines(path, keep, pos, CHUNK) else {
                continue;
            };
            if got.lost {
                idle = false;
                if tx
                    .send(LogStreamItem::Skipped { count: None })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            for line in got.lines {
                idle = false;
                if grep.as_ref().is_some_and(|re| !re.is_match(&line.text)) {
                    continue;
                }
                let item = LogStreamItem::Line(LogEntry {
                    service: key.clone(),
                    line,
                });
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        }
        if idle {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = tx.closed() => return,
            }
        }
    }
}
