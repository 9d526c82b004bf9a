//! A docker-compose file (the Compose Specification). Homeport runs local commands, not
//! containers: a service with a `command` (or `entrypoint`) becomes a service that runs it on
//! this computer, in its build folder; its published port, environment, env files, health check,
//! restart policy, stop settings and dependencies carry over. A service that only names an image
//! (a database, a cache) is listed with what to do instead, as is every key with no equivalent
//! (volumes, networks, …).

use std::path::Path;

use yaml_serde::{Mapping, Value as Yaml};

use super::{Command, Import, Service, is_secret, literal, name};

/// Keys of a compose service that are mapped (or consciously noted) below.
const KNOWN: &[&str] = &[
    "command",
    "entrypoint",
    "image",
    "build",
    "ports",
    "environment",
    "env_file",
    "healthcheck",
    "depends_on",
    "restart",
    "working_dir",
    "stop_grace_period",
    "stop_signal",
    "container_name",
];

fn s(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(x) => Some(x.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn list(v: Option<&Yaml>) -> Vec<String> {
    match v {
        Some(Yaml::Sequence(items)) => items.iter().filter_map(s).collect(),
        Some(Yaml::String(x)) => shlex::split(x).unwrap_or_else(|| vec![x.clone()]),
        _ => Vec::new(),
    }
}

pub fn parse(text: &str, file: &Path) -> Result<Import, String> {
    let doc: Yaml = yaml_serde::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let Some(services) = doc.get("services").and_then(Yaml::as_mapping) else {
        return Err("no `services` in this compose file".into());
    };
    let dir = file
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut import = Import {
        app: doc
            .get("name")
            .and_then(s)
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "app".to_owned()),
        ..Import::default()
    };
    for key in ["volumes", "networks", "secrets", "configs"] {
        if doc.get(key).is_some() {
            import.unmapped.push(format!(
                "top-level `{key}`: containers' {key} have no meaning outside Docker"
            ));
        }
    }
    let runnable: Vec<String> = services
        .iter()
        .filter(|(_, v)| v.get("command").is_some() || v.get("entrypoint").is_some())
        .filter_map(|(k, _)| s(k))
        .collect();
    for (k, v) in services {
        let Some(svc_name) = s(k) else { continue };
        let Some(m) = v.as_mapping() else { continue };
        if !runnable.contains(&svc_name) {
            let image = v
                .get("image")
                .and_then(s)
                .unwrap_or_else(|| "(built)".into());
            import.unmapped.push(format!(
                "service {svc_name}: runs the image {image} with no command of its own; run it \
                 as a local program (e.g. a database installed on this computer) or keep it in \
                 compose"
            ));
            continue;
        }
        import.services.push(service(&svc_name, m, &dir, &runnable));
    }
    Ok(import)
}

fn service(svc_name: &str, m: &Mapping, dir: &Path, runnable: &[String]) -> Service {
    let get = |k: &str| m.get(k);
    let mut svc = Service {
        name: name(svc_name),
        ..Service::default()
    };

    // Ports: the published (host) one is where it listens here.
    let mut ports: Vec<(u16, u16)> = Vec::new();
    if let Some(Yaml::Sequence(items)) = get("ports") {
        for p in items {
            let pair = match p {
                Yaml::Mapping(long) => {
                    let target = long.get("target").and_then(s).and_then(|x| x.parse().ok());
                    let published = long
                        .get("published")
                        .and_then(s)
                        .and_then(|x| x.split('-').next().and_then(|x| x.parse().ok()));
                    target.map(|t| (published.unwrap_or(t), t))
                }
                other => s(other).and_then(|short| {
                    let short = short.split('/').next().unwrap_or_default().to_owned();
                    let parts: Vec<&str> = short.rsplitn(3, ':').collect();
                    let container = parts.first()?.split('-').next()?.parse().ok()?;
                    let host = parts
                        .get(1)
                        .and_then(|h| h.split('-').next())
                        .and_then(|h| h.parse().ok())
                        .unwrap_or(container);
                    Some((host, container))
                }),
            };
            if let Some(pair) = pair {
                ports.push(pair);
            }
        }
    }
    if let Some((host, container)) = ports.first().copied() {
        svc.port = Some(host);
        if host != container {
            svc.unmapped.push(format!(
                "ports: inside the container it listened on {container}, published as {host}; \
                 here it must listen on {host} itself (`{{port}}` in the command, or $PORT)"
            ));
        }
    }
    for (host, _) in ports.iter().skip(1) {
        svc.unmapped.push(format!(
            "ports: {host} is another published port; add it as `ports = {{ NAME = {host} }}`"
        ));
    }

    // The command, with the port where compose would have interpolated ${PORT}.
    let mut argv = list(get("entrypoint"));
    argv.extend(list(get("command")));
    let mut interpolated = Vec::new();
    let argv: Vec<String> = argv
        .iter()
        .map(|a| {
            let mut a = literal(a);
            if svc.port.is_some() {
                a = a.replace("${{PORT}}", "{port}").replace("$PORT", "{port}");
            }
            if a.contains('$') {
                interpolated.push(a.clone());
            }
            a
        })
        .collect();
    if !interpolated.is_empty() {
        svc.unmapped.push(format!(
            "compose fills ${{VAR}} from your shell when it starts; Homeport passes arguments as \
             they are: {}",
            interpolated.join(" ")
        ));
    }
    svc.command = Some(Command::Argv(argv));
    if let Some(image) = get("image").and_then(s) {
        svc.unmapped.push(format!(
            "image {image}: the command runs on this computer instead, so what it needs must be \
             installed here"
        ));
    }

    // Where it runs: the build folder (the source), not the container's working_dir.
    let context = match get("build") {
        Some(Yaml::String(c)) => Some(c.clone()),
        Some(Yaml::Mapping(b)) => b.get("context").and_then(s),
        _ => None,
    };
    if let Some(c) = context {
        let path: std::path::PathBuf = dir
            .join(c)
            .components()
            .filter(|c| *c != std::path::Component::CurDir)
            .collect();
        svc.cwd = Some(literal(&path.display().to_string()));
    } else {
        svc.cwd = Some(literal(&dir.display().to_string()));
    }
    if let Some(w) = get("working_dir").and_then(s) {
        svc.unmapped.push(format!(
            "working_dir {w} is a path inside the container; it runs in {} here",
            svc.cwd.clone().unwrap_or_default()
        ));
    }

    // Environment: a map or a list of KEY=VALUE; a bare KEY takes the value from the shell.
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    match get("environment") {
        Some(Yaml::Mapping(env)) => {
            for (k, v) in env {
                if let Some(k) = s(k) {
                    pairs.push((k, s(v)));
                }
            }
        }
        Some(Yaml::Sequence(items)) => {
            for item in items.iter().filter_map(s) {
                match item.split_once('=') {
                    Some((k, v)) => pairs.push((k.to_owned(), Some(v.to_owned()))),
                    None => pairs.push((item, None)),
                }
            }
        }
        _ => {}
    }
    for (k, v) in pairs {
        match v {
            Some(v) if k == "PORT" && svc.port.is_some() => {
                let _ = v;
            }
            Some(v) => {
                let v = literal(&v);
                if is_secret(&k) {
                    svc.secret_env.insert(k, v);
                } else {
                    svc.env.insert(k, v);
                }
            }
            None => svc.unmapped.push(format!(
                "environment: {k} has no value (compose takes it from your shell); set it here"
            )),
        }
    }
    match get("env_file") {
        Some(Yaml::String(f)) => svc
            .env_file
            .push(literal(&dir.join(f).display().to_string())),
        Some(Yaml::Sequence(items)) => {
            for f in items {
                let path = match f {
                    Yaml::Mapping(m) => m.get("path").and_then(s),
                    other => s(other),
                };
                if let Some(p) = path {
                    svc.env_file
                        .push(literal(&dir.join(p).display().to_string()));
                }
            }
        }
        _ => {}
    }

    // Health check: the test command, run on this computer.
    if let Some(Yaml::Mapping(h)) = get("healthcheck") {
        let disabled = h.get("disable").and_then(Yaml::as_bool) == Some(true);
        let test = match h.get("test") {
            Some(Yaml::String(line)) => Some(vec!["/bin/sh".into(), "-c".into(), line.clone()]),
            Some(Yaml::Sequence(items)) => {
                let words: Vec<String> = items.iter().filter_map(s).collect();
                match words.first().map(String::as_str) {
                    Some("CMD") => Some(words[1..].to_vec()),
                    Some("CMD-SHELL") => {
                        Some(vec!["/bin/sh".into(), "-c".into(), words[1..].join(" ")])
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let (false, Some(test)) = (disabled, test.filter(|t| !t.is_empty())) {
            let argv: toml_edit::Array = test.iter().map(|a| literal(a)).collect();
            let timing = ["interval", "timeout", "start_period"]
                .iter()
                .filter_map(|k| h.get(*k).and_then(s).map(|v| ((*k).to_owned(), v)))
                .collect();
            let mut timing: Vec<(String, String)> = timing;
            if let Some(r) = h.get("retries").and_then(s) {
                timing.push(("retries".into(), r));
            }
            svc.health = Some(super::Health {
                probe: "command".into(),
                value: toml_edit::Value::Array(argv),
                timing,
            });
        }
    }

    // Restart policy.
    if let Some(r) = get("restart").and_then(s) {
        let (policy, max) = match r.split_once(':') {
            Some((p, n)) => (p.to_owned(), n.parse::<i64>().ok()),
            None => (r.clone(), None),
        };
        let policy = match policy.as_str() {
            "no" => Some("never"),
            "always" | "unless-stopped" => Some("always"),
            "on-failure" => Some("on-failure"),
            _ => None,
        };
        match policy {
            Some(p) => {
                svc.restart.push(("policy".into(), p.into()));
                if let Some(n) = max {
                    svc.restart.push(("max_failures".into(), n.into()));
                }
            }
            None => svc
                .unmapped
                .push(format!("restart: {r} is not a compose policy")),
        }
    }
    if let Some(g) = get("stop_grace_period").and_then(s) {
        svc.stop_timeout = Some(g);
    }
    if get("stop_signal").is_some() {
        svc.unmapped
            .push("stop_signal: set `stop_signal` by hand if it is not SIGTERM".into());
    }

    // Dependencies on other services that are imported too.
    let deps: Vec<String> = match get("depends_on") {
        Some(Yaml::Sequence(items)) => items.iter().filter_map(s).collect(),
        Some(Yaml::Mapping(m)) => m.keys().filter_map(s).collect(),
        _ => Vec::new(),
    };
    for d in deps {
        if runnable.contains(&d) {
            svc.depends_on.push(name(&d));
        } else {
            svc.unmapped.push(format!(
                "depends_on {d}: not imported (it runs an image), so not a dependency here"
            ));
        }
    }

    for k in m.keys().filter_map(s) {
        if !KNOWN.contains(&k.as_str()) {
            svc.unmapped
                .push(format!("{k}: no equivalent outside a container"));
        }
    }
    svc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_port_forms_and_list_environment() {
        let text = "services:\n  api:\n    build: ./api\n    command: [\"./server\", \"--port\", \"${PORT}\"]\n    ports: [\"127.0.0.1:8080:3000/tcp\", {target: 9000, published: 9100}]\n    environment: [\"MODE=prod\", \"SECRET_TOKEN=x\", \"FROM_SHELL\"]\n  db:\n    image: postgres:16\n";
        let i = parse(text, Path::new("/nowhere/docker-compose.yml")).unwrap_or_default();
        assert_eq!(i.services.len(), 1);
        let api = &i.services[0];
        assert_eq!(api.port, Some(8080));
        assert_eq!(
            api.command,
            Some(Command::Argv(vec![
                "./server".into(),
                "--port".into(),
                "{port}".into()
            ]))
        );
        assert_eq!(api.env.get("MODE").map(String::as_str), Some("prod"));
        assert!(api.secret_env.contains_key("SECRET_TOKEN"));
        assert!(api.unmapped.iter().any(|u| u.contains("FROM_SHELL")));
        assert!(api.unmapped.iter().any(|u| u.contains("9100")));
        assert!(i.unmapped.iter().any(|u| u.contains("postgres:16")));
    }
}
