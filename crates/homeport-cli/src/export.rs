//! `homeport export systemd|launchd APP/ENV`: the environment's services as units for a service
//! manager, for running the app without Homeport (on a server that has no Homeport, or to leave
//! it). What translates: commands, working folders, environment, restart policy, stop signal and
//! timeout, start order from `depends_on` (systemd), where output goes. What does not: health
//! checks, deploys, backups, blue-green switches and Homeport's log files — each unit says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use homeport_config::{Config, RestartMode, ServiceSpec};

use crate::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// systemd user units: one .service per service and a .target for the environment
    Systemd,
    /// launchd LaunchAgents: one .plist per service
    Launchd,
}

/// One file of the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub file: String,
    pub text: String,
    /// Holds secrets: written 0600, never printed.
    pub secret: bool,
}

/// `APP-ENV-SERVICE` (a blue-green instance `web@blue` is exported as `web`).
fn unit_base(s: &ServiceSpec) -> String {
    format!(
        "{}-{}-{}",
        s.key.app,
        s.key.env,
        s.slot
            .as_ref()
            .map_or(s.key.service.as_str(), |sl| sl.service.as_str())
    )
}

fn signal_name(sig: i32) -> String {
    ["HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM"]
        .into_iter()
        .find(|n| homeport_config::parse_signal(n) == Some(sig))
        .map_or_else(|| format!("{sig}"), |n| format!("SIG{n}"))
}

/// One word of a systemd command line or assignment: `%` doubled (specifiers), `$` doubled in
/// commands (variable expansion), quoted when it has spaces, quotes or backslashes.
fn sd_word(s: &str, command: bool) -> String {
    let mut v = s.replace('%', "%%");
    if command {
        v = v.replace('$', "$$");
    }
    if v.is_empty() || v.contains([' ', '\t', '"', '\'', '\\', ';']) {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        v
    }
}

fn secs(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The services of `app/env`, blue-green services once (their blue instance).
fn services_of<'a>(config: &'a Config, app: &str, env: &str) -> Vec<&'a ServiceSpec> {
    config
        .services
        .iter()
        .filter(|s| s.key.app == app && s.key.env == env)
        .filter(|s| s.slot.as_ref().is_none_or(|sl| sl.slot == "blue"))
        .collect()
}

