//! Step 3: defaults and placeholders, per app, environment and service.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use homeport_types::ServiceKey;
use toml::Spanned;

use super::parse::*;
use crate::diag::Sink;
use crate::model::*;
use crate::paths::{default_data_dir, expand_home};
use crate::raw::*;

pub(super) const DEFAULT_AGENT_PORT: u16 = 7747;
pub(super) const DEFAULT_ROUTER_PORT: u16 = 7780;
const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
const DEFAULT_LOG_KEEP: u32 = 5;
/// How long a deployed release must stay up and healthy before its deploy counts as succeeded.
const DEFAULT_HEALTH_STABLE: Duration = Duration::from_secs(10);
const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_secs(5);
const MIN_SAMPLE_EVERY: Duration = Duration::from_secs(1);
const MAX_SAMPLE_EVERY: Duration = Duration::from_secs(60);

/// Where in the file each resolved value came from, for validation messages.
pub(super) struct Origins {
    /// Per service: span of the service name.
    pub(super) service: HashMap<ServiceKey, Range<usize>>,
}

/// The environment's web service: the one `web` names, else the only service with a port.
fn web_service(env: &EnvNode) -> Option<String> {
    if let Some(w) = &env.raw.web {
        return Some(w.get_ref().clone());
    }
    let mut ported = env.services.iter().filter(|s| s.raw.port.is_some());
    match (ported.next(), ported.next()) {
        (Some(one), None) => Some(one.name.get_ref().clone()),
        _ => None,
    }
}

pub(super) fn resolve(file: &Path, base: &Path, tree: &Tree, sink: &mut Sink<'_>) -> Config {
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
        log_max_bytes: log_max_bytes(tree.agent.log_max_bytes.as_ref(), sink),
        log_keep: log_keep(tree.agent.log_keep.as_ref(), sink),
        router_port: match &tree.agent.router_port {
            Some(p) => port_in_range(p, "agent.router_port", true, sink).unwrap_or(0),
            None => DEFAULT_ROUTER_PORT,
        },
        https_port: tree
            .agent
            .https_port
            .as_ref()
            .and_then(|p| port_in_range(p, "agent.https_port", false, sink)),
        sample_every: sample_every(tree.agent.sample_every.as_ref(), sink),
        watch_config: tree.agent.watch_config.unwrap_or(true),
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
                .filter_map(|(name, raw)| match raw.get_ref() {
                    RawDatabase::Path(path) => {
                        Some((name.clone(), normalize(&expand_home(path, base))))
                    }
                    RawDatabase::Server(_) => None,
                })
                .collect();
            let servers: BTreeMap<String, DbServer> = env
                .raw
                .databases
                .iter()
                .filter_map(|(name, raw)| match raw.get_ref() {
                    RawDatabase::Server(s) => {
                        let field = format!("{}.databases.{name}", env.path);
                        resolve_server(name, s, raw.span(), &field, &data_dir, base, sink)
                            .map(|d| (name.clone(), d))
                    }
                    RawDatabase::Path(_) => None,
                })
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
                servers,
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
                health_stable: env.raw.health_stable.map_or(DEFAULT_HEALTH_STABLE, |d| d.0),
                vars: env.raw.env.clone(),
                secret_vars: env.raw.secret_env.clone(),
                env_file: env
                    .raw
                    .env_file
                    .as_ref()
                    .map(|f| expand_home(f.get_ref(), base)),
                restore_on_failure: env.raw.restore_on_failure.unwrap_or(true),
                hostnames: env
                    .raw
                    .hostnames
                    .iter()
                    .map(|h| h.get_ref().trim_end_matches('.').to_ascii_lowercase())
                    .collect(),
                web: web_service(env),
                drain: env.raw.drain.map_or(Duration::from_secs(30), |d| d.0),
                auto_update: resolve_auto_update(env.raw.auto_update.as_ref(), &env.path, sink),
                notify: match &env.raw.notify {
                    None => homeport_types::NotifyPolicy::default_for(env_name),
                    Some(n) => {
                        homeport_types::NotifyPolicy::parse(n.get_ref()).unwrap_or_else(|| {
                            sink.push(
                                Some(n.span()),
                                &format!("apps.{app_name}.env.{env_name}.notify"),
                                format!(
                                    "notify = {:?}: expected \"all\", \"failures\" or \"none\"",
                                    n.get_ref()
                                ),
                            );
                            homeport_types::NotifyPolicy::default_for(env_name)
                        })
                    }
                },
            };
            if let Some(m) = &app.raw.migrate
                && let Err(e) = migrate_argv(m.get_ref(), &env_spec, &release)
            {
                sink.push(
                    Some(m.span()),
                    &format!("apps.{app_name}.migrate"),
                    format!("{e} (for {app_name}/{env_name})"),
                );
            }
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
            let servers = database_services(&env_spec, &mut services);
            services.extend(servers);
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
        remote_envs: Vec::new(),
    }
}

