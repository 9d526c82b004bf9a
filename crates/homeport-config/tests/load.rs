//! The config loader against real TOML text: what a user writes and what they are told.

use std::path::Path;
use std::time::Duration;

use homeport_config::{CommandSpec, Config, Diagnostic, HealthProbe, RestartMode, load_str};
use homeport_types::ServiceKey;

fn load(text: &str) -> Result<Config, Vec<Diagnostic>> {
    load_str(Path::new("/etc/hp/homeport.toml"), text).map_err(|d| d.0)
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(d) => d,
    }
}

fn find<'a>(diags: &'a [Diagnostic], field: &str) -> &'a Diagnostic {
    diags
        .iter()
        .find(|d| d.field == field)
        .unwrap_or_else(|| panic!("no diagnostic for {field} in {diags:#?}"))
}

const GOOD: &str = r#"
[agent]
port = 0
data_dir = "/var/hp"

[apps.clauset.env.production]
autostart = true
databases = { sessions = "/srv/clauset/sessions.db" }
config_files = { app = "/etc/clauset/production.toml" }
env = { RUST_LOG = "info", CLAUSET_CONFIG = "{config.app}" }

[apps.clauset.env.production.services.server]
command = "{release}/clauset-server --port {port} --db '{db.sessions}'"
secret_env = { API_KEY = "s3cret" }
port = 8080
health = "/health"
restart = { policy = "always", backoff_min = "1s", max_failures = 3, window = "1m" }

[apps.clauset.env.production.services.worker]
command = ["/bin/sh", "--data", "{data_dir}", "--app={app}-{env}"]
depends_on = ["server"]
health = { command = "test -d {data_dir}", interval = "2s" }
stop_signal = "INT"
stop_timeout = "3s"

[apps.clauset.env.beta.services.server]
command = "echo {port} && sleep 100"
shell = true
port = 8081
health = { tcp = true }
"#;

#[test]
fn a_valid_file_resolves_defaults_and_placeholders() {
    let cfg = load(GOOD).unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(cfg.agent.port, 0);
    assert_eq!(cfg.services.len(), 3);
    let server = cfg
        .service(&ServiceKey::new("clauset", "production", "server"))
        .expect("server");
    assert_eq!(
        server.command,
        CommandSpec::Argv(vec![
            "/var/hp/apps/clauset/production/current/clauset-server".into(),
            "--port".into(),
            "8080".into(),
            "--db".into(),
            "/srv/clauset/sessions.db".into(),
        ])
    );
    assert_eq!(
        server.health.as_ref().map(|h| &h.probe),
        Some(&HealthProbe::Http("http://127.0.0.1:8080/health".into()))
    );
    assert_eq!(server.restart.mode, RestartMode::Always);
    assert_eq!(server.restart.max_failures, Some(3));
    assert!(server.autostart, "inherits the environment's autostart");
    assert_eq!(server.env.get("RUST_LOG").map(String::as_str), Some("info"));
    assert_eq!(server.env.get("PORT").map(String::as_str), Some("8080"));
    assert_eq!(
        server.env.get("API_KEY").map(String::as_str),
        Some("s3cret")
    );
    assert!(server.secret_env.contains("API_KEY"));
    assert_eq!(
        server.env.get("CLAUSET_CONFIG").map(String::as_str),
        Some("/etc/clauset/production.toml")
    );

    let worker = cfg
        .service(&ServiceKey::new("clauset", "production", "worker"))
        .expect("worker");
    assert_eq!(
        worker.depends_on,
        vec![ServiceKey::new("clauset", "production", "server")]
    );
    assert_eq!(worker.stop_signal, 2);
    assert_eq!(worker.stop_timeout, Duration::from_secs(3));
    assert_eq!(
        worker.command.argv()[2..],
        [
            "/var/hp/apps/clauset/production/data".to_owned(),
            "--app=clauset-production".to_owned()
        ]
    );

    let beta = cfg
        .service(&ServiceKey::new("clauset", "beta", "server"))
        .expect("beta");
    assert_eq!(
        beta.command,
        CommandSpec::Shell("echo 8081 && sleep 100".into())
    );
    assert!(
        !beta.autostart,
        "environments do not autostart unless they say so"
    );
    assert_eq!(
        beta.health.as_ref().map(|h| &h.probe),
        Some(&HealthProbe::Tcp(8081))
    );
}

