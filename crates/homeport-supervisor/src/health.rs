//! Health probes: HTTP GET, TCP connect, or a command; each bounded by the check's timeout.

use std::time::Duration;

use homeport_config::{HealthCheck, HealthProbe};

/// Runs one probe; `Err` carries a short reason for the status line.
pub async fn probe(check: &HealthCheck, http: &reqwest::Client) -> Result<(), String> {
    match tokio::time::timeout(check.timeout, run(&check.probe, http)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(check.timeout)
        )),
    }
}

async fn run(probe: &HealthProbe, http: &reqwest::Client) -> Result<(), String> {
    match probe {
        HealthProbe::Http(url) => {
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
        }
        HealthProbe::Tcp(port) => tokio::net::TcpStream::connect(("127.0.0.1", *port))
            .await
            .map(drop)
            .map_err(|e| format!("connect 127.0.0.1:{port}: {e}")),
        HealthProbe::Command(cmd) => {
            let argv = cmd.argv();
            let (program, args) = argv.split_first().ok_or("empty health command")?;
            let status = tokio::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| format!("{program}: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("{program}: {status}"))
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
