//! Desktop notifications: shows the notices the tray model decides on through the desktop's
//! notification server (`org.freedesktop.Notifications` on Linux, via notify-rust). A click on
//! one opens the dashboard window on the screen it is about.

use homeport_tray_model::Notice;
use tauri::AppHandle;

/// Shows `notice` without blocking the caller. A desktop without a notification server gets a
/// warning in the log, never a crash.
pub fn show(app: &AppHandle, notice: Notice) {
    tracing::info!("notification: {}: {}", notice.summary, notice.body);
    let mut n = notify_rust::Notification::new();
    n.appname("Homeport")
        .summary(&notice.summary)
        .body(&notice.body);
    let app = app.clone();
    // notify-rust talks to D-Bus synchronously, and waits for the click on the same thread.
    std::thread::spawn(move || {
        if let Err(e) = platform::show(&mut n, &notice, &app) {
            tracing::warn!("cannot show a notification ({}): {e}", notice.summary);
        }
    });
}

#[cfg(all(unix, not(target_os = "macos")))]
mod platform {
    use homeport_tray_model::{Notice, Urgency};
    use notify_rust::Notification;
    use tauri::AppHandle;

    use crate::windows;

    /// The notification on screen for each service, by the server's id.
    fn shown()
    -> std::sync::MutexGuard<'static, std::collections::HashMap<homeport_types::ServiceKey, u32>>
    {
        static SHOWN: std::sync::OnceLock<
            std::sync::Mutex<std::collections::HashMap<homeport_types::ServiceKey, u32>>,
        > = std::sync::OnceLock::new();
        SHOWN
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Shows the notification with its urgency and a default action, then waits until it is
    /// clicked (opening the window) or closed.
    pub fn show(
        n: &mut Notification,
        notice: &Notice,
        app: &AppHandle,
    ) -> notify_rust::error::Result<()> {
        n.urgency(match notice.urgency {
            Urgency::Normal => notify_rust::Urgency::Normal,
            Urgency::Critical => notify_rust::Urgency::Critical,
        })
        .action("default", "Open");
        // A service's new notice takes the place of its last one instead of piling up.
        let previous = notice.about.as_ref().and_then(|k| shown().get(k).copied());
        if let Some(id) = previous {
            n.id(id);
        }
        let handle = n.show()?;
        if let Some(k) = &notice.about {
            shown().insert(k.clone(), handle.id());
        }
        handle.wait_for_action(|action| {
            if action == "default"
                && let Err(e) = windows::open(app, &notice.screen.fragment())
            {
                tracing::warn!("cannot open the dashboard: {e}");
            }
        });
        Ok(())
    }
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
mod platform {
    use homeport_tray_model::Notice;
    use notify_rust::Notification;
    use tauri::AppHandle;

    /// Elsewhere notifications carry no actions: shown, not clickable.
    pub fn show(n: &mut Notification, _: &Notice, _: &AppHandle) -> notify_rust::error::Result<()> {
        n.show().map(drop)
    }
}
