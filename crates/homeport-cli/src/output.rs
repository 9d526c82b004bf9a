//! What the CLI prints.

use homeport_types::{EnvBackups, Health, LogEntry, ServiceStatus, StatusSnapshot, Stream};

/// The agent's verdict, as the tray and the dashboard show it: "Healthy: production healthy".
pub fn verdict_line(v: &homeport_types::Verdict) -> String {
    format!("{}: {}", v.level.word(), v.reason)
}

pub fn status_table(s: &StatusSnapshot) -> String {
    if s.services.is_empty() {
        return format!(
            "No services configured. Describe your apps in {}\n",
            s.agent.config_path
        );
    }
    let rows: Vec<[String; 9]> = s.services.iter().map(row).collect();
    let header = [
        "SERVICE", "STATE", "HEALTH", "PID", "UPTIME", "RESTARTS", "CPU", "MEM", "PORT",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (i, r) in std::iter::once(&header).chain(&rows).enumerate() {
        let mut line = String::new();
        for (c, w) in r.iter().zip(widths) {
            line.push_str(&format!("{c:<w$}  "));
        }
        if i > 0
            && let Some(msg) = &s.services[i - 1].message
        {
            line.push_str(msg);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    // Environments served by name through the router, once each.
    let mut named: Vec<(String, &str)> = Vec::new();
    for svc in &s.services {
        if let Some(url) = svc.url.as_deref().filter(|u| !u.contains("//127.0.0.1:")) {
            let env = format!("{}/{}", svc.key.app, svc.key.env);
            if !named.iter().any(|(e, _)| *e == env) {
                named.push((env, url));
            }
        }
    }
    if !named.is_empty() {
        let w = named.iter().map(|(e, _)| e.len()).max().unwrap_or(0);
        out.push_str("\nOPEN IN A BROWSER\n");
        for (env, url) in named {
            out.push_str(&format!("{env:<w$}  {url}\n"));
        }
    }
    out
}

fn row(s: &ServiceStatus) -> [String; 9] {
    let dash = || "-".to_owned();
    [
        s.key.to_string(),
        s.state.to_string(),
        match s.health {
            Health::Healthy => "healthy".into(),
            Health::Unhealthy => "unhealthy".into(),
            Health::Unknown => dash(),
        },
        s.pid.map_or_else(dash, |p| p.to_string()),
        s.uptime_secs.map_or_else(dash, |u| {
            humantime::format_duration(std::time::Duration::from_secs(u))
                .to_string()
                .split(' ')
                .take(2)
                .collect::<Vec<_>>()
                .join("")
        }),
        s.restarts.to_string(),
        s.cpu_percent.map_or_else(dash, |c| format!("{c:.1}%")),
        s.rss_bytes.map_or_else(dash, bytes),
        s.port.map_or_else(dash, |p| p.to_string()),
    ]
}

fn bytes(b: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let b = b as f64;
    if b >= 1024.0 * MIB {
        format!("{:.1}G", b / 1024.0 / MIB)
    } else {
        format!("{:.1}M", b / MIB)
    }
}

pub fn log_line(e: &LogEntry) -> String {
    let stream = match e.line.stream {
        Stream::Stdout => "out",
        Stream::Stderr => "err",
    };
    format!("{} {} {stream} {}", e.line.time, e.service, e.line.text)
}

pub fn size(b: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = b as f64;
    if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / KIB / KIB)
    } else {
        format!("{:.2} GiB", b / KIB / KIB / KIB)
    }
}

pub fn backups_table(envs: &[EnvBackups]) -> String {
    let mut out = String::new();
    for e in envs {
        out.push_str(&format!("{}/{}", e.app, e.env));
        match (&e.schedule, &e.next_due) {
            (Some(s), Some(n)) => out.push_str(&format!("  ({s}; next {n})\n")),
            _ => out.push_str("  (no schedule)\n"),
        }
        if e.backups.is_empty() {
            out.push_str("  no backups yet\n");
        }
        for b in &e.backups {
            out.push_str(&format!(
                "  {:>5}  {}  {:>10}  {:<10}  {}\n",
                b.id,
                b.time,
                size(b.size),
                b.trigger.as_str(),
                if b.verified {
                    "verified"
                } else {
                    "NOT VERIFIED"
                }
            ));
        }
    }
    out
}
