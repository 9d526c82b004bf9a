//! Edits of `homeport.toml` that keep the user's comments, order and layout (toml_edit).

use homeport_types::ConfigChange;
use toml_edit::{DocumentMut, Item, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the config file is not valid TOML: {0}")]
    Parse(String),
    #[error("{0} is not in the config file")]
    Missing(String),
}

/// Applies `changes` to the text of a config file and returns the new text. Values are replaced
/// in place, keeping their comments; a key that does not exist yet is added to its table.
pub fn apply_changes(text: &str, changes: &[ConfigChange]) -> Result<String, EditError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| EditError::Parse(e.message().to_owned()))?;
    for change in changes {
        // `create`: the innermost table may be added (a first `[agent]` or `databases`); a
        // service that is not in the file is an error, never a new table.
        let (path, key, value, create): (Vec<&str>, &str, Value, bool) = match change {
            ConfigChange::Port {
                app,
                env,
                service,
                port,
            } => (
                vec!["apps", app, "env", env, "services", service],
                "port",
                Value::from(i64::from(*port)),
                false,
            ),
            ConfigChange::Database {
                app,
                env,
                name,
                path,
            } => (
                vec!["apps", app, "env", env, "databases"],
                name.as_str(),
                Value::from(path.as_str()),
                true,
            ),
            ConfigChange::Agent { key, value } => (
                vec!["agent"],
                key.key(),
                Value::from(i64::try_from(*value).unwrap_or(i64::MAX)),
                true,
            ),
        };
        set(&mut doc, &path, key, value, create)
            .ok_or_else(|| EditError::Missing(change.field()))?;
    }
    Ok(doc.to_string())
}

fn set(
    doc: &mut DocumentMut,
    path: &[&str],
    key: &str,
    mut value: Value,
    create: bool,
) -> Option<()> {
    let mut item: &mut Item = doc.as_item_mut();
    for (i, seg) in path.iter().enumerate() {
        let table = item.as_table_like_mut()?;
        if table.get(seg).is_none() {
            if !create || i + 1 < path.len() {
                return None;
            }
            table.insert(seg, Item::Table(toml_edit::Table::new()));
        }
        item = table.get_mut(seg)?;
    }
    let table = item.as_table_like_mut()?;
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            // Keep the spacing and any trailing comment of the value being replaced.
            *value.decor_mut() = old.decor().clone();
            *old = value;
        }
        _ => {
            table.insert(key, Item::Value(value));
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use homeport_types::AgentOption;

    const TEXT: &str = r#"# my apps
[agent]
port = 7747 # keep this

[apps.a.env.prod]
databases = { main = "/srv/a.db" } # the live one

[apps.a.env.prod.services.web]
command = "x"
port = 8080   # public

[apps.a.env.beta]
services.web = { command = "x", port = 8081 }
"#;

    #[test]
    fn edits_keep_comments_and_layout() {
        let out = apply_changes(
            TEXT,
            &[
                ConfigChange::Port {
                    app: "a".into(),
                    env: "prod".into(),
                    service: "web".into(),
                    port: 9090,
                },
                ConfigChange::Port {
                    app: "a".into(),
                    env: "beta".into(),
                    service: "web".into(),
                    port: 9091,
                },
                ConfigChange::Database {
                    app: "a".into(),
                    env: "prod".into(),
                    name: "main".into(),
                    path: "/srv/b.db".into(),
                },
                ConfigChange::Agent {
                    key: AgentOption::LogKeep,
                    value: 9,
                },
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("port = 9090   # public"), "{out}");
        assert!(
            out.contains("services.web = { command = \"x\", port = 9091 }"),
            "{out}"
        );
        assert!(
            out.contains("databases = { main = \"/srv/b.db\" } # the live one"),
            "{out}"
        );
        assert!(
            out.contains("port = 7747 # keep this\nlog_keep = 9"),
            "{out}"
        );
        assert!(out.starts_with("# my apps\n"));
    }

    #[test]
    fn a_missing_service_is_an_error_not_a_new_table() {
        let err = apply_changes(
            TEXT,
            &[ConfigChange::Port {
                app: "a".into(),
                env: "prod".into(),
                service: "nope".into(),
                port: 1,
            }],
        );
        assert_eq!(
            err,
            Err(EditError::Missing(
                "apps.a.env.prod.services.nope.port".into()
            ))
        );
    }
}
