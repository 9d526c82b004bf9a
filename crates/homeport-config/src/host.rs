//! What another host's config needs of this one: the environments that say `host = "NAME"`,
//! as they are written here (placeholders and `~` are expanded there, against that host's home
//! and data folder), with the app settings its agent uses to deploy them.

/// How the host gets its releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostFragment<'a> {
    /// Built here and shipped: the host needs no source, no build steps.
    Shipped,
    /// Built there from a checkout at this path on the host.
    BuiltThere { source: &'a str },
}

/// The `[apps.A]` and `[apps.A.env.E]` tables (as TOML) of every environment of the config
/// `text` that runs on `host`, for `homeport remote merge-config` there. `None` when the config
/// puts nothing there.
pub fn host_fragment(
    text: &str,
    host: &str,
    how: &HostFragment<'_>,
) -> Result<Option<String>, String> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("the config is not valid TOML: {e}"))?;
    let Some(apps) = doc.get("apps").and_then(toml::Value::as_table) else {
        return Ok(None);
    };
    let mut out_apps = toml::Table::new();
    for (name, app) in apps {
        let Some(app) = app.as_table() else { continue };
        let Some(envs) = app.get("env").and_then(toml::Value::as_table) else {
            continue;
        };
        let mut out_envs = toml::Table::new();
        for (env_name, env) in envs {
            let Some(env) = env.as_table() else { continue };
            if env.get("host").and_then(toml::Value::as_str) != Some(host) {
                continue;
            }
            let mut env = env.clone();
            env.remove("host");
            out_envs.insert(env_name.clone(), toml::Value::Table(env));
        }
        if out_envs.is_empty() {
            continue;
        }
        let mut out_app = toml::Table::new();
        // What the host's agent runs for a deploy: the install steps in the release there (with
        // their variables), the migration, whether it may be kept on a rollback, how many
        // releases to keep.
        let mut keys = vec![
            "install",
            "step_env",
            "migrate",
            "backward_compatible_migrations",
            "keep_releases",
        ];
        if let HostFragment::BuiltThere { source } = how {
            out_app.insert("source".into(), toml::Value::String((*source).to_owned()));
            keys.extend(["test", "build", "artifacts"]);
        }
        for k in keys {
            if let Some(v) = app.get(k) {
                out_app.insert(k.into(), v.clone());
            }
        }
        out_app.insert("env".into(), toml::Value::Table(out_envs));
        out_apps.insert(name.clone(), toml::Value::Table(out_app));
    }
    if out_apps.is_empty() {
        return Ok(None);
    }
    let mut root = toml::Table::new();
    root.insert("apps".into(), toml::Value::Table(out_apps));
    toml::to_string(&root)
        .map(Some)
        .map_err(|e| format!("cannot write the host's tables: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[agent]
port = 7800

[apps.shop]
source = "~/dev/shop"
build = ["cargo build --release"]
artifacts = ["target/release/shop"]
migrate = "{release}/shop migrate --db {db.main}"
install = ["python3 -m venv {release}/venv"]
keep_releases = 3

[apps.shop.env.beta]
services.web = { command = "{release}/shop", port = 8081 }

[apps.shop.env.production]
host = "vps"
databases = { main = "~/.local/share/shop/prod.db" }

[apps.shop.env.production.services.web]
command = "{release}/target/release/shop --port {port}"
port = 8080
"#;

    fn parse(s: &str) -> toml::Table {
        s.parse().unwrap_or_else(|e| panic!("{e}\n{s}"))
    }

    #[test]
    fn only_the_hosts_environments_go_there_as_written() {
        let out = host_fragment(CONFIG, "vps", &HostFragment::Shipped)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_default();
        let t = parse(&out);
        let shop = &t["apps"]["shop"];
        assert!(shop.get("source").is_none() && shop.get("build").is_none());
        assert_eq!(shop["keep_releases"].as_integer(), Some(3));
        // The install steps run in the release where it runs.
        assert!(shop["install"].as_array().is_some_and(|a| a.len() == 1));
        assert!(
            shop["migrate"]
                .as_str()
                .is_some_and(|m| m.contains("{db.main}"))
        );
        let prod = &shop["env"]["production"];
        assert!(prod.get("host").is_none());
        assert_eq!(
            prod["databases"]["main"].as_str(),
            Some("~/.local/share/shop/prod.db"),
            "expanded on the host, not here"
        );
        assert_eq!(prod["services"]["web"]["port"].as_integer(), Some(8080));
        assert!(shop["env"].get("beta").is_none(), "beta runs here");
        assert!(t.get("agent").is_none(), "the host's [agent] is its own");
        assert_eq!(
            host_fragment(CONFIG, "mini", &HostFragment::Shipped),
            Ok(None)
        );
    }

    #[test]
    fn a_build_there_brings_the_build_steps_and_the_checkout() {
        let out = host_fragment(
            CONFIG,
            "vps",
            &HostFragment::BuiltThere {
                source: "/home/ana/.local/share/homeport/sources/shop",
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_default();
        let t = parse(&out);
        let shop = &t["apps"]["shop"];
        assert_eq!(
            shop["source"].as_str(),
            Some("/home/ana/.local/share/homeport/sources/shop")
        );
        assert!(shop["build"].as_array().is_some() && shop["artifacts"].as_array().is_some());
    }
}
