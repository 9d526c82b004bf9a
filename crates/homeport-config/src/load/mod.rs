//! The loading steps: read → parse → deserialize each table ([`parse`]) → resolve defaults and
//! placeholders ([`resolve`]) → validate the whole ([`validate`]). Each step adds to one [`Sink`]
//! so the user sees every problem at once.

mod parse;
mod resolve;

pub use resolve::{StepEnv, install_argv, migrate_argv, step_env};
mod validate;

use std::fs;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use crate::diag::{Diagnostic, Diagnostics, Sink};
use crate::model::*;

use parse::{first_line, read_tree};
use resolve::resolve;
use validate::validate;

/// Takes the environments with `host = "NAME"` out of the tree.
fn take_remote_envs(tree: &mut parse::Tree, sink: &mut Sink<'_>) -> Vec<RemoteEnv> {
    let mut out = Vec::new();
    for app in &mut tree.apps {
        let envs = std::mem::take(&mut app.envs);
        for env in envs {
            let Some(host) = env.raw.host.clone() else {
                app.envs.push(env);
                continue;
            };
            let name = host.get_ref();
            let ok = !name.is_empty()
                && name.len() <= 64
                && !name.starts_with('-')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                sink.push(
                    Some(host.span()),
                    &format!("{}.host", env.path),
                    format!(
                        "{name:?} is not a host name: letters, digits, - and _ (the NAME of `homeport host add NAME`)"
                    ),
                );
                continue;
            }
            out.push(RemoteEnv {
                app: app.name.get_ref().clone(),
                env: env.name.get_ref().clone(),
                host: name.clone(),
            });
        }
    }
    out
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    let problem = |line, column, message| {
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line,
            column,
            field: String::new(),
            message,
            help: None,
        }])
    };
    let bytes =
        fs::read(path).map_err(|e| problem(0, 0, format!("cannot read the config file: {e}")))?;
    load_bytes(path, bytes)
}

/// Parses and validates `bytes` as the contents of `path` (read once by the caller, who may
/// need them too: a reload remembers the revision it applied).
pub fn load_bytes(path: &Path, bytes: Vec<u8>) -> Result<Config, Diagnostics> {
    let problem = |line, column, message| {
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line,
            column,
            field: String::new(),
            message,
            help: None,
        }])
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        // Where the bad bytes start, as an editor counts: line and column (in characters).
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let before = String::from_utf8_lossy(good);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        problem(
            line,
            column,
            format!(
                "the file is not UTF-8 here (byte {}); save it as UTF-8",
                good.len()
            ),
        )
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
            let mut tree = read_tree(&root, &mut sink);
            // Environments of other hosts are checked there, against that host's files, tools
            // and ports, when a deploy sends them (`homeport remote merge-config`).
            let remote = take_remote_envs(&mut tree, &mut sink);
            let base = file
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let mut resolved = resolve(file, &base, &tree, &mut sink);
            validate(&tree, &resolved, &mut sink);
            resolved.remote_envs = remote;
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
