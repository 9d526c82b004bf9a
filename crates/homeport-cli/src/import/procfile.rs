//! A Procfile (Heroku, foreman, honcho): `type: command` per line, `#` comments. Each command
//! runs through a shell there, so one that uses shell syntax (`$PORT`, `&&`, pipes) keeps a
//! shell here (`shell = true`); a plain one runs directly. Ports follow foreman: 5000 for the
//! first process type, then +100 — given only to a type that uses `$PORT` or is named `web`.

use std::path::Path;

use super::{Command, Import, Service, literal, name};

pub fn parse(text: &str, file: &Path) -> Result<Import, String> {
    let mut import = Import {
        app: file
            .canonicalize()
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "app".to_owned()),
        ..Import::default()
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((kind, command)) = line.split_once(':') else {
            return Err(format!(
                "line {}: expected `name: command`, found {line:?}",
                i + 1
            ));
        };
        let (kind, command) = (kind.trim(), command.trim());
        if command.is_empty() {
            return Err(format!("line {}: `{kind}` has no command", i + 1));
        }
        if kind == "release" {
            import.unmapped.push(format!(
                "release: `{command}` runs before each deploy on Heroku; in Homeport that is \
                 the app's `migrate` command (docs/deploys.md)"
            ));
            continue;
        }
        let index = import.services.len() as u16;
        let needs_shell = command.contains(['$', '&', '|', ';', '>', '<', '`', '*', '(', ')']);
        let port = (command.contains("$PORT") || command.contains("${PORT}") || kind == "web")
            .then_some(5000 + 100 * index);
        let mut svc = Service {
            name: name(kind),
            command: Some(Command::Line(literal(command))),
            shell: needs_shell,
            port,
            ..Service::default()
        };
        if port.is_some() {
            svc.unmapped.push(format!(
                "the Procfile names no port: {} chosen as foreman would; change it if it clashes",
                5000 + 100 * index
            ));
        }
        import.services.push(svc);
    }
    Ok(import)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_types_become_services_and_release_is_listed() {
        let text = "# comment\nweb: bundle exec puma -p $PORT\nworker: bin/worker --queue {default}\n\nrelease: rails db:migrate\n";
        let i = parse(text, Path::new("/nowhere/shop/Procfile")).unwrap_or_default();
        assert_eq!(i.services.len(), 2);
        assert_eq!(i.services[0].name, "web");
        assert!(i.services[0].shell);
        assert_eq!(i.services[0].port, Some(5000));
        assert_eq!(
            i.services[1].command,
            Some(Command::Line("bin/worker --queue {{default}}".into()))
        );
        assert!(!i.services[1].shell);
        assert_eq!(i.services[1].port, None);
        assert!(i.unmapped[0].contains("migrate"));
        assert!(parse("web bundle exec", Path::new("P")).is_err());
    }
}
