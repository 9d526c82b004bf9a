//! The dashboard window: the bundled ui/ loaded through Tauri's asset protocol (never a page
//! from the agent's port). One window, navigated between screens; closing it destroys its
//! webview, and the tray stays.

use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder};

/// The label of the one dashboard window.
pub const DASHBOARD: &str = "dashboard";

/// Opens the dashboard window on `fragment` (`#/settings`, `#/logs?target=…`), or brings the
/// open one forward and switches it there.
pub fn open(app: &AppHandle, fragment: &str) -> tauri::Result<()> {
    if let Some(w) = app.get_webview_window(DASHBOARD) {
        let mut url = w.url()?;
        url.set_fragment(Some(fragment.trim_start_matches('#')));
        w.navigate(url)?;
        w.unminimize()?;
        w.show()?;
        return w.set_focus();
    }
    let url = WebviewUrl::App(format!("index.html{fragment}").into());
    WebviewWindowBuilder::new(app, DASHBOARD, url)
        .title("Homeport")
        // The window shows the bundled UI only; a link elsewhere (a service's own page) opens
        // in the browser.
        .on_navigation(|url| {
            let own = matches!(url.scheme(), "tauri") || url.host_str() == Some("tauri.localhost");
            if !own && let Err(e) = homeport_client::open_in_browser(url.as_str()) {
                tracing::warn!("cannot open {url}: {e}");
            }
            own
        })
        // The page's title tells the state ("Homeport · Healthy"): show it on the window too.
        .on_document_title_changed(|window, title| {
            if let Err(e) = window.set_title(&title) {
                tracing::warn!("cannot set the window's title: {e}");
            }
        })
        .inner_size(1100.0, 760.0)
        .min_inner_size(640.0, 480.0)
        .build()?;
    Ok(())
}
