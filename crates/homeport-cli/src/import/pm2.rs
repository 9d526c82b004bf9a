//! PM2's process list as `pm2 jlist` prints it: one JSON object per running instance, with the
//! settings under `pm2_env`. Instances of one app started with `increment_var` (or on their own
//! ports) become one service per instance, each with its port; cluster mode shares one port
//! through Node's cluster module, which Homeport does not do, so it becomes one service and a
//! note. Variables PM2 copied from the shell it was started in are left out (the agent passes
//! its own environment), and credentials go to `secret_env`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as Json;
use toml_edit::Value;

use super::{Command, Import, Service, is_secret, literal, name};

#[derive(Deserialize)]
struct Process {
    name: String,
    pm2_env: Env,
}

#[derive(Deserialize)]
struct Env {
    pm_exec_path: Option<String>,
    pm_cwd: Option<String>,
    #[serde(default)]
    args: Option<Json>,
    #[serde(default)]
    node_args: Option<Json>,
    exec_interpreter: Option<String>,
    exec_mode: Option<String>,
    instances: Option<Json>,
    autorestart: Option<bool>,
    max_restarts: Option<u32>,
    min_uptime: Option<u64>,
    restart_delay: Option<u64>,
    kill_timeout: Option<u64>,
    #[serde(default)]
    env: BTreeMap<String, Json>,
    watch: Option<Json>,
    max_memory_restart: Option<Json>,
    cron_restart: Option<Json>,
    increment_var: Option<String>,
    pm_id: Option<u32>,
}

/// Set by the shell or by PM2 itself, not by the app's own config.
const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "PWD",
    "OLDPWD",
    "SHLVL",
    "_",
    "TERM",
    "LANG",
    "SHELL",
    "USER",
    "LOGNAME",
    "MAIL",
    "HOSTNAME",
    "DISPLAY",
    "LS_COLORS",
    "COLORTERM",
    "EDITOR",
    "PAGER",
    "TMPDIR",
    "NODE_APP_INSTANCE",
    "unique_id",
];

