//! Homeport in the system tray: a thin client of the agent.
//!
//! The tray never owns a service. It finds the agent through its data folder (starting
//! `homeport agent` detached when none answers), subscribes to its event stream (one connection:
//! a snapshot, then every outcome as an event), renders what [`TrayModel`] makes of it, and
//! shows the notifications [`Notifier`] maps the events to; quitting or crashing the tray leaves
//! production running.
//!
//! One instance per user: a second launch hands its arguments to the first and exits.
//! `homeport-desktop --open SCREEN` (dashboard, settings, logs, events, backups, deploys) opens
//! the dashboard window on that screen; `--minimized` (used at login) opens nothing;
//! `--window FRAGMENT` is the window's own process, which the tray starts (see [`windows`]);
//! `--config PATH` picks the config file (default: `$HOMEPORT_CONFIG`, else
//! `~/.config/homeport/homeport.toml`).

mod actions;
mod agent;
mod commands;
mod menu;
mod notify;
mod windows;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use homeport_client::Update;
use homeport_tray_model::{Extras, MenuId, Notifier, TrayModel, TrayPrefs};
use homeport_types::EventKind;
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, RunEvent};

const TRAY_ID: &str = "homeport";
/// How often the tray looks at what is local (the login entry, the window's process, notices
/// held back): no request to the agent.
const TICK: Duration = Duration::from_secs(2);
/// How often the tray asks whether each app's source is behind its upstream (a `git fetch`).
const UPDATE_CHECK: Duration = Duration::from_secs(15 * 60);

/// What the tray shows now and what it knows; menu clicks are looked up in `model`.
struct Shown {
    model: Mutex<Option<TrayModel>>,
    prefs: Mutex<TrayPrefs>,
    /// Commits each app's source is behind its upstream.
    behind: Mutex<BTreeMap<String, u32>>,
    /// Deploys and backups the tray started that are still running.
    busy: AtomicUsize,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let window = argv
        .iter()
        .position(|a| a == "--window")
        .map(|i| argv.get(i + 1).cloned().unwrap_or_else(|| "#/".into()));
    // The tray draws no GL: without this GDK loads Mesa (and LLVM with it, ~30 MB) to choose
    // visuals at start. The window's process, which may use GL, does not inherit it.
    if window.is_none() && std::env::var_os(agent::GDK_GL).is_none() {
        // SAFETY: the first thing the process does: no other thread exists yet.
        unsafe { std::env::set_var(agent::GDK_GL, "disable") };
        agent::GL_DISABLED_HERE.store(true, Ordering::SeqCst);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOMEPORT_LOG")
                .unwrap_or_else(|_| "homeport_desktop=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = agent::set_config(&argv);
    let builder = commands::register(
        tauri::Builder::default(),
        homeport_config::agent_data_dir(config),
    );
    let result = match window {
        Some(fragment) => run_window(builder, fragment),
        None => run_tray(builder, argv),
    };
    if let Err(e) = result {
        eprintln!("homeport-desktop: {e}");
        std::process::exit(1);
    }
}

/// The dashboard window's own process (see [`windows`]): ends when the window closes.
fn run_window(builder: tauri::Builder<tauri::Wry>, fragment: String) -> tauri::Result<()> {
    builder
        .setup(move |app| {
            windows::create(app.handle(), &fragment)?;
            Ok(())
        })
        .run(context())
}

/// The tray: lives until "Quit Homeport".
fn run_tray(builder: tauri::Builder<tauri::Wry>, argv: Vec<String>) -> tauri::Result<()> {
    let app = builder
        // First, so that a second instance hands over before it sets anything up.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            tracing::info!("another launch: {argv:?}");
            open_requested(app, &argv, "#/");
        }))
        .manage(windows::WindowProcess::default())
        .setup(move |app| {
            let prefs = TrayPrefs {
                start_at_login: agent::autostart_enabled(),
                notifications_paused: false,
            };
            app.manage(Shown {
                model: Mutex::new(None),
                prefs: Mutex::new(prefs),
                behind: Mutex::new(BTreeMap::new()),
                busy: AtomicUsize::new(0),
            });
            let first = TrayModel::disconnected(prefs, "connecting…");
            // A menu bar item, not an app: no Dock icon, no entry in the app switcher. The
            // dashboard window runs in a process of its own, which keeps the regular policy.
            #[cfg(target_os = "macos")]
            app.set_activation_policy(tauri::ActivationPolicy::Accessory);
            let tray = TrayIconBuilder::with_id(TRAY_ID)
                .icon(menu::icon(first.icon)?)
                .icon_as_template(menu::TEMPLATE)
                .tooltip(&first.tooltip)
                .menu(&menu::render(app.handle(), &first.menu)?)
                .show_menu_on_left_click(true)
                .on_menu_event(|app, event| {
                    actions::on_click(app, &MenuId::from(event.id().as_ref()));
                })
                .build(app)?;
            show(&tray, app.handle(), first)?;
            tracing::info!("tray ready");
            tauri::async_runtime::spawn(watch(app.handle().clone()));
            tauri::async_runtime::spawn(check_updates(app.handle().clone()));
            open_requested(app.handle(), &argv, "");
            Ok(())
        })
        .build(context())?;
    app.run(|_app, event| {
        // The tray has no windows of its own; nothing but "Quit Homeport" ends it.
        if let RunEvent::ExitRequested { api, code, .. } = event
            && code.is_none()
        {
            api.prevent_exit();
        }
    });
    Ok(())
}