#[test]
fn every_error_is_reported_at_once_with_its_place() {
    let diags = errors(
        r#"[apps.a.env.prod.services.web]
command = "/bin/sh"
port = 8080
health = { http = "/h", intervl = "5s" }
restrat = "always"

[apps.a.env.beta.services.web]
command = ""
port = 70000

[apps.b.env.prod.services.api]
command = ["/bin/sh"]
port = 8080
cwd = "/definitely/not/here"
"#,
    );
    let typo = find(&diags, "apps.a.env.prod.services.web.restrat");
    assert_eq!((typo.line, typo.column), (5, 1));
    assert_eq!(typo.help.as_deref(), Some("did you mean `restart`?"));
    let nested = find(&diags, "apps.a.env.prod.services.web.health.intervl");
    assert_eq!(nested.line, 4);
    assert_eq!(nested.help.as_deref(), Some("did you mean `interval`?"));
    let empty = find(&diags, "apps.a.env.beta.services.web.command");
    assert!(empty.message.contains("empty"), "{empty}");
    let range = find(&diags, "apps.a.env.beta.services.web.port");
    assert_eq!((range.line, range.column), (9, 8));
    assert!(
        range.message.contains("70000") && range.message.contains("65535"),
        "{range}"
    );
    let clash = find(&diags, "apps.b.env.prod.services.api.port");
    assert!(
        clash.message.contains("a/prod/web"),
        "names the other user: {clash}"
    );
    let clash_back = find(&diags, "apps.a.env.prod.services.web.port");
    assert!(clash_back.message.contains("b/prod/api"), "{clash_back}");
    let cwd = find(&diags, "apps.b.env.prod.services.api.cwd");
    assert!(cwd.message.contains("/definitely/not/here"), "{cwd}");
    assert_eq!(cwd.line, 14);
    // The rendered form names file, line, column and field.
    assert_eq!(
        typo.to_string(),
        "/etc/hp/homeport.toml:5:1: apps.a.env.prod.services.web.restrat: unknown key `restrat` (did you mean `restart`?)"
    );
}

#[test]
fn type_errors_in_several_services_are_all_reported() {
    let diags = errors(
        r#"[apps.a.env.p.services.one]
command = "/bin/sh"
autostart = "yes"

[apps.a.env.p.services.two]
command = "/bin/sh"
stop_timeout = "soon"
"#,
    );
    let one = find(&diags, "apps.a.env.p.services.one");
    assert_eq!(one.line, 3, "{one}");
    assert!(
        one.message.contains("bool") || one.message.contains("boolean"),
        "{one}"
    );
    let two = find(&diags, "apps.a.env.p.services.two");
    assert_eq!(two.line, 7, "{two}");
    assert!(two.message.contains("soon"), "{two}");
}

#[test]
fn dependency_cycles_and_unknown_dependencies_are_named() {
    let diags = errors(
        r#"[apps.a.env.p.services.x]
command = "/bin/sh"
depends_on = ["y"]
[apps.a.env.p.services.y]
command = "/bin/sh"
depends_on = ["x", "zz"]
"#,
    );
    let cycle = diags
        .iter()
        .find(|d| d.message.starts_with("dependency cycle"))
        .expect("cycle reported");
    assert!(cycle.message.contains("x → y → x"), "{cycle}");
    assert_eq!(
        (cycle.line, cycle.field.as_str()),
        (3, "apps.a.env.p.services.x.depends_on"),
        "the depends_on entry that closes the cycle: {cycle}"
    );
    let unknown = diags
        .iter()
        .find(|d| d.message.contains("unknown service `zz`"))
        .expect("unknown dep");
    assert_eq!(unknown.line, 6);
}

#[test]
fn environments_may_not_share_a_database() {
    let diags = errors(
        r#"[apps.a.env.prod]
databases = { main = "/srv/a/main.db" }
[apps.a.env.beta]
databases = { main = "/srv/a/../a/main.db" }
"#,
    );
    let prod = find(&diags, "apps.a.env.prod.databases.main");
    assert!(prod.message.contains("a/beta"), "{prod}");
    let beta = find(&diags, "apps.a.env.beta.databases.main");
    assert!(beta.message.contains("a/prod"), "{beta}");
}

