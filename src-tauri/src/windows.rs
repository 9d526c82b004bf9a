//! The dashboard window. It runs in a process of its own, `homeport-desktop --window FRAGMENT`,
//! started by the tray: closing it ends that process and every WebKit process with it, so the
//! tray goes back to exactly its small footprint (a webview destroyed in-process leaves WebKit's
//! heap and network process behind), and a crash of the web view cannot take the tray down.
//!
//! The window loads the bundled ui/ through Tauri's asset protocol, never a page from the
//! agent's port. While it is open, the tray sends it the screens to show, one fragment
//! (`#/settings`, `#/logs?target=…`) per line on its stdin.

use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder};

use crate::{agent, lock};

/// The label of the one dashboard window.
pub const DASHBOARD: &str = "dashboard";

/// In the tray: the window's process, while there is one.
#[derive(Default)]
pub struct WindowProcess(Mutex<Option<(Child, ChildStdin)>>);

/// In the tray: shows the window on `fragment`, telling the open one or starting a new one.
pub fn open(app: &AppHandle, fragment: &str) -> Result<(), String> {
    let state = app.state::<WindowProcess>();
    let mut slot = lock(&state.0);
    if let Some((child, stdin)) = slot.as_mut()
        && matches!(child.try_wait(), Ok(None))
        && writeln!(stdin, "{fragment}")
            .and_then(|()| stdin.flush())
            .is_ok()
    {
        return Ok(());
    }
    if let Some((mut old, _)) = slot.take() {
        // Gone, or no longer listening: make sure, and reap it.
        let _ = old.kill();
        let _ = old.wait();
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // On Linux through /proc/self/exe: it still runs this binary after a package upgrade has
    // replaced the file (current_exe then ends in " (deleted)").
    let mut cmd = if cfg!(target_os = "linux") {
        let mut c = Command::new("/proc/self/exe");
        std::os::unix::process::CommandExt::arg0(&mut c, &exe);
        c
    } else {
        Command::new(&exe)
    };
    agent::clean_env(&mut cmd);
    let mut child = cmd
        .arg("--window")
        .arg(fragment)
        .arg("--config")
        .arg(agent::config_path())
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the window: {e}"))?;
    let stdin = child.stdin.take().ok_or("the window has no stdin")?;
    *slot = Some((child, stdin));
    Ok(())
}

/// In the tray: reaps the window's process once it has ended (closed by the user).
pub fn reap(app: &AppHandle) {
    let state = app.state::<WindowProcess>();
    let mut slot = lock(&state.0);
    if let Some((child, _)) = slot.as_mut()
        && !matches!(child.try_wait(), Ok(None))
    {
        *slot = None;
    }
}

/// In the tray, on quitting: closes the window too.
pub fn close(app: &AppHandle) {
    let state = app.state::<WindowProcess>();
    if let Some((mut child, stdin)) = lock(&state.0).take() {
        drop(stdin);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// In the window's process: creates the window on `fragment`, and follows the tray's requests
/// for other screens on stdin.
pub fn create(app: &AppHandle, fragment: &str) -> tauri::Result<()> {
    let url = WebviewUrl::App(format!("index.html{fragment}").into());
    WebviewWindowBuilder::new(app, DASHBOARD, url)
        .title("Homeport")
        // The page's title tells the state ("Homeport · Healthy"): show it on the window too.
        .on_document_title_changed(|window, title| {
            if let Err(e) = window.set_title(&title) {
                tracing::warn!("cannot set the window's title: {e}");
            }
        })
        // The window shows the bundled UI only; a link elsewhere (a service's own page) opens
        // in the browser.
        .on_navigation(|url| {
            let own = matches!(
                (url.scheme(), url.host_str(), url.port()),
                ("tauri", Some("localhost"), None)
                    | ("http" | "https", Some("tauri.localhost"), None)
            );
            if !own && let Err(e) = homeport_client::open_in_browser(url.as_str()) {
                tracing::warn!("cannot open {url}: {e}");
            }
            own
        })
        .inner_size(1100.0, 760.0)
        .min_inner_size(640.0, 480.0)
        .build()?;
    let app = app.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(fragment) = line else { break };
            if let Err(e) = show(&app, &fragment) {
                tracing::warn!("cannot show {fragment}: {e}");
            }
        }
        // The tray's end of the pipe closed: the tray is gone, however it went (quit, SIGTERM,
        // a crash). The window goes with it, so a tray started later never finds a second,
        // orphaned window beside the one it opens.
        app.exit(0);
    });
    Ok(())
}

/// In the window's process: switches the window to `fragment` and brings it forward.
fn show(app: &AppHandle, fragment: &str) -> tauri::Result<()> {
    let Some(w) = app.get_webview_window(DASHBOARD) else {
        return Ok(());
    };
    let mut url = w.url()?;
    url.set_fragment(Some(fragment.trim_start_matches('#')));
    w.navigate(url)?;
    w.unminimize()?;
    w.show()?;
    w.set_focus()
}
