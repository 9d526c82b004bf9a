//! The agent's HTTP router: each environment's web service under its names
//! (`APP.localhost`, `ENV.APP.localhost`, `hostnames`), local HTTPS when `https_port` is set,
//! and the public port of a blue-green web service, where a switch is a per-request flip.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use homeport_config::Config;
use homeport_router::{RouteKey, RouteSpec, Router, TargetState};
use homeport_types::{ServiceKey, ServiceState};

use crate::Core;
use crate::proxy::Proxy;

/// The router's folder for the local CA, under the data folder.
pub fn ca_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("ca")
}

/// Whether the agent runs a router for this config: for names, or for a blue-green web service.
pub(crate) fn wanted(config: &Config) -> bool {
    config.agent.router_port != 0 || config.services.iter().any(|s| is_http_slot(config, s))
}

/// A blue-green instance of its environment's web service: its public port speaks HTTP, so the
/// router (not the TCP proxy) serves it and a switch is a flip per request.
pub(crate) fn is_http_slot(config: &Config, s: &homeport_config::ServiceSpec) -> bool {
    s.slot.as_ref().is_some_and(|slot| {
        config.envs.iter().any(|e| {
            e.app == s.key.app && e.env == s.key.env && e.web.as_deref() == Some(&slot.service)
        })
    })
}

pub(crate) fn is_http_proxy(config: &Config, p: &Proxy) -> bool {
    config
        .envs
        .iter()
        .any(|e| e.app == p.app && e.env == p.env && e.web.as_deref() == Some(&p.service))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One route per environment: its names, and the port of its web service (the active instance
/// of a blue-green one).
pub(crate) fn specs(config: &Config, proxies: &[Arc<Proxy>]) -> Vec<RouteSpec> {
    config
        .envs
        .iter()
        .map(|e| {
            let upstream = e.web.as_ref().and_then(|web| {
                // A route never leads to the agent's own API, whatever a service's port says.
                let not_api = |p: &u16| config.agent.port == 0 || *p != config.agent.port;
                match proxies
                    .iter()
                    .find(|p| p.app == e.app && p.env == e.env && &p.service == web)
                {
                    Some(p) => p.active_port(),
                    None => config
                        .service(&ServiceKey::new(&e.app, &e.env, web))
                        .and_then(|s| s.port),
                }
                .filter(not_api)
            });
            let mut names = homeport_router::host::default_names(&e.app, &e.env);
            names.extend(e.hostnames.iter().cloned());
            RouteSpec {
                key: RouteKey::new(&e.app, &e.env),
                names,
                upstream: upstream.map(loopback),
            }
        })
        .collect()
}

/// The URL an environment's web service is opened at: its first name on the router's port.
pub(crate) fn url(config: &Config, app: &str, env: &str) -> Option<String> {
    let port = config.agent.router_port;
    if port == 0 {
        return None;
    }
    let name = homeport_router::host::default_names(app, env)
        .into_iter()
        .next()?;
    Some(format!("http://{name}:{port}/"))
}

/// What the router tells a browser when an environment's web service does not answer.
pub(crate) struct AgentStatus {
    pub(crate) core: Weak<Core>,
}

impl homeport_router::Status for AgentStatus {
    fn state(&self, key: &RouteKey) -> TargetState {
        let Some(core) = self.core.upgrade() else {
            return TargetState::Stopped;
        };
        let config = core.config();
        let Some(web) = config
            .envs
            .iter()
            .find(|e| e.app == key.app && e.env == key.env)
            .and_then(|e| e.web.clone())
        else {
            return TargetState::NoWebService;
        };
        let wanted = match core
            .all_proxies()
            .into_iter()
            .find(|p| p.app == key.app && p.env == key.env && p.service == web)
        {
            Some(p) => p.active(),
            None => ServiceKey::new(&key.app, &key.env, &web),
        };
        let Some(s) = core
            .supervisor()
            .status()
            .into_iter()
            .find(|s| s.key == wanted)
        else {
            return TargetState::NoWebService;
        };
        match s.state {
            ServiceState::Stopped | ServiceState::Exited | ServiceState::Stopping => {
                TargetState::Stopped
            }
            ServiceState::Starting | ServiceState::BackingOff => TargetState::Starting,
            ServiceState::Crashed | ServiceState::Failed => TargetState::Down(
                s.message
                    .clone()
                    .unwrap_or_else(|| format!("{} {}", s.key, s.state)),
            ),
            ServiceState::Unhealthy => {
                TargetState::Down(format!("{} runs but fails its health check", s.key))
            }
            ServiceState::Running | ServiceState::Healthy => TargetState::Running,
        }
    }
}

/// Makes the router, or says why there is none.
pub(crate) fn build(core: &Arc<Core>, config: &Config) -> Option<Router> {
    let ca = match config.agent.https_port {
        Some(_) => {
            match homeport_router::LocalCa::load_or_create(&ca_dir(&config.agent.data_dir)) {
                Ok(ca) => Some(Arc::new(ca)),
                Err(e) => {
                    tracing::error!("HTTPS is off: {e}");
                    None
                }
            }
        }
        None => None,
    };
    let status: Arc<dyn homeport_router::Status> = Arc::new(AgentStatus {
        core: Arc::downgrade(core),
    });
    match Router::new(homeport_router::Options::default(), Some(status), ca) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!("the router cannot start: {e}");
            None
        }
    }
}

/// Binds a loopback listener and serves it until the agent stops; a port that is taken is
/// logged with what to do, and the agent goes on without it.
pub(crate) fn listen(
    core: &Arc<Core>,
    router: &Router,
    port: u16,
    what: homeport_router::Listen,
    who: String,
) {
    let std = match std::net::TcpListener::bind(loopback(port)) {
        Ok(l) => l,
        Err(e) => {
            let holder = homeport_supervisor::port_holder(port)
                .map(|h| format!(" by {h}"))
                .unwrap_or_default();
            tracing::error!(
                "{who} cannot listen on 127.0.0.1:{port}: {e}{holder}; change the port in homeport.toml"
            );
            return;
        }
    };
    let _ = std.set_nonblocking(true);
    let Ok(listener) = tokio::net::TcpListener::from_std(std) else {
        return;
    };
    let (router, stop) = (router.clone(), core.shutdown_signal());
    tokio::spawn(async move {
        if let Err(e) = router.serve(listener, what, stop).await {
            tracing::error!("{who}: {e}");
        }
    });
}
