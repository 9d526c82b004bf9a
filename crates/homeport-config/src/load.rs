//! The loading steps: read → parse → deserialize each table → resolve (defaults and placeholders)
//! → validate the whole. Each step adds to one [`Sink`] so the user sees every problem at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use homeport_types::ServiceKey;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diag::{Diagnostic, Diagnostics, Sink};
use crate::model::*;
use crate::paths::{default_data_dir, expand_home};
use crate::raw::*;

const DEFAULT_AGENT_PORT: u16 = 7747;
const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
const DEFAULT_LOG_KEEP: u32 = 5;

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    let text = fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read the config file: {e}"),
            help: None,
        }])
    })?;
    load_str(path, &text)
}

/// Parses and validates `text` as if it were the file `file` (relative paths resolve against its folder).
pub fn load_str(file: &Path, text: &str) -> Result<Config, Diagnostics> {
    // Services run in their own working directories: every path must be absolute.
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let file = absolute.as_path();
    let mut sink = Sink::new(file, text);
    let config = match DeTable::parse(text) {
        Ok(root) => {
            let tree = read_tree(&root, &mut sink);
            let base = file
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let resolved = resolve(file, &base, &tree, &mut sink);
            validate(&tree, &resolved, &mut sink);
            Some(resolved)
        }
        Err(e) => {
            sink.push(e.span(), "", first_line(e.message()));
            None
        }
    };
    let items = sink.finish();
    match config {
        Some(c) if items.is_empty() => Ok(c),
        _ => Err(Diagnostics(items)),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Step 2: the spanned tree, each table deserialized on its own.

struct Tree {
    agent: RawAgent,
    apps: Vec<AppNode>,
}

struct AppNode {
    name: Spanned<String>,
    raw: RawApp,
    envs: Vec<EnvNode>,
}

struct EnvNode {
    name: Spanned<String>,
    path: String,
    raw: RawEnv,
    services: Vec<ServiceNode>,
}

struct ServiceNode {
    name: Spanned<String>,
    path: String,
    raw: RawService,
}

fn read_tree(root: &Spanned<DeTable<'_>>, sink: &mut Sink<'_>) -> Tree {
    let mut tree = Tree {
        agent: RawAgent::default(),
        apps: Vec::new(),
    };
    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            "agent" => {
                if let Some(agent) = de_table::<RawAgent>(value, "agent", AGENT_KEYS, sink) {
                    tree.agent = agent;
                }
            }
            "apps" => {
                for (app_key, app_value) in table_entries(value, "apps", sink) {
                    let path = format!("apps.{}", app_key.get_ref());
                    let mut app = AppNode {
                        name: owned(app_key),
                        raw: RawApp::default(),
                        envs: Vec::new(),
                    };
                    if let DeValue::Table(t) = app_value.get_ref() {
                        let mut settings = t.clone();
                        settings.remove("env");
                        let settings = Spanned::new(app_value.span(), DeValue::Table(settings));
                        app.raw = de_table::<RawApp>(&settings, &path, APP_KEYS, sink)
                            .unwrap_or_default();
                    }
                    for (k, v) in table_entries(app_value, &path, sink) {
                        if k.get_ref().as_ref() != "env" {
                            continue; // app settings, read above
                        }
                        for (env_key, env_value) in table_entries(v, &format!("{path}.env"), sink) {
                            if let Some(env) = read_env(&path, env_key, env_value, sink) {
                                app.envs.push(env);
                            }
                        }
                    }
                    tree.apps.push(app);
                }
            }
            _ => unknown_key(sink, key, "", TOP_KEYS),
        }
    }
    tree
}

fn read_env(
    app_path: &str,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
    sink: &mut Sink<'_>,
) -> Option<EnvNode> {
    let path = format!("{app_path}.env.{}", key.get_ref());
    let DeValue::Table(table) = value.get_ref() else {
        sink.push(
            Some(value.span()),
            &path,
            "expected a table of environment settings",
        );
        return None;
    };
    // Services are read one by one below, so take them out of the environment's own table.
    let mut settings = table.clone();
    let services = settings.remove("services");
    let settings = Spanned::new(value.span(), DeValue::Table(settings));
    let raw = de_table::<RawEnv>(&settings, &path, ENV_KEYS, sink).unwrap_or_default();
    let mut env = EnvNode {
        name: owned(key),
        path: path.clone(),
        raw,
        services: Vec::new(),
    };
    if let Some(services) = services {
        let services_path = format!("{path}.services");
        for (svc_key, svc_value) in table_entries(&services, &services_path, sink) {
            let svc_path = format!("{services_path}.{}", svc_key.get_ref());
            if let Some(raw) = de_table::<RawService>(svc_value, &svc_path, SERVICE_KEYS, sink) {
                env.services.push(ServiceNode {
                    name: owned(svc_key),
                    path: svc_path,
                    raw,
                });
            }
        }
    }
    Some(env)
}

