//! Captured log lines, as files keep them and the API returns them.

use serde::{Deserialize, Serialize};

use crate::ServiceKey;

/// Which output stream a log line came from.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The three-letter tag used in log files.
    pub fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "out" => Some(Stream::Stdout),
            "err" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One captured line of a service's output. `text` is the line decoded as UTF-8 with invalid bytes
/// replaced; the log file keeps the original bytes.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339 UTC time with microseconds, as written by the log holder.
    pub time: String,
    pub stream: Stream,
    pub text: String,
}

/// One log line of one service, as the API returns it.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub service: ServiceKey,
    #[serde(flatten)]
    pub line: LogLine,
}

/// One item of a followed log stream: a line, or a note that a slow reader missed some.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum LogStreamItem {
    Line(LogEntry),
    /// Lines were skipped because the reader fell too far behind (their count, when known).
    Skipped {
        count: Option<u64>,
    },
}
