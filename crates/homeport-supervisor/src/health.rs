//! Health probes: HTTP GET, TCP connect, or a command; each bounded by the check's timeout.

use std::time::Duration;

use homeport_config::{HealthCheck, HealthProbe};

/// Where a command probe runs: the service's own folder and variables.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    pub cwd: std::path::PathBuf,
    pub env: std::collections::BTreeMap<String, String>,
}

/// Why a probe did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// The service failed it: a short reason for the status line.
    Failed(String),
    /// The agent could not run it (out of descriptors or processes): says nothing about the
    /// service, so it must never count against it.
    NotRun(String),
}

impl ProbeError {
    /// `Failed`, unless `e` (or what caused it) is the agent running out of resources.
    fn from_error(e: &(dyn std::error::Error + 'static), what: String) -> Self {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && agent_exhausted(io)
            {
                return Self::NotRun(format!("{what}: {io}"));
            }
            cur = err.source();
        }
        Self::Failed(format!("{what}: {}", root_cause(e)))
    }
}

/// Errors that mean the agent itself is out of descriptors or processes.
fn agent_exhausted(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM)
    )
}

/// Runs one probe.
pub async fn probe(
    check: &HealthCheck,
    http: &reqwest::Client,
    ctx: &ProbeContext,
) -> Result<(), ProbeError> {
    let late = || {
        ProbeError::Failed(format!(
            "no answer within {}",
            humantime::format_duration(check.timeout)
        ))
    };
    match &check.probe {
        HealthProbe::Http(url) => {
            let get = async {
                let resp = http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| ProbeError::from_error(&e, format!("GET {url}")))?;
                let status = resp.status();
                if status.is_success() || status.is_redirection() {
                    Ok(())
                } else {
                    Err(ProbeError::Failed(format!("GET {url}: HTTP {status}")))
                }
            };
            tokio::time::timeout(check.timeout, get)
                .await
                .unwrap_or_else(|_| Err(late()))
        }
        HealthProbe::Tcp(port) => {
            let connect = tokio::net::TcpStream::connect(("127.0.0.1", *port));
            match tokio::time::timeout(check.timeout, connect).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(ProbeError::from_error(
                    &e,
                    format!("connect 127.0.0.1:{port}"),
                )),
                Err(_) => Err(late()),
            }
        }
        HealthProbe::Command(cmd) => {
            let argv = cmd.argv();
            let (program, args) = argv
                .split_first()
                .ok_or_else(|| ProbeError::Failed("empty health command".into()))?;
            // Its own process group, so a timeout ends everything it started (`sh -c …`).
            let mut cmd = std::process::Command::new(program);
            homeport_fs::inherit::restore(&mut cmd);
            let mut child = tokio::process::Command::from(cmd)
                .args(args)
                .current_dir(&ctx.cwd)
                .envs(&ctx.env)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| ProbeError::from_error(&e, program.clone()))?;
            match tokio::time::timeout(check.timeout, child.wait()).await {
                Ok(Ok(status)) if status.success() => Ok(()),
                Ok(Ok(status)) => Err(ProbeError::Failed(format!("{program}: {status}"))),
                Ok(Err(e)) => Err(ProbeError::from_error(&e, program.clone())),
                Err(_) => {
                    if let Some(pid) = child.id() {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    let _ = child.wait().await;
                    Err(late())
                }
            }
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// What probes call themselves, so that an access log can tell them from users (and the
/// dashboard's log view can hide them).
pub const USER_AGENT: &str = concat!("Homeport-Health/", env!("CARGO_PKG_VERSION"));

/// The HTTP client used for probes: no proxy (probes are local), short connect timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_the_agent_could_not_run_is_not_a_failure_of_the_service() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        assert!(matches!(
            ProbeError::from_error(&emfile, "connect 127.0.0.1:1".into()),
            ProbeError::NotRun(_)
        ));
        // As reqwest reports a failed connect: its error, caused by the system's.
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped = Wrapper(std::io::Error::from_raw_os_error(libc::ENFILE));
        assert!(matches!(
            ProbeError::from_error(&wrapped, "GET /".into()),
            ProbeError::NotRun(_)
        ));
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            ProbeError::from_error(&refused, "connect 127.0.0.1:1".into()),
            ProbeError::Failed(format!("connect 127.0.0.1:1: {refused}"))
        );
    }
}