pub(super) fn resolve_app(app: &AppNode, base: &Path, sink: &mut Sink<'_>) -> AppSpec {
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
    for line in &r.install {
        if let Err(e) = install_argv(line.get_ref(), app.name.get_ref(), Path::new("/release")) {
            sink.push(Some(line.span()), &format!("{path}.install"), e);
        }
    }
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
        step_env: r.step_env.clone(),
        install: r.install.iter().map(|l| l.get_ref().clone()).collect(),
        backward_compatible_migrations: r.backward_compatible_migrations.unwrap_or(false),
    }
}

/// The smallest log file worth rotating at: below it a busy service rotates every few lines and
/// `log_keep` files hold almost nothing.
const MIN_LOG_MAX_BYTES: i64 = 4096;
/// More rotated files than anyone reads; each one is a file to open when searching history.
const MAX_LOG_KEEP: i64 = 1000;

fn log_max_bytes(v: Option<&Spanned<i64>>, sink: &mut Sink<'_>) -> u64 {
    let Some(v) = v else {
        return DEFAULT_LOG_MAX_BYTES;
    };
    let n = *v.get_ref();
    if n < MIN_LOG_MAX_BYTES {
        sink.push(
            Some(v.span()),
            "agent.log_max_bytes",
            format!(
                "log_max_bytes = {n}: a service's log file is rotated when it grows past this \
                 many bytes, so it must be at least {MIN_LOG_MAX_BYTES}; there is no \"never \
                 rotate\". To keep more history, raise it (default {DEFAULT_LOG_MAX_BYTES} = \
                 10 MiB) or `log_keep`"
            ),
        );
        return DEFAULT_LOG_MAX_BYTES;
    }
    n as u64
}

fn sample_every(v: Option<&Spanned<Dur>>, sink: &mut Sink<'_>) -> Duration {
    let Some(v) = v else {
        return DEFAULT_SAMPLE_EVERY;
    };
    let d = v.get_ref().0;
    if !d.is_zero() && !(MIN_SAMPLE_EVERY..=MAX_SAMPLE_EVERY).contains(&d) {
        sink.push(
            Some(v.span()),
            "agent.sample_every",
            format!(
                "sample_every = \"{}\": how often each service's CPU, memory and health are \
                 sampled for its history, from 1s to 1m (default 5s); \"0s\" turns sampling off",
                humantime::format_duration(d)
            ),
        );
        return DEFAULT_SAMPLE_EVERY;
    }
    d
}

fn log_keep(v: Option<&Spanned<i64>>, sink: &mut Sink<'_>) -> u32 {
    let Some(v) = v else {
        return DEFAULT_LOG_KEEP;
    };
    let n = *v.get_ref();
    if !(0..=MAX_LOG_KEEP).contains(&n) {
        sink.push(
            Some(v.span()),
            "agent.log_keep",
            format!(
                "log_keep = {n}: the number of rotated files kept besides the current one, from \
                 0 (only the current file) to {MAX_LOG_KEEP} (default {DEFAULT_LOG_KEEP})"
            ),
        );
        return DEFAULT_LOG_KEEP;
    }
    n as u32
}