#[test]
fn a_database_shared_through_a_symbolic_link_is_found() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let real = dir.path().join("real");
    std::fs::create_dir_all(&real)?;
    std::os::unix::fs::symlink(&real, dir.path().join("alias"))?;
    let text = |beta_dir: &str| {
        format!(
            "[apps.a.env.prod]\ndatabases = {{ main = \"{}/real/main.db\" }}\n[apps.a.env.beta]\ndatabases = {{ main = \"{}/{beta_dir}/main.db\" }}\n",
            dir.path().display(),
            dir.path().display()
        )
    };
    // The file does not exist yet: the folders' real paths meet.
    let diags = errors(&text("alias"));
    let beta = find(&diags, "apps.a.env.beta.databases.main");
    assert!(
        beta.message.contains("a/prod") && beta.message.contains("environments must not share"),
        "{beta}"
    );
    // It exists: the same file, whichever name leads to it.
    std::fs::write(real.join("main.db"), b"")?;
    let diags = errors(&text("alias"));
    let prod = find(&diags, "apps.a.env.prod.databases.main");
    assert!(prod.message.contains("a/beta (as "), "{prod}");
    // A hard link is the same file too; a different folder is not.
    std::fs::create_dir_all(dir.path().join("other"))?;
    std::fs::hard_link(real.join("main.db"), dir.path().join("other/main.db"))?;
    assert!(!errors(&text("other")).is_empty());
    std::fs::remove_file(dir.path().join("other/main.db"))?;
    assert!(load(&text("other")).is_ok());
    Ok(())
}

#[test]
fn unknown_placeholders_and_missing_ports_are_errors() {
    let diags = errors(
        r#"[apps.a.env.p.services.x]
command = "/bin/sh --port {port} --dir {datadir}"
health = "/health"
"#,
    );
    let cmd = find(&diags, "apps.a.env.p.services.x.command");
    assert!(
        cmd.message.contains("{port}") || cmd.message.contains("{datadir}"),
        "{cmd}"
    );
    let health = find(&diags, "apps.a.env.p.services.x.health");
    assert!(health.message.contains("port"), "{health}");
}

#[test]
fn the_migrate_command_is_expanded_and_checked_for_every_environment() {
    let text = r#"[apps.a]
migrate = "{release}/migrate --db '{db.main}' --config {config.app}"

[apps.a.env.production]
databases = { main = "/srv/a/main.db" }
config_files = { app = "/etc/a/production.toml" }

[apps.a.env.beta]
databases = { main = "/srv/a/beta db.db" }
"#;
    // beta has no `config_files.app`: a typo or an omission fails, with the line of `migrate`.
    let diags = errors(text);
    let m = find(&diags, "apps.a.migrate");
    assert_eq!(m.line, 2, "{m}");
    assert!(
        m.message.contains("{config.app}") && m.message.contains("a/beta"),
        "{m}"
    );
    let fixed = text.replace(
        "[apps.a.env.beta]
",
        "[apps.a.env.beta]
config_files = { app = \"/etc/a/beta.toml\" }
",
    );
    let config = load(&fixed).unwrap_or_else(|d| panic!("{d:#?}"));
    let beta = config.envs.iter().find(|e| e.env == "beta").expect("beta");
    let argv = homeport_config::migrate_argv(
        config.apps[0].migrate.as_deref().expect("migrate"),
        beta,
        Path::new("/r/1"),
    );
    assert_eq!(
        argv,
        Ok(vec![
            "/r/1/migrate".to_owned(),
            "--db".to_owned(),
            "/srv/a/beta db.db".to_owned(),
            "--config".to_owned(),
            "/etc/a/beta.toml".to_owned(),
        ])
    );
    // Per-service placeholders mean nothing to a command that runs once per environment.
    let diags = errors(
        "[apps.a]
migrate = \"m --port {port}\"
[apps.a.env.p]
",
    );
    assert!(
        find(&diags, "apps.a.migrate")
            .message
            .contains("once per environment"),
        "{diags:#?}"
    );
}

#[test]
fn syntax_errors_point_at_the_line() {
    let diags = errors("[apps.a\ncommand = 1\n");
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].line, 1);
}

