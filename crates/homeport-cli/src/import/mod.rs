//! `homeport import FILE`: homeport.toml services from what people run today — a Procfile,
//! PM2's process list (`pm2 jlist`) or a docker-compose file — printed, or appended to the
//! config with `--write` (the file's comments and layout kept). Whatever has no Homeport
//! equivalent is listed (on stderr, and as a comment above its service), never dropped silently.

mod compose;
mod pm2;
mod procfile;

use std::collections::BTreeMap;
use std::path::Path;

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

use crate::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Heroku/foreman Procfile: `name: command` lines
    Procfile,
    /// The JSON that `pm2 jlist` prints
    Pm2,
    /// A docker-compose (Compose Specification) YAML file
    Compose,
}

/// A command as it will be written: a line (split like a shell would, or run by one with
/// `shell`) or an argv.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Line(String),
    Argv(Vec<String>),
}

/// One service to write.
#[derive(Debug, Clone, Default)]
pub struct Service {
    pub name: String,
    pub command: Option<Command>,
    pub shell: bool,
    pub cwd: Option<String>,
    pub port: Option<u16>,
    pub env: BTreeMap<String, String>,
    pub secret_env: BTreeMap<String, String>,
    pub env_file: Vec<String>,
    pub health: Option<Health>,
    /// `restart = { … }`.
    pub restart: Vec<(String, Value)>,
    pub depends_on: Vec<String>,
    pub stop_timeout: Option<String>,
    /// What could not be mapped, in words.
    pub unmapped: Vec<String>,
}

/// `health = { PROBE = VALUE, interval = …, … }`.
#[derive(Debug, Clone)]
pub struct Health {
    /// `http`, `tcp` or `command`.
    pub probe: String,
    pub value: Value,
    /// `interval`, `timeout`, `retries`, `start_period`, as written.
    pub timing: Vec<(String, String)>,
}

/// What one file describes.
#[derive(Debug, Clone, Default)]
pub struct Import {
    pub app: String,
    pub services: Vec<Service>,
    /// Things outside any one service that could not be mapped.
    pub unmapped: Vec<String>,
}

pub fn run(
    config_path: &Path,
    file: &Path,
    format: Option<Format>,
    app: Option<String>,
    env: &str,
    write: bool,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::new(2, format!("cannot read {}: {e}", file.display())))?;
    let format = format.unwrap_or_else(|| guess(file, &text));
    let mut import = match format {
        Format::Procfile => procfile::parse(&text, file),
        Format::Pm2 => pm2::parse(&text),
        Format::Compose => compose::parse(&text, file),
    }
    .map_err(|e| Failure::new(2, format!("{}: {e}", file.display())))?;
    if let Some(a) = app {
        import.app = a;
    }
    import.app = name(&import.app);
    if !homeport_name(env) {
        return Err(Failure::new(
            2,
            format!("--env {env:?}: use letters, digits, - and _"),
        ));
    }
    if import.services.is_empty() {
        return Err(Failure::new(
            1,
            format!(
                "{} describes no service Homeport can run{}",
                file.display(),
                list(&import)
            ),
        ));
    }
    let fragment = render(&import, env, file, format);
    let notes = list(&import);
    if !write {
        crate::out::write(&fragment)?;
        if !notes.is_empty() {
            eprintln!("Not imported:{notes}");
        }
        return Ok(());
    }
    append(config_path, &import, env, &fragment)?;
    outln!(
        "Added {} service(s) to {} as {}/{env}: {}",
        import.services.len(),
        config_path.display(),
        import.app,
        import
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    if !notes.is_empty() {
        eprintln!("Not imported (also noted as comments in the file):{notes}");
    }
    outln!(
        "Check it with `homeport config check`; a running agent applies it when restarted \
         (`homeport agent restart`)"
    )?;
    Ok(())
}

fn guess(file: &Path, text: &str) -> Format {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.starts_with("procfile") {
        Format::Procfile
    } else if name.ends_with(".json") || text.trim_start().starts_with('[') {
        Format::Pm2
    } else if name.ends_with(".yml") || name.ends_with(".yaml") || name.contains("compose") {
        Format::Compose
    } else {
        Format::Procfile
    }
}

fn homeport_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A name Homeport accepts: letters, digits, `-` and `_`; anything else becomes `-`.
pub fn name(raw: &str) -> String {
    let n: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let n = n.trim_matches('-').to_owned();
    if n.is_empty() { "app".to_owned() } else { n }
}

/// Braces are placeholders in homeport.toml; text imported from elsewhere means them literally.
pub fn literal(s: &str) -> String {
    s.replace('{', "{{").replace('}', "}}")
}

/// Variables that look like credentials go to `secret_env` (masked in `show` and the dashboard).
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "API_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k.ends_with("_KEY")
}

/// Every unmapped item, one per line, for a person.
fn list(import: &Import) -> String {
    let mut out = String::new();
    for u in &import.unmapped {
        out.push_str(&format!("\n  - {u}"));
    }
    for s in &import.services {
        for u in &s.unmapped {
            out.push_str(&format!("\n  - {}: {u}", s.name));
        }
    }
    out
}

