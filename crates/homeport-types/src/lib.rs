//! Domain and wire types shared by every Homeport crate.
//!
//! This crate owns the vocabulary: how a service is named ([`ServiceKey`], [`Target`]), the states
//! a supervised service moves through ([`ServiceState`]), why a process ended ([`ExitReason`]), the
//! events the agent publishes ([`Event`]), captured log lines ([`LogLine`]) and the DTOs of the local
//! API ([`StatusSnapshot`], [`ServiceStatus`], [`ApiError`]). It does no I/O and depends on serde only,
//! so the CLI, the agent, the tray and the typed client all agree on one definition.

mod agent;
mod backup;
mod deploy;
mod event;
mod host;
mod key;
mod logs;
mod metrics;
mod service;
mod settings;
mod state;
#[cfg(test)]
mod typescript;
mod verdict;

pub use agent::*;
pub use backup::*;
pub use deploy::*;
pub use event::*;
pub use host::*;
pub use key::*;
pub use logs::*;
pub use metrics::*;
pub use service::*;
pub use settings::*;
pub use state::{AfterExit, Input, ServiceState};
pub use verdict::{Level, PRODUCTION, Verdict};
