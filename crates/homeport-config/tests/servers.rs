//! Database servers in the config: one line for the common case, and what a user is told when
//! the line is wrong.

use std::path::Path;

use homeport_config::{CommandSpec, Config, DbServer, Diagnostic, HealthProbe, load_str};

fn load(text: &str) -> Result<Config, Vec<Diagnostic>> {
    load_str(Path::new("/etc/hp/homeport.toml"), text).map_err(|d| d.0)
}

fn message(text: &str, field: &str) -> String {
    let diags = load(text).err().unwrap_or_default();
    diags
        .iter()
        .find(|d| d.field == field)
        .map(|d| d.message.clone())
        .unwrap_or_else(|| panic!("no diagnostic for {field} in {diags:#?}"))
}

fn file(data: &Path, env_lines: &str, service: &str) -> String {
    format!(
        r#"
[agent]
port = 0
data_dir = "{}"

[apps.shop.env.prod]
{env_lines}

[apps.shop.env.prod.services.web]
{service}
"#,
        data.display()
    )
}

#[test]
fn one_line_runs_a_server_that_the_environment_waits_for() -> Result<(), Box<dyn std::error::Error>>
{
    let dir = tempfile::tempdir()?;
    let text = file(
        dir.path(),
        r#"databases = { main = { postgres = "15", port = 5433 }, cache = { redis = 7, port = 6380 } }"#,
        "command = \"/bin/sleep 1\"\nenv = { DATABASE_URL = \"{db.main}\", PLAIN = \"x\" }",
    );
    let config = load(&text).map_err(|d| format!("{d:#?}"))?;
    let env = &config.envs[0];
    let Some(DbServer::Managed(main)) = env.servers.get("main") else {
        return Err("no managed server".into());
    };
    assert_eq!((main.port, main.version.as_str()), (5433, "15"));
    assert_eq!(main.database, "main");
    assert!(main.dir.starts_with(dir.path()), "{}", main.dir.display());
    let server = config
        .services
        .iter()
        .find(|s| s.key.to_string() == "shop/prod/db-main")
        .ok_or("no db-main service")?;
    assert_eq!(server.database.as_deref(), Some("main"));
    assert_eq!(
        server.stop_signal, 2,
        "PostgreSQL's fast shutdown is SIGINT"
    );
    let CommandSpec::Argv(argv) = &server.command else {
        return Err("argv".into());
    };
    assert_eq!(&argv[1..3], ["db", "serve"]);
    assert!(matches!(
        server.health.as_ref().map(|h| &h.probe),
        Some(HealthProbe::Command(_))
    ));
    let cache = config
        .services
        .iter()
        .find(|s| s.key.to_string() == "shop/prod/db-cache")
        .ok_or("no db-cache service")?;
    assert_eq!(cache.stop_signal, 15);
    let web = config
        .services
        .iter()
        .find(|s| s.key.to_string() == "shop/prod/web")
        .ok_or("no web")?;
    let deps: Vec<String> = web.depends_on.iter().map(ToString::to_string).collect();
    assert!(deps.contains(&"shop/prod/db-main".to_owned()), "{deps:?}");
    let url = &web.env["DATABASE_URL"];
    let password = std::fs::read_to_string(main.dir.join("password"))?;
    assert_eq!(
        url,
        &format!(
            "postgresql://homeport:{}@127.0.0.1:5433/main",
            password.trim()
        )
    );
    assert!(web.secret_env.contains("DATABASE_URL"), "the URL is masked");
    assert!(!web.secret_env.contains("PLAIN"));
    // Loaded again: the same password.
    let again = load(&text).map_err(|d| format!("{d:#?}"))?;
    let web2 = again
        .services
        .iter()
        .find(|s| s.key.to_string() == "shop/prod/web")
        .ok_or("no web")?;
    assert_eq!(&web2.env["DATABASE_URL"], url);
    Ok(())
}

#[test]
fn mistakes_in_a_server_line_are_named() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let svc = "command = \"/bin/sleep 1\"";
    let f = "apps.shop.env.prod.databases.main";
    let m = message(
        &file(
            dir.path(),
            r#"databases = { main = { postgres = "15" } }"#,
            svc,
        ),
        f,
    );
    assert!(m.contains("its own loopback port"), "{m}");
    // A type error is placed by line and column within the environment's table.
    let m = message(
        &file(
            dir.path(),
            r#"databases = { main = { mariadb = 10.11, port = 3307 } }"#,
            svc,
        ),
        "apps.shop.env.prod",
    );
    assert!(m.contains("write the version in quotes"), "{m}");
    let m = message(
        &file(
            dir.path(),
            r#"databases = { main = { postgres = "15", port = 5433, url = "postgresql://a@b/c" } }"#,
            svc,
        ),
        f,
    );
    assert!(m.contains("not both"), "{m}");
    let m = message(
        &file(
            dir.path(),
            r#"databases = { main = { url = "ftp://a:secret@b/c" } }"#,
            svc,
        ),
        f,
    );
    assert!(m.contains("unknown scheme") && !m.contains("secret"), "{m}");
    let m = message(
        &file(
            dir.path(),
            r#"databases = { main = { postgress = "15", port = 5433 } }"#,
            svc,
        ),
        "apps.shop.env.prod.databases.main.postgress",
    );
    assert!(m.contains("unknown key"), "{m}");
    // The password never goes on a command line.
    let m = message(
        &file(
            dir.path(),
            r#"databases = { main = { postgres = "15", port = 5433 } }"#,
            "command = \"/bin/app --db {db.main}\"",
        ),
        "apps.shop.env.prod.services.web.command",
    );
    assert!(m.contains("pass it in `env` instead"), "{m}");
    // A port clash with a service names both.
    let m = message(
        &file(
            dir.path(),
            r#"databases = { main = { postgres = "15", port = 5433 } }"#,
            "command = \"/bin/sleep 1\"\nport = 5433",
        ),
        "apps.shop.env.prod.databases.main.port",
    );
    assert!(m.contains("also used by shop/prod/web"), "{m}");
    Ok(())
}