#[test]
fn unknown_top_level_keys_get_suggestions() {
    let diags = errors("[app.a.env.p.services.x]\ncommand = \"/bin/x\"\n");
    let d = find(&diags, "app");
    assert_eq!(d.help.as_deref(), Some("did you mean `apps`?"));
}

#[test]
fn the_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/homeport.example.toml");
    let text = std::fs::read_to_string(&path).expect("example config exists");
    if let Err(d) = load_str(&path, &text) {
        panic!("the example config must load:\n{d}");
    }
}

#[test]
fn the_demo_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/demo.toml");
    let text = std::fs::read_to_string(&path).expect("demo config exists");
    let text = text
        .replace("@FIXTURE@", "/usr/bin/true")
        .replace("@DEMO@", "/tmp/homeport-demo");
    if let Err(d) = load_str(&path, &text) {
        panic!("the demo config must load:\n{d}");
    }
}

#[test]
fn a_program_that_cannot_run_is_reported_and_home_is_expanded() {
    let diags = errors(
        r#"[apps.a.env.p.services.gone]
command = "/definitely/not/a/program --flag"
[apps.a.env.p.services.nameless]
command = ["no-such-program-anywhere"]
[apps.a.env.p.services.home]
command = "~/bin/app"
"#,
    );
    let gone = find(&diags, "apps.a.env.p.services.gone.command");
    assert_eq!(
        gone.message,
        "program /definitely/not/a/program does not exist"
    );
    let nameless = find(&diags, "apps.a.env.p.services.nameless.command");
    assert_eq!(
        nameless.message,
        "program `no-such-program-anywhere` is not on $PATH"
    );
    let home = find(&diags, "apps.a.env.p.services.home.command");
    let expected_home = std::env::var("HOME").unwrap_or_default();
    assert!(
        home.message.contains(&format!("{expected_home}/bin/app")),
        "{home}"
    );
}

#[test]
fn a_relative_command_says_where_it_was_looked_for() {
    let diags = errors(
        r#"[apps.a.env.p.services.rel]
command = "bin/server --port 1"
"#,
    );
    let rel = find(&diags, "apps.a.env.p.services.rel.command");
    assert!(
        rel.message.contains("does not exist")
            && rel
                .message
                .contains("a relative path in `command` is taken from the config file's folder"),
        "{rel}"
    );
}

#[test]
fn the_health_gate_waits_for_stability_by_default_and_steps_get_their_environment() {
    let cfg = load(
        r#"[apps.a]
step_env = { CARGO_TERM_COLOR = "never" }
install = ["python3 -m venv {release}/venv"]
[apps.a.env.prod]
env = { DATABASE_URL = "sqlite:///{data_dir}/a.db", WEB = "http://127.0.0.1:{port}" }
[apps.a.env.beta]
health_stable = "0s"
"#,
    )
    .expect("loads");
    let prod = cfg.envs.iter().find(|e| e.env == "prod").expect("prod");
    let beta = cfg.envs.iter().find(|e| e.env == "beta").expect("beta");
    assert_eq!(prod.health_stable, std::time::Duration::from_secs(10));
    assert!(beta.health_stable.is_zero());
    let vars = homeport_config::step_env(prod, std::path::Path::new("/r"));
    let url = vars
        .vars
        .iter()
        .find(|(k, _)| k == "DATABASE_URL")
        .expect("url");
    assert_eq!(url.1, format!("sqlite:///{}/a.db", prod.data_dir.display()));
    assert_eq!(
        vars.skipped,
        ["WEB"],
        "a per-service placeholder has no value for a step"
    );
    let diags = errors(
        r#"[apps.a]
install = ["make {port}"]
"#,
    );
    assert!(
        find(&diags, "apps.a.install").message.contains("{port}"),
        "{diags:#?}"
    );
}