fn inherited(key: &str, app_name: &str) -> bool {
    INHERITED.contains(&key)
        || key == app_name
        || [
            "PM2_", "LC_", "XDG_", "SSH_", "DBUS_", "TERM_", "npm_", "NVM_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
}

fn words(v: &Option<Json>) -> Vec<String> {
    match v {
        Some(Json::Array(a)) => a
            .iter()
            .map(|x| match x {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(Json::String(s)) => shlex::split(s).unwrap_or_else(|| vec![s.clone()]),
        _ => Vec::new(),
    }
}

fn ms(n: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(n))
        .to_string()
        .replace(' ', "")
}

pub fn parse(text: &str) -> Result<Import, String> {
    let procs: Vec<Process> = serde_json::from_str(text)
        .map_err(|e| format!("not the output of `pm2 jlist` (a JSON array of processes): {e}"))?;
    let mut import = Import::default();
    // Instances of one app, in pm_id order.
    let mut groups: Vec<(String, Vec<Process>)> = Vec::new();
    for p in procs {
        match groups.iter_mut().find(|(n, _)| *n == p.name) {
            Some((_, g)) => g.push(p),
            None => groups.push((p.name.clone(), vec![p])),
        }
    }
    let cwds: Vec<Option<String>> = groups
        .iter()
        .map(|(_, g)| g[0].pm2_env.pm_cwd.clone())
        .collect();
    import.app = match cwds.first() {
        Some(Some(c)) if cwds.iter().all(|x| x.as_deref() == Some(c)) => std::path::Path::new(c)
            .file_name()
            .map_or_else(|| "pm2".to_owned(), |n| n.to_string_lossy().into_owned()),
        _ => "pm2".to_owned(),
    };
    for (app_name, mut group) in groups {
        group.sort_by_key(|p| p.pm2_env.pm_id.unwrap_or(0));
        let cluster = group[0].pm2_env.exec_mode.as_deref() == Some("cluster_mode");
        let ports: Vec<Option<u16>> = group.iter().map(|p| port_of(&p.pm2_env)).collect();
        let per_instance = !cluster
            && group.len() > 1
            && ports.iter().all(Option::is_some)
            && ports.windows(2).all(|w| w[0] != w[1]);
        let count = group.len();
        let chosen: Vec<&Process> = if per_instance {
            group.iter().collect()
        } else {
            group.iter().take(1).collect()
        };
        for (i, p) in chosen.into_iter().enumerate() {
            let suffix = if per_instance {
                format!("-{i}")
            } else {
                String::new()
            };
            let mut svc = service(
                &app_name,
                &p.pm2_env,
                &format!("{}{suffix}", name(&app_name)),
            );
            if cluster && count > 1 {
                svc.unmapped.push(format!(
                    "{count} instances in cluster mode share one port through Node's cluster \
                     module; Homeport runs one process (start more in your app, or run one \
                     service per port)"
                ));
            } else if count > 1 && !per_instance {
                svc.unmapped.push(format!(
                    "{count} instances without a port of their own each: imported once"
                ));
            }
            import.services.push(svc);
        }
    }
    Ok(import)
}

fn port_of(env: &Env) -> Option<u16> {
    match env.env.get("PORT") {
        Some(Json::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(Json::String(s)) => s.parse().ok(),
        _ => None,
    }
}

fn service(app_name: &str, e: &Env, svc_name: &str) -> Service {
    let mut s = Service {
        name: svc_name.to_owned(),
        cwd: e.pm_cwd.as_deref().map(literal),
        port: port_of(e),
        ..Service::default()
    };
    let script = e.pm_exec_path.clone().unwrap_or_default();
    let mut argv = Vec::new();
    match e.exec_interpreter.as_deref() {
        None | Some("none") | Some("") => {}
        Some(interp) => {
            argv.push(interp.to_owned());
            if interp == "node" {
                argv.extend(words(&e.node_args));
            }
        }
    }
    argv.push(script);
    argv.extend(words(&e.args));
    s.command = Some(Command::Argv(argv.iter().map(|a| literal(a)).collect()));

    let mut dropped = 0;
    for (k, v) in &e.env {
        if k == "PORT" && s.port.is_some() {
            continue;
        }
        if inherited(k, app_name) {
            dropped += 1;
            continue;
        }
        let v = match v {
            Json::String(x) => x.clone(),
            other => other.to_string(),
        };
        if is_secret(k) {
            s.secret_env.insert(k.clone(), literal(&v));
        } else {
            s.env.insert(k.clone(), literal(&v));
        }
    }
    if dropped > 0 {
        s.unmapped.push(format!(
            "{dropped} variables PM2 copied from the shell it started in (PATH, HOME, PM2_…): the \
             agent passes its own environment"
        ));
    }

    match e.autorestart {
        Some(false) => s.restart.push(("policy".into(), "never".into())),
        _ => {
            // PM2 restarts on any exit, clean or not.
            s.restart.push(("policy".into(), "always".into()));
            if let Some(n) = e.max_restarts {
                s.restart
                    .push(("max_failures".into(), Value::from(i64::from(n))));
            }
            if let Some(d) = e.restart_delay.filter(|d| *d > 0) {
                s.restart.push(("backoff_min".into(), ms(d).into()));
            }
            if let Some(u) = e.min_uptime.filter(|u| *u > 0) {
                s.restart.push(("reset_after".into(), ms(u).into()));
            }
        }
    }
    if let Some(k) = e.kill_timeout.filter(|k| *k > 0) {
        s.stop_timeout = Some(ms(k));
    }
    let truthy = |v: &Option<Json>| {
        v.as_ref()
            .is_some_and(|v| !matches!(v, Json::Null | Json::Bool(false)) && v != &Json::from(0))
    };
    if truthy(&e.watch) {
        s.unmapped.push(
            "watch: Homeport does not restart on file changes; deploy a new release instead".into(),
        );
    }
    if truthy(&e.max_memory_restart) {
        s.unmapped.push(format!(
            "max_memory_restart = {}: no memory limit restarts in Homeport",
            e.max_memory_restart.clone().unwrap_or_default()
        ));
    }
    if truthy(&e.cron_restart) {
        s.unmapped
            .push("cron_restart: no scheduled restarts in Homeport".into());
    }
    if let Some(v) = &e.increment_var
        && v != "PORT"
    {
        s.unmapped
            .push(format!("increment_var = {v}: only PORT is understood"));
    }
    let _ = &e.instances;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_list_maps_its_script_and_env() {
        let text = r#"[{"name":"api","pm2_env":{"pm_exec_path":"/srv/api/index.js","pm_cwd":"/srv/api","exec_interpreter":"node","exec_mode":"fork_mode","autorestart":true,"max_restarts":3,"env":{"PORT":"8080","DB_PASSWORD":"x","PATH":"/bin"}}}]"#;
        let i = parse(text).unwrap_or_default();
        let s = &i.services[0];
        assert_eq!(i.app, "api");
        assert_eq!(s.port, Some(8080));
        assert_eq!(
            s.command,
            Some(Command::Argv(vec![
                "node".into(),
                "/srv/api/index.js".into()
            ]))
        );
        assert_eq!(
            s.secret_env.get("DB_PASSWORD").map(String::as_str),
            Some("x")
        );
        assert!(s.env.is_empty(), "PATH is the shell's, not the app's");
        assert!(parse("{}").is_err());
    }
}
