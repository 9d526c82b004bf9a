//! The service state machine: one enum and one transition function.
//!
//! ```text
//!            Start                 Spawned (no check)
//!  Stopped ─────────▶ Starting ─────────────────────▶ Running
//!     ▲                  │  HealthPassed                  │
//!     │                  ▼                                │
//!     │   HealthFailed  Healthy ◀──── HealthPassed ── Unhealthy
//!     │                  │                                │
//!     │ Stop (any up state) ─▶ Stopping ─ Exited ─▶ Stopped
//!     │
//!  Exited(Restart) ─▶ BackingOff ─ BackoffElapsed ─▶ Starting
//!  Exited(GiveUp)  ─▶ Failed        (crash loop, spawn error)
//!  Exited(StayExited | StayCrashed) ─▶ Exited (status 0) or Crashed
//! ```
//! Inputs that make no sense in a state leave it unchanged; the supervisor never has to know
//! which pairs are legal.

use serde::{Deserialize, Serialize};

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Not running, by request or because it was never started.
    Stopped,
    /// Waiting for dependencies, spawning, or up but not yet confirmed healthy.
    Starting,
    /// Up, and it has no health check.
    Running,
    /// Up, and its health check passes.
    Healthy,
    /// Up, but its health check fails.
    Unhealthy,
    /// The stop signal was sent; waiting for the process group to end.
    Stopping,
    /// Ended with status 0 and its restart policy does not bring it back.
    Exited,
    /// Ended with a failure and its restart policy does not bring it back.
    Crashed,
    /// Ended; it will be started again after a backoff delay.
    BackingOff,
    /// Gave up: a crash loop, or it could not be spawned (e.g. its port is taken).
    Failed,
}

/// What happened to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Start,
    /// The process is up; `checked` tells whether it has a health check to pass.
    Spawned {
        checked: bool,
    },
    SpawnFailed,
    HealthPassed,
    HealthFailed,
    Stop,
    /// The process ended, and what its restart policy decided.
    Exited(AfterExit),
    BackoffElapsed,
}

/// What a service's restart policy decided when its process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Start it again after a backoff delay.
    Restart,
    /// The crash-loop limit was reached: leave it down as failed.
    GiveUp,
    /// Leave it down; it exited with status 0.
    StayExited,
    /// Leave it down; it ended with a failure.
    StayCrashed,
}

impl AfterExit {
    /// Staying down, as an exit with this success calls for.
    pub fn stay_down(success: bool) -> Self {
        if success {
            AfterExit::StayExited
        } else {
            AfterExit::StayCrashed
        }
    }
}

impl ServiceState {
    /// The one transition function of the supervisor.
    pub fn on(self, input: Input) -> ServiceState {
        use Input as I;
        use ServiceState as S;
        match (self, input) {
            (S::Stopped | S::Exited | S::Crashed | S::Failed | S::BackingOff, I::Start) => {
                S::Starting
            }
            (S::Starting, I::Spawned { checked: true }) => S::Starting,
            (S::Starting, I::Spawned { checked: false }) => S::Running,
            (S::Starting, I::SpawnFailed) => S::Failed,
            (S::Starting | S::Unhealthy | S::Healthy, I::HealthPassed) => S::Healthy,
            (S::Starting | S::Healthy | S::Unhealthy, I::HealthFailed) => S::Unhealthy,
            (s, I::Stop) if s.is_up() || s == S::BackingOff => {
                if s == S::BackingOff {
                    S::Stopped
                } else {
                    S::Stopping
                }
            }
            (S::Stopping, I::Exited(_)) => S::Stopped,
            (s, I::Exited(after)) if s.is_up() => match after {
                AfterExit::Restart => S::BackingOff,
                AfterExit::GiveUp => S::Failed,
                AfterExit::StayExited => S::Exited,
                AfterExit::StayCrashed => S::Crashed,
            },
            (S::BackingOff, I::BackoffElapsed) => S::Starting,
            (s, _) => s,
        }
    }

    /// A process may be alive in this state.
    pub fn is_up(self) -> bool {
        matches!(
            self,
            ServiceState::Starting
                | ServiceState::Running
                | ServiceState::Healthy
                | ServiceState::Unhealthy
                | ServiceState::Stopping
        )
    }

    /// Dependents may start: the service is up and, if it has a health check, passes it.
    pub fn is_ready(self) -> bool {
        matches!(self, ServiceState::Running | ServiceState::Healthy)
    }

    /// The service is down and will stay down until someone starts it.
    pub fn is_settled_down(self) -> bool {
        matches!(
            self,
            ServiceState::Stopped
                | ServiceState::Exited
                | ServiceState::Crashed
                | ServiceState::Failed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Stopped => "stopped",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Healthy => "healthy",
            ServiceState::Unhealthy => "unhealthy",
            ServiceState::Stopping => "stopping",
            ServiceState::Exited => "exited",
            ServiceState::Crashed => "crashed",
            ServiceState::BackingOff => "backing_off",
            ServiceState::Failed => "failed",
        }
    }
}

impl ServiceState {
    /// The state as a person says it, for menus, tables and notices: "restarting", never
    /// `backing_off` (the wire name, [`ServiceState::as_str`]).
    pub fn word(self) -> &'static str {
        match self {
            ServiceState::BackingOff => "restarting",
            other => other.as_str(),
        }
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceState as S;
    use super::*;

    fn exited(after: AfterExit) -> Input {
        Input::Exited(after)
    }

    #[test]
    fn a_checked_service_is_starting_until_its_probe_passes() {
        let s = S::Stopped
            .on(Input::Start)
            .on(Input::Spawned { checked: true });
        assert_eq!(s, S::Starting);
        assert_eq!(s.on(Input::HealthPassed), S::Healthy);
        assert_eq!(S::Healthy.on(Input::HealthFailed), S::Unhealthy);
        assert_eq!(S::Unhealthy.on(Input::HealthPassed), S::Healthy);
    }

    #[test]
    fn an_unchecked_service_is_running_once_spawned() {
        assert_eq!(
            S::Starting.on(Input::Spawned { checked: false }),
            S::Running
        );
        assert!(S::Running.is_ready());
        assert!(!S::Starting.is_ready());
    }

    #[test]
    fn exits_follow_the_restart_decision() {
        assert_eq!(S::Healthy.on(exited(AfterExit::Restart)), S::BackingOff);
        assert_eq!(S::Running.on(exited(AfterExit::GiveUp)), S::Failed);
        assert_eq!(S::Running.on(exited(AfterExit::StayExited)), S::Exited);
        assert_eq!(S::Running.on(exited(AfterExit::StayCrashed)), S::Crashed);
        assert_eq!(S::Stopping.on(exited(AfterExit::Restart)), S::Stopped);
        assert_eq!(AfterExit::stay_down(true), AfterExit::StayExited);
        assert_eq!(AfterExit::stay_down(false), AfterExit::StayCrashed);
        assert_eq!(S::BackingOff.on(Input::BackoffElapsed), S::Starting);
    }

    #[test]
    fn stop_and_start_apply_only_where_they_mean_something() {
        assert_eq!(S::Healthy.on(Input::Stop), S::Stopping);
        assert_eq!(S::BackingOff.on(Input::Stop), S::Stopped);
        assert_eq!(S::Stopped.on(Input::Stop), S::Stopped);
        assert_eq!(S::Failed.on(Input::Start), S::Starting);
        assert_eq!(S::Healthy.on(Input::Start), S::Healthy);
        assert_eq!(S::Stopped.on(Input::HealthPassed), S::Stopped);
        assert_eq!(S::Starting.on(Input::SpawnFailed), S::Failed);
    }
}
