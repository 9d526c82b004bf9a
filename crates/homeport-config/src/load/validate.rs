//! Step 4: rules that span several services: names, commands, ports, dependencies, working
//! folders, shared databases.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;

use homeport_types::ServiceKey;
use toml::Spanned;

use super::parse::*;
use super::resolve::*;
use crate::diag::Sink;
use crate::model::*;
use crate::raw::*;

pub(super) fn validate(tree: &Tree, config: &Config, sink: &mut Sink<'_>) {
    let origins = Origins {
        service: tree
            .apps
            .iter()
            .flat_map(|a| {
                a.envs
                    .iter()
                    .flat_map(move |e| e.services.iter().map(move |s| (a, e, s)))
            })
            .map(|(a, e, s)| {
                (
                    ServiceKey::new(a.name.get_ref(), e.name.get_ref(), s.name.get_ref()),
                    s.name.span(),
                )
            })
            .collect(),
    };
    check_names(tree, sink);
    check_commands(tree, sink);
    check_ports(tree, config, sink);
    check_dependencies(tree, sink);
    check_cwds(tree, config, &origins, sink);
    check_databases(tree, config, sink);
    check_router(tree, config, sink);
}

/// The router's names and the web service each environment routes to.
pub(super) fn check_router(tree: &Tree, config: &Config, sink: &mut Sink<'_>) {
    if let Some(p) = &tree.agent.https_port
        && config.agent.router_port == 0
    {
        sink.push(
            Some(p.span()),
            "agent.https_port",
            "HTTPS is served by the router, which `router_port = 0` turns off; give the router a port".to_owned(),
        );
    }
    // name -> the environment that claims it first
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for app in &tree.apps {
        for env in &app.envs {
            let who = format!("{}/{}", app.name.get_ref(), env.name.get_ref());
            for n in default_names(app.name.get_ref(), env.name.get_ref()) {
                owners.insert(n, who.clone());
            }
        }
    }
    for app in &tree.apps {
        for env in &app.envs {
            let who = format!("{}/{}", app.name.get_ref(), env.name.get_ref());
            if let Some(w) = &env.raw.web {
                let field = format!("{}.web", env.path);
                match env
                    .services
                    .iter()
                    .find(|s| s.name.get_ref() == w.get_ref())
                {
                    None => {
                        let names: Vec<&str> = env
                            .services
                            .iter()
                            .map(|s| s.name.get_ref().as_str())
                            .collect();
                        sink.push(
                            Some(w.span()),
                            &field,
                            format!(
                                "{who} has no service {:?}; its services: {}",
                                w.get_ref(),
                                names.join(", ")
                            ),
                        );
                    }
                    Some(s) if s.raw.port.is_none() => sink.push(
                        Some(w.span()),
                        &field,
                        format!(
                            "{who}/{} has no `port` for the router to send requests to",
                            w.get_ref()
                        ),
                    ),
                    Some(_) => {}
                }
            }
            let web = config
                .envs
                .iter()
                .find(|e| &e.app == app.name.get_ref() && &e.env == env.name.get_ref())
                .and_then(|e| e.web.clone());
            for h in &env.raw.hostnames {
                let field = format!("{}.hostnames", env.path);
                let name = h.get_ref().trim_end_matches('.').to_ascii_lowercase();
                if let Err(why) = check_hostname(&name) {
                    sink.push(Some(h.span()), &field, format!("{:?}: {why}", h.get_ref()));
                    continue;
                }
                if web.is_none() {
                    sink.push(
                        Some(h.span()),
                        &field,
                        format!(
                            "{who} has no web service for {name} to reach: set `web = \"SERVICE\"` (several of its services have a port, or none has)"
                        ),
                    );
                }
                match owners.get(&name) {
                    Some(other) if other != &who => sink.push(
                        Some(h.span()),
                        &field,
                        format!("{name} already names {other}"),
                    ),
                    _ => {
                        owners.insert(name, who.clone());
                    }
                }
            }
        }
    }
}

