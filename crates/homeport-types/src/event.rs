//! What happened, as the agent publishes and records it.

use serde::{Deserialize, Serialize};

use crate::{ExitReason, Health, ServiceKey, ServiceState};

/// Something that happened to a service, as broadcast to subscribers and kept in state.db.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 UTC time.
    pub time: String,
    pub key: ServiceKey,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EventKind {
    /// The service moved from one state to another.
    State {
        from: ServiceState,
        to: ServiceState,
        pid: Option<u32>,
        exit: Option<ExitReason>,
        /// Restarts so far, counting the one this transition may begin.
        restarts: u64,
        message: Option<String>,
    },
    /// A health probe result differed from the previous one.
    Health {
        health: Health,
        message: Option<String>,
    },
}