#[test]
fn backups_are_configured_per_environment() {
    let cfg = load(
        r#"[apps.a.env.prod]
databases = { main = "/srv/a.db" }
files = ["/srv/uploads"]
backup = { every = "6h", keep_last = 3, compress = false }
[apps.a.env.beta]
backup = { at = "03:30" }
"#,
    )
    .unwrap_or_else(|d| panic!("{d:#?}"));
    let prod = cfg.envs.iter().find(|e| e.env == "prod").expect("prod");
    assert_eq!(
        prod.backup.schedule,
        Some(homeport_config::BackupSchedule::Every(Duration::from_secs(
            6 * 3600
        )))
    );
    assert_eq!(
        (
            prod.backup.keep_last,
            prod.backup.keep_daily,
            prod.backup.compress
        ),
        (3, 7, false)
    );
    assert_eq!(prod.files, vec![std::path::PathBuf::from("/srv/uploads")]);
    let beta = cfg.envs.iter().find(|e| e.env == "beta").expect("beta");
    assert_eq!(
        beta.backup.schedule,
        Some(homeport_config::BackupSchedule::DailyAt(3 * 3600 + 30 * 60))
    );

    let diags = errors("[apps.a.env.p]\nbackup = { at = \"25:99\", keep_lats = 1 }\n");
    assert!(
        find(&diags, "apps.a.env.p.backup.keep_lats")
            .help
            .as_deref()
            == Some("did you mean `keep_last`?"),
        "{diags:#?}"
    );
    assert!(
        find(&diags, "apps.a.env.p.backup.at")
            .message
            .contains("HH:MM")
    );
}

#[test]
fn router_settings_and_names_resolve_with_defaults() {
    let c = load(
        r#"[agent]
https_port = 7443

[apps.shop.env.production]
hostnames = ["Shop.Test"]
drain = "5s"
[apps.shop.env.production.services.web]
command = "/bin/sh"
port = 8080
[apps.shop.env.production.services.worker]
command = "/bin/sh"

[apps.shop.env.beta]
web = "front"
[apps.shop.env.beta.services.front]
command = "/bin/sh"
port = 8081
[apps.shop.env.beta.services.admin]
command = "/bin/sh"
port = 8082
"#,
    )
    .expect("valid");
    assert_eq!(c.agent.router_port, 7780);
    assert_eq!(c.agent.https_port, Some(7443));
    let env = |name: &str| c.envs.iter().find(|e| e.env == name).expect("env");
    let prod = env("production");
    assert_eq!(
        prod.web.as_deref(),
        Some("web"),
        "the one service with a port"
    );
    assert_eq!(prod.hostnames, ["shop.test"]);
    assert_eq!(prod.drain, Duration::from_secs(5));
    let beta = env("beta");
    assert_eq!(beta.web.as_deref(), Some("front"));
    assert_eq!(beta.drain, Duration::from_secs(30));
}

#[test]
fn router_mistakes_are_named_with_their_line() {
    let diags = errors(
        r#"[agent]
router_port = 0
https_port = 7443

[apps.shop.env.production]
web = "worker"
hostnames = ["shop.test:8443", "shop.test", "beta.shop.localhost", "*.shop.test", "shop"]
[apps.shop.env.production.services.web]
command = "/bin/sh"
port = 8080
[apps.shop.env.production.services.worker]
command = "/bin/sh"

[apps.shop.env.beta]
web = "nope"
hostnames = ["SHOP.test"]
[apps.shop.env.beta.services.front]
command = "/bin/sh"
port = 8081
"#,
    );
    let https = find(&diags, "agent.https_port");
    assert_eq!(https.line, 3, "{https}");
    assert!(https.message.contains("router_port = 0"), "{https}");
    let web = find(&diags, "apps.shop.env.production.web");
    assert_eq!(web.line, 6);
    assert!(
        web.message.contains("shop/production/worker has no `port`"),
        "{web}"
    );
    let nope = find(&diags, "apps.shop.env.beta.web");
    assert_eq!(nope.line, 15);
    assert!(
        nope.message
            .contains("no service \"nope\"; its services: front"),
        "{nope}"
    );
    let names: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.field.ends_with(".hostnames"))
        .collect();
    let said = |needle: &str| {
        names
            .iter()
            .find(|d| d.message.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {names:#?}"))
    };
    assert!(said("without a port").line == 7);
    assert!(said("beta.shop.localhost already names shop/beta").line == 7);
    assert!(said("wildcard").line == 7);
    assert!(said("one label").line == 7);
    // Environments are read in name order: beta claimed shop.test first.
    assert!(said("shop.test already names shop/beta").line == 7);

    let clash = errors(
        r#"[agent]
router_port = 8080
[apps.a.env.p.services.web]
command = "/bin/sh"
port = 8080
"#,
    );
    let r = find(&clash, "agent.router_port");
    assert!(r.message.contains("also used by a/p/web"), "{r}");
}

#[test]
fn placeholders_in_a_shell_line_are_quoted_for_the_shell() {
    let config = load(
        r#"[apps.a.env.p]
databases = { main = "/srv/a/prod.db; id > /tmp/PWNED; :", plain = "/srv/a/plain.db" }
[apps.a.env.p.services.x]
command = "sqlite3 {db.main} .tables && ls {db.plain}"
shell = true
"#,
    )
    .expect("valid");
    let argv = config.services[0].command.argv();
    assert_eq!(
        argv[2],
        "sqlite3 '/srv/a/prod.db; id > /tmp/PWNED; :' .tables && ls /srv/a/plain.db"
    );
}

#[test]
fn database_paths_must_name_a_file_or_a_place_for_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "not a database, just notes").expect("write");
    let text = format!(
        r#"[apps.a.env.p]
databases = {{ nl = "/srv/a/x\n.db", folder = "{d}", under = "{f}/x.db" }}
"#,
        d = dir.path().display(),
        f = file.display()
    );
    let diags = errors(&text);
    let message = |name: &str| {
        find(&diags, &format!("apps.a.env.p.databases.{name}"))
            .message
            .clone()
    };
    assert!(message("nl").contains("control character"), "{diags:#?}");
    assert!(message("folder").contains("is a folder"), "{diags:#?}");
    assert!(
        message("under").contains("is a file, not a folder"),
        "{diags:#?}"
    );
}