type Key<'i> = Spanned<std::borrow::Cow<'i, str>>;

fn owned(key: &Key<'_>) -> Spanned<String> {
    Spanned::new(key.span(), key.get_ref().to_string())
}

fn table_entries<'a, 'i>(
    value: &'a Spanned<DeValue<'i>>,
    path: &str,
    sink: &mut Sink<'_>,
) -> Vec<(&'a Key<'i>, &'a Spanned<DeValue<'i>>)> {
    match value.get_ref() {
        DeValue::Table(t) => t.iter().collect(),
        _ => {
            sink.push(Some(value.span()), path, "expected a table");
            Vec::new()
        }
    }
}

/// Deserializes one table, reporting every unknown key (with a suggestion) and the first type error.
fn de_table<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    known: &[&str],
    sink: &mut Sink<'_>,
) -> Option<T> {
    let mut unknown = Vec::new();
    let result: Result<T, _> =
        serde_ignored::deserialize(ValueDeserializer::from(value.clone()), |p| {
            unknown.push(p.to_string())
        });
    for rel in unknown {
        // serde_ignored names the hidden levels of `Spanned` and untagged values; users never see them.
        let segments: Vec<&str> = rel
            .split('.')
            .filter(|s| *s != "?" && !s.starts_with("$__serde_spanned"))
            .collect();
        let rel = segments.join(".");
        let span = locate_key(value, &segments);
        let known_here = match segments.first() {
            Some(&"health") if segments.len() > 1 => HEALTH_KEYS,
            Some(&"restart") if segments.len() > 1 => RESTART_KEYS,
            Some(&"backup") if segments.len() > 1 => BACKUP_KEYS,
            _ => known,
        };
        let last = segments.last().copied().unwrap_or_default();
        let field = join(path, &rel);
        sink.push_help(
            span,
            &field,
            format!("unknown key `{last}`"),
            suggest(last, known_here),
        );
    }
    match result {
        Ok(t) => Some(t),
        Err(e) => {
            let span = e.span().or(Some(value.span()));
            sink.push(span, path, first_line(e.message()));
            None
        }
    }
}

fn unknown_key(sink: &mut Sink<'_>, key: &Key<'_>, parent: &str, known: &[&str]) {
    let name = key.get_ref();
    sink.push_help(
        Some(key.span()),
        &join(parent, name),
        format!("unknown key `{name}`"),
        suggest(name, known),
    );
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// The span of the key at `segments` below `value`.
fn locate_key(value: &Spanned<DeValue<'_>>, segments: &[&str]) -> Option<Range<usize>> {
    let (first, rest) = segments.split_first()?;
    let DeValue::Table(t) = value.get_ref() else {
        return None;
    };
    let (k, v) = t.iter().find(|(k, _)| k.get_ref().as_ref() == *first)?;
    if rest.is_empty() {
        Some(k.span())
    } else {
        locate_key(v, rest).or(Some(k.span()))
    }
}

/// "did you mean `x`?" when a known key is close to the typo.
fn suggest(typo: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(typo, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1) || k.starts_with(typo) || typo.starts_with(k))
        .min()
        .map(|(_, k)| format!("did you mean `{k}`?"))
        .or_else(|| Some(format!("expected one of: {}", known.join(", "))))
}

// ---------------------------------------------------------------------------------------------
// Step 3: defaults and placeholders.

/// Where in the file each resolved value came from, for validation messages.
struct Origins {
    /// Per service: span of the service name.
    service: HashMap<ServiceKey, Range<usize>>,
}