pub(super) fn port_in_range(
    p: &Spanned<i64>,
    field: &str,
    zero_ok: bool,
    sink: &mut Sink<'_>,
) -> Option<u16> {
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
pub(super) struct Placeholders<'a> {
    /// Per service (a command, its env): `{port}`, `{port.NAME}` and `{service}` are known.
    /// Per environment (`migrate`): they are not.
    per_service: bool,
    env: &'a EnvSpec,
    service: &'a str,
    port: Option<u16>,
    ports: &'a BTreeMap<String, u16>,
    release: &'a Path,
}

impl Placeholders<'_> {
    fn lookup(&self, name: &str) -> Result<String, String> {
        let path = |p: &Path| p.display().to_string();
        if !self.per_service && (name == "port" || name == "service" || name.starts_with("port.")) {
            return Err(format!(
                "uses {{{name}}}, which `migrate` does not know: it runs once per environment, \
                 not per service (it knows {{release}}, {{data_dir}}, {{app}}, {{env}}, \
                 {{db.NAME}} and {{config.NAME}})"
            ));
        }
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
                    if let Some(server) = self.env.servers.get(n) {
                        return server_url(server);
                    }
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
        self.expand_with(s, false)
    }

    /// [`Self::expand`] for a line that `/bin/sh` runs: every value is substituted quoted for the
    /// shell (a plain path stays as it is), so a value is always one word to the shell and never
    /// code — a database path such as `prod.db; rm -rf ~` stays a path.
    fn expand_for_shell(&self, s: &str) -> Result<String, String> {
        self.expand_with(s, true)
    }

    fn expand_with(&self, s: &str, quote: bool) -> Result<String, String> {
        fill(s, |name| {
            let value = self.lookup(name)?;
            if !quote {
                return Ok(value);
            }
            shlex::try_quote(&value)
                .map(|q| q.into_owned())
                .map_err(|_| format!("{{{name}}} has a NUL byte, which a shell line cannot carry"))
        })
    }
}

