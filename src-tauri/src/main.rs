//! Homeport in the system tray: a thin client of the agent.
//!
//! The tray never owns a service. It finds the agent through its data folder (starting
//! `homeport agent` detached when none answers), polls its status, and renders what
//! [`TrayModel`] makes of it; quitting or crashing the tray leaves production running.

mod agent;
mod menu;

use std::sync::Mutex;
use std::time::Duration;

use homeport_tray_model::{MenuAction, MenuId, TrayModel, TrayPrefs};
use homeport_types::{Action, Target};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, RunEvent};

const TRAY_ID: &str = "homeport";
const POLL: Duration = Duration::from_secs(2);

/// What the tray shows now; menu clicks are looked up in it.
struct Shown {
    model: Mutex<Option<TrayModel>>,
    prefs: Mutex<TrayPrefs>,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOMEPORT_LOG")
                .unwrap_or_else(|_| "homeport_desktop=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let app = tauri::Builder::default()
        .setup(|app| {
            let prefs = TrayPrefs {
                start_at_login: agent::autostart_enabled(),
            };
            app.manage(Shown {
                model: Mutex::new(None),
                prefs: Mutex::new(prefs),
            });
            let first = TrayModel::disconnected(prefs, "connecting…");
            let tray = TrayIconBuilder::with_id(TRAY_ID)
                .icon(menu::icon(first.icon)?)
                .tooltip(&first.tooltip)
                .menu(&menu::render(app.handle(), &first.menu)?)
                .show_menu_on_left_click(true)
                .on_menu_event(|app, event| {
                    let id = MenuId::from(event.id().as_ref());
                    on_click(app, &id);
                })
                .build(app)?;
            show(&tray, app.handle(), first)?;
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(poll(handle));
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("homeport-desktop: {e}");
            std::process::exit(1);
        }
    };
    app.run(|_app, event| {
        // No window is a reason to quit: the tray stays until "Quit Homeport".
        if let RunEvent::ExitRequested { api, code, .. } = event
            && code.is_none()
        {
            api.prevent_exit();
        }
    });
}

/// Polls the agent and re-renders the tray when what it should show changes.
async fn poll(app: AppHandle) {
    let mut agent = agent::Agent::new();
    loop {
        let prefs = *lock(&app.state::<Shown>().prefs);
        let model = match agent.status().await {
            Ok(status) => TrayModel::build(&status, prefs, false),
            Err(reason) => TrayModel::disconnected(prefs, &reason),
        };
        let changed = lock(&app.state::<Shown>().model).as_ref() != Some(&model);
        if changed
            && let Some(tray) = app.tray_by_id(TRAY_ID)
            && let Err(e) = show(&tray, &app, model)
        {
            tracing::warn!("cannot update the tray: {e}");
        }
        tokio::time::sleep(POLL).await;
    }
}

fn show(tray: &TrayIcon, app: &AppHandle, model: TrayModel) -> tauri::Result<()> {
    tray.set_icon(Some(menu::icon(model.icon)?))?;
    tray.set_tooltip(Some(&model.tooltip))?;
    tray.set_menu(Some(menu::render(app, &model.menu)?))?;
    *lock(&app.state::<Shown>().model) = Some(model);
    Ok(())
}

fn on_click(app: &AppHandle, id: &MenuId) {
    let action = lock(&app.state::<Shown>().model)
        .as_ref()
        .and_then(|m| m.action(id).cloned());
    let Some(action) = action else {
        tracing::warn!("a click on {id}, which the current menu does not have");
        return;
    };
    match action {
        MenuAction::Quit => app.exit(0),
        MenuAction::ToggleStartAtLogin => {
            let state = app.state::<Shown>();
            let mut prefs = lock(&state.prefs);
            match agent::set_autostart(!prefs.start_at_login) {
                Ok(()) => prefs.start_at_login = !prefs.start_at_login,
                Err(e) => tracing::warn!("start at login: {e}"),
            }
        }
        other => {
            tauri::async_runtime::spawn(async move {
                if let Err(e) = act(other).await {
                    tracing::warn!("{e}");
                }
            });
        }
    }
}

/// Carries out a menu action that needs the agent.
async fn act(action: MenuAction) -> Result<(), String> {
    let client = agent::client()?;
    let service = |a: Action, k| {
        let client = &client;
        async move {
            client
                .act(a, &Target::Service(k))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    };
    match action {
        MenuAction::Start(k) => service(Action::Start, k).await,
        MenuAction::Stop(k) => service(Action::Stop, k).await,
        MenuAction::Restart(k) => service(Action::Restart, k).await,
        MenuAction::OpenInBrowser { app, env } => {
            let status = client.status().await.map_err(|e| e.to_string())?;
            let url = status
                .services
                .iter()
                .filter(|s| s.key.app == app && s.key.env == env)
                .find_map(|s| s.url.clone())
                .ok_or_else(|| format!("{app}/{env} has no URL"))?;
            agent::open_browser(&url)
        }
        MenuAction::BackupNow { app, env } => client
            .backup(&Target::Env(app, env))
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        // Until the tray has its own windows, the dashboard opens in the browser, signed in by a
        // one-time link; the fragment survives the link's redirect.
        MenuAction::OpenDashboard | MenuAction::OpenDashboardInBrowser => {
            dashboard(&client, "").await
        }
        MenuAction::Settings => dashboard(&client, "#/settings").await,
        MenuAction::Logs(k) => dashboard(&client, &format!("#/logs?target={k}")).await,
        MenuAction::Quit | MenuAction::ToggleStartAtLogin => Ok(()),
    }
}

async fn dashboard(client: &homeport_client::Client, fragment: &str) -> Result<(), String> {
    let link = client.sign_in_link().await.map_err(|e| e.to_string())?;
    agent::open_browser(&format!("{link}{fragment}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