/// The app's context (config, bundled ui/), generated once for both modes.
fn context() -> tauri::Context<tauri::Wry> {
    tauri::generate_context!()
}

/// Opens the window a command line asks for: `--open SCREEN`; nothing with `--minimized`;
/// otherwise `default` (a fragment; empty for none).
fn open_requested(app: &AppHandle, argv: &[String], default: &str) {
    let fragment = match argv.iter().position(|a| a == "--open") {
        Some(i) => match argv.get(i + 1).map(String::as_str) {
            Some("dashboard") | None => "#/",
            Some("settings") => "#/settings",
            Some("logs") => "#/logs",
            Some("events") => "#/events",
            Some("backups") => "#/backups",
            Some("deploys") => "#/deploys",
            Some(other) => {
                tracing::warn!("--open {other}: no such screen");
                "#/"
            }
        },
        None if argv.iter().any(|a| a == "--minimized") => "",
        None => default,
    };
    if !fragment.is_empty()
        && let Err(e) = windows::open(app, fragment)
    {
        tracing::warn!("{e}");
    }
}

/// Subscribes to the agent (snapshot, then events; reconnecting, starting an agent if none
/// answers, and starting again from a fresh snapshot after a drop), keeps its own copy of the
/// status up to date from the events, re-renders the tray when what it should show changes, and
/// shows the notices [`Notifier`] maps the events to. Between events it asks the agent nothing;
/// a local tick re-reads the login entry and lets held-back notices out.
async fn watch(app: AppHandle) {
    let mut agent = agent::Agent::new();
    let updates = homeport_client::subscribe(move || agent.connect());
    let mut updates = std::pin::pin!(updates);
    let mut notifier = Notifier::new();
    let mut status: Option<homeport_types::StatusSnapshot> = None;
    let mut apps: Vec<homeport_types::AppInfo> = Vec::new();
    let mut hosts: Vec<homeport_types::HostInfo> = Vec::new();
    let mut deploying: BTreeSet<i64> = BTreeSet::new();
    let mut reason = "connecting…".to_owned();
    let mut tick = tokio::time::interval(TICK);
    loop {
        let mut notices = Vec::new();
        let mut refresh_apps = false;
        let mut refresh_hosts = false;
        let mut refresh_status = false;
        tokio::select! {
            update = updates.next() => match update {
                Some(Update::Snapshot(report)) => {
                    let keys: Vec<_> = report.snapshot.services.iter().map(|s| s.key.clone()).collect();
                    notifier.retain(&keys);
                    notifier.policies(&report.snapshot.services);
                    status = Some(report.snapshot);
                    deploying.clear();
                    refresh_apps = true;
                    refresh_hosts = true;
                }
                Some(Update::Event(ev)) => {
                    if let Some(s) = &mut status {
                        s.apply(&ev);
                    }
                    notices.extend(notifier.on_event(&ev, Instant::now()));
                    match &ev.kind {
                        EventKind::DeployStarted { id, .. } => {
                            deploying.insert(*id);
                        }
                        EventKind::DeployFinished { id, .. } => {
                            deploying.remove(id);
                            refresh_apps = true;
                        }
                        // Services may have come or gone: the menu needs the whole picture.
                        EventKind::ConfigApplied { .. } => {
                            refresh_apps = true;
                            refresh_status = true;
                        }
                        EventKind::AutoUpdateFinished { .. }
                        | EventKind::AutoUpdateRefused { .. }
                        | EventKind::AutoUpdatesResumed => refresh_apps = true,
                        // Another host connected, went away, or its production turned.
                        EventKind::Host { .. } => refresh_hosts = true,
                        _ => {}
                    }
                }
                Some(Update::Disconnected(why)) => {
                    tracing::debug!("agent: {why}");
                    status = None;
                    reason = why;
                }
                None => return,
            },
            _ = tick.tick() => notices.extend(notifier.tick(Instant::now())),
        }
        if refresh_apps && let Ok(c) = agent::client() {
            apps = c.apps().await.unwrap_or_default();
        }
        if refresh_hosts && let Ok(c) = agent::client() {
            hosts = c.hosts().await.unwrap_or_default();
        }
        if refresh_status
            && let Ok(c) = agent::client()
            && let Ok(report) = c.status_report().await
        {
            notifier.policies(&report.snapshot.services);
            status = Some(report.snapshot);
        }
        let state = app.state::<Shown>();
        // Read from the entry itself: `homeport autostart` and the settings screen change it too.
        let prefs = {
            let mut p = lock(&state.prefs);
            p.start_at_login = agent::autostart_enabled();
            *p
        };
        if !prefs.notifications_paused {
            for notice in homeport_tray_model::coalesce(notices) {
                notify::show(&app, notice);
            }
        }
        let model = match &status {
            Some(status) => {
                let extras = Extras {
                    apps: apps.clone(),
                    behind: lock(&state.behind).clone(),
                    busy: state.busy.load(Ordering::SeqCst) > 0 || !deploying.is_empty(),
                    hosts: hosts.clone(),
                };
                TrayModel::build(status, &extras, prefs)
            }
            None => TrayModel::disconnected(prefs, &agent_reason(&reason)),
        };
        windows::reap(&app);
        let changed = lock(&state.model).as_ref() != Some(&model);
        if changed
            && let Some(tray) = app.tray_by_id(TRAY_ID)
            && let Err(e) = show(&tray, &app, model)
        {
            tracing::warn!("cannot update the tray: {e}");
        }
    }
}

