//! What the CLI prints.

use homeport_types::{EnvBackups, Health, LogEntry, ServiceStatus, Stream};

/// A service's ports: the main one and the named ones; of a blue-green instance, the service's
/// public port and whether this instance is the one it serves.
fn ports(s: &ServiceStatus) -> Option<String> {
    let main = s.port.map(|p| match &s.instance {
        Some(i) if i.live => format!("{p} live"),
        Some(_) => format!("{p} idle"),
        None => p.to_string(),
    });
    let named = s.ports.iter().map(|(n, p)| format!("{n} {p}"));
    let all: Vec<String> = main.into_iter().chain(named).collect();
    (!all.is_empty()).then(|| all.join(", "))
}

/// The agent's verdict, as the tray and the dashboard show it: "Healthy: production healthy";
/// the level word in its colour on a terminal.
pub fn verdict_line(v: &homeport_types::Verdict) -> String {
    let style = match v.level {
        homeport_types::Level::Healthy => crate::style::ok(),
        homeport_types::Level::Degraded => crate::style::warn(),
        homeport_types::Level::Down => crate::style::bad(),
    };
    format!(
        "{}: {}",
        crate::style::paint(v.level.word(), style),
        v.reason
    )
}

/// One line per app with a release somewhere: each environment's version, production first
/// ("shop: production 1.4.2 · beta 1.5.0-rc1+3"), then what stops its automatic updates.
pub fn versions(apps: &[homeport_types::AppInfo]) -> String {
    let mut out = String::new();
    for a in apps {
        let mut envs: Vec<&homeport_types::EnvRelease> = a.envs.iter().collect();
        envs.sort_by_key(|e| (!is_production(&e.env), e.env.clone()));
        let shown: Vec<String> = envs
            .iter()
            .filter_map(|e| Some(format!("{} {}", e.env, e.version.as_deref()?)))
            .collect();
        if !shown.is_empty() {
            out.push_str(&format!("{}: {}\n", a.name, shown.join(" · ")));
        }
        for e in envs {
            let Some(u) = &e.auto_update else { continue };
            let target = format!("{}/{}", a.name, e.env);
            if u.paused {
                out.push_str(&format!(
                    "{target}: automatic updates paused after {} failed updates in a row; resume with `homeport auto-update resume {} --env {}`\n",
                    u.failures, a.name, e.env
                ));
            } else if let Some(why) = &u.refused {
                out.push_str(&format!("{target}: not updated automatically: {why}\n"));
            }
        }
    }
    out
}

/// Production first, then by name: what matters most is at the top.
pub fn ordered(services: &[ServiceStatus]) -> Vec<&ServiceStatus> {
    let mut v: Vec<&ServiceStatus> = services.iter().collect();
    v.sort_by_key(|s| (!is_production(&s.key.env), s.key.clone()));
    v
}

pub fn is_production(env: &str) -> bool {
    matches!(env, "production" | "prod")
}

/// The status table: one row per service, state words coloured, the message column cut to the
/// terminal's width (never when piped: a script gets every character); then the names the
/// router serves each environment under.
pub fn status_table(services: &[&ServiceStatus], width: Option<u16>) -> String {
    use comfy_table::{Attribute, Cell, CellAlignment, ColumnConstraint, ContentArrangement};
    let coloured = crate::style::enabled();
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_truncation_indicator("…");
    if coloured {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    if let Some(w) = width {
        t.set_width(w);
    }
    let header = [
        "SERVICE", "STATE", "HEALTH", "PID", "UPTIME", "RESTARTS", "CPU", "MEM", "PORT", "MESSAGE",
    ];
    t.set_header(header.map(|h| {
        let c = Cell::new(h);
        if coloured {
            c.add_attribute(Attribute::Bold)
        } else {
            c
        }
    }));
    for s in services {
        let dash = || "-".to_owned();
        let cell = |text: String, style: anstyle::Style| {
            let c = Cell::new(text);
            if coloured { styled(c, style) } else { c }
        };
        let mut row = comfy_table::Row::from(vec![
            Cell::new(s.key.to_string()),
            cell(s.state_words(), crate::style::state(s.state, s.health)),
            cell(health_word(s.health), crate::style::health(s.health)),
            Cell::new(s.pid.map_or_else(dash, |p| p.to_string())),
            Cell::new(s.uptime_secs.map_or_else(dash, uptime)),
            cell(
                s.restarts.to_string(),
                if s.restarts > 0 {
                    crate::style::warn()
                } else {
                    anstyle::Style::new()
                },
            ),
            Cell::new(s.cpu_percent.map_or_else(dash, |c| format!("{c:.1}%"))),
            Cell::new(s.rss_bytes.map_or_else(dash, bytes)),
            Cell::new(ports(s).unwrap_or_else(dash)),
            Cell::new(s.message.clone().unwrap_or_default()),
        ]);
        row.max_height(1);
        t.add_row(row);
    }
    let last = header.len() - 1;
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { 2 }));
        if i != last {
            col.set_constraint(ColumnConstraint::ContentWidth);
        }
        if matches!(i, 3 | 5 | 6 | 7 | 8) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out: String = t
        .lines()
        .map(|l| {
            let l = l.trim_end();
            match width {
                Some(w) => fit(l, usize::from(w)),
                None => l.to_owned(),
            }
        })
        .map(|l| l + "\n")
        .collect();
    // Environments served by name through the router, once each.
    let mut named: Vec<(String, &str)> = Vec::new();
    for svc in services {
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

/// Cuts a line to `width` visible characters, ending it with `…`; colour escapes are kept and
/// not counted. For terminals too narrow even for the columns that are never shortened.
pub fn fit(line: &str, width: usize) -> String {
    // Visible characters and escape sequences, in order.
    let mut parts: Vec<(bool, String)> = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            let mut esc = String::from(c);
            for e in chars.by_ref() {
                esc.push(e);
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
            parts.push((false, esc));
        } else {
            parts.push((true, c.to_string()));
        }
    }
    let visible = parts.iter().filter(|(v, _)| *v).count();
    if visible <= width || width == 0 {
        return line.to_owned();
    }
    let mut out = String::new();
    let mut shown = 0;
    for (is_char, text) in parts {
        if is_char {
            if shown + 1 == width {
                break;
            }
            shown += 1;
        }
        out.push_str(&text);
    }
    out.push('…');
    if line.contains('\u{1b}') {
        out.push_str("\u{1b}[0m");
    }
    out
}

