//! `homeport dashboard [--print]`: the dashboard through a one-time sign-in link.

use std::path::Path;

use crate::{Failure, client};

pub async fn run(config_path: &Path, print: bool) -> Result<(), Failure> {
    let url = client(config_path)?.sign_in_link().await?;
    if !print && open_browser(&url) {
        outln!("Opened the dashboard in your browser (the sign-in link works once).")?;
    } else {
        outln!("{url}")?;
    }
    Ok(())
}

/// Opens `url` in a browser when there is a desktop to show it; false otherwise.
fn open_browser(url: &str) -> bool {
    let graphical = cfg!(target_os = "macos")
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    graphical && homeport_client::open_in_browser(url).is_ok()
}