/// The words a disconnected tray shows.
fn agent_reason(reason: &str) -> String {
    if reason.contains("not running") || reason.contains("nothing answers") {
        "the agent is not running".into()
    } else {
        reason.to_owned()
    }
}

/// Asks the agent, now and then, how far each deployable app's source is behind its upstream.
async fn check_updates(app: AppHandle) {
    loop {
        if let Ok(client) = agent::client() {
            let apps = client.apps().await.unwrap_or_default();
            let mut behind = BTreeMap::new();
            for a in apps.iter().filter(|a| a.deployable) {
                match client.update_check(&a.name).await {
                    Ok((n, _ahead)) => {
                        behind.insert(a.name.clone(), n);
                    }
                    Err(e) => tracing::debug!("update check of {}: {e}", a.name),
                }
            }
            *lock(&app.state::<Shown>().behind) = behind;
        }
        tokio::time::sleep(UPDATE_CHECK).await;
    }
}

fn show(tray: &TrayIcon, app: &AppHandle, model: TrayModel) -> tauri::Result<()> {
    // Both at once: on macOS a plain set_icon would drop the template flag.
    tray.set_icon_with_as_template(Some(menu::icon(model.icon)?), menu::TEMPLATE)?;
    tray.set_tooltip(Some(&model.tooltip))?;
    tray.set_menu(Some(menu::render(app, &model.menu)?))?;
    *lock(&app.state::<Shown>().model) = Some(model);
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
