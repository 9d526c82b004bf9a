//! `homeport top`: a live view of every service in the terminal, like `pm2 monit` — state,
//! CPU, memory, restarts and uptime now, sparklines of the last hour's CPU and memory, and the
//! log of the selected service followed below; keys start, stop and restart it.
//!
//! The numbers now come from `/api/v1/status` (each second), the sparklines from the agent's
//! history (`/api/v1/metrics`, a point a minute, every 30 s), the log from `/api/v1/logs`.
//! Terminal input is read on a thread of its own and handed to the loop, which owns all state.

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use homeport_client::{Client, LogRequest};
use homeport_types::{
    Action, LogStreamItem, MetricPoints, PRODUCTION, ServiceKey, ServiceState, ServiceStatus,
    Target,
};
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use tokio::sync::mpsc;

use crate::output::{size, uptime};
use crate::{Failure, client};

/// Lines of the followed log kept for the pane.
const LOG_LINES: usize = 500;
/// Characters of a sparkline.
const SPARK: usize = 16;

/// What the loop hears about.
enum Msg {
    Key(event::KeyEvent),
    Resize,
    Log(ServiceKey, String),
    LogEnded(ServiceKey, String),
    Done(String),
}

#[derive(Default)]
struct View {
    services: Vec<ServiceStatus>,
    history: HashMap<String, MetricPoints>,
    selected: usize,
    following: Option<ServiceKey>,
    log: VecDeque<String>,
    /// The last outcome or problem, one line.
    note: String,
    /// An action on production waits for `y`.
    confirm: Option<(Action, ServiceKey)>,
    connected: bool,
}

pub async fn run(config_path: &Path) -> Result<(), Failure> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            2,
            "homeport top draws on a terminal and reads its keys: run it in one (in a script, `homeport status` prints the same numbers once)",
        ));
    }
    let client = Arc::new(client(config_path)?);
    // Fail before the screen changes when no agent answers.
    let first = client.status().await?;
    let (tx, mut rx) = mpsc::channel::<Msg>(256);
    let stop = Arc::new(AtomicBool::new(false));
    let input = {
        let tx = tx.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || read_terminal(&tx, &stop))
    };

    let mut terminal = ratatui::init();
    let mut view = View {
        services: first.services,
        connected: true,
        ..View::default()
    };
    let mut follow_task: Option<tokio::task::JoinHandle<()>> = None;
    if let Some(s) = view.services.first() {
        follow_task = Some(follow(&client, s.key.clone(), tx.clone()));
        view.following = Some(s.key.clone());
    }
    let mut status_tick = tokio::time::interval(Duration::from_secs(1));
    let mut history_tick = tokio::time::interval(Duration::from_secs(30));
    let mut result = Ok(());
    loop {
        if let Err(e) = terminal.draw(|f| draw(f, &mut view)) {
            result = Err(Failure::new(1, format!("cannot draw on the terminal: {e}")));
            break;
        }
        tokio::select! {
            _ = status_tick.tick() => match client.status().await {
                Ok(s) => {
                    view.services = s.services;
                    view.selected = view.selected.min(view.services.len().saturating_sub(1));
                    view.connected = true;
                }
                Err(e) => {
                    view.connected = false;
                    view.note = format!("the agent does not answer: {e}");
                }
            },
            _ = history_tick.tick() => {
                if let Ok(r) = client.metrics(&Target::All, "1h", Some("1m")).await {
                    view.history = r.services.into_iter().map(|s| (s.key.to_string(), s.points)).collect();
                }
            }
            Some(msg) = rx.recv() => match msg {
                Msg::Resize => {}
                Msg::Done(note) => view.note = note,
                Msg::Log(key, line) => {
                    if view.following.as_ref() == Some(&key) {
                        view.log.push_back(line);
                        while view.log.len() > LOG_LINES {
                            view.log.pop_front();
                        }
                    }
                }
                Msg::LogEnded(key, why) => {
                    if view.following.as_ref() == Some(&key) {
                        view.note = format!("the log of {key} stopped: {why}");
                    }
                }
                Msg::Key(k) => match key(&mut view, k) {
                    Step::Quit => break,
                    Step::Nothing => {}
                    Step::Act(action, key) => {
                        view.note = format!("{}ing {key}…", verb(action));
                        let (client, tx) = (Arc::clone(&client), tx.clone());
                        tokio::spawn(async move {
                            let note = match client.act(action, &Target::Service(key.clone())).await {
                                Ok(outcomes) => match outcomes.iter().find_map(|o| o.error.clone()) {
                                    Some(e) => format!("{} {key}: {e}", verb(action)),
                                    None => format!("{} {key}: done", verb(action)),
                                },
                                Err(e) => format!("{} {key}: {e}", verb(action)),
                            };
                            let _ = tx.send(Msg::Done(note)).await;
                        });
                    }
                    Step::Follow(key) => {
                        if let Some(t) = follow_task.take() {
                            t.abort();
                        }
                        view.log.clear();
                        view.following = Some(key.clone());
                        follow_task = Some(follow(&client, key, tx.clone()));
                    }
                },
            },
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = follow_task {
        t.abort();
    }
    ratatui::restore();
    let _ = input.join();
    result
}

/// Hands key presses and resizes to the loop until told to stop.
fn read_terminal(tx: &mpsc::Sender<Msg>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        // A short poll, so a quit is noticed without waiting for another key.
        match event::poll(Duration::from_millis(100)) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => return,
        }
        let msg = match event::read() {
            Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => Msg::Key(k),
            Ok(TermEvent::Resize(..)) => Msg::Resize,
            Ok(_) => continue,
            Err(_) => return,
        };
        if tx.blocking_send(msg).is_err() {
            return;
        }
    }
}