/// The systemd units of `app/env`: `APP-ENV.target` and one `APP-ENV-SERVICE.service` each,
/// plus a `.env` file per service with secret variables.
pub fn systemd(config: &Config, app: &str, env: &str) -> Vec<Unit> {
    let services = services_of(config, app, env);
    let target = format!("{app}-{env}.target");
    let names: BTreeMap<&homeport_types::ServiceKey, String> =
        services.iter().map(|s| (&s.key, unit_base(s))).collect();
    let mut out = Vec::new();
    let wants: Vec<String> = services
        .iter()
        .map(|s| format!("{}.service", unit_base(s)))
        .collect();
    out.push(Unit {
        file: target.clone(),
        text: format!(
            "# {app}/{env}, exported by `homeport export systemd` from {config}.\n\
             # Start everything: systemctl --user enable --now {target}\n\
             [Unit]\n\
             Description={app}/{env}\n\
             Wants={wants}\n\
             \n\
             [Install]\n\
             WantedBy=default.target\n",
            config = config.file.display(),
            wants = wants.join(" "),
        ),
        secret: false,
    });
    for s in services {
        let base = unit_base(s);
        let mut u = format!(
            "# {key}, exported by `homeport export systemd` from {config}.\n\
             # Without Homeport: no health checks, deploys, backups or blue-green switches. Output\n\
             # goes to the journal (journalctl --user -u {base}), not to Homeport's log file.\n",
            key = s.key,
            config = config.file.display(),
        );
        if let Some(h) = &s.health {
            u.push_str(&format!(
                "# Homeport checked its health ({:?} every {} s); systemd does not.\n",
                h.probe,
                h.interval.as_secs()
            ));
        }
        if let Some(sl) = &s.slot {
            u.push_str(&format!(
                "# A blue-green service: exported as its blue instance on port {}; Homeport served port {} in front of it.\n",
                s.port.unwrap_or_default(),
                sl.public_port
            ));
        }
        u.push_str("[Unit]\n");
        u.push_str(&format!("Description={}\n", s.key));
        u.push_str(&format!("PartOf={target}\n"));
        let deps: Vec<String> = s
            .depends_on
            .iter()
            .filter_map(|d| names.get(d).map(|n| format!("{n}.service")))
            .collect();
        if !deps.is_empty() {
            // depends_on: started first, and this one goes when they go.
            u.push_str(&format!("Requires={}\n", deps.join(" ")));
            u.push_str(&format!("After={}\n", deps.join(" ")));
        }
        let r = &s.restart;
        if let Some(max) = r.max_failures {
            u.push_str(&format!(
                "StartLimitIntervalSec={}\nStartLimitBurst={max}\n",
                secs(r.window)
            ));
        } else {
            u.push_str("StartLimitIntervalSec=0\n");
        }
        u.push_str("\n[Service]\nType=exec\n");
        u.push_str(&format!(
            "WorkingDirectory={}\n",
            sd_word(&s.cwd.display().to_string(), false)
        ));
        let argv: Vec<String> = s.command.argv().iter().map(|a| sd_word(a, true)).collect();
        u.push_str(&format!("ExecStart={}\n", argv.join(" ")));
        for (k, v) in s.env.iter().filter(|(k, _)| !s.secret_env.contains(*k)) {
            u.push_str(&format!(
                "Environment={}\n",
                sd_word(&format!("{k}={v}"), false)
            ));
        }
        for f in &s.env_files {
            u.push_str(&format!(
                "EnvironmentFile=-{}\n",
                sd_word(&f.display().to_string(), false)
            ));
        }
        let secrets: Vec<(&String, &String)> = s
            .env
            .iter()
            .filter(|(k, _)| s.secret_env.contains(*k))
            .collect();
        if !secrets.is_empty() {
            u.push_str(&format!("EnvironmentFile=%E/{app}-{env}/{base}.env\n"));
            out.push(Unit {
                file: format!("{base}.env"),
                text: secrets
                    .iter()
                    .map(|(k, v)| format!("{k}={}\n", sd_word(v, false)))
                    .collect(),
                secret: true,
            });
        }
        let restart = match r.mode {
            RestartMode::Never => "no",
            RestartMode::OnFailure => "on-failure",
            RestartMode::Always => "always",
        };
        u.push_str(&format!(
            "Restart={restart}\nRestartSec={}\n",
            secs(r.backoff_min)
        ));
        // The whole process group gets the stop signal, as under Homeport.
        u.push_str(&format!(
            "KillMode=control-group\nKillSignal={}\nTimeoutStopSec={}\n",
            signal_name(s.stop_signal),
            secs(s.stop_timeout)
        ));
        u.push_str(&format!(
            "StandardOutput=journal\nStandardError=journal\nSyslogIdentifier={base}\n"
        ));
        u.push_str(&format!("\n[Install]\nWantedBy={target}\n"));
        out.push(Unit {
            file: format!("{base}.service"),
            text: u,
            secret: false,
        });
    }
    out
}

