//! One service in full, for its detail view: command, environment and health check in words,
//! with every secret value masked.

use homeport_types::{MASK, ServiceDetail, ServiceKey, Target};

use crate::Core;

impl Core {
    /// Everything about one service, secrets masked.
    pub fn service_detail(&self, key: &ServiceKey) -> Option<ServiceDetail> {
        let config = self.config();
        let spec = config.service(key)?;
        let status = self
            .supervisor
            .status()
            .into_iter()
            .find(|s| &s.key == key)?;
        let secrets: Vec<&String> = spec
            .secret_env
            .iter()
            .filter_map(|k| spec.env.get(k))
            .filter(|v| !v.is_empty())
            .collect();
        let mask = |s: &str| {
            secrets.iter().fold(s.to_owned(), |acc, secret| {
                acc.replace(secret.as_str(), MASK)
            })
        };
        let env = spec
            .env
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if spec.secret_env.contains(k) {
                        MASK.to_owned()
                    } else {
                        mask(v)
                    },
                )
            })
            .collect();
        let health = spec.health.as_ref().map(|h| {
            let probe = match &h.probe {
                homeport_config::HealthProbe::Http(url) => format!("GET {url}"),
                homeport_config::HealthProbe::Tcp(port) => format!("connect to port {port}"),
                homeport_config::HealthProbe::Command(c) => {
                    format!("run {}", mask(&c.argv().join(" ")))
                }
            };
            format!(
                "{probe} every {}, timeout {}, {} failures restart it",
                humantime::format_duration(h.interval),
                humantime::format_duration(h.timeout),
                h.retries
            )
        });
        let r = &spec.restart;
        let mode = match r.mode {
            homeport_config::RestartMode::Never => "never",
            homeport_config::RestartMode::OnFailure => "on-failure",
            homeport_config::RestartMode::Always => "always",
        };
        let give_up = match r.max_failures {
            Some(n) => format!(
                "gives up after {n} failures in {}",
                humantime::format_duration(r.window)
            ),
            None => "never gives up".to_owned(),
        };
        let restart = format!(
            "{mode}, backoff {}–{}, {give_up}",
            humantime::format_duration(r.backoff_min),
            humantime::format_duration(r.backoff_max),
        );
        let events = self
            .events(&Target::Service(key.clone()), &[], 20)
            .unwrap_or_default();
        Some(ServiceDetail {
            status,
            command: spec.command.argv().iter().map(|a| mask(a)).collect(),
            cwd: spec.cwd.display().to_string(),
            env,
            health,
            restart,
            depends_on: spec.depends_on.clone(),
            ports: spec.ports.clone(),
            log_file: self.supervisor.log_path(key).display().to_string(),
            events,
        })
    }
}
