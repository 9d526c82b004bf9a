//! Renders a [`TrayModel`]'s menu and icon with Tauri's types.

use homeport_tray_model::{MenuItem as Item, TrayIcon};
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, MenuItemKind, PredefinedMenuItem, Submenu};
use tauri::{AppHandle, Runtime};

/// The icon for a tray state (a coloured disc with a dark and a light rim, visible on light and
/// dark panels alike).
pub fn icon(icon: TrayIcon) -> tauri::Result<Image<'static>> {
    let bytes: &'static [u8] = match icon {
        TrayIcon::Healthy => include_bytes!("../icons/tray-healthy.png"),
        TrayIcon::Degraded => include_bytes!("../icons/tray-degraded.png"),
        TrayIcon::Down => include_bytes!("../icons/tray-down.png"),
        TrayIcon::Busy => include_bytes!("../icons/tray-busy.png"),
        TrayIcon::Disconnected => include_bytes!("../icons/tray-disconnected.png"),
    };
    Image::from_bytes(bytes)
}

pub fn render<R: Runtime>(app: &AppHandle<R>, items: &[Item]) -> tauri::Result<Menu<R>> {
    let menu = Menu::new(app)?;
    for item in kinds(app, items)? {
        menu.append(&item)?;
    }
    Ok(menu)
}

fn kinds<R: Runtime>(app: &AppHandle<R>, items: &[Item]) -> tauri::Result<Vec<MenuItemKind<R>>> {
    items
        .iter()
        .map(|item| {
            Ok(match item {
                Item::Action { id, label, enabled } => MenuItemKind::MenuItem(MenuItem::with_id(
                    app,
                    id.as_str(),
                    label,
                    *enabled,
                    None::<&str>,
                )?),
                Item::Check { id, label, checked } => MenuItemKind::Check(CheckMenuItem::with_id(
                    app,
                    id.as_str(),
                    label,
                    true,
                    *checked,
                    None::<&str>,
                )?),
                Item::Label(text) => {
                    MenuItemKind::MenuItem(MenuItem::new(app, text, false, None::<&str>)?)
                }
                Item::Submenu { label, items } => {
                    let sub = Submenu::new(app, label, true)?;
                    for k in kinds(app, items)? {
                        sub.append(&k)?;
                    }
                    MenuItemKind::Submenu(sub)
                }
                Item::Separator => MenuItemKind::Predefined(PredefinedMenuItem::separator(app)?),
            })
        })
        .collect()
}