/// A comfy-table cell in an `anstyle` style (the colours this CLI uses).
fn styled(mut c: comfy_table::Cell, style: anstyle::Style) -> comfy_table::Cell {
    use comfy_table::{Attribute, Color};
    if let Some(anstyle::Color::Ansi(a)) = style.get_fg_color() {
        c = c.fg(match a {
            anstyle::AnsiColor::Green => Color::Green,
            anstyle::AnsiColor::Yellow => Color::Yellow,
            anstyle::AnsiColor::Red => Color::Red,
            anstyle::AnsiColor::Cyan => Color::Cyan,
            anstyle::AnsiColor::Magenta => Color::Magenta,
            anstyle::AnsiColor::Blue => Color::Blue,
            _ => Color::Reset,
        });
    }
    let fx = style.get_effects();
    if fx.contains(anstyle::Effects::BOLD) {
        c = c.add_attribute(Attribute::Bold);
    }
    if fx.contains(anstyle::Effects::DIMMED) {
        c = c.add_attribute(Attribute::Dim);
    }
    c
}

pub fn health_word(h: Health) -> String {
    match h {
        Health::Healthy => "healthy".into(),
        Health::Unhealthy => "unhealthy".into(),
        Health::Unknown => "-".into(),
    }
}

/// `2h3m`: the two largest units are enough at a glance.
pub fn uptime(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs))
        .to_string()
        .split(' ')
        .take(2)
        .collect::<Vec<_>>()
        .join("")
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

/// One log line: time, the service (in its own colour), the stream, the text.
pub fn log_line(e: &LogEntry) -> String {
    use crate::style::{dim, paint};
    let stream = match e.line.stream {
        Stream::Stdout => "out",
        Stream::Stderr => "err",
    };
    format!(
        "{} {} {} {}",
        paint(&homeport_core::time::local_clock(&e.line.time), dim()),
        paint(&e.service.to_string(), crate::style::service(&e.service)),
        paint(stream, dim()),
        e.line.text
    )
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
            (Some(s), Some(n)) => out.push_str(&format!(
                "  ({s}; next {})\n",
                homeport_core::time::local(n)
            )),
            _ => out.push_str("  (no schedule)\n"),
        }
        if e.backups.is_empty() {
            out.push_str("  no backups yet\n");
        }
        for b in &e.backups {
            let state = match (&b.problem, b.verified) {
                (Some(p), _) => format!("FAILED: {p}"),
                (None, true) => "verified".to_owned(),
                (None, false) => "NOT VERIFIED".to_owned(),
            };
            let what = if b.trigger == homeport_types::BackupTrigger::Safety {
                "safety copy"
            } else {
                b.trigger.as_str()
            };
            let contents: Vec<&str> = b.artifacts.iter().map(|a| a.name.as_str()).collect();
            out.push_str(&format!(
                "  {:>5}  {}  {:>10}  {:<11}  {:<16}  {}\n",
                b.id,
                homeport_core::time::local(&b.time),
                size(b.size),
                what,
                contents.join(", "),
                state
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn lines_are_cut_to_the_width_without_counting_colour() {
        assert_eq!(fit("abcdef", 10), "abcdef");
        assert_eq!(fit("abcdef", 4), "abc…");
        let coloured = "\u{1b}[32mhealthy\u{1b}[39m and more";
        let cut = fit(coloured, 5);
        assert_eq!(cut, "\u{1b}[32mheal…\u{1b}[0m");
    }
}
