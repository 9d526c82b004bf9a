//! `homeport hosts show|install|uninstall`: an opt-in block in /etc/hosts with the router's
//! names, for Safari (which does not resolve `*.localhost` by itself) and extra names such as
//! `shop.test`. The file is only written after the user said yes (or `--yes`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use homeport_router::hosts;

use crate::Failure;

pub enum Op {
    Show,
    Install,
    Uninstall,
}

fn names(config_path: &Path) -> Result<Vec<String>, Failure> {
    let config = homeport_config::load(config_path).map_err(|d| Failure::new(2, d.to_string()))?;
    let mut names = Vec::new();
    for e in config.envs.iter().filter(|e| e.web.is_some()) {
        names.extend(homeport_router::host::default_names(&e.app, &e.env));
        names.extend(e.hostnames.iter().cloned());
    }
    Ok(names)
}

pub fn run(config_path: &Path, op: Op, file: &Path, yes: bool) -> Result<(), Failure> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            return Err(Failure::new(
                1,
                format!("cannot read {}: {e}", file.display()),
            ));
        }
    };
    let now = hosts::current_block(&text);
    let (new_text, question) = match op {
        Op::Show => {
            let want = hosts::block(&names(config_path)?);
            let state = match &now {
                Some(b) if *b == want => format!("{} has this block:", file.display()),
                Some(_) => format!(
                    "{} has an older block; `homeport hosts install` would make it:",
                    file.display()
                ),
                None => format!(
                    "{} has no Homeport block; `homeport hosts install` would add:",
                    file.display()
                ),
            };
            return crate::out::write(&format!("{state}\n{want}")).map(drop);
        }
        Op::Install => {
            let want = hosts::block(&names(config_path)?);
            if now.as_deref() == Some(want.as_str()) {
                return crate::out::write(&format!("{} is up to date\n", file.display())).map(drop);
            }
            (
                hosts::with_block(&text, Some(&want)),
                format!("Write these lines into {}?\n{want}", file.display()),
            )
        }
        Op::Uninstall => {
            if now.is_none() {
                return crate::out::write(&format!("{} has no Homeport block\n", file.display()))
                    .map(drop);
            }
            (
                hosts::with_block(&text, None),
                format!("Remove Homeport's block from {}?", file.display()),
            )
        }
    };
    if !yes && !confirm(&question)? {
        return Err(Failure::new(1, "nothing was changed"));
    }
    write_keeping_mode(file, &new_text)?;
    crate::out::write(&format!("{} updated\n", file.display())).map(drop)
}

fn confirm(question: &str) -> Result<bool, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::new(
            2,
            format!("{question}\nNo terminal to ask on: run it again with --yes to agree"),
        ));
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    let _ = stdin.lock().read_line(&mut answer);
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn write_keeping_mode(file: &Path, text: &str) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644);
    let written = homeport_fs::atomic_write(file, text.as_bytes(), mode).or_else(|e| {
        // A bind-mounted file (containers) cannot be renamed over: write it in place.
        if matches!(
            e.kind(),
            std::io::ErrorKind::ResourceBusy | std::io::ErrorKind::CrossesDevices
        ) {
            std::fs::write(file, text)
        } else {
            Err(e)
        }
    });
    written.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (it belongs to root: run `sudo homeport hosts install`)"
        } else {
            ""
        };
        Failure::new(1, format!("cannot write {}: {e}{hint}", file.display()))
    })
}
