//! The agent's own lifecycle as clients see it: which service manager runs it, and a stop asked
//! for through the API (`homeport agent stop|restart`), which the agent's main loop waits on
//! beside its signals.

use std::sync::OnceLock;

use homeport_types::{AgentStopReply, AgentStopRequest};

use crate::Core;

#[derive(Default)]
pub(crate) struct Lifecycle {
    service_manager: OnceLock<Option<String>>,
    stop: tokio::sync::watch::Sender<Option<AgentStopRequest>>,
}

impl Core {
    /// Records the service manager that runs this agent (`systemd`, `launchd`), once, at start.
    pub fn set_service_manager(&self, name: Option<String>) {
        let _ = self.lifecycle.service_manager.set(name);
    }

    pub fn service_manager(&self) -> Option<String> {
        self.lifecycle.service_manager.get().cloned().flatten()
    }

    /// Asks the agent to stop. The first request wins; a later one is answered the same way.
    pub fn request_stop(&self, req: AgentStopRequest) -> AgentStopReply {
        let req = AgentStopRequest {
            keep_services: req.keep_services || req.restart,
            restart: req.restart,
        };
        self.lifecycle.stop.send_if_modified(|cur| {
            if cur.is_some() {
                return false;
            }
            *cur = Some(req);
            true
        });
        let effective = self.lifecycle.stop.borrow().unwrap_or(req);
        AgentStopReply {
            pid: std::process::id(),
            restarted_by: effective.restart.then(|| self.service_manager()).flatten(),
        }
    }

    /// Ends followers and event streams without stopping any service: the agent is leaving its
    /// services to the next one. Recorded as the agent stopping, like a full shutdown.
    pub fn end_streams(&self) {
        self.emit(
            homeport_types::Subject::Agent,
            homeport_types::EventKind::AgentStopping,
        );
        self.stopping.send_replace(true);
    }

    /// Resolves when a client has asked the agent to stop, with what it asked for.
    pub async fn stop_requested(&self) -> AgentStopRequest {
        let mut rx = self.lifecycle.stop.subscribe();
        loop {
            if let Some(req) = *rx.borrow_and_update() {
                return req;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}
