//! `homeport remote …`: what another computer's Homeport runs here over SSH. `hello` says what
//! this host is and where its agent listens (with `--token`, its token: printed on the SSH
//! channel only, to the agent that asked); `merge-config` takes the apps and environments that
//! computer deploys here into this host's config file, checked before it is written.

use std::io::Read;
use std::path::Path;

use homeport_types::RemoteHello;

use crate::Failure;

/// The header of a config file written here for the first time.
const NEW_CONFIG: &str = "# Homeport on this host. Another computer's `homeport deploy` writes the apps and\n\
# environments it deploys here (`host = \"…\"` in its config) into this file; [agent] is yours.\n\
[agent]\n";

pub fn hello(config: &Path, token: bool) -> Result<(), Failure> {
    let data = homeport_config::agent_data_dir(config);
    let agent = homeport_client::running_endpoint(&data).ok();
    let token = match (&agent, token) {
        (Some(_), true) => std::fs::read_to_string(data.join(homeport_types::files::TOKEN))
            .ok()
            .map(|t| t.trim().to_owned()),
        _ => None,
    };
    let h = RemoteHello {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        home: std::env::var("HOME").unwrap_or_default(),
        config: std::path::absolute(config)
            .unwrap_or_else(|_| config.to_path_buf())
            .display()
            .to_string(),
        config_exists: config.exists(),
        data_dir: data.display().to_string(),
        agent,
        token,
        free_bytes: free_bytes(&data),
    };
    let json = serde_json::to_string(&h).map_err(|e| Failure::new(1, e.to_string()))?;
    outln!("{json}").map(drop)
}

/// Free bytes for an unprivileged user on the file system that holds `path` (or would: the
/// nearest folder that exists).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path.ancestors().find(|p| p.exists())?;
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer statvfs fills on success.
    let r = unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let s = unsafe { s.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Puts every `[apps.A]` table of `fragment` into `doc`: the app's own keys are replaced as a
/// whole, and each of the fragment's environments replaces that environment; other apps,
/// other environments and `[agent]` are left as they are.
pub fn merge(doc: &mut toml_edit::DocumentMut, fragment: &toml_edit::DocumentMut) {
    let Some(apps) = fragment.get("apps").and_then(|a| a.as_table_like()) else {
        return;
    };
    let root = doc.as_table_mut();
    if !root.contains_key("apps") {
        let mut t = toml_edit::Table::new();
        t.set_implicit(true);
        root.insert("apps", toml_edit::Item::Table(t));
    }
    let Some(dst_apps) = root.get_mut("apps").and_then(|a| a.as_table_like_mut()) else {
        return;
    };
    for (name, app) in apps.iter() {
        let Some(app) = app.as_table_like() else {
            continue;
        };
        if !dst_apps.contains_key(name) {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            dst_apps.insert(name, toml_edit::Item::Table(t));
        }
        let Some(dst) = dst_apps.get_mut(name).and_then(|a| a.as_table_like_mut()) else {
            continue;
        };
        let old_keys: Vec<String> = dst
            .iter()
            .filter(|(k, _)| *k != "env")
            .map(|(k, _)| k.to_owned())
            .collect();
        for k in old_keys {
            dst.remove(&k);
        }
        for (k, v) in app.iter() {
            if k == "env" {
                continue;
            }
            dst.insert(k, v.clone());
        }
        let Some(envs) = app.get("env").and_then(|e| e.as_table_like()) else {
            continue;
        };
        if !dst.contains_key("env") {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            dst.insert("env", toml_edit::Item::Table(t));
        }
        let Some(dst_envs) = dst.get_mut("env").and_then(|e| e.as_table_like_mut()) else {
            continue;
        };
        for (env, table) in envs.iter() {
            dst_envs.insert(env, table.clone());
        }
    }
}

pub fn merge_config(config: &Path) -> Result<(), Failure> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Failure::new(1, format!("cannot read the tables on stdin: {e}")))?;
    let fragment: toml_edit::DocumentMut = input
        .parse()
        .map_err(|e| Failure::new(2, format!("the tables sent are not TOML: {e}")))?;
    let existing = match std::fs::read_to_string(config) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Failure::new(
                1,
                format!("cannot read {}: {e}", config.display()),
            ));
        }
    };
    let before = existing.clone().unwrap_or_else(|| NEW_CONFIG.to_owned());
    let mut doc: toml_edit::DocumentMut = before.parse().map_err(|e| {
        Failure::new(
            2,
            format!("{} is not valid TOML; fix it first: {e}", config.display()),
        )
    })?;
    merge(&mut doc, &fragment);
    let after = doc.to_string();
    if existing.as_deref() == Some(after.as_str()) {
        return outln!("unchanged").map(drop);
    }
    if let Err(d) = homeport_config::load_str(config, &after) {
        for item in &d.0 {
            eprintln!("{item}");
        }
        return Err(Failure::new(
            2,
            format!(
                "with these tables {} would have {} problem(s); it was left as it was",
                config.display(),
                d.0.len()
            ),
        ));
    }
    if let Some(dir) = config.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::new(1, format!("cannot create {}: {e}", dir.display())))?;
    }
    homeport_fs::atomic_write(config, after.as_bytes(), 0o600)
        .map_err(|e| Failure::new(1, format!("cannot write {}: {e}", config.display())))?;
    outln!("changed").map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_replaces_the_apps_sent_and_keeps_the_rest() {
        let mut doc: toml_edit::DocumentMut = "# mine\n[agent]\nport = 7800 # keep\n\n\
            [apps.shop]\nsource = \"/old\"\nkeep_releases = 9\n\n\
            [apps.shop.env.beta]\nautostart = true\n\n\
            [apps.shop.env.production]\nautostart = false\n\n\
            [apps.blog.env.production]\nautostart = true\n"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let frag: toml_edit::DocumentMut = "[apps.shop]\nartifacts = [\"bin\"]\n\n\
            [apps.shop.env.production]\nautostart = true\n\
            services.web = { command = \"{release}/bin/web\", port = 8080 }\n"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        merge(&mut doc, &frag);
        let out = doc.to_string();
        assert!(out.contains("port = 7800 # keep"), "{out}");
        assert!(out.contains("# mine"));
        assert!(!out.contains("source = \"/old\"") && !out.contains("keep_releases"));
        assert!(out.contains("artifacts = [\"bin\"]"));
        let v: toml_edit::DocumentMut = out.parse().unwrap_or_else(|e| panic!("{e}\n{out}"));
        let shop = &v["apps"]["shop"]["env"];
        assert_eq!(shop["production"]["autostart"].as_bool(), Some(true));
        assert_eq!(shop["beta"]["autostart"].as_bool(), Some(true), "untouched");
        assert_eq!(
            v["apps"]["blog"]["env"]["production"]["autostart"].as_bool(),
            Some(true)
        );
    }
}
