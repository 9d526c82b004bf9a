//! `GET /metrics`: Prometheus text exposition of every service and of the agent itself.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use homeport_types::{Health, ServiceState};

use crate::AppState;

pub async fn metrics(State(st): State<AppState>) -> Response {
    let status = st.core.status();
    let mut out = String::new();
    let metric = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let label = |s: &homeport_types::ServiceStatus| {
        format!(
            "app=\"{}\",env=\"{}\",service=\"{}\"",
            esc(&s.key.app),
            esc(&s.key.env),
            esc(&s.key.service)
        )
    };
    metric(
        &mut out,
        "homeport_service_up",
        "gauge",
        "1 if the service's process runs",
    );
    for s in &status.services {
        let _ = writeln!(
            out,
            "homeport_service_up{{{}}} {}",
            label(s),
            u8::from(s.state.is_up() && s.state != ServiceState::Stopping)
        );
    }
    metric(
        &mut out,
        "homeport_service_healthy",
        "gauge",
        "1 if the service's health check passes",
    );
    for s in &status.services {
        let _ = writeln!(
            out,
            "homeport_service_healthy{{{}}} {}",
            label(s),
            u8::from(s.health == Health::Healthy)
        );
    }
    metric(
        &mut out,
        "homeport_service_restarts_total",
        "counter",
        "restarts of the service",
    );
    for s in &status.services {
        let _ = writeln!(
            out,
            "homeport_service_restarts_total{{{}}} {}",
            label(s),
            s.restarts
        );
    }
    metric(
        &mut out,
        "homeport_service_cpu_percent",
        "gauge",
        "CPU use of the service's main process, percent of one core",
    );
    for s in status.services.iter().filter(|s| s.cpu_percent.is_some()) {
        let _ = writeln!(
            out,
            "homeport_service_cpu_percent{{{}}} {}",
            label(s),
            s.cpu_percent.unwrap_or_default()
        );
    }
    metric(
        &mut out,
        "homeport_service_rss_bytes",
        "gauge",
        "resident memory of the service's main process",
    );
    for s in status.services.iter().filter(|s| s.rss_bytes.is_some()) {
        let _ = writeln!(
            out,
            "homeport_service_rss_bytes{{{}}} {}",
            label(s),
            s.rss_bytes.unwrap_or_default()
        );
    }
    let (rss, cpu) = own_usage();
    metric(
        &mut out,
        "homeport_agent_rss_bytes",
        "gauge",
        "resident memory of the agent",
    );
    let _ = writeln!(out, "homeport_agent_rss_bytes {rss}");
    metric(
        &mut out,
        "homeport_agent_cpu_seconds_total",
        "counter",
        "CPU time the agent used",
    );
    let _ = writeln!(out, "homeport_agent_cpu_seconds_total {cpu}");
    metric(
        &mut out,
        "homeport_agent_uptime_seconds",
        "gauge",
        "seconds since the agent started",
    );
    let _ = writeln!(
        out,
        "homeport_agent_uptime_seconds {}",
        status.agent.uptime_secs
    );
    metric(
        &mut out,
        "homeport_api_requests_total",
        "counter",
        "HTTP requests the agent answered, this one included",
    );
    let _ = writeln!(
        out,
        "homeport_api_requests_total {}",
        st.requests.load(Ordering::Relaxed)
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The agent's own RSS (bytes) and CPU time (seconds), from /proc.
fn own_usage() -> (u64, f64) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0) as f64
        / hz;
    (rss, cpu)
}

/// Counts every request that reaches the router, answered or refused: what the tray and the
/// dashboard cost the agent shows in `homeport_api_requests_total`.
pub async fn count(
    State(requests): State<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    requests.fetch_add(1, Ordering::Relaxed);
    next.run(req).await
}