fn resolve(file: &Path, base: &Path, tree: &Tree, sink: &mut Sink<'_>) -> Config {
    let agent = AgentSettings {
        port: match &tree.agent.port {
            Some(p) => port_in_range(p, "agent.port", true, sink).unwrap_or(DEFAULT_AGENT_PORT),
            None => DEFAULT_AGENT_PORT,
        },
        data_dir: tree
            .agent
            .data_dir
            .as_deref()
            .map_or_else(default_data_dir, |d| expand_home(d, base)),
        log_max_bytes: tree
            .agent
            .log_max_bytes
            .unwrap_or(DEFAULT_LOG_MAX_BYTES)
            .max(4096),
        log_keep: tree.agent.log_keep.unwrap_or(DEFAULT_LOG_KEEP),
    };
    let mut envs = Vec::new();
    let mut services = Vec::new();
    for app in &tree.apps {
        for env in &app.envs {
            let app_name = app.name.get_ref();
            let env_name = env.name.get_ref();
            let data_dir = env.raw.data_dir.as_deref().map_or_else(
                || {
                    agent
                        .data_dir
                        .join("apps")
                        .join(app_name)
                        .join(env_name)
                        .join("data")
                },
                |d| expand_home(d, base),
            );
            let databases: BTreeMap<String, PathBuf> = env
                .raw
                .databases
                .iter()
                .map(|(name, path)| (name.clone(), normalize(&expand_home(path.get_ref(), base))))
                .collect();
            let release = agent
                .data_dir
                .join("apps")
                .join(app_name)
                .join(env_name)
                .join("current");
            let env_spec = EnvSpec {
                app: app_name.clone(),
                env: env_name.clone(),
                autostart: env.raw.autostart.unwrap_or(false),
                data_dir: data_dir.clone(),
                databases,
                config_files: env
                    .raw
                    .config_files
                    .iter()
                    .map(|(name, path)| (name.clone(), normalize(&expand_home(path, base))))
                    .collect(),
                files: env
                    .raw
                    .files
                    .iter()
                    .map(|f| normalize(&expand_home(f.get_ref(), base)))
                    .collect(),
                backup: resolve_backup(env.raw.backup.as_ref(), &env.path, sink),
                health_deadline: env
                    .raw
                    .health_deadline
                    .map_or(Duration::from_secs(60), |d| d.0),
                restore_on_failure: env.raw.restore_on_failure.unwrap_or(true),
            };
            for svc in &env.services {
                let key = ServiceKey::new(app_name, env_name, svc.name.get_ref());
                match svc.raw.strategy.as_ref().map(|s| s.get_ref().as_str()) {
                    None | Some("restart") => {
                        if let Some(spec) =
                            resolve_service(base, &env_spec, env, svc, key, &release, None, sink)
                        {
                            services.push(spec);
                        }
                    }
                    Some("blue-green") => {
                        services.extend(resolve_blue_green(
                            base, &env_spec, env, svc, &release, sink,
                        ));
                    }
                    Some(other) => {
                        let span = svc.raw.strategy.as_ref().map(|s| s.span());
                        sink.push(
                            span,
                            &format!("{}.strategy", svc.path),
                            format!(
                                "unknown strategy {other:?}; expected \"restart\" or \"blue-green\""
                            ),
                        );
                    }
                }
            }
            envs.push(env_spec);
        }
    }
    services.sort_by(|a, b| a.key.cmp(&b.key));
    let apps = tree
        .apps
        .iter()
        .map(|a| resolve_app(a, base, sink))
        .collect();
    Config {
        file: file.to_path_buf(),
        agent,
        envs,
        apps,
        services,
    }
}

