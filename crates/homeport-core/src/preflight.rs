//! What a deploy of an environment needs on this agent's machine, checked before it begins
//! (`GET /api/v1/preflight`): this agent's version, free disk where releases go, and that every
//! program the build and install steps, the migration and the services run is found on this agent's PATH —
//! the PATH services get, which is not a login shell's (the usual "no `node` under systemd").

use std::path::Path;

use homeport_types::{MissingTool, Preflight};

use crate::{Core, DeployRefused};

/// Whether `program` can be run with `path`: a path as given, a bare name on `path`. Programs
/// inside the data folder (a release, `current`) arrive with the deploy.
fn found(program: &str, path: &str, data: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.is_empty() {
        return true;
    }
    if program.contains('/') {
        let p = Path::new(program);
        return p.starts_with(data) || executable(p);
    }
    std::env::split_paths(path).any(|d| executable(&d.join(program)))
}

/// Free bytes for this user on the file system that holds `path` (or its nearest folder that
/// exists).
pub(crate) fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path.ancestors().find(|p| p.exists())?;
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(clippy::useless_conversion)]
    Some(u64::from(s.blocks_available()) * u64::from(s.fragment_size()))
}

impl Core {
    pub fn preflight(&self, app: &str, env: &str) -> Result<Preflight, DeployRefused> {
        let config = self.config();
        if !config.envs.iter().any(|e| e.app == app && e.env == env) {
            return Err(DeployRefused::NotFound(format!(
                "no environment {app}/{env}"
            )));
        }
        let data = config.agent.data_dir.clone();
        let path = std::env::var("PATH").unwrap_or_default();
        let mut missing: Vec<MissingTool> = Vec::new();
        let mut need = |program: &str, needed_by: String| {
            if !found(program, &path, &data)
                && !missing
                    .iter()
                    .any(|m| m.program == program && m.needed_by == needed_by)
            {
                missing.push(MissingTool {
                    program: program.to_owned(),
                    needed_by,
                });
            }
        };
        for s in config
            .services
            .iter()
            .filter(|s| s.key.app == app && s.key.env == env)
        {
            if let Some(program) = s.command.argv().first() {
                need(program, s.key.to_string());
            }
        }
        if let Some(a) = config.apps.iter().find(|a| a.name == app) {
            if a.source.is_some() {
                need("git", "the source checkout".into());
                for (steps, what) in [(&a.test, "test"), (&a.build, "build")] {
                    for argv in steps {
                        if let Some(p) = argv.first() {
                            need(p, what.into());
                        }
                    }
                }
            }
            // The install steps run in each new release, wherever it was built.
            for line in &a.install {
                if let Some(first) = shlex_first(line)
                    && !first.contains('{')
                {
                    need(&first, "install".into());
                }
            }
            // The migration's program, unless it comes with the release.
            if let Some(line) = &a.migrate
                && let Some(first) = shlex_first(line)
                && !first.contains('{')
            {
                need(&first, "migrate".into());
            }
        }
        Ok(Preflight {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            free_bytes: free_bytes(&data),
            missing,
            path,
        })
    }
}

/// The first word of a command line, as the migrate line is split.
fn shlex_first(line: &str) -> Option<String> {
    line.split_whitespace()
        .next()
        .map(|w| w.trim_matches(['"', '\'']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_looked_up_on_the_given_path() {
        let data = Path::new("/srv/hp");
        assert!(found("sh", "/usr/bin:/bin", data));
        assert!(!found("sh", "/nonexistent", data));
        assert!(!found("surely-not-a-program-here", "/usr/bin:/bin", data));
        assert!(found(
            "/srv/hp/apps/shop/production/current/bin/web",
            "",
            data
        ));
        assert!(found("/bin/sh", "", data));
        assert!(!found("/nonexistent/x", "", data));
        assert!(free_bytes(Path::new("/tmp/does/not/exist/yet")).is_some_and(|b| b > 0));
    }
}