/// The TOML text of the imported services, one table each, under `apps.APP.env.ENV.services`.
pub fn render(import: &Import, env: &str, file: &Path, format: Format) -> String {
    let mut doc = DocumentMut::new();
    let mut first = true;
    for s in &import.services {
        let mut t = Table::new();
        let mut prefix = String::from("\n");
        if first {
            prefix.push_str(&format!(
                "# Imported from {} ({format:?}) by `homeport import`.\n",
                file.display()
            ));
            for u in &import.unmapped {
                prefix.push_str(&format!("# Not imported: {u}\n"));
            }
            first = false;
        }
        for u in &s.unmapped {
            prefix.push_str(&format!("# Not imported: {u}\n"));
        }
        t.decor_mut().set_prefix(prefix);
        match &s.command {
            Some(Command::Line(l)) => {
                t["command"] = toml_edit::value(l.as_str());
            }
            Some(Command::Argv(a)) => {
                t["command"] = toml_edit::value(a.iter().map(String::as_str).collect::<Array>());
            }
            None => {}
        }
        if s.shell {
            t["shell"] = toml_edit::value(true);
        }
        if let Some(c) = &s.cwd {
            t["cwd"] = toml_edit::value(c.as_str());
        }
        if let Some(p) = s.port {
            t["port"] = toml_edit::value(i64::from(p));
        }
        let inline = |m: &BTreeMap<String, String>| {
            let mut it = InlineTable::new();
            for (k, v) in m {
                it.insert(k, v.as_str().into());
            }
            it
        };
        if !s.env.is_empty() {
            t["env"] = toml_edit::value(inline(&s.env));
        }
        if !s.secret_env.is_empty() {
            t["secret_env"] = toml_edit::value(inline(&s.secret_env));
        }
        match s.env_file.as_slice() {
            [] => {}
            [one] => t["env_file"] = toml_edit::value(one.as_str()),
            many => {
                t["env_file"] = toml_edit::value(many.iter().map(String::as_str).collect::<Array>())
            }
        }
        if let Some(h) = &s.health {
            let mut it = InlineTable::new();
            it.insert(&h.probe, h.value.clone());
            for (k, v) in &h.timing {
                // retries is a number; the durations are strings.
                let value: Value = v
                    .parse::<i64>()
                    .map_or_else(|_| v.as_str().into(), Value::from);
                it.insert(k, value);
            }
            t["health"] = toml_edit::value(it);
        }
        if !s.restart.is_empty() {
            let mut it = InlineTable::new();
            for (k, v) in &s.restart {
                it.insert(k, v.clone());
            }
            t["restart"] = toml_edit::value(it);
        }
        if !s.depends_on.is_empty() {
            t["depends_on"] =
                toml_edit::value(s.depends_on.iter().map(String::as_str).collect::<Array>());
        }
        if let Some(st) = &s.stop_timeout {
            t["stop_timeout"] = toml_edit::value(st.as_str());
        }
        if let Some(svcs) = table_at(&mut doc, &["apps", &import.app, "env", env, "services"]) {
            svcs.insert(&s.name, Item::Table(t));
        }
    }
    doc.to_string()
}

/// The table at a dotted path, made (implicit, so only the leaves get headers) where missing.
fn table_at<'a>(doc: &'a mut DocumentMut, path: &[&str]) -> Option<&'a mut Table> {
    let mut t = doc.as_table_mut();
    for k in path {
        t = t.entry(k).or_insert_with(implicit).as_table_mut()?;
    }
    Some(t)
}

fn implicit() -> Item {
    let mut t = Table::new();
    t.set_implicit(true);
    Item::Table(t)
}

/// Appends the services to the config file (created if missing), refusing names it already
/// has and a result that no longer loads; written atomically.
fn append(config_path: &Path, import: &Import, env: &str, fragment: &str) -> Result<(), Failure> {
    let old = match std::fs::read_to_string(config_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Failure::new(
                1,
                format!("cannot read {}: {e}", config_path.display()),
            ));
        }
    };
    let doc: DocumentMut = old.parse().map_err(|e| {
        Failure::new(
            2,
            format!(
                "{} is not valid TOML; fix it first: {e}",
                config_path.display()
            ),
        )
    })?;
    let existing = doc
        .get("apps")
        .and_then(|a| a.get(&import.app))
        .and_then(|a| a.get("env"))
        .and_then(|e| e.get(env))
        .and_then(|e| e.get("services"));
    let taken: Vec<&str> = import
        .services
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| existing.is_some_and(|e| e.get(n).is_some()))
        .collect();
    if !taken.is_empty() {
        return Err(Failure::new(
            2,
            format!(
                "{}/{env} already has {} in {}; import into another environment (--env) or app \
                 (--app), or remove them first",
                import.app,
                taken.join(", "),
                config_path.display()
            ),
        ));
    }
    let mut text = old.clone();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(fragment);
    if let Err(problems) = homeport_config::load_str(config_path, &text) {
        let list: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
        return Err(Failure::new(
            2,
            format!(
                "with these services the config would not load, so nothing was written:\n{}\n\
                 Print them without --write and add them by hand",
                list.join("\n")
            ),
        ));
    }
    if let Some(dir) = config_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::new(1, format!("cannot create {}: {e}", dir.display())))?;
    }
    let mode = std::fs::metadata(config_path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap_or(0o600);
    homeport_fs::atomic_write(config_path, text.as_bytes(), mode)
        .map_err(|e| Failure::new(1, format!("cannot write {}: {e}", config_path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_acceptable_and_braces_literal() {
        assert_eq!(name("Shop Web@2"), "shop-web-2");
        assert_eq!(literal("echo {x}"), "echo {{x}}");
        assert!(is_secret("API_TOKEN") && is_secret("STRIPE_KEY") && !is_secret("NODE_ENV"));
    }
}