/// The names the router gives an environment without configuration (the router crate's rule).
pub(super) fn default_names(app: &str, env: &str) -> Vec<String> {
    let (app, env) = (app.to_ascii_lowercase(), env.to_ascii_lowercase());
    let mut names = vec![format!("{env}.{app}.localhost")];
    if env == "production" {
        names.push(format!("{app}.localhost"));
    }
    names
}

/// Whether a configured host name can route: a DNS name of two labels or more, no port, no
/// wildcard.
fn check_hostname(name: &str) -> Result<(), String> {
    if name.contains(':') {
        return Err(
            "write the name without a port (the router's port is `agent.router_port`)".into(),
        );
    }
    if name.contains('*') {
        return Err("wildcard names are not supported; list each name".into());
    }
    if name == "localhost" {
        return Err("`localhost` itself cannot name an environment".into());
    }
    let labels_ok = name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !labels_ok {
        return Err("not a host name: letters, digits and `-`, between dots".into());
    }
    if !name.contains('.') {
        return Err(format!(
            "one label is not enough; e.g. {name}.localhost or {name}.test"
        ));
    }
    Ok(())
}

pub(super) fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) fn check_names(tree: &Tree, sink: &mut Sink<'_>) {
    let mut check = |name: &Spanned<String>, field: String| {
        if !valid_name(name.get_ref()) {
            sink.push(
                Some(name.span()),
                &field,
                format!(
                    "invalid name {:?}; expected letters, digits, `-` or `_`",
                    name.get_ref()
                ),
            );
        }
    };
    for app in &tree.apps {
        check(&app.name, format!("apps.{}", app.name.get_ref()));
        for env in &app.envs {
            check(&env.name, env.path.clone());
            for svc in &env.services {
                check(&svc.name, svc.path.clone());
            }
        }
    }
}

pub(super) fn services(tree: &Tree) -> impl Iterator<Item = (&AppNode, &EnvNode, &ServiceNode)> {
    tree.apps.iter().flat_map(|a| {
        a.envs
            .iter()
            .flat_map(move |e| e.services.iter().map(move |s| (a, e, s)))
    })
}

pub(super) fn check_commands(tree: &Tree, sink: &mut Sink<'_>) {
    for (_, _, svc) in services(tree) {
        let empty = match svc.raw.command.get_ref() {
            RawCommand::Line(l) => l.trim().is_empty(),
            RawCommand::Argv(v) => v.first().is_none_or(|a| a.trim().is_empty()),
        };
        if empty {
            sink.push(
                Some(svc.raw.command.span()),
                &format!("{}.command", svc.path),
                "the command is empty; expected a program to run",
            );
        }
    }
}

/// Who claims a port or a database: (user, field, span).
type Claim = (String, String, Range<usize>);

