use std::env;
use std::path::{Path, PathBuf};

use homeport_platform::dirs::Folders;

fn home() -> Option<PathBuf> {
    env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `$HOMEPORT_CONFIG`, else `homeport.toml` in the user's config folder: `$XDG_CONFIG_HOME/homeport`
/// or `~/.config/homeport` on Linux, `~/Library/Application Support/Homeport` on macOS (see
/// `homeport_platform::dirs`).
pub fn default_config_path() -> PathBuf {
    Folders::current().config_file
}

/// `$XDG_DATA_HOME/homeport` or `~/.local/share/homeport` on Linux,
/// `~/Library/Application Support/Homeport` on macOS.
pub fn default_data_dir() -> PathBuf {
    Folders::current().data
}

/// The agent's own log for the data folder `data`, beside the service logs: `DATA/logs/agent.log`,
/// or `~/Library/Logs/Homeport/agent.log` on macOS with the default data folder. The agent writes
/// it whoever started it (a terminal, the tray, systemd, launchd).
pub fn agent_log_path(data: &Path) -> PathBuf {
    Folders::current().logs_for(data).join("agent.log")
}

/// Expands a leading `~/` and makes a relative path relative to `base` (the config file's folder).
pub fn expand_home(path: &str, base: &Path) -> PathBuf {
    let expanded = match path.strip_prefix("~/") {
        Some(rest) => home().map_or_else(|| PathBuf::from(path), |h| h.join(rest)),
        None if path == "~" => home().unwrap_or_else(|| PathBuf::from(path)),
        None => PathBuf::from(path),
    };
    if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    }
}

/// The agent's data folder as the config file at `path` sets it, read leniently: a client must
/// find a running agent even while the file has errors (the user may be editing it).
pub fn agent_data_dir(path: &Path) -> PathBuf {
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("agent")?
                .get("data_dir")?
                .as_str()
                .map(|d| expand_home(d, &base))
        })
        .unwrap_or_else(default_data_dir)
}
