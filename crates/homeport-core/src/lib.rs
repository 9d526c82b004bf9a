//! The composition root of the agent: supervisor + state store + log access behind one
//! cheap-to-clone [`CoreHandle`].
//!
//! ```text
//!   API / CLI ──▶ CoreHandle ──▶ Supervisor ──▶ service tasks ──▶ shims ──▶ services
//!                    │               │ events (Hub)
//!                    │               └──────────▶ recorder thread ──▶ state.db
//!                    └──▶ log files (read, follow)
//! ```
//! [`Core::start`] opens state.db, seeds the supervisor with the history it keeps, and re-adopts
//! services an earlier agent left running. The agent's own files (lock, token, endpoint) are in
//! [`runtime`].

pub mod runtime;
mod store;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use homeport_config::Config;
use homeport_supervisor::logfile::{self, LogQuery, Position};
use homeport_supervisor::{Options, Supervisor};
use homeport_types::{
    Action, ActionOutcome, AgentInfo, LogEntry, LogStreamItem, ServiceKey, StatusSnapshot, Target,
};
use tokio::sync::mpsc;

pub use homeport_supervisor::NotFound;
pub use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("cannot create the data folder {0}: {1}")]
    DataDir(PathBuf, #[source] std::io::Error),
    #[error("cannot open the state database {0}: {1}")]
    Store(PathBuf, #[source] rusqlite::Error),
}

/// How long a start waits for services to come up before answering.
pub const START_WAIT: Duration = Duration::from_secs(60);

pub struct Core {
    supervisor: Supervisor,
    store: Arc<Mutex<Store>>,
    started: Instant,
}

/// The one handle the API, CLI and tray use.
pub type CoreHandle = Arc<Core>;

impl Core {
    /// Opens state.db and builds the supervisor, re-adopting running services. Starts nothing new.
    pub async fn start(config: Config, shim_exe: PathBuf) -> Result<CoreHandle, CoreError> {
        let data = config.agent.data_dir.clone();
        homeport_supervisor::fsutil::create_private_dir(&data)
            .map_err(|e| CoreError::DataDir(data.clone(), e))?;
        let db_path = data.join("state.db");
        let store = Store::open(&db_path).map_err(|e| CoreError::Store(db_path.clone(), e))?;
        let seeds = store
            .seeds()
            .map_err(|e| CoreError::Store(db_path.clone(), e))?;
        let store = Arc::new(Mutex::new(store));

        let (tx, mut rx) = mpsc::unbounded_channel();
        let recorder_store = Arc::clone(&store);
        std::thread::Builder::new()
            .name("state-recorder".into())
            .spawn(move || {
                while let Some(ev) = rx.blocking_recv() {
                    let mut store = recorder_store
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if let Err(e) = store.record(&ev) {
                        tracing::error!("cannot record an event in state.db: {e}");
                    }
                }
            })
            .map_err(|e| CoreError::DataDir(data.clone(), e))?;

        let supervisor =
            Supervisor::new(Arc::new(config), Options { shim_exe, seeds }, Some(tx)).await;
        Ok(Arc::new(Core {
            supervisor,
            store,
            started: Instant::now(),
        }))
    }

    pub fn config(&self) -> &Config {
        self.supervisor.config()
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    pub fn store(&self) -> &Arc<Mutex<Store>> {
        &self.store
    }

    pub async fn autostart(&self) -> Vec<ActionOutcome> {
        self.supervisor.autostart(START_WAIT).await
    }

    pub fn status(&self) -> StatusSnapshot {
        StatusSnapshot {
            agent: AgentInfo {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                config_path: self.config().file.display().to_string(),
                uptime_secs: self.started.elapsed().as_secs(),
            },
            services: self.supervisor.status(),
        }
    }

    pub async fn act(
        &self,
        action: Action,
        target: &Target,
    ) -> Result<Vec<ActionOutcome>, NotFound> {
        match action {
            Action::Start => self.supervisor.start(target, START_WAIT).await,
            Action::Stop => self.supervisor.stop(target).await,
            Action::Restart => self.supervisor.restart(target, START_WAIT).await,
        }
    }

    /// Stops every service; the agent is exiting on request.
    pub async fn shutdown(&self) {
        self.supervisor.shutdown().await;
    }

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
            let (lines, end) = logfile::read_lines(&path, keep, query)
                .map_err(|e| LogError::Io(key.clone(), e))?;
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
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(follow_files(cursor, grep, tx));
        rx
    }
}

/// Where each followed log file was last read.
#[derive(Debug, Clone)]
pub struct LogCursor(Vec<(ServiceKey, PathBuf, Position)>);

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    NotFound(#[from] NotFound),
    #[error("cannot read the log of {0}: {1}")]
    Io(ServiceKey, #[source] std::io::Error),
}

/// Polls the log files for new complete lines. Polling (every 100 ms, only while someone follows)
/// keeps this portable and costs nothing when nobody is watching.
async fn follow_files(
    cursor: LogCursor,
    grep: Option<regex::Regex>,
    tx: mpsc::Sender<LogStreamItem>,
) {
    let mut cursors = cursor.0;
    let mut skipped: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if tx.is_closed() {
            return;
        }
        for (key, path, pos) in &mut cursors {
            let Ok(lines) = logfile::read_new_lines(path, pos) else {
                continue;
            };
            for line in lines {
                if grep.as_ref().is_some_and(|re| !re.is_match(&line.text)) {
                    continue;
                }
                if skipped > 0
                    && tx
                        .try_send(LogStreamItem::Skipped { count: skipped })
                        .is_ok()
                {
                    skipped = 0;
                }
                let item = LogStreamItem::Line(LogEntry {
                    service: key.clone(),
                    line,
                });
                match tx.try_send(item) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => skipped += 1,
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        }
    }
}