/// The launchd LaunchAgents of `app/env`: one plist per service (label `APP.ENV.SERVICE`).
pub fn launchd(config: &Config, app: &str, env: &str) -> Vec<Unit> {
    use plist::{Dictionary, Value};
    let mut out = Vec::new();
    for s in services_of(config, app, env) {
        let label = unit_base(s).replace('-', ".");
        let mut d = Dictionary::new();
        d.insert("Label".into(), Value::String(label.clone()));
        d.insert(
            "ProgramArguments".into(),
            Value::Array(s.command.argv().into_iter().map(Value::String).collect()),
        );
        d.insert(
            "WorkingDirectory".into(),
            Value::String(s.cwd.display().to_string()),
        );
        let mut env_d = Dictionary::new();
        for (k, v) in &s.env {
            env_d.insert(k.clone(), Value::String(v.clone()));
        }
        d.insert("EnvironmentVariables".into(), Value::Dictionary(env_d));
        d.insert("RunAtLoad".into(), Value::Boolean(s.autostart));
        let keep = match s.restart.mode {
            RestartMode::Never => Value::Boolean(false),
            RestartMode::Always => Value::Boolean(true),
            RestartMode::OnFailure => {
                let mut k = Dictionary::new();
                k.insert("SuccessfulExit".into(), Value::Boolean(false));
                Value::Dictionary(k)
            }
        };
        d.insert("KeepAlive".into(), keep);
        d.insert(
            "ThrottleInterval".into(),
            Value::Integer((s.restart.backoff_min.as_secs().max(1) as i64).into()),
        );
        d.insert(
            "ExitTimeOut".into(),
            Value::Integer((s.stop_timeout.as_secs().max(1) as i64).into()),
        );
        let log = config
            .agent
            .data_dir
            .join("logs")
            .join(app)
            .join(env)
            .join(format!("{}.log", unit_base(s)));
        d.insert(
            "StandardOutPath".into(),
            Value::String(log.display().to_string()),
        );
        d.insert(
            "StandardErrorPath".into(),
            Value::String(log.display().to_string()),
        );
        let mut xml = Vec::new();
        let _ = Value::Dictionary(d).to_writer_xml(&mut xml);
        let mut text = String::from_utf8_lossy(&xml).into_owned();
        // A comment after the XML declaration: what launchd does not do.
        let note = format!(
            "\n<!-- {}, exported by `homeport export launchd` from {}. launchd has no start order: \
             services listed in depends_on ({}) start at the same time, so this one must retry \
             until they answer. No health checks, deploys or backups without Homeport. -->",
            s.key,
            config.file.display(),
            if s.depends_on.is_empty() {
                "none".to_owned()
            } else {
                s.depends_on
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        if let Some(i) = text.find("?>") {
            text.insert_str(i + 2, &note);
        }
        text.push('\n');
        out.push(Unit {
            file: format!("{label}.plist"),
            text,
            // Its environment is inside: secrets too.
            secret: !s.secret_env.is_empty(),
        });
    }
    out
}

pub fn run(
    config_path: &Path,
    format: Format,
    target: &str,
    out: Option<&Path>,
) -> Result<(), Failure> {
    let (app, env) = target
        .split_once('/')
        .filter(|(a, e)| !a.is_empty() && !e.is_empty() && !e.contains('/'))
        .ok_or_else(|| {
            Failure::new(
                2,
                format!("{target:?} is not an environment: write APP/ENV"),
            )
        })?;
    let config = homeport_config::load(config_path).map_err(|d| {
        for item in &d.0 {
            eprintln!("{item}");
        }
        Failure::new(2, format!("the config has {} problem(s)", d.0.len()))
    })?;
    if !config.envs.iter().any(|e| e.app == app && e.env == env) {
        return Err(Failure::new(
            4,
            format!("no environment {app}/{env} in {}", config_path.display()),
        ));
    }
    let units = match format {
        Format::Systemd => systemd(&config, app, env),
        Format::Launchd => launchd(&config, app, env),
    };
    let Some(dir) = out else {
        for u in &units {
            if u.secret {
                outln!(
                    "# ---- {} (secret variables: written only with --out, 0600) ----\n",
                    u.file
                )?;
                continue;
            }
            outln!("# ---- {} ----\n{}", u.file, u.text)?;
        }
        return Ok(());
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::new(1, format!("cannot create {}: {e}", dir.display())))?;
    let mut written: Vec<PathBuf> = Vec::new();
    for u in &units {
        let path = dir.join(&u.file);
        homeport_fs::atomic_write(
            &path,
            u.text.as_bytes(),
            if u.secret { 0o600 } else { 0o644 },
        )
        .map_err(|e| Failure::new(1, format!("cannot write {}: {e}", path.display())))?;
        written.push(path);
    }
    outln!("Wrote {} file(s) to {}:", written.len(), dir.display())?;
    for p in &written {
        outln!("  {}", p.display())?;
    }
    match format {
        Format::Systemd => {
            let envs: Vec<&Unit> = units.iter().filter(|u| u.secret).collect();
            if !envs.is_empty() {
                outln!(
                    "Secret variables are in the .env file(s); put them in ~/.config/{app}-{env}/ (the units read %E/{app}-{env}/)"
                )?;
            }
            outln!(
                "Install: cp {dir}/*.service {dir}/*.target ~/.config/systemd/user/ && systemctl --user daemon-reload && systemctl --user enable --now {app}-{env}.target",
                dir = dir.display()
            )
            .map(drop)
        }
        Format::Launchd => outln!(
            "Install: cp {}/*.plist ~/Library/LaunchAgents/ && launchctl bootstrap gui/$(id -u) ~/Library/LaunchAgents/FILE.plist",
            dir.display()
        )
        .map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = r#"
[agent]
data_dir = "/srv/hp"

[apps.shop.env.production]
env = { GREETING = "50% off $now" }
secret_env = { API_KEY = "s3cr3t" }

[apps.shop.env.production.services.db]
command = ["/bin/cat", "--port", "{port}"]
port = 6390
stop_signal = "INT"

[apps.shop.env.production.services.web]
command = "/bin/echo --port {port} --name 'my shop'"
port = 8080
depends_on = ["db"]
restart = { policy = "always", backoff_min = "2s", max_failures = 3, window = "1m" }
stop_timeout = "20s"
"#;
        homeport_config::load_str(Path::new("/home/a/.config/homeport/homeport.toml"), text)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn systemd_units_carry_order_restart_environment_and_logs() {
        let units = systemd(&config(), "shop", "production");
        let files: Vec<&str> = units.iter().map(|u| u.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "shop-production.target",
                "shop-production-db.env",
                "shop-production-db.service",
                "shop-production-web.env",
                "shop-production-web.service"
            ]
        );
        let web = &units[4].text;
        assert!(
            web.contains("Requires=shop-production-db.service\nAfter=shop-production-db.service\n"),
            "{web}"
        );
        assert!(
            web.contains("ExecStart=/bin/echo --port 8080 --name \"my shop\"\n"),
            "{web}"
        );
        assert!(
            web.contains("Environment=\"GREETING=50%% off $now\"\n"),
            "{web}"
        );
        assert!(web.contains("Restart=always\nRestartSec=2\n"));
        assert!(web.contains("StartLimitIntervalSec=60\nStartLimitBurst=3\n"));
        assert!(web.contains("TimeoutStopSec=20\n") && web.contains("KillSignal=SIGTERM\n"));
        assert!(web.contains("SyslogIdentifier=shop-production-web\n"));
        assert!(!web.contains("s3cr3t"), "secrets stay out of the unit");
        assert!(units[3].secret && units[3].text.contains("API_KEY=s3cr3t"));
        assert!(units[2].text.contains("KillSignal=SIGINT\n"));
        assert!(
            units[0]
                .text
                .contains("Wants=shop-production-db.service shop-production-web.service")
        );
    }

    #[test]
    fn launchd_plists_parse_and_keep_services_alive() {
        let units = launchd(&config(), "shop", "production");
        assert_eq!(units.len(), 2);
        let web = &units[1];
        assert_eq!(web.file, "shop.production.web.plist");
        assert!(web.secret, "its environment holds a secret");
        let v =
            plist::Value::from_reader_xml(web.text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let d = v.as_dictionary().unwrap_or_else(|| panic!("a dictionary"));
        assert_eq!(
            d.get("KeepAlive").and_then(plist::Value::as_boolean),
            Some(true)
        );
        let args: Vec<&str> = d
            .get("ProgramArguments")
            .and_then(plist::Value::as_array)
            .map(|a| a.iter().filter_map(plist::Value::as_string).collect())
            .unwrap_or_default();
        assert_eq!(args, ["/bin/echo", "--port", "8080", "--name", "my shop"]);
        assert!(web.text.contains("depends_on (shop/production/db)"));
    }

    #[test]
    fn systemd_words_are_escaped() {
        assert_eq!(sd_word("a b", false), "\"a b\"");
        assert_eq!(sd_word("$HOME", true), "$$HOME");
        assert_eq!(sd_word("100%", false), "100%%");
        assert_eq!(sd_word("say \"hi\"", true), "\"say \\\"hi\\\"\"");
        assert_eq!(sd_word("", true), "\"\"");
    }
}