#[test]
fn a_file_that_is_not_utf8_is_reported_where_it_goes_wrong() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("homeport.toml");
    std::fs::write(&path, b"[agent]\nport = 0\n# caf\xe9 (Latin-1)\n").expect("write");
    let diags = homeport_config::load(&path).expect_err("refused").0;
    assert_eq!((diags[0].line, diags[0].column), (3, 6), "{:#?}", diags[0]);
    assert!(diags[0].message.contains("UTF-8"), "{}", diags[0]);
}

#[test]
fn limits_are_checked_and_say_what_they_mean() {
    let d = errors(
        r#"
[agent]
log_max_bytes = 0
log_keep = -1

[apps.a.env.prod.services.web]
command = "/bin/true"
restart = { max_failures = 0 }
health = { command = "/bin/true", timeout = "0s" }
"#,
    );
    let bytes = find(&d, "agent.log_max_bytes");
    assert_eq!(bytes.line, 3, "{bytes}");
    assert!(
        bytes.message.contains("rotated when it grows past") && bytes.message.contains("4096"),
        "{bytes}"
    );
    assert!(
        find(&d, "agent.log_keep")
            .message
            .contains("rotated files kept")
    );
    let mf = find(&d, "apps.a.env.prod.services.web.restart.max_failures");
    assert!(mf.message.contains("\"unlimited\""), "{mf}");
    assert!(
        find(&d, "apps.a.env.prod.services.web.health")
            .message
            .contains("`timeout`")
    );
}

#[test]
fn max_failures_may_be_unlimited() {
    let c = load(
        r#"
[apps.a.env.prod.services.web]
command = "/bin/true"
restart = { policy = "always", max_failures = "unlimited" }
"#,
    )
    .unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(c.services[0].restart.max_failures, None);
    let d = errors(
        "[apps.a.env.prod.services.web]\ncommand = \"/bin/true\"\nrestart = { max_failures = \"lots\" }\n",
    );
    assert!(
        find(&d, "apps.a.env.prod.services.web.restart.max_failures")
            .message
            .contains("\"lots\"")
    );
}