fn resolve_app(app: &AppNode, base: &Path, sink: &mut Sink<'_>) -> AppSpec {
    let path = format!("apps.{}", app.name.get_ref());
    let r = &app.raw;
    let source = r.source.as_ref().map(|s| {
        let p = expand_home(s.get_ref(), base);
        if !p.join(".git").exists() {
            sink.push(
                Some(s.span()),
                &format!("{path}.source"),
                format!("{} is not a git checkout", p.display()),
            );
        }
        p
    });
    let mut steps = |list: &[Spanned<String>], field: &str| -> Vec<Vec<String>> {
        list.iter()
            .filter_map(|step| match shlex::split(step.get_ref()) {
                Some(argv) if !argv.is_empty() => Some(argv),
                _ => {
                    sink.push(
                        Some(step.span()),
                        &format!("{path}.{field}"),
                        "expected a command line",
                    );
                    None
                }
            })
            .collect()
    };
    let test = steps(&r.test, "test");
    let build = steps(&r.build, "build");
    let artifacts = r
        .artifacts
        .iter()
        .filter_map(|a| {
            let p = Path::new(a.get_ref());
            if p.is_absolute()
                || p.components().any(|c| matches!(c, Component::ParentDir))
                || a.get_ref().is_empty()
            {
                sink.push(
                    Some(a.span()),
                    &format!("{path}.artifacts"),
                    format!("{:?} must be a path inside the build folder", a.get_ref()),
                );
                None
            } else {
                Some(a.get_ref().clone())
            }
        })
        .collect::<Vec<_>>();
    if source.is_some() && artifacts.is_empty() {
        sink.push(
            Some(app.name.span()),
            &format!("{path}.artifacts"),
            "an app with a `source` needs `artifacts`: what makes a release",
        );
    }
    AppSpec {
        name: app.name.get_ref().clone(),
        source,
        test,
        build,
        artifacts,
        migrate: r.migrate.as_ref().map(|m| m.get_ref().clone()),
        keep_releases: r.keep_releases.unwrap_or(5).max(1),
        allow_dirty: r.allow_dirty.unwrap_or(false),
    }
}

fn port_in_range(p: &Spanned<i64>, field: &str, zero_ok: bool, sink: &mut Sink<'_>) -> Option<u16> {
    let v = *p.get_ref();
    let min = if zero_ok { 0 } else { 1 };
    match u16::try_from(v) {
        Ok(port) if i64::from(port) >= min => Some(port),
        _ => {
            sink.push(
                Some(p.span()),
                field,
                format!("port {v} is out of range; expected {min} to 65535"),
            );
            None
        }
    }
}

/// The values placeholders expand to for one service.
struct Placeholders<'a> {
    env: &'a EnvSpec,
    service: &'a str,
    port: Option<u16>,
    ports: &'a BTreeMap<String, u16>,
    release: &'a Path,
}

