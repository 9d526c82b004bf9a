//! `homeport dashboard [--print]`: the dashboard through a one-time sign-in link.

use std::path::Path;

use crate::{Failure, client};

pub async fn run(config_path: &Path, print: bool) -> Result<(), Failure> {
    let link = client(config_path)?.sign_in_link().await?;
    if !print && open_browser(&link) {
        outln!("Opened the dashboard in your browser (the sign-in link works once).")?;
    } else {
        outln!("{}", link.url)?;
    }
    Ok(())
}

/// Opens the dashboard in a browser when there is a desktop to show it; false otherwise. The
/// opener gets a private page, never the link: any local user can read a command line.
fn open_browser(link: &homeport_types::SignInLink) -> bool {
    let graphical = cfg!(target_os = "macos")
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    graphical && homeport_client::open_sign_in_page(link).is_ok()
}
