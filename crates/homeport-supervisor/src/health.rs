//! Health probes: HTTP GET, TCP connect, or a command; each bounded by the check's timeout.

use std::time::Duration;

use homeport_config::{HealthCheck, HealthProbe};

/// Where a command probe runs: the service's own folder and variables.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    pub cwd: std::path::PathBuf,
    pub env: std::collections::BTreeMap<String, String>,
}

/// Runs one probe; `Err` carries a short reason for the status line.
pub async fn probe(
    check: &HealthCheck,
    http: &reqwest::Client,
    ctx: &ProbeContext,
) -> Result<(), String> {
    let late = || {
        format!(
            "no answer within {}",
            humantime::format_duration(check.timeout)
        )
    };
    match &check.probe {
        HealthProbe::Http(url) => {
            let get = async {
                let resp = http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {}", root_cause(&e)))?;
                let status = resp.status();
                if status.is_success() || status.is_redirection() {
                    Ok(())
                } else {
                    Err(format!("GET {url}: HTTP {status}"))
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
                Ok(Err(e)) => Err(format!("connect 127.0.0.1:{port}: {e}")),
                Err(_) => Err(late()),
            }
        }
        HealthProbe::Command(cmd) => {
            let argv = cmd.argv();
            let (program, args) = argv.split_first().ok_or("empty health command")?;
            // Its own process group, so a timeout ends everything it started (`sh -c …`).
            let mut child = tokio::process::Command::new(program)
                .args(args)
                .current_dir(&ctx.cwd)
                .envs(&ctx.env)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("{program}: {e}"))?;
            match tokio::time::timeout(check.timeout, child.wait()).await {
                Ok(Ok(status)) if status.success() => Ok(()),
                Ok(Ok(status)) => Err(format!("{program}: {status}")),
                Ok(Err(e)) => Err(format!("{program}: {e}")),
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

/// The HTTP client used for probes: no proxy (probes are local), short connect timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}