pub(super) fn check_ports(tree: &Tree, config: &Config, sink: &mut Sink<'_>) {
    // port -> every (user, field, span) that claims it
    let mut users: BTreeMap<u16, Vec<Claim>> = BTreeMap::new();
    if let Some(p) = &tree.agent.port
        && config.agent.port != 0
    {
        users.entry(config.agent.port).or_default().push((
            "the agent".into(),
            "agent.port".into(),
            p.span(),
        ));
    }
    for (port, who, field, raw) in [
        (
            config.agent.router_port,
            "the router",
            "agent.router_port",
            &tree.agent.router_port,
        ),
        (
            config.agent.https_port.unwrap_or(0),
            "the router's HTTPS",
            "agent.https_port",
            &tree.agent.https_port,
        ),
    ] {
        if let Some(p) = raw
            && port != 0
        {
            users
                .entry(port)
                .or_default()
                .push((who.into(), field.into(), p.span()));
        }
    }
    for (app, env, svc) in services(tree) {
        let who = format!(
            "{}/{}/{}",
            app.name.get_ref(),
            env.name.get_ref(),
            svc.name.get_ref()
        );
        let claims = svc
            .raw
            .port
            .iter()
            .map(|p| (p, format!("{}.port", svc.path)))
            .chain(
                svc.raw
                    .ports
                    .iter()
                    .map(|(n, p)| (p, format!("{}.ports.{n}", svc.path))),
            );
        for (p, field) in claims {
            if let Ok(port) = u16::try_from(*p.get_ref()) {
                users
                    .entry(port)
                    .or_default()
                    .push((who.clone(), field, p.span()));
            }
        }
    }
    for app in &tree.apps {
        for env in &app.envs {
            for (name, raw) in &env.raw.databases {
                if let RawDatabase::Server(server) = raw.get_ref()
                    && server.url.is_none()
                    && let Some(p) = server.port
                    && let Ok(port) = u16::try_from(p)
                {
                    users.entry(port).or_default().push((
                        format!(
                            "database {name} of {}/{}",
                            app.name.get_ref(),
                            env.name.get_ref()
                        ),
                        format!("{}.databases.{name}.port", env.path),
                        raw.span(),
                    ));
                }
                // Its service is `db-NAME`: a service of that name would be ambiguous.
                let service = format!("db-{name}");
                if let Some(svc) = env.services.iter().find(|s| s.name.get_ref() == &service)
                    && matches!(raw.get_ref(), RawDatabase::Server(s) if s.url.is_none())
                {
                    sink.push(
                        Some(svc.name.span()),
                        &svc.path,
                        format!(
                            "the service name {service} is taken by the server of database {name}; rename one"
                        ),
                    );
                }
            }
        }
    }
    for (port, claims) in users {
        if claims.len() < 2 {
            continue;
        }
        for (i, (who, field, span)) in claims.iter().enumerate() {
            let others: Vec<&str> = claims
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, c)| c.0.as_str())
                .collect();
            sink.push(
                Some(span.clone()),
                field,
                format!("port {port} of {who} is also used by {}", others.join(", ")),
            );
        }
    }
}

pub(super) fn check_dependencies(tree: &Tree, sink: &mut Sink<'_>) {
    for app in &tree.apps {
        for env in &app.envs {
            let names: BTreeSet<&str> = env
                .services
                .iter()
                .map(|s| s.name.get_ref().as_str())
                .collect();
            let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for svc in &env.services {
                let field = format!("{}.depends_on", svc.path);
                for dep in &svc.raw.depends_on {
                    let d = dep.get_ref().as_str();
                    if d == svc.name.get_ref() {
                        sink.push(
                            Some(dep.span()),
                            &field,
                            "a service cannot depend on itself",
                        );
                    } else if !names.contains(d) {
                        let known: Vec<&str> = names.iter().copied().collect();
                        sink.push_help(
                            Some(dep.span()),
                            &field,
                            format!("unknown service `{d}` in {}", env.path),
                            suggest(d, &known),
                        );
                    } else {
                        graph.entry(svc.name.get_ref()).or_default().push(d);
                    }
                }
            }
            if let Some(cycle) = find_cycle(&graph) {
                // Point at the `depends_on` entry that closes the cycle's first step.
                let (first, next) = (cycle.first().copied(), cycle.get(1).copied());
                if let Some(svc) = env
                    .services
                    .iter()
                    .find(|s| Some(s.name.get_ref().as_str()) == first)
                {
                    let span = svc
                        .raw
                        .depends_on
                        .iter()
                        .find(|d| Some(d.get_ref().as_str()) == next)
                        .map_or_else(|| svc.name.span(), |d| d.span());
                    sink.push(
                        Some(span),
                        &format!("{}.depends_on", svc.path),
                        format!("dependency cycle: {}", cycle.join(" → ")),
                    );
                }
            }
        }
    }
}

/// A database path names a file, or a place where one can be created: no control characters
/// (a line break in a path is a trick, never a file name someone meant), not a folder, not under
/// a file. What the file holds is not checked here: a damaged database must not keep the agent
/// (and a restore) from starting; a backup names a file that is not SQLite.
fn check_database_path(written: &str, path: &Path) -> Result<(), String> {
    if let Some(c) = written.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the path has a control character ({:?}); write the database file's path",
            c
        ));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(format!(
            "{} is a folder; name the database file in it",
            path.display()
        )),
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!("{} is not a regular file", path.display())),
        Err(_) => {
            // Missing: the app creates it, and its folders if need be; but not under a file.
            let mut up = path.parent();
            while let Some(dir) = up {
                match std::fs::metadata(dir) {
                    Ok(m) if m.is_dir() => return Ok(()),
                    Ok(_) => {
                        return Err(format!(
                            "{} cannot be created: {} is a file, not a folder",
                            path.display(),
                            dir.display()
                        ));
                    }
                    Err(_) => up = dir.parent(),
                }
            }
            Ok(())
        }
    }
}

