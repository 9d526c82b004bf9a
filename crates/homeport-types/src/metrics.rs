//! History of services over time: `GET /api/v1/metrics?target=T&range=R&resolution=S`.
//!
//! Series are columns (one array per measure, one entry per point), the shape chart libraries
//! draw from directly; a `null` is a time with no measurement (a gap, not a zero).

use serde::{Deserialize, Serialize};

use crate::{ServiceKey, Subject, Target};

/// How far apart the points of a [`MetricsReport`] are.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MetricsResolution {
    /// Each sample the agent took (every few seconds); the last hour only.
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "10m")]
    TenMinutes,
    #[serde(rename = "1h")]
    Hour,
}

impl MetricsResolution {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricsResolution::Raw => "raw",
            MetricsResolution::Minute => "1m",
            MetricsResolution::TenMinutes => "10m",
            MetricsResolution::Hour => "1h",
        }
    }

    pub fn parse(s: &str) -> Option<MetricsResolution> {
        [
            MetricsResolution::Raw,
            MetricsResolution::Minute,
            MetricsResolution::TenMinutes,
            MetricsResolution::Hour,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// The history of a target's services over a range.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    pub target: Target,
    /// Unix seconds: the range covered.
    pub from: i64,
    pub to: i64,
    pub resolution: MetricsResolution,
    /// Seconds between points (the sampling interval for `raw`).
    pub step: u32,
    /// How often the agent samples, in seconds; 0 when sampling is off.
    pub sample_every: u32,
    pub services: Vec<ServiceMetrics>,
    /// Uptime of the environments the target covers.
    pub envs: Vec<EnvUptime>,
    /// What happened in the range, oldest first: restarts, deploys, rollbacks, backups,
    /// restores, health flips, the agent starting.
    pub annotations: Vec<Annotation>,
}

/// One service's history.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceMetrics {
    pub key: ServiceKey,
    /// Percent of the counted time it was up over the range (see docs/metrics.md); `null`
    /// when it was never meant to run in it.
    pub uptime: Option<f64>,
    pub points: MetricPoints,
}

/// One column per measure, one entry per point.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricPoints {
    /// Unix seconds at the start of each point's window.
    pub t: Vec<i64>,
    /// CPU, percent of one core: the average over the window and its highest sample.
    pub cpu: Vec<Option<f32>>,
    pub cpu_max: Vec<Option<f32>>,
    /// Resident memory of the service's processes, bytes: average and highest.
    pub rss: Vec<Option<u64>>,
    pub rss_max: Vec<Option<u64>>,
    /// Health probe latency of the probes that passed, milliseconds: average and slowest.
    pub latency: Vec<Option<f32>>,
    pub latency_max: Vec<Option<f32>>,
    /// Percent of the window's counted time it was up.
    pub up: Vec<Option<f32>>,
}

/// An environment's uptime over the range, and per point.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvUptime {
    pub app: String,
    pub env: String,
    /// Percent of the counted time no service of it was down; `null` when nothing ran.
    pub uptime: Option<f64>,
    pub up_secs: u64,
    pub down_secs: u64,
    pub t: Vec<i64>,
    pub up: Vec<Option<f32>>,
}

/// A mark on a chart: something that happened at a moment.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// RFC 3339, as the event has it.
    pub time: String,
    /// Unix seconds (with a fraction), for the chart.
    pub at: f64,
    pub subject: Subject,
    pub kind: AnnotationKind,
    /// One line a person reads: "exit code 3; restarted", "deploy of r42 went live".
    pub label: String,
}

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationKind {
    /// The service ended and is being started again.
    Restart,
    /// The service ended and stays down (crashed, or its restarts gave up).
    Crash,
    /// Stopped on request.
    Stop,
    /// A deploy, promote or update went live.
    Deploy,
    /// A deploy, promote, update or rollback failed (the previous release still serves).
    DeployFailed,
    /// A rollback to an earlier release went live.
    Rollback,
    Backup,
    BackupFailed,
    Restore,
    RestoreFailed,
    /// The health check started failing.
    Unhealthy,
    /// The health check passes again after failing.
    Healthy,
    /// The agent started (a gap in the samples before it is the agent's, not the service's).
    AgentStarted,
}

impl AnnotationKind {
    /// Whether it marks something that went wrong.
    pub fn is_bad(self) -> bool {
        matches!(
            self,
            AnnotationKind::Restart
                | AnnotationKind::Crash
                | AnnotationKind::DeployFailed
                | AnnotationKind::BackupFailed
                | AnnotationKind::RestoreFailed
                | AnnotationKind::Unhealthy
        )
    }
}