/// Follows `key`'s log (its last lines, then new ones) into the loop.
fn follow(
    client: &Arc<Client>,
    key: ServiceKey,
    tx: mpsc::Sender<Msg>,
) -> tokio::task::JoinHandle<()> {
    let client = Arc::clone(client);
    tokio::spawn(async move {
        let req = LogRequest {
            target: Some(Target::Service(key.clone())),
            tail: Some(200),
            since: None,
            grep: None,
            follow: true,
        };
        let why = match client.logs(&req).await {
            Ok(lines) => {
                let mut lines = std::pin::pin!(lines);
                loop {
                    match lines.next().await {
                        Some(Ok(LogStreamItem::Line(l))) => {
                            let clock = homeport_core::time::local_clock(&l.line.time);
                            let t = clock.get(..8).unwrap_or(&clock).to_owned();
                            if tx
                                .send(Msg::Log(key.clone(), format!("{t} {}", l.line.text)))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Some(Ok(LogStreamItem::Skipped { count })) => {
                            let n = count.map_or_else(|| "some".to_owned(), |c| c.to_string());
                            let _ = tx
                                .send(Msg::Log(
                                    key.clone(),
                                    format!("… {n} lines skipped (fell behind)"),
                                ))
                                .await;
                        }
                        Some(Err(e)) => break e.to_string(),
                        None => break "the agent closed it".to_owned(),
                    }
                }
            }
            Err(e) => e.to_string(),
        };
        let _ = tx.send(Msg::LogEnded(key, why)).await;
    })
}

enum Step {
    Nothing,
    Quit,
    Act(Action, ServiceKey),
    Follow(ServiceKey),
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Start => "start",
        Action::Stop => "stop",
        Action::Restart => "restart",
    }
}

/// What a key press does.
fn key(view: &mut View, k: event::KeyEvent) -> Step {
    if let Some((action, key)) = view.confirm.take() {
        return if matches!(k.code, KeyCode::Char('y' | 'Y')) {
            Step::Act(action, key)
        } else {
            view.note = format!("{} {key}: cancelled", verb(action));
            Step::Nothing
        };
    }
    let selected = view.services.get(view.selected).map(|s| s.key.clone());
    let act = |view: &mut View, action: Action| match &selected {
        // Stopping production is a thing users notice: ask first, as the dashboard does.
        Some(key) if key.env == PRODUCTION && action != Action::Start => {
            view.note = format!(
                "{} {key}, in production? y to go ahead, any other key to cancel",
                verb(action)
            );
            view.confirm = Some((action, key.clone()));
            Step::Nothing
        }
        Some(key) => Step::Act(action, key.clone()),
        None => Step::Nothing,
    };
    match k.code {
        KeyCode::Char('q') | KeyCode::Esc => Step::Quit,
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Step::Quit,
        KeyCode::Down | KeyCode::Char('j') => {
            view.selected = (view.selected + 1).min(view.services.len().saturating_sub(1));
            Step::Nothing
        }
        KeyCode::Up | KeyCode::Char('k') => {
            view.selected = view.selected.saturating_sub(1);
            Step::Nothing
        }
        KeyCode::Enter | KeyCode::Char('l') => selected.map_or(Step::Nothing, Step::Follow),
        KeyCode::Char('s') => act(view, Action::Start),
        KeyCode::Char('x') => act(view, Action::Stop),
        KeyCode::Char('r') => act(view, Action::Restart),
        _ => Step::Nothing,
    }
}

fn state_style(s: ServiceState) -> Style {
    let c = match s {
        ServiceState::Healthy | ServiceState::Running => Color::Green,
        ServiceState::Starting | ServiceState::Stopping => Color::Cyan,
        ServiceState::Unhealthy | ServiceState::BackingOff => Color::Yellow,
        ServiceState::Crashed | ServiceState::Failed => Color::Red,
        _ => Color::DarkGray,
    };
    Style::default().fg(c)
}