impl Placeholders<'_> {
    fn lookup(&self, name: &str) -> Result<String, String> {
        let path = |p: &Path| p.display().to_string();
        match name {
            "port" => self
                .port
                .map(|p| p.to_string())
                .ok_or_else(|| "uses {port} but the service has no `port`".into()),
            "app" => Ok(self.env.app.clone()),
            "env" => Ok(self.env.env.clone()),
            "service" => Ok(self.service.to_owned()),
            "data_dir" => Ok(path(&self.env.data_dir)),
            "release" => Ok(path(self.release)),
            _ => {
                if let Some(n) = name.strip_prefix("port.") {
                    return self
                        .ports
                        .get(n)
                        .map(|p| p.to_string())
                        .ok_or_else(|| format!("uses {{{name}}} but `ports` has no `{n}`"));
                }
                if let Some(n) = name.strip_prefix("db.") {
                    return self.env.databases.get(n).map(|p| path(p)).ok_or_else(|| {
                        format!("uses {{{name}}} but the environment's `databases` has no `{n}`")
                    });
                }
                if let Some(n) = name.strip_prefix("config.") {
                    return self
                        .env
                        .config_files
                        .get(n)
                        .map(|p| path(p))
                        .ok_or_else(|| {
                            format!(
                                "uses {{{name}}} but the environment's `config_files` has no `{n}`"
                            )
                        });
                }
                Err(format!(
                    "unknown placeholder {{{name}}}; expected one of {{port}}, {{port.NAME}}, {{db.NAME}}, {{config.NAME}}, {{data_dir}}, {{release}}, {{app}}, {{env}}, {{service}} (write {{{{ for a literal brace)"
                ))
            }
        }
    }

    /// Substitutes every `{name}`; `{{` and `}}` stand for literal braces.
    fn expand(&self, s: &str) -> Result<String, String> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find(['{', '}']) {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                out.push_str(&tail[..1]);
                rest = &tail[2..];
            } else if tail.starts_with('}') {
                return Err("unmatched `}`; write `}}` for a literal brace".into());
            } else {
                let end = tail
                    .find('}')
                    .ok_or("unclosed `{`; write `{{` for a literal brace")?;
                out.push_str(&self.lookup(&tail[1..end])?);
                rest = &tail[end + 1..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The two instances of a blue-green service, each on its own internal port.
fn resolve_blue_green(
    base: &Path,
    env_spec: &EnvSpec,
    env: &EnvNode,
    svc: &ServiceNode,
    release: &Path,
    sink: &mut Sink<'_>,
) -> Vec<ServiceSpec> {
    let field = format!("{}.strategy", svc.path);
    let span = svc.raw.strategy.as_ref().map(|s| s.span());
    let public = svc
        .raw
        .port
        .as_ref()
        .and_then(|p| u16::try_from(*p.get_ref()).ok());
    let slot_port = |name: &str| {
        svc.raw
            .ports
            .get(name)
            .and_then(|p| u16::try_from(*p.get_ref()).ok())
    };
    let (Some(public), Some(blue), Some(green)) = (public, slot_port("blue"), slot_port("green"))
    else {
        sink.push(span, &field, "a blue-green service needs `port` (public) and `ports = { blue = N, green = M }` (its two instances)");
        return Vec::new();
    };
    let name = svc.name.get_ref();
    let key = |slot: &str| ServiceKey::new(&env_spec.app, &env_spec.env, format!("{name}@{slot}"));
    let autostart = svc.raw.autostart.unwrap_or(env_spec.autostart);
    [("blue", blue, "green"), ("green", green, "blue")]
        .into_iter()
        .filter_map(|(slot, port, other)| {
            let mut spec = resolve_service(
                base,
                env_spec,
                env,
                svc,
                key(slot),
                release,
                Some(port),
                sink,
            )?;
            spec.autostart = false;
            spec.slot = Some(SlotSpec {
                service: name.clone(),
                public_port: public,
                slot: slot.into(),
                other: key(other),
                autostart,
            });
            Some(spec)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn resolve_service(
    base: &Path,
    env_spec: &EnvSpec,
    env: &EnvNode,
    svc: &ServiceNode,
    key: ServiceKey,
    release: &Path,
    slot_port: Option<u16>,
    sink: &mut Sink<'_>,
) -> Option<ServiceSpec> {
    let raw = &svc.raw;
    let p = &svc.path;
    let mut ok = true;
    let port = raw.port.as_ref().and_then(|sp| {
        let r = port_in_range(sp, &format!("{p}.port"), false, sink);
        ok &= r.is_some();
        r
    });
    // An instance of a blue-green service listens on its own port; the proxy has the public one.
    let port = slot_port.or(port);
    let mut ports = BTreeMap::new();
    for (name, sp) in raw.ports.iter().filter(|_| slot_port.is_none()) {
        match port_in_range(sp, &format!("{p}.ports.{name}"), false, sink) {
            Some(v) => {
                ports.insert(name.clone(), v);
            }
            None => ok = false,
        }
    }
    let ph = Placeholders {
        env: env_spec,
        service: svc.name.get_ref(),
        port,
        ports: &ports,
        release,
    };
    let expand = |sink: &mut Sink<'_>, s: &str, span: Range<usize>, field: &str| match ph.expand(s)
    {
        Ok(v) => Some(v),
        Err(msg) => {
            sink.push(Some(span), &format!("{p}.{field}"), msg);
            None
        }
    };

    let cmd_span = raw.command.span();
    let command = match raw.command.get_ref() {
        RawCommand::Line(line) if raw.shell => {
            expand(sink, line, cmd_span.clone(), "command").map(CommandSpec::Shell)
        }
        RawCommand::Line(line) => match shlex::split(line) {
            Some(words) => words
                .iter()
                .map(|w| expand(sink, w, cmd_span.clone(), "command"))
                .collect::<Option<Vec<_>>>()
                .map(CommandSpec::Argv),
            None => {
                sink.push(
                    Some(cmd_span.clone()),
                    &format!("{p}.command"),
                    "unbalanced quotes in the command line",
                );
                None
            }
        },
        RawCommand::Argv(argv) if raw.shell => {
            sink.push(
                Some(cmd_span.clone()),
                &format!("{p}.command"),
                "`shell = true` needs the command as one string",
            );
            let _ = argv;
            None
        }
        RawCommand::Argv(argv) => argv
            .iter()
            .map(|w| expand(sink, w, cmd_span.clone(), "command"))
            .collect::<Option<Vec<_>>>()
            .map(CommandSpec::Argv),
    };

    // `~/bin/app` means the home folder, as it would in a shell.
    let command = command.map(|c| match c {
        CommandSpec::Argv(mut argv) => {
            if let Some(first) = argv.first_mut()
                && (first.starts_with("~/") || first == "~")
            {
                *first = expand_home(first, base).display().to_string();
            }
            CommandSpec::Argv(argv)
        }
        shell => shell,
    });
    if let Some(CommandSpec::Argv(argv)) = &command
        && let Some(program) = argv.first()
        && let Err(why) = check_program(program, release, &env_spec.data_dir)
    {
        sink.push(Some(cmd_span.clone()), &format!("{p}.command"), why);
    }

    let cwd = match &raw.cwd {
        Some(c) => expand(sink, c.get_ref(), c.span(), "cwd").map(|s| expand_home(&s, base)),
        None => Some(env_spec.data_dir.clone()),
    };

    let mut vars = BTreeMap::new();
    vars.insert("HOMEPORT_APP".to_owned(), env_spec.app.clone());
    vars.insert("HOMEPORT_ENV".to_owned(), env_spec.env.clone());
    vars.insert("HOMEPORT_SERVICE".to_owned(), svc.name.get_ref().clone());
    vars.insert(
        "HOMEPORT_DATA_DIR".to_owned(),
        env_spec.data_dir.display().to_string(),
    );
    if let Some(port) = port {
        vars.insert("PORT".to_owned(), port.to_string());
    }
    for (k, v) in env.raw.env.iter().chain(raw.env.iter()) {
        if let Some(v) = expand(sink, v, cmd_span.clone(), &format!("env.{k}")) {
            vars.insert(k.clone(), v);
        }
    }
    let mut secret_env = std::collections::BTreeSet::new();
    for (k, v) in env.raw.secret_env.iter().chain(raw.secret_env.iter()) {
        if let Some(v) = expand(sink, v, cmd_span.clone(), &format!("secret_env.{k}")) {
            vars.insert(k.clone(), v);
            secret_env.insert(k.clone());
        }
    }
    let mut env_files = Vec::new();
    for (f, field) in [
        (&env.raw.env_file, format!("{}.env_file", env.path)),
        (&raw.env_file, format!("{p}.env_file")),
    ] {
        if let Some(f) = f {
            let path = expand_home(f.get_ref(), base);
            if !path.is_file() {
                sink.push(
                    Some(f.span()),
                    &field,
                    format!("env file {} does not exist", path.display()),
                );
            }
            env_files.push(path);
        }
    }

    let health = raw
        .health
        .as_ref()
        .and_then(|h| resolve_health(h, port, p, &expand, sink));
    let restart = resolve_restart(raw.restart.as_ref(), svc, sink);
    let depends_on = raw
        .depends_on
        .iter()
        .map(|d| ServiceKey::new(&env_spec.app, &env_spec.env, d.get_ref()))
        .collect();

    let spec = ServiceSpec {
        key,
        command: command?,
        cwd: cwd?,
        env: vars,
        secret_env,
        env_files,
        port,
        ports,
        health,
        restart: restart?,
        depends_on,
        autostart: raw.autostart.unwrap_or(env_spec.autostart),
        stop_signal: raw.stop_signal.as_ref().map_or(15, |s| s.get_ref().0),
        stop_timeout: raw.stop_timeout.map_or(Duration::from_secs(10), |d| d.0),
        data_dir: env_spec.data_dir.clone(),
        slot: None,
    };
    ok.then_some(spec)
}

fn resolve_backup(
    raw: Option<&Spanned<RawBackup>>,
    env_path: &str,
    sink: &mut Sink<'_>,
) -> BackupSettings {
    let mut out = BackupSettings::default();
    let Some(raw) = raw else { return out };
    let span = raw.span();
    let field = format!("{env_path}.backup");
    let r = raw.get_ref();
    out.schedule = match (&r.every, &r.at) {
        (Some(_), Some(_)) => {
            sink.push(
                Some(span.clone()),
                &field,
                "expected `every` or `at`, not both",
            );
            None
        }
        (Some(d), None) if d.0 < Duration::from_secs(60) => {
            sink.push(
                Some(span.clone()),
                &format!("{field}.every"),
                "back up at most once a minute",
            );
            None
        }
        (Some(d), None) => Some(BackupSchedule::Every(d.0)),
        (None, Some(at)) => match at
            .split_once(':')
            .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
        {
            Some((h, m)) if h < 24 && m < 60 => Some(BackupSchedule::DailyAt(h * 3600 + m * 60)),
            _ => {
                sink.push(
                    Some(span.clone()),
                    &format!("{field}.at"),
                    format!("{at:?} is not a time; expected HH:MM (UTC)"),
                );
                None
            }
        },
        (None, None) => None,
    };
    out.keep_last = r.keep_last.unwrap_or(out.keep_last);
    out.keep_daily = r.keep_daily.unwrap_or(out.keep_daily);
    out.keep_weekly = r.keep_weekly.unwrap_or(out.keep_weekly);
    out.keep_monthly = r.keep_monthly.unwrap_or(out.keep_monthly);
    out.compress = r.compress.unwrap_or(out.compress);
    out
}

/// The program of a command must exist and be executable: a path as given, a bare name on
/// `$PATH`. Programs inside the release or data folder appear only when Homeport deploys them.
fn check_program(program: &str, release: &Path, data_dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if program.is_empty() {
        return Ok(()); // reported as an empty command
    }
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = Path::new(program);
        if path.starts_with(release) || path.starts_with(data_dir) || executable(path) {
            return Ok(());
        }
        return Err(match path.exists() {
            true => format!("{program} is not an executable file"),
            false => format!("program {program} does not exist"),
        });
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| executable(&d.join(program))));
    if on_path {
        Ok(())
    } else {
        Err(format!("program `{program}` is not on $PATH"))
    }
}

fn resolve_health(
    h: &Spanned<RawHealth>,
    port: Option<u16>,
    p: &str,
    expand: &impl Fn(&mut Sink<'_>, &str, Range<usize>, &str) -> Option<String>,
    sink: &mut Sink<'_>,
) -> Option<HealthCheck> {
    let field = format!("{p}.health");
    let span = h.span();
    let raw = h.get_ref();
    let chosen = [raw.http.is_some(), raw.tcp.is_some(), raw.command.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if chosen != 1 {
        sink.push(
            Some(span),
            &field,
            "expected exactly one of `http`, `tcp` or `command`",
        );
        return None;
    }
    let no_port = |sink: &mut Sink<'_>, what: &str| {
        sink.push(
            Some(span.clone()),
            &field,
            format!("{what} needs the service to have a `port`"),
        );
        None
    };
    let probe = if let Some(http) = &raw.http {
        let url = expand(sink, http, span.clone(), "health")?;
        if url.starts_with('/') {
            match port {
                Some(port) => HealthProbe::Http(format!("http://127.0.0.1:{port}{url}")),
                None => return no_port(sink, "an HTTP path"),
            }
        } else if url.starts_with("http://") {
            HealthProbe::Http(url)
        } else {
            sink.push(
                Some(span),
                &field,
                format!("expected an HTTP path starting with `/` or an http:// URL, found {url:?}"),
            );
            return None;
        }
    } else if let Some(tcp) = &raw.tcp {
        match tcp {
            RawTcp::Flag(true) => match port {
                Some(port) => HealthProbe::Tcp(port),
                None => return no_port(sink, "`tcp = true`"),
            },
            RawTcp::Port(n) => match u16::try_from(*n) {
                Ok(port) if port > 0 => HealthProbe::Tcp(port),
                _ => {
                    sink.push(
                        Some(span),
                        &format!("{field}.tcp"),
                        format!("port {n} is out of range; expected 1 to 65535"),
                    );
                    return None;
                }
            },
            RawTcp::Flag(false) => {
                sink.push(
                    Some(span),
                    &format!("{field}.tcp"),
                    "expected `true` or a port number",
                );
                return None;
            }
        }
    } else {
        let argv = match raw.command.as_ref()? {
            RawCommand::Line(l) => shlex::split(l).unwrap_or_default(),
            RawCommand::Argv(v) => v.clone(),
        };
        let argv = argv
            .iter()
            .map(|a| expand(sink, a, span.clone(), "health.command"))
            .collect::<Option<Vec<_>>>()?;
        if argv.is_empty() {
            sink.push(
                Some(span),
                &format!("{field}.command"),
                "the health command is empty",
            );
            return None;
        }
        HealthProbe::Command(CommandSpec::Argv(argv))
    };
    let retries = raw.retries.unwrap_or(3);
    let interval = raw.interval.map_or(Duration::from_secs(5), |d| d.0);
    if retries == 0 || interval.is_zero() {
        sink.push(
            Some(span),
            &field,
            "`retries` and `interval` must be greater than zero",
        );
        return None;
    }
    Some(HealthCheck {
        probe,
        interval,
        timeout: raw.timeout.map_or(Duration::from_secs(2), |d| d.0),
        retries,
        start_period: raw.start_period.map_or(Duration::from_secs(30), |d| d.0),
    })
}

fn resolve_restart(
    raw: Option<&RawRestart>,
    svc: &ServiceNode,
    sink: &mut Sink<'_>,
) -> Option<RestartPolicy> {
    let mut policy = RestartPolicy::default();
    let Some(raw) = raw else { return Some(policy) };
    let field = format!("{}.restart", svc.path);
    if let Some(mode) = &raw.policy {
        // A bare string has no span of its own (see RawRestart); point at the service then.
        let span = if mode.span().is_empty() {
            svc.name.span()
        } else {
            mode.span()
        };
        policy.mode = match mode.get_ref().as_str() {
            "never" | "no" => RestartMode::Never,
            "on-failure" | "on_failure" => RestartMode::OnFailure,
            "always" => RestartMode::Always,
            other => {
                sink.push(Some(span), &field, format!("unknown restart policy {other:?}; expected \"never\", \"on-failure\" or \"always\""));
                return None;
            }
        };
    }
    if let Some(d) = raw.backoff_min {
        policy.backoff_min = d.0;
    }
    if let Some(d) = raw.backoff_max {
        policy.backoff_max = d.0;
    }
    if let Some(d) = raw.reset_after {
        policy.reset_after = d.0;
    }
    if let Some(n) = raw.max_failures {
        policy.max_failures = n;
    }
    if let Some(d) = raw.window {
        policy.window = d.0;
    }
    if policy.backoff_min > policy.backoff_max {
        sink.push(
            Some(svc.name.span()),
            &field,
            "`backoff_min` is larger than `backoff_max`",
        );
        return None;
    }
    if policy.max_failures == 0 {
        sink.push(
            Some(svc.name.span()),
            &format!("{field}.max_failures"),
            "expected at least 1",
        );
        return None;
    }
    Some(policy)
}

/// Makes a path absolute-looking and free of `.` and `..`, so equal files compare equal even
/// before they exist.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Step 4: rules that span several services.

fn validate(tree: &Tree, config: &Config, sink: &mut Sink<'_>) {
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
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_names(tree: &Tree, sink: &mut Sink<'_>) {
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

fn services(tree: &Tree) -> impl Iterator<Item = (&AppNode, &EnvNode, &ServiceNode)> {
    tree.apps.iter().flat_map(|a| {
        a.envs
            .iter()
            .flat_map(move |e| e.services.iter().map(move |s| (a, e, s)))
    })
}

fn check_commands(tree: &Tree, sink: &mut Sink<'_>) {
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

fn check_ports(tree: &Tree, config: &Config, sink: &mut Sink<'_>) {
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

fn check_dependencies(tree: &Tree, sink: &mut Sink<'_>) {
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
                let first = cycle.first().copied().unwrap_or_default();
                if let Some(svc) = env.services.iter().find(|s| s.name.get_ref() == first) {
                    sink.push(
                        Some(svc.name.span()),
                        &format!("{}.depends_on", svc.path),
                        format!("dependency cycle: {}", cycle.join(" → ")),
                    );
                }
            }
        }
    }
}

/// A cycle in the dependency graph, as a path that starts and ends at the same node.
pub(crate) fn find_cycle<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
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

fn check_cwds(tree: &Tree, config: &Config, origins: &Origins, sink: &mut Sink<'_>) {
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

fn check_databases(tree: &Tree, config: &Config, sink: &mut Sink<'_>) {
    let mut owners: BTreeMap<&Path, Vec<Claim>> = BTreeMap::new();
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
                if let Some(path) = spec.databases.get(name) {
                    owners.entry(path.as_path()).or_default().push((
                        format!("{}/{}", spec.app, spec.env),
                        format!("{}.databases.{name}", env.path),
                        raw.span(),
                    ));
                }
            }
        }
    }
    for (path, users) in owners {
        let envs: BTreeSet<&str> = users.iter().map(|u| u.0.as_str()).collect();
        if envs.len() < 2 {
            continue;
        }
        for (who, field, span) in &users {
            let others: Vec<&str> = envs.iter().copied().filter(|e| e != who).collect();
            sink.push(Some(span.clone()), field, format!("database {} of {who} is also written by {}; environments must not share a database", path.display(), others.join(", ")));
        }
    }
}
