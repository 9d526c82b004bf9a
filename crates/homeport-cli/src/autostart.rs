//! `homeport autostart enable|disable|status`: start the tray app at login, the same entry that
//! the tray's "Start at login" item writes. For a machine without a desktop, `homeport service
//! install` runs the headless agent instead.

use std::path::{Path, PathBuf};

use homeport_autostart::{Autostart, DESKTOP_BIN, entry_path, find_desktop};

use crate::Failure;

fn entry(config: Option<&Path>, need_tray: bool) -> Result<Autostart, Failure> {
    let me = std::env::current_exe()
        .map_err(|e| Failure::new(1, format!("cannot find my own binary: {e}")))?;
    let tray = match find_desktop(&me) {
        Some(t) => t,
        None if !need_tray => PathBuf::from(DESKTOP_BIN),
        None => {
            return Err(Failure::new(
                1,
                format!(
                    "the tray app ({DESKTOP_BIN}) is neither beside {} nor on PATH; set \
                     HOMEPORT_DESKTOP to its path, or on a machine without a desktop run the \
                     agent from your service manager: homeport service install",
                    me.display()
                ),
            ));
        }
    };
    if need_tray {
        crate::service::refuse_build_folder(&tray, "homeport autostart enable")?;
    }
    let config = config.map(|c| std::path::absolute(c).unwrap_or_else(|_| c.to_path_buf()));
    Autostart::new(&tray, config.as_deref()).map_err(|e| Failure::new(1, e.to_string()))
}

fn platform(e: homeport_autostart::Error) -> Failure {
    Failure::new(1, e.to_string())
}

fn where_() -> String {
    entry_path().map_or_else(String::new, |p| format!(" ({})", p.display()))
}

/// `config`: the config file to pass to the tray, when it is not the default one.
pub fn enable(config: Option<&Path>) -> Result<(), Failure> {
    let a = entry(config, true)?;
    a.enable().map_err(platform)?;
    outln!(
        "The tray app starts at login{}:\n  {}",
        where_(),
        a.command()
    )?;
    Ok(())
}

pub fn disable() -> Result<(), Failure> {
    let a = entry(None, false)?;
    a.disable().map_err(platform)?;
    outln!("The tray app no longer starts at login")?;
    Ok(())
}

/// Says whether the entry exists and what it runs; fails (status 1) when it does not.
pub fn status() -> Result<(), Failure> {
    let a = entry(None, false)?;
    if !a.is_enabled().map_err(platform)? {
        return Err(Failure::new(
            1,
            "disabled: the tray app does not start at login",
        ));
    }
    let exec = entry_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Exec=").map(str::to_owned))
        });
    outln!("enabled{}", where_())?;
    if let Some(e) = exec {
        outln!("  {e}")?;
    }
    Ok(())
}