/// A cycle in the dependency graph, as a path that starts and ends at the same node.
pub(super) fn find_cycle<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Active,
        Done,
    }
    fn visit<'a>(
        n: &'a str,
        g: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Active) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(n);
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n, Mark::Active);
        stack.push(n);
        for next in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, g, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(n, Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut marks, &mut Vec::new()))
}

pub(super) fn check_cwds(tree: &Tree, config: &Config, origins: &Origins, sink: &mut Sink<'_>) {
    for (_, _, svc) in services(tree) {
        let Some(cwd) = &svc.raw.cwd else { continue };
        let Some(spec) = config
            .services
            .iter()
            .find(|s| origins.service.get(&s.key) == Some(&svc.name.span()))
        else {
            continue;
        };
        // A release or data folder is created by Homeport itself before the service starts.
        if spec.cwd.starts_with(&config.agent.data_dir) || spec.cwd.starts_with(&spec.data_dir) {
            continue;
        }
        if !spec.cwd.is_dir() {
            sink.push(
                Some(cwd.span()),
                &format!("{}.cwd", svc.path),
                format!("working directory {} does not exist", spec.cwd.display()),
            );
        }
    }
}

/// What makes two database paths the same file: the file itself (device and inode) when it
/// exists, else its path with every symbolic link on the way resolved — so a folder symlink,
/// or macOS's /tmp (which is /private/tmp), cannot hide that two environments share one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum FileIdentity {
    Inode(u64, u64),
    Path(std::path::PathBuf),
}

fn file_identity(path: &Path) -> FileIdentity {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(path) {
        return FileIdentity::Inode(m.dev(), m.ino());
    }
    // The deepest folder that exists, resolved; the rest as written.
    let mut rest = Vec::new();
    let mut up = Some(path);
    while let Some(p) = up {
        if let Ok(real) = std::fs::canonicalize(p) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return FileIdentity::Path(out);
        }
        if let Some(name) = p.file_name() {
            rest.push(name.to_owned());
        }
        up = p.parent();
    }
    FileIdentity::Path(path.to_path_buf())
}

pub(super) fn check_databases(tree: &Tree, config: &Config, sink: &mut Sink<'_>) {
    let mut owners: BTreeMap<FileIdentity, Vec<(Claim, &Path)>> = BTreeMap::new();
    for app in &tree.apps {
        for env in &app.envs {
            let Some(spec) = config
                .envs
                .iter()
                .find(|e| &e.app == app.name.get_ref() && &e.env == env.name.get_ref())
            else {
                continue;
            };
            for (name, raw) in &env.raw.databases {
                if let Some(path) = spec.databases.get(name)
                    && let RawDatabase::Path(written) = raw.get_ref()
                {
                    if let Err(why) = check_database_path(written, path) {
                        sink.push(
                            Some(raw.span()),
                            &format!("{}.databases.{name}", env.path),
                            why,
                        );
                    }
                    owners.entry(file_identity(path)).or_default().push((
                        (
                            format!("{}/{}", spec.app, spec.env),
                            format!("{}.databases.{name}", env.path),
                            raw.span(),
                        ),
                        path.as_path(),
                    ));
                }
            }
        }
    }
    for users in owners.values() {
        let envs: BTreeSet<&str> = users.iter().map(|u| u.0.0.as_str()).collect();
        if envs.len() < 2 {
            continue;
        }
        for ((who, field, span), path) in users {
            let others: Vec<String> = users
                .iter()
                .filter(|((e, _, _), _)| e != who)
                .map(|((e, _, _), p)| {
                    if p == path {
                        e.clone()
                    } else {
                        format!("{e} (as {})", p.display())
                    }
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            sink.push(Some(span.clone()), field, format!("database {} of {who} is also written by {}; environments must not share a database", path.display(), others.join(", ")));
        }
    }
}
