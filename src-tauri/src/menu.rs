//! Renders a [`TrayModel`]'s menu and icon with Tauri's types.

use homeport_tray_model::{MenuItem as Item, TrayIcon};
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, MenuItemKind, PredefinedMenuItem, Submenu};
use tauri::{AppHandle, Runtime};

/// Whether tray icons are templates: macOS draws a template (black shapes on transparency) in
/// the menu bar's own colour, light or dark, and tints it when the menu is open; a coloured icon
/// would look foreign there. Elsewhere the coloured discs are used.
pub const TEMPLATE: bool = cfg!(target_os = "macos");

/// The icon for a tray state: a coloured disc with a dark and a light rim (visible on light and
/// dark panels alike) and a white glyph, so that states differ without colour too (✓ healthy,
/// ! degraded, ✕ down, ⋯ busy, – disconnected); or on macOS a template whose shape tells the
/// state, since its colour is the menu bar's: ● healthy, ◐ degraded, ⊘ down, ◉ busy, a dashed
/// ring when disconnected.
/// Templates are 44 px, which macOS draws 18 points high: sharp on Retina screens.
pub fn icon(icon: TrayIcon) -> tauri::Result<Image<'static>> {
    Image::from_bytes(icon_bytes(icon, TEMPLATE))
}

fn icon_bytes(icon: TrayIcon, template: bool) -> &'static [u8] {
    match (icon, template) {
        (TrayIcon::Healthy, false) => include_bytes!("../icons/tray-healthy.png"),
        (TrayIcon::Degraded, false) => include_bytes!("../icons/tray-degraded.png"),
        (TrayIcon::Down, false) => include_bytes!("../icons/tray-down.png"),
        (TrayIcon::Busy, false) => include_bytes!("../icons/tray-busy.png"),
        (TrayIcon::Disconnected, false) => include_bytes!("../icons/tray-disconnected.png"),
        (TrayIcon::Healthy, true) => include_bytes!("../icons/tray-healthy-template.png"),
        (TrayIcon::Degraded, true) => include_bytes!("../icons/tray-degraded-template.png"),
        (TrayIcon::Down, true) => include_bytes!("../icons/tray-down-template.png"),
        (TrayIcon::Busy, true) => include_bytes!("../icons/tray-busy-template.png"),
        (TrayIcon::Disconnected, true) => include_bytes!("../icons/tray-disconnected-template.png"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [TrayIcon; 5] = [
        TrayIcon::Healthy,
        TrayIcon::Degraded,
        TrayIcon::Down,
        TrayIcon::Busy,
        TrayIcon::Disconnected,
    ];

    #[test]
    fn template_icons_are_black_shapes_on_transparency_and_tell_states_apart() {
        let mut shapes = Vec::new();
        for state in ALL {
            let image = Image::from_bytes(icon_bytes(state, true)).expect("a PNG");
            assert_eq!((image.width(), image.height()), (44, 44), "{state:?}");
            let rgba = image.rgba();
            let covered = rgba.chunks(4).filter(|p| p[3] > 0).count();
            assert!(covered > 100, "{state:?} draws something");
            assert!(
                rgba.chunks(4).all(|p| p[3] == 0 || p[..3] == [0, 0, 0]),
                "{state:?}: a template is black, macOS supplies the colour"
            );
            let alpha: Vec<u8> = rgba.chunks(4).map(|p| p[3]).collect();
            assert!(
                !shapes.contains(&alpha),
                "{state:?} looks like another state"
            );
            shapes.push(alpha);
        }
    }

    #[test]
    fn coloured_icons_tell_states_apart_without_colour() {
        let mut glyphs = Vec::new();
        for state in ALL {
            let image = Image::from_bytes(icon_bytes(state, false)).expect("a PNG");
            let (w, h) = (image.width() as i64, image.height() as i64);
            // The white glyph inside the disc (the light rim outside it is not white).
            let glyph: Vec<bool> = image
                .rgba()
                .chunks(4)
                .enumerate()
                .map(|(i, p)| {
                    let (x, y) = (i as i64 % w - w / 2, i as i64 / w - h / 2);
                    x * x + y * y < (w / 3) * (w / 3) && p.iter().take(3).all(|c| *c > 240)
                })
                .collect();
            assert!(
                glyph.iter().filter(|g| **g).count() > 40,
                "{state:?} has a glyph"
            );
            assert!(
                !glyphs.contains(&glyph),
                "{state:?} has the glyph of another state"
            );
            glyphs.push(glyph);
        }
    }

    #[test]
    fn coloured_icons_decode() {
        for state in ALL {
            assert!(
                Image::from_bytes(icon_bytes(state, false)).is_ok(),
                "{state:?}"
            );
        }
    }
}