/// `s` with every `{name}` replaced by `value(name)`; `{{` and `}}` stand for literal braces.
fn fill(s: &str, mut value: impl FnMut(&str) -> Result<String, String>) -> Result<String, String> {
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
            out.push_str(&value(&tail[1..end])?);
            rest = &tail[end + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The two instances of a blue-green service, each on its own internal port.
pub(super) fn resolve_blue_green(
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
pub(super) fn resolve_service(
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
        per_service: true,
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
    let command_text = match raw.command.get_ref() {
        RawCommand::Line(l) => l.clone(),
        RawCommand::Argv(v) => v.join(" "),
    };
    if let Some(db) = server_with_password(env_spec, &command_text) {
        sink.push(
            Some(cmd_span.clone()),
            &format!("{p}.command"),
            format!(
                "{{db.{db}}} holds the server's password, and a command line is readable by every \
                 local user; pass it in `env` instead: env = {{ DATABASE_URL = \"{{db.{db}}}\" }}"
            ),
        );
        return None;
    }
    let command = match raw.command.get_ref() {
        RawCommand::Line(line) if raw.shell => match ph.expand_for_shell(line) {
            Ok(v) => Some(CommandSpec::Shell(v)),
            Err(msg) => {
                sink.push(Some(cmd_span.clone()), &format!("{p}.command"), msg);
                None
            }
        },
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

    // `~/bin/app` means the home folder, as it would in a shell; `bin/app` and `./app` are
    // taken from the config file's folder, like every other relative path in the file.
    let mut relative = false;
    let command = command.map(|c| match c {
        CommandSpec::Argv(mut argv) => {
            if let Some(first) = argv.first_mut() {
                if first.starts_with("~/") || first == "~" {
                    *first = expand_home(first, base).display().to_string();
                } else if first.contains('/') && !Path::new(first.as_str()).is_absolute() {
                    relative = true;
                    *first = normalize(&base.join(first.as_str())).display().to_string();
                }
            }
            CommandSpec::Argv(argv)
        }
        shell => shell,
    });
    if let Some(CommandSpec::Argv(argv)) = &command
        && let Some(program) = argv.first()
        && let Err(why) = check_program(program, release, &env_spec.data_dir)
    {
        let why = if relative {
            format!(
                "{why} (a relative path in `command` is taken from the config file's folder, {}; write an absolute path, `~/…`, or `{{release}}/…`)",
                base.display()
            )
        } else {
            why
        };
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
    let mut secret_env = std::collections::BTreeSet::new();
    for (k, v) in env.raw.env.iter().chain(raw.env.iter()) {
        if let Some(x) = expand(sink, v, cmd_span.clone(), &format!("env.{k}")) {
            vars.insert(k.clone(), x);
            // A database URL with its password is masked wherever the service is shown.
            if server_with_password(env_spec, v).is_some() {
                secret_env.insert(k.clone());
            }
        }
    }
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
        database: None,
    };
    ok.then_some(spec)
}

/// `auto_update = { every = "1h", window = "02:00-05:00" }`: `every` at least a second,
/// `window` two local times of day.
pub(super) fn resolve_auto_update(
    raw: Option<&Spanned<RawAutoUpdate>>,
    env_path: &str,
    sink: &mut Sink<'_>,
) -> Option<AutoUpdate> {
    let raw = raw?;
    let span = raw.span();
    let field = format!("{env_path}.auto_update");
    let r = raw.get_ref();
    let every = r.every.map_or(Duration::from_secs(3600), |d| d.0);
    if every < Duration::from_secs(1) {
        sink.push(
            Some(span.clone()),
            &format!("{field}.every"),
            "check the upstream at most once a second",
        );
        return None;
    }
    let time = |t: &str| {
        t.trim()
            .split_once(':')
            .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
            .filter(|(h, m)| *h < 24 && *m < 60)
            .map(|(h, m)| h * 3600 + m * 60)
    };
    let window = match &r.window {
        None => None,
        Some(w) => {
            match w
                .split_once('-')
                .and_then(|(a, b)| Some((time(a)?, time(b)?)))
            {
                Some((start, end)) if start != end => Some(UpdateWindow { start, end }),
                Some(_) => {
                    sink.push(
                    Some(span.clone()),
                    &format!("{field}.window"),
                    format!("{w:?} starts and ends at the same time; leave `window` out to allow any time"),
                );
                    return None;
                }
                None => {
                    sink.push(
                    Some(span.clone()),
                    &format!("{field}.window"),
                    format!("{w:?} is not a window; expected HH:MM-HH:MM (local time), e.g. \"02:00-05:00\""),
                );
                    return None;
                }
            }
        }
    };
    Some(AutoUpdate { every, window })
}

pub(super) fn resolve_backup(
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
                    format!("{at:?} is not a time; expected HH:MM (local time)"),
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
    out.keep_safety = r.keep_safety.unwrap_or(out.keep_safety);
    out.compress = r.compress.unwrap_or(out.compress);
    out
}

/// The program of a command must exist and be executable: a path as given, a bare name on
/// `$PATH`. Programs inside the release or data folder appear only when Homeport deploys them.
pub(super) fn check_program(program: &str, release: &Path, data_dir: &Path) -> Result<(), String> {
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

pub(super) fn resolve_health(
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
    let timeout = raw.timeout.map_or(Duration::from_secs(2), |d| d.0);
    if retries == 0 || interval.is_zero() || timeout.is_zero() {
        sink.push(
            Some(span),
            &field,
            "`retries` (failures in a row that mark it unhealthy), `interval` (time between \
             probes) and `timeout` (how long one probe may take) must be greater than zero",
        );
        return None;
    }
    Some(HealthCheck {
        probe,
        interval,
        timeout,
        retries,
        start_period: raw.start_period.map_or(Duration::from_secs(30), |d| d.0),
    })
}

pub(super) fn resolve_restart(
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
    if let Some(n) = &raw.max_failures {
        policy.max_failures = match n.get_ref() {
            crate::raw::MaxFailures::Unlimited => None,
            crate::raw::MaxFailures::Count(c) if (1..=i64::from(u32::MAX)).contains(c) => {
                Some(*c as u32)
            }
            other => {
                let what = match other {
                    crate::raw::MaxFailures::Other(s) => format!("{s:?}"),
                    crate::raw::MaxFailures::Count(c) => c.to_string(),
                    crate::raw::MaxFailures::Unlimited => String::new(),
                };
                sink.push(
                    Some(n.span()),
                    &format!("{field}.max_failures"),
                    format!(
                        "max_failures = {what}: expected the number of failures within `window` \
                         that make Homeport give up (1 or more), or \"unlimited\" to restart it \
                         for ever"
                    ),
                );
                return None;
            }
        };
    }
    if let Some(d) = raw.window {
        policy.window = d.0;
    }
    if policy.window.is_zero() && policy.max_failures.is_some() {
        sink.push(
            Some(svc.name.span()),
            &format!("{field}.window"),
            "`window` (how far back failures count toward `max_failures`) must be greater than \
             zero; to never give up, write max_failures = \"unlimited\"",
        );
        return None;
    }
    if policy.backoff_min > policy.backoff_max {
        sink.push(
            Some(svc.name.span()),
            &field,
            "`backoff_min` is larger than `backoff_max`",
        );
        return None;
    }
    Some(policy)
}

/// Makes a path absolute-looking and free of `.` and `..`, so equal files compare equal even
/// before they exist.
pub(super) fn normalize(p: &Path) -> PathBuf {
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

/// An app's `migrate` command line for one environment, split into words and then each word's
/// placeholders filled in (so a path with spaces stays one argument), for a release in
/// `release`: `{release}`, `{data_dir}`, `{app}`, `{env}`, `{db.NAME}`, `{config.NAME}`. Loading
/// the config checks it for every environment of the app, so a typo fails there, with its line.
pub fn migrate_argv(line: &str, env: &EnvSpec, release: &Path) -> Result<Vec<String>, String> {
    if let Some(db) = server_with_password(env, line) {
        return Err(format!(
            "{{db.{db}}} holds the server's password, and a command line is readable by every \
             local user; `migrate` runs with the environment's `env`, so set it there (env = {{ \
             DATABASE_URL = \"{{db.{db}}}\" }}) and read it in the migration"
        ));
    }
    let words = shlex::split(line)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| format!("cannot split {line:?} into words (check its quotes)"))?;
    let ports = BTreeMap::new();
    let ph = Placeholders {
        per_service: false,
        env,
        service: "",
        port: None,
        ports: &ports,
        release,
    };
    words.iter().map(|w| ph.expand(w)).collect()
}

/// An app's `install` command line for a release in `release`: split into words, then `{release}`
/// and `{app}` filled in (`{{` and `}}` for literal braces). It runs once per release, whatever
/// environment it goes to, so environment placeholders are refused.
pub fn install_argv(line: &str, app: &str, release: &Path) -> Result<Vec<String>, String> {
    let words = shlex::split(line)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| format!("cannot split {line:?} into words (check its quotes)"))?;
    words
        .iter()
        .map(|w| {
            fill(w, |name| match name {
                "release" => Ok(release.display().to_string()),
                "app" => Ok(app.to_owned()),
                other => Err(format!(
                    "uses {{{other}}}, which `install` does not know: it runs once per release, for every environment (it knows {{release}} and {{app}})"
                )),
            })
        })
        .collect()
}

/// The environment's own variables for a step that runs for it (a migration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepEnv {
    /// `HOMEPORT_APP`, `HOMEPORT_ENV`, `HOMEPORT_DATA_DIR`, `HOMEPORT_RELEASE`, then the
    /// environment's `env` and `secret_env` with their placeholders filled in for `release`.
    pub vars: Vec<(String, String)>,
    /// Variables left out because they use a per-service placeholder (`{port}`, `{service}`).
    pub skipped: Vec<String>,
    /// The environment's `env_file`, read by whoever runs the step.
    pub env_file: Option<PathBuf>,
}

/// What a step run for environment `env` with the release in `release` gets besides the
/// agent's own environment (see [`StepEnv`]).
pub fn step_env(env: &EnvSpec, release: &Path) -> StepEnv {
    let ports = BTreeMap::new();
    let ph = Placeholders {
        per_service: false,
        env,
        service: "",
        port: None,
        ports: &ports,
        release,
    };
    let mut out = StepEnv {
        vars: vec![
            ("HOMEPORT_APP".to_owned(), env.app.clone()),
            ("HOMEPORT_ENV".to_owned(), env.env.clone()),
            (
                "HOMEPORT_DATA_DIR".to_owned(),
                env.data_dir.display().to_string(),
            ),
            ("HOMEPORT_RELEASE".to_owned(), release.display().to_string()),
        ],
        skipped: vec![],
        env_file: env.env_file.clone(),
    };
    for (k, v) in env.vars.iter().chain(&env.secret_vars) {
        match ph.expand(v) {
            Ok(v) => out.vars.push((k.clone(), v)),
            Err(_) => out.skipped.push(k.clone()),
        }
    }
    out
}

/// The `{db.NAME}` of a server: its URL. For a managed server, with the password Homeport made
/// for it (made now if this is the first time its name is read).
fn server_url(server: &DbServer) -> Result<String, String> {
    match server {
        DbServer::Managed(s) => homeport_db::password(&s.dir)
            .map(|pw| s.url(&pw))
            .map_err(|e| {
                format!(
                    "cannot read or make the password of database {} in {}: {e}",
                    s.name,
                    s.dir.display()
                )
            }),
        DbServer::External { url, .. } => Ok(url.clone()),
    }
}

/// The name of a server whose `{db.NAME}` (a URL with a password) `text` uses, if any.
fn server_with_password(env: &EnvSpec, text: &str) -> Option<String> {
    env.servers
        .iter()
        .filter(|(_, s)| match s {
            DbServer::Managed(_) => true,
            DbServer::External { url, .. } => homeport_db::parse_url(url)
                .ok()
                .is_some_and(|u| u.password.is_some()),
        })
        .map(|(n, _)| n)
        .find(|n| text.contains(&format!("{{db.{n}}}")))
        .cloned()
}

/// `databases.main = { postgres = "15", port = 5433 }` (or `mariadb`, `redis`): a server
/// Homeport runs. `{ url = "postgresql://…" }`: a server it only backs up.
fn resolve_server(
    name: &str,
    raw: &RawServerDb,
    span: Range<usize>,
    field: &str,
    data_dir: &Path,
    base: &Path,
    sink: &mut Sink<'_>,
) -> Option<DbServer> {
    use homeport_db::Engine;
    let engines: Vec<(Engine, &RawVersion)> = [
        (Engine::Postgres, &raw.postgres),
        (Engine::Mariadb, &raw.mariadb),
        (Engine::Mariadb, &raw.mysql),
        (Engine::Redis, &raw.redis),
    ]
    .into_iter()
    .filter_map(|(e, v)| v.as_ref().map(|v| (e, v)))
    .collect();
    let mut fail = |msg: String| {
        sink.push(Some(span.clone()), field, msg);
        None
    };
    if let Some(url) = &raw.url {
        if !engines.is_empty() || raw.port.is_some() || raw.dir.is_some() || raw.user.is_some() {
            return fail(
                "a database is either run by Homeport (postgres/mariadb/redis = VERSION, port) or \
                 reached by `url` (backed up only), not both"
                    .into(),
            );
        }
        let parsed = match homeport_db::parse_url(url) {
            Ok(p) => p,
            Err(e) => return fail(format!("the url: {e}")),
        };
        return Some(DbServer::External {
            engine: parsed.engine,
            url: url.clone(),
            password_file: raw
                .password_file
                .as_deref()
                .map(|f| normalize(&expand_home(f, base))),
        });
    }
    let (engine, version) = match engines.as_slice() {
        [one] => *one,
        [] => {
            return fail(
                "name the server and its version (postgres = \"15\", mariadb = \"10.11\" or \
                 redis = \"7\") or an external server's `url`"
                    .into(),
            );
        }
        _ => return fail("name one server: postgres, mariadb or redis".into()),
    };
    if version.0.is_empty() || !version.0.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return fail(format!(
            "{:?} is not a version; write the major version, e.g. {} = \"{}\"",
            version.0,
            engine.key(),
            match engine {
                Engine::Postgres => "15",
                Engine::Mariadb => "10.11",
                Engine::Redis => "7",
            }
        ));
    }
    if raw.password_file.is_some() {
        return fail(
            "`password_file` is for external servers; Homeport makes the password of a server it \
             runs"
                .into(),
        );
    }
    let Some(port) = raw.port else {
        return fail(format!(
            "give {name} its own loopback port, e.g. port = {}",
            match engine {
                Engine::Postgres => 5433,
                Engine::Mariadb => 3307,
                Engine::Redis => 6380,
            }
        ));
    };
    let Some(port) = u16::try_from(port).ok().filter(|p| *p > 0) else {
        return fail(format!("port {port} is out of range; expected 1 to 65535"));
    };
    let database = match (&raw.database, engine) {
        (Some(_), Engine::Redis) => {
            return fail(
                "Redis has numbered databases, not named ones: leave out `database`".into(),
            );
        }
        (Some(d), _)
            if !d.is_empty() && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            d.clone()
        }
        (Some(d), _) => {
            return fail(format!("database name {d:?}: use letters, digits and `_`"));
        }
        (None, Engine::Redis) => "0".to_owned(),
        (None, _) => name.replace('-', "_"),
    };
    let dir = raw.dir.as_deref().map_or_else(
        || data_dir.join("databases").join(name),
        |d| normalize(&expand_home(d, base)),
    );
    Some(DbServer::Managed(homeport_db::Server {
        name: name.to_owned(),
        engine,
        version: version.0.clone(),
        port,
        dir,
        bin_dir: raw.bin.as_deref().map(|b| normalize(&expand_home(b, base))),
        database,
        user: raw.user.clone(),
    }))
}

/// The services that run the environment's managed servers (`db-NAME`), and every other service
/// of the environment made to wait for them.
fn database_services(env: &EnvSpec, services: &mut [ServiceSpec]) -> Vec<ServiceSpec> {
    let exe = std::env::current_exe()
        .unwrap_or_else(|_| PathBuf::from("homeport"))
        .display()
        .to_string();
    let mut out = Vec::new();
    for (name, server) in &env.servers {
        let DbServer::Managed(s) = server else {
            continue;
        };
        let key = ServiceKey::new(&env.app, &env.env, DbServer::service_name(name));
        for svc in services
            .iter_mut()
            .filter(|x| x.key.app == env.app && x.key.env == env.env && x.database.is_none())
        {
            if !svc.depends_on.contains(&key) {
                svc.depends_on.push(key.clone());
            }
        }
        let argv = |action: &str| {
            let mut a = vec![exe.clone(), "db".into(), action.into()];
            a.extend(s.to_args());
            a
        };
        out.push(ServiceSpec {
            key,
            command: CommandSpec::Argv(argv("serve")),
            cwd: env.data_dir.clone(),
            env: BTreeMap::new(),
            secret_env: Default::default(),
            env_files: Vec::new(),
            port: Some(s.port),
            ports: BTreeMap::new(),
            health: Some(HealthCheck {
                probe: HealthProbe::Command(CommandSpec::Argv(argv("ping"))),
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(10),
                retries: 3,
                // The first start initialises the data folder.
                start_period: Duration::from_secs(120),
            }),
            restart: RestartPolicy {
                max_failures: Some(5),
                ..RestartPolicy::default()
            },
            depends_on: Vec::new(),
            autostart: env.autostart,
            stop_signal: s.engine.stop_signal(),
            // A server finishing its writes must not be killed half-way.
            stop_timeout: Duration::from_secs(60),
            data_dir: env.data_dir.clone(),
            slot: None,
            database: Some(name.clone()),
        });
    }
    out
}