#[test]
fn automatic_updates_are_opt_in_per_environment_with_a_utc_window() {
    let cfg = load(
        r#"[apps.a.env.beta]
auto_update = { every = "30m", window = "22:00-04:30" }
[apps.a.env.prod]
auto_update = {}
[apps.a.env.dev]
"#,
    )
    .unwrap_or_else(|d| panic!("{d:#?}"));
    let env = |name: &str| cfg.envs.iter().find(|e| e.env == name).expect("env");
    let beta = env("beta").auto_update.expect("beta updates itself");
    assert_eq!(beta.every, Duration::from_secs(30 * 60));
    let w = beta.window.expect("a window");
    assert_eq!(w.to_string(), "22:00-04:30");
    assert!(w.contains(23 * 3600) && w.contains(3600) && !w.contains(12 * 3600));
    assert!(!w.contains(4 * 3600 + 30 * 60), "the end is outside");
    let prod = env("prod").auto_update.expect("prod updates itself");
    assert_eq!((prod.every, prod.window), (Duration::from_secs(3600), None));
    assert_eq!(env("dev").auto_update, None, "off unless asked for");

    let diags = errors(
        "[apps.a.env.p]\nauto_update = { window = \"2am-5am\", evry = \"1h\" }\n[apps.a.env.q]\nauto_update = { window = \"02:00-02:00\" }\n",
    );
    assert!(
        find(&diags, "apps.a.env.p.auto_update.evry")
            .help
            .as_deref()
            == Some("did you mean `every`?"),
        "{diags:#?}"
    );
    let bad = find(&diags, "apps.a.env.p.auto_update.window");
    assert!(bad.message.contains("HH:MM-HH:MM"), "{bad:?}");
    assert_eq!(bad.line, 2);
    assert!(
        find(&diags, "apps.a.env.q.auto_update.window")
            .message
            .contains("same time")
    );
}

#[test]
fn sampling_is_every_five_seconds_unless_said_and_zero_turns_it_off() {
    let base = "[apps.a.env.prod.services.web]\ncommand = \"/bin/true\"\n";
    let c = load(base).unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(c.agent.sample_every, std::time::Duration::from_secs(5));
    let off = load(&format!("[agent]\nsample_every = \"0s\"\n\n{base}"))
        .unwrap_or_else(|d| panic!("{d:#?}"));
    assert!(off.agent.sample_every.is_zero());
    let d = errors(&format!("[agent]\nsample_every = \"2h\"\n\n{base}"));
    let e = find(&d, "agent.sample_every");
    assert_eq!(e.line, 2, "{e}");
    assert!(
        e.message.contains("from 1s to 1m") && e.message.contains("turns sampling off"),
        "{e}"
    );
}

/// An environment of another host is not run here, so its programs, files and ports are that
/// host's business (checked there when a deploy sends it); only its host name is checked here.
#[test]
fn an_environment_on_another_host_is_left_to_that_host() {
    let c = load(
        r#"
[agent]
port = 0

[apps.shop.env.beta.services.web]
command = "/bin/sh -c true"
port = 8080

[apps.shop.env.production]
host = "vps"
databases = { main = "~/shop.db" }

[apps.shop.env.production.services.web]
command = "/opt/only-on-the-vps/shop --port {port}"
port = 8080
"#,
    )
    .unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(c.envs.len(), 1, "beta only");
    assert!(c.services.iter().all(|s| s.key.env == "beta"));
    assert_eq!(c.host_of("shop", "production"), Some("vps"));
    assert_eq!(c.host_of("shop", "beta"), None);

    let d = errors("[apps.shop.env.production]\nhost = \"v p s\"\n");
    let e = find(&d, "apps.shop.env.production.host");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("not a host name"), "{}", e.message);
}

#[test]
fn notify_defaults_to_all_for_production_and_failures_elsewhere_and_a_bad_value_is_named() {
    let c = load(
        r#"[apps.shop.env.production.services.web]
command = "/bin/sh"
[apps.shop.env.beta.services.web]
command = "/bin/sh"
[apps.shop.env.dev]
notify = "none"
[apps.shop.env.dev.services.web]
command = "/bin/sh"
"#,
    )
    .expect("valid");
    let notify = |env: &str| {
        c.envs
            .iter()
            .find(|e| e.env == env)
            .map(|e| e.notify)
            .expect("env")
    };
    assert_eq!(notify("production"), homeport_types::NotifyPolicy::All);
    assert_eq!(notify("beta"), homeport_types::NotifyPolicy::Failures);
    assert_eq!(notify("dev"), homeport_types::NotifyPolicy::None);
    let diags = errors(
        r#"[apps.shop.env.beta]
notify = "loud"
[apps.shop.env.beta.services.web]
command = "/bin/sh"
"#,
    );
    let d = find(&diags, "apps.shop.env.beta.notify");
    assert_eq!(d.line, 2, "{d}");
    assert!(
        d.message.contains("\"all\", \"failures\" or \"none\""),
        "{d}"
    );
}