fn draw(f: &mut Frame, view: &mut View) {
    let [head, table_area, log_area, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(
            (view.services.len() as u16 + 3)
                .min(f.area().height / 2)
                .max(4),
        ),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());

    let title = format!(
        "homeport top · {} service{}{}",
        view.services.len(),
        if view.services.len() == 1 { "" } else { "s" },
        if view.connected {
            ""
        } else {
            " · NOT CONNECTED: numbers are old"
        }
    );
    f.render_widget(
        Paragraph::new(title).style(Style::default().add_modifier(Modifier::BOLD)),
        head,
    );

    let rows = view.services.iter().map(|s| {
        let key = s.key.to_string();
        let h = view.history.get(&key);
        Row::new(vec![
            Cell::from(key.clone()),
            Cell::from(s.state_words()).style(state_style(s.state)),
            Cell::from(
                s.cpu_percent
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}%")),
            ),
            Cell::from(s.rss_bytes.map_or_else(|| "-".to_owned(), size)),
            Cell::from(s.restarts.to_string()),
            Cell::from(s.uptime_secs.map_or_else(|| "-".to_owned(), uptime)),
            Cell::from(
                h.map(|p| {
                    sparkline(
                        &p.cpu.iter().map(|v| v.map(f64::from)).collect::<Vec<_>>(),
                        SPARK,
                    )
                })
                .unwrap_or_default(),
            )
            .style(Style::default().fg(Color::Cyan)),
            Cell::from(
                h.map(|p| {
                    sparkline(
                        &p.rss
                            .iter()
                            .map(|v| v.map(|b| b as f64))
                            .collect::<Vec<_>>(),
                        SPARK,
                    )
                })
                .unwrap_or_default(),
            )
            .style(Style::default().fg(Color::Green)),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(18),
            Constraint::Length(11),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(SPARK as u16),
            Constraint::Length(SPARK as u16),
        ],
    )
    .header(
        Row::new([
            "SERVICE",
            "STATE",
            "CPU",
            "MEMORY",
            "RESTARTS",
            "UPTIME",
            "CPU 1h",
            "MEMORY 1h",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .block(Block::bordered().title(" services "));
    let mut state = TableState::default().with_selected(Some(view.selected));
    f.render_stateful_widget(table, table_area, &mut state);

    let inner = log_area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = view
        .log
        .iter()
        .skip(view.log.len().saturating_sub(inner))
        .map(|l| Line::from(l.as_str()))
        .collect();
    let log_title = match &view.following {
        Some(k) => format!(" log of {k} "),
        None => " log ".to_owned(),
    };
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(log_title)),
        log_area,
    );

    let help = if view.note.is_empty() {
        Line::from(vec![
            Span::styled("↑↓", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(" select  "),
            Span::styled("enter", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(" follow log  "),
            Span::styled("s", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(" start  "),
            Span::styled("x", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(" stop  "),
            Span::styled("r", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(" restart  "),
            Span::styled("q", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(" quit"),
        ])
    } else {
        Line::from(view.note.as_str())
    };
    f.render_widget(Paragraph::new(help), foot);
}

/// `values` as `width` block characters, each the average of its share of the points, scaled
/// from the lowest to the highest; a share with no value is a blank.
fn sparkline(values: &[Option<f64>], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let cells: Vec<Option<f64>> = (0..width)
        .map(|i| {
            let a = i * values.len() / width;
            let b = ((i + 1) * values.len() / width)
                .max(a + 1)
                .min(values.len());
            let known: Vec<f64> = values[a..b].iter().flatten().copied().collect();
            (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
        })
        .collect();
    let known = cells.iter().flatten();
    let lo = known.clone().copied().fold(f64::INFINITY, f64::min);
    let hi = known.copied().fold(f64::NEG_INFINITY, f64::max);
    cells
        .iter()
        .map(|c| match c {
            None => ' ',
            Some(v) if hi > lo => {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
            Some(_) => BARS[0],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::sparkline;

    #[test]
    fn a_sparkline_scales_from_lowest_to_highest_and_leaves_gaps_blank() {
        assert_eq!(sparkline(&[Some(0.0), Some(7.0)], 2), "▁█");
        assert_eq!(sparkline(&[Some(1.0), None, Some(3.0)], 3), "▁ █");
        // Flat is the lowest bar, not nothing.
        assert_eq!(sparkline(&[Some(5.0); 4], 4), "▁▁▁▁");
        // More points than characters: each character averages its share.
        assert_eq!(
            sparkline(&[Some(0.0), Some(0.0), Some(7.0), Some(7.0)], 2),
            "▁█"
        );
        // Fewer points than characters: points repeat, the width is kept.
        assert_eq!(sparkline(&[Some(0.0), Some(7.0)], 4).chars().count(), 4);
        assert_eq!(sparkline(&[], 4), "");
    }
}
