use std::env;
use std::path::{Path, PathBuf};

fn home() -> Option<PathBuf> {
    env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home().map(|h| h.join(fallback)))
        .unwrap_or_else(|| PathBuf::from("/tmp").join(fallback))
}

/// `$HOMEPORT_CONFIG`, else `$XDG_CONFIG_HOME/homeport/homeport.toml`, else
/// `~/.config/homeport/homeport.toml`.
pub fn default_config_path() -> PathBuf {
    if let Some(p) = env::var_os("HOMEPORT_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    xdg("XDG_CONFIG_HOME", ".config")
        .join("homeport")
        .join("homeport.toml")
}

/// `$XDG_DATA_HOME/homeport`, else `~/.local/share/homeport`.
pub fn default_data_dir() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share").join("homeport")
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
