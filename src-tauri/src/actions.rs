//! What a click on a menu item does. Everything that talks to the agent runs on the async
//! runtime, so the menu never waits; outcomes of long actions (deploys, backups) come back as
//! notifications.

use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use homeport_client::Client;
use homeport_tray_model::{MenuAction, MenuId, Notice};
use homeport_types::{Action, DeployEvent, DeployKind, DeployRequest, Target};
use tauri::{AppHandle, Manager};

use crate::{Shown, agent, lock, notify, windows};

pub fn on_click(app: &AppHandle, id: &MenuId) {
    let action = lock(&app.state::<Shown>().model)
        .as_ref()
        .and_then(|m| m.action(id).cloned());
    let Some(action) = action else {
        tracing::warn!("a click on {id}, which the current menu does not have");
        return;
    };
    let state = app.state::<Shown>();
    match action {
        MenuAction::Quit => quit(app),
        MenuAction::ToggleStartAtLogin => {
            let mut prefs = lock(&state.prefs);
            let on = !agent::autostart_enabled();
            match agent::set_autostart(on) {
                Ok(()) => prefs.start_at_login = on,
                Err(e) => tracing::warn!("start at login: {e}"),
            }
        }
        MenuAction::TogglePauseNotifications => {
            let mut prefs = lock(&state.prefs);
            prefs.notifications_paused = !prefs.notifications_paused;
        }
        MenuAction::OpenDashboard => open_window(app, "#/"),
        MenuAction::Settings => open_window(app, "#/settings"),
        MenuAction::Logs(k) => open_window(app, &format!("#/logs?target={k}")),
        other => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                if let Err(e) = act(&app, other).await {
                    tracing::warn!("{e}");
                }
            });
        }
    }
}

/// Quits the tray and its window; the agent stays.
fn quit(app: &AppHandle) {
    windows::close(app);
    app.exit(0);
}

fn open_window(app: &AppHandle, fragment: &str) {
    if let Err(e) = windows::open(app, fragment) {
        tracing::warn!("{e}");
    }
}

/// Carries out a menu action that needs the agent.
async fn act(app: &AppHandle, action: MenuAction) -> Result<(), String> {
    let client = agent::client()?;
    // A lifecycle command, told in a notice when the agent or any service refuses it.
    let service = |a: Action, target: Target| {
        let client = &client;
        async move {
            let failed = match client.act(a, &target).await {
                Ok(outcomes) => outcomes
                    .iter()
                    .filter_map(|o| Some(format!("{}: {}", o.key, o.error.as_ref()?)))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Err(e) => e.to_string(),
            };
            if failed.is_empty() {
                return Ok(());
            }
            notify::show(
                app,
                Notice::action_failed(&a.to_string(), &target.to_string(), &failed),
            );
            Err(failed)
        }
    };
    match action {
        MenuAction::Start(k) => service(Action::Start, Target::Service(k)).await,
        MenuAction::Stop(k) => service(Action::Stop, Target::Service(k)).await,
        MenuAction::Restart(k) => service(Action::Restart, Target::Service(k)).await,
        MenuAction::StopAllAndQuit => {
            // Quits only once everything stopped; otherwise the notice says what still runs.
            service(Action::Stop, Target::All).await?;
            quit(app);
            Ok(())
        }
        MenuAction::OpenInBrowser { app: name, env } => {
            let status = client.status().await.map_err(|e| e.to_string())?;
            // The environment's name through the router when it has one, else a port.
            let urls: Vec<String> = status
                .services
                .iter()
                .filter(|s| s.key.app == name && s.key.env == env)
                .filter_map(|s| s.url.clone())
                .collect();
            let url = urls
                .iter()
                .find(|u| !u.contains("//127.0.0.1:"))
                .or(urls.first())
                .cloned()
                .ok_or_else(|| format!("{name}/{env} has no URL"))?;
            agent::open_browser(&url)
        }
        MenuAction::OpenDashboardInBrowser => {
            // Signed in by a one-time link, through a page only this user can read.
            let link = client.sign_in_link().await.map_err(|e| e.to_string())?;
            homeport_client::open_sign_in_page(&link).map_err(|e| e.to_string())
        }
        MenuAction::BackupNow { app: name, env } => {
            let _busy = Busy::new(app);
            let target = Target::Env(name, env);
            // How a backup ended comes as an event, like any other; one the agent refused
            // before starting it (nothing to back up, one already running) is told here.
            let outcome = client.backup(&target).await;
            if let Err(e) = &outcome
                && !matches!(e, homeport_client::ClientError::Api { status, .. } if *status >= 422)
            {
                notify::show(
                    app,
                    Notice::backup_failed(
                        &target.to_string(),
                        homeport_types::BackupTrigger::Manual,
                        &e.to_string(),
                    ),
                );
            }
            outcome.map(drop).map_err(|e| e.to_string())
        }
        MenuAction::Deploy { app: name, env } => {
            deploy(app, &client, request(name, env, DeployKind::Deploy, None)).await
        }
        MenuAction::Promote {
            app: name,
            from,
            to,
        } => {
            deploy(
                app,
                &client,
                request(name, to, DeployKind::Promote, Some(from)),
            )
            .await
        }
        MenuAction::Update { app: name } => {
            let req = request(name, "production".into(), DeployKind::Update, None);
            deploy(app, &client, req).await
        }
        MenuAction::ResumeUpdates { app: name, env } => {
            let outcome = client.resume_updates(&name, &env).await;
            if let Err(e) = &outcome {
                notify::show(
                    app,
                    Notice::action_failed(
                        "resume automatic updates of",
                        &format!("{name}/{env}"),
                        &e.to_string(),
                    ),
                );
            }
            outcome.map(drop).map_err(|e| e.to_string())
        }
        MenuAction::Quit
        | MenuAction::ToggleStartAtLogin
        | MenuAction::TogglePauseNotifications
        | MenuAction::OpenDashboard
        | MenuAction::Settings
        | MenuAction::Logs(_) => Ok(()),
    }
}

fn request(app: String, env: String, kind: DeployKind, from_env: Option<String>) -> DeployRequest {
    DeployRequest {
        app,
        env,
        kind,
        from_env,
        release: None,
        git_ref: None,
        build_on_host: false,
    }
}

/// Runs a deploy to its end. How it ended comes as an event, like any deploy's
/// (a stream cut short ends in one too); a request the agent refused is told here.
async fn deploy(app: &AppHandle, client: &Client, req: DeployRequest) -> Result<(), String> {
    let _busy = Busy::new(app);
    let events = client.deploy(&req).await.map_err(|e| {
        let e = e.to_string();
        let kind = req.kind.as_str();
        notify::show(app, Notice::deploy_error(&req.app, &req.env, kind, &e));
        e
    })?;
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        if let DeployEvent::Done { .. } = event.map_err(|e| e.to_string())? {
            return Ok(());
        }
    }
    Err("the agent ended the deploy stream early".into())
}

/// Marks the tray busy (blue icon) while alive.
struct Busy(AppHandle);

impl Busy {
    fn new(app: &AppHandle) -> Self {
        app.state::<Shown>().busy.fetch_add(1, Ordering::SeqCst);
        Busy(app.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.state::<Shown>().busy.fetch_sub(1, Ordering::SeqCst);
    }
}
