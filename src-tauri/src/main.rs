//! Homeport in the system tray: a thin client of the agent.
//!
//! The tray never owns a service. It finds the agent through its data folder (starting
//! `homeport agent` detached when none answers), polls its status, renders what [`TrayModel`]
//! makes of it, and shows the notifications [`Notifier`] picks; quitting or crashing the tray
//! leaves production running.
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

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use homeport_tray_model::{Extras, MenuId, Notifier, TrayModel, TrayPrefs};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, RunEvent};

const TRAY_ID: &str = "homeport";
const POLL: Duration = Duration::from_secs(2);
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
            tauri::async_runtime::spawn(poll(app.handle().clone()));
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

/// Polls the agent, re-renders the tray when what it should show changes, and notifies.
async fn poll(app: AppHandle) {
    let mut agent = agent::Agent::new();
    let mut notifier = Notifier::new();
    loop {
        let state = app.state::<Shown>();
        // Read from the entry itself: `homeport autostart` and the settings screen change it too.
        let prefs = {
            let mut p = lock(&state.prefs);
            p.start_at_login = agent::autostart_enabled();
            *p
        };
        let status = match agent.connect() {
            Ok(c) => c.status().await.map(|s| (c, s)).map_err(|e| e.to_string()),
            Err(reason) => Err(reason),
        };
        let model = match status {
            Ok((c, status)) => {
                let mut notices = notifier.observe(&status, Instant::now());
                let apps = c.apps().await.unwrap_or_default();
                // Only a complete history: a failed read must not become the baseline.
                let backups = c.backups(&homeport_types::Target::All).await;
                if let (Ok(deploys), Ok(backups)) = (c.deploys(None).await, backups) {
                    let backups: Vec<_> = backups.into_iter().flat_map(|e| e.backups).collect();
                    notices.extend(notifier.observe_history(&deploys, &backups));
                }
                if !prefs.notifications_paused {
                    for notice in homeport_tray_model::coalesce(notices) {
                        notify::show(&app, notice);
                    }
                }
                let extras = Extras {
                    apps,
                    behind: lock(&state.behind).clone(),
                    busy: state.busy.load(Ordering::SeqCst) > 0,
                };
                TrayModel::build(&status, &extras, prefs)
            }
            Err(reason) => TrayModel::disconnected(prefs, &reason),
        };
        windows::reap(&app);
        let changed = lock(&state.model).as_ref() != Some(&model);
        if changed
            && let Some(tray) = app.tray_by_id(TRAY_ID)
            && let Err(e) = show(&tray, &app, model)
        {
            tracing::warn!("cannot update the tray: {e}");
        }
        tokio::time::sleep(POLL).await;
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
