//! `homeport`: the CLI and, as `homeport agent`, the agent itself. Glue only: parsing arguments,
//! printing, and exit codes; the work happens in the library crates. One module per command;
//! everything printed to stdout goes through [`out`], which treats a closed pipe as success.
//!
//! Exit codes: 0 success; 1 the operation failed; 2 bad usage or an invalid config;
//! 3 the agent is not running; 4 no service matches the target.

// A bare `println!` panics when the reader has gone (`homeport backup verify | head -1`).
#![warn(clippy::print_stdout)]

#[macro_use]
mod out;
mod act;
mod agent;
mod agent_log;
mod autostart;
mod backup;
mod cli;
mod completions;
mod config;
mod dashboard;
mod db;
mod deploy;
mod export;
mod host;
mod hosts;
mod import;
mod logs;
mod output;
mod progress;
mod remote;
mod service;
mod show;
mod status;
mod style;
mod targets;
mod top;
mod trust;
mod uninstall;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use homeport_client::{Client, ClientError};
use homeport_types::{Action, DeployKind};

use cli::*;

/// A failure with the exit code it maps to.
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::NotRunning(_) => 3,
            // Another host that is not enrolled, or cannot be reached now.
            ClientError::Api { kind, .. } if kind == "unknown_host" => 2,
            ClientError::Api { kind, .. } if kind.starts_with("host_") => 3,
            ClientError::Api { status: 404, .. } => 4,
            ClientError::Api { status: 400, .. } => 2,
            _ => 1,
        };
        Failure::new(code, e.to_string())
    }
}

fn main() -> ExitCode {
    // Shell completion asks this binary (`COMPLETE=bash homeport -- …`); answer and exit.
    clap_complete::CompleteEnv::with_factory(Cli::command).complete();
    // Read before any thread starts: the agent tells systemd it is ready through this socket,
    // and its services must not inherit it.
    agent::take_notify_socket();
    let cli = Cli::parse();
    style::init(cli.color);
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(homeport_config::default_config_path);
    // The shim is synchronous and small on purpose: no async runtime.
    if let Cmd::Shim { run_dir } = &cli.command {
        return ExitCode::from(homeport_supervisor::shim::run(run_dir) as u8);
    }
    // Before any thread: serving drops root and execs the server.
    if let Cmd::Db { action, args } = &cli.command {
        return db::run(action, args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("homeport: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let explicit_config = cli.config.is_some() || std::env::var_os("HOMEPORT_CONFIG").is_some();
    let outcome = match choose_host(cli.host.as_deref(), &cli.command) {
        Ok(host) => {
            let _ = HOST.set(host);
            runtime.block_on(run(cli.command, config_path, explicit_config))
        }
        Err(f) => Err(f),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!(
                    "{} {}",
                    style::paint_err("homeport:", style::bad()),
                    f.message
                );
            }
            ExitCode::from(f.code)
        }
    }
}

async fn run(cmd: Cmd, config_path: PathBuf, explicit_config: bool) -> Result<(), Failure> {
    let path = config_path.as_path();
    if explicit_config && cmd.needs_config() && !path.exists() {
        return Err(Failure::new(
            2,
            format!(
                "the config file {} does not exist; check the path given with --config or \
                 HOMEPORT_CONFIG, or write one (docs/getting-started.md)",
                path.display()
            ),
        ));
    }
    match cmd {
        Cmd::Agent {
            command: None,
            detach: false,
        } => agent::run(path).await,
        Cmd::Agent {
            command: None,
            detach: true,
        } => agent::detach(path).await,
        Cmd::Agent {
            command: Some(AgentCmd::Stop { keep_services }),
            ..
        } => agent::stop(path, keep_services).await,
        Cmd::Agent {
            command: Some(AgentCmd::Restart),
            ..
        } => agent::restart(path).await,
        Cmd::Config {
            command: ConfigCmd::Check,
        } => config::check(path),
        Cmd::Reload => config::reload(path).await,
        Cmd::Status { target, json } => status::run(path, target.map(|t| t.target), json).await,
        Cmd::Show { target, json } => show::run(path, &target.target, json).await,
        Cmd::Start { target } => act::run(path, Action::Start, &target.target).await,
        Cmd::Stop { target } => act::run(path, Action::Stop, &target.target).await,
        Cmd::Restart { target } => act::run(path, Action::Restart, &target.target).await,
        Cmd::Logs {
            target,
            follow,
            no_follow,
            lines,
            since,
            grep,
        } => {
            // Without a target, like `pm2 logs`: everything, followed.
            let follow = follow || (target.is_none() && !no_follow);
            logs::run(path, target.map(|t| t.target), follow, lines, since, grep).await
        }
        Cmd::Dashboard { print } => dashboard::run(path, print).await,
        Cmd::Top => top::run(path).await,
        Cmd::Backup {
            action: Some(BackupAction::Verify { id }),
            ..
        } => backup::verify(path, id).await,
        Cmd::Backup {
            action: None,
            target,
        } => backup::take(path, target.map(|t| t.target)).await,
        Cmd::Backups { target } => backup::list(path, target.map(|t| t.target)).await,
        Cmd::Restore {
            target,
            backup,
            db,
            path: file,
            to,
        } => backup::restore(path, target.target, backup, db, file, to).await,
        Cmd::Deploy {
            app,
            env,
            git_ref,
            build_on_host,
        } => {
            deploy::run(
                path,
                bare(&app),
                env,
                DeployKind::Deploy,
                None,
                git_ref,
                build_on_host,
            )
            .await
        }
        Cmd::Deploys { app, id } => deploy::deploys(path, app.map(|a| bare(&a)), id).await,
        Cmd::Promote { app, from, to } => {
            deploy::run(
                path,
                bare(&app),
                to,
                DeployKind::Promote,
                Some(from),
                None,
                false,
            )
            .await
        }
        Cmd::Rollback { app, release, env } => {
            deploy::rollback(path, bare(&app), env, release).await
        }
        Cmd::Update { app, env, check } => deploy::update(path, bare(&app), env, check).await,
        Cmd::Releases { app } => deploy::releases(path, &bare(&app)).await,
        Cmd::Host { command } => match command {
            HostCmd::Add {
                name,
                destination,
                fingerprint,
                yes,
            } => host::add(path, &name, &destination, fingerprint, yes).await,
            HostCmd::List { json } => host::list(path, json).await,
            HostCmd::Remove { name } => host::remove(path, &name).await,
            HostCmd::Check { name } => host::check(path, &name).await,
        },
        Cmd::Remote { command } => match command {
            RemoteCmd::Hello { token } => remote::hello(path, token),
            RemoteCmd::MergeConfig => remote::merge_config(path),
        },
        Cmd::Export {
            format,
            target,
            out,
        } => export::run(path, format, &target, out.as_deref()),
        Cmd::AutoUpdate {
            command: AutoUpdateCmd::Resume { app, env },
        } => deploy::resume_updates(path, &bare(&app), &env).await,
        Cmd::Service { command } => match command {
            ServiceCmd::Install => service::install(path).await,
            ServiceCmd::Uninstall => service::uninstall(path).await,
            ServiceCmd::Status => service::status(),
        },
        Cmd::Completions { shell } => completions::completions(shell),
        Cmd::Man { out } => completions::man(out.as_deref()),
        Cmd::Import {
            file,
            format,
            app,
            env,
            write,
        } => import::run(path, &file, format, app, &env, write),
        Cmd::Uninstall { data, yes } => uninstall::run(path, data, yes).await,
        Cmd::Shim { .. } | Cmd::Db { .. } => Ok(()),
        Cmd::Trust { command } => match command {
            TrustCmd::Install { system, nss } => trust::run(path, trust::Op::Install, system, nss),
            TrustCmd::Uninstall { system, nss } => {
                trust::run(path, trust::Op::Uninstall, system, nss)
            }
            TrustCmd::Status => trust::run(path, trust::Op::Status, false, false),
        },
        Cmd::Hosts { command } => match command {
            HostsCmd::Show { file } => hosts::run(path, hosts::Op::Show, &file, false),
            HostsCmd::Install { file, yes } => hosts::run(path, hosts::Op::Install, &file, yes),
            HostsCmd::Uninstall { file, yes } => hosts::run(path, hosts::Op::Uninstall, &file, yes),
        },
        Cmd::Autostart { command } => {
            // The tray is told the config file only when it is not the default one (a default
            // under "Application Support" would not fit the entry's unquoted command line).
            let explicit = (std::env::var_os("HOMEPORT_CONFIG").is_some()
                || config_path != homeport_config::default_config_path())
            .then_some(path);
            match command {
                AutostartCmd::Enable => autostart::enable(explicit),
                AutostartCmd::Disable => autostart::disable(),
                AutostartCmd::Status => autostart::status(),
            }
        }
    }
}

/// The host this run acts on (`--host`, a `HOST:` target, or `$HOMEPORT_HOST`); `None`: this
/// computer.
static HOST: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Which host the command acts on. `$HOMEPORT_HOST` applies to the commands that act on an
/// agent and is ignored by the others; `--host` given to one of the others is a mistake.
fn choose_host(flag: Option<&str>, cmd: &Cmd) -> Result<Option<String>, Failure> {
    let prefix = cmd.target_host();
    if let Some(h) = flag.or(prefix.as_deref()) {
        homeport_remote::check_name(h).map_err(|e| Failure::new(2, e))?;
    }
    match (flag, prefix) {
        (Some(a), Some(b)) if a != b => Err(Failure::new(
            2,
            format!("the target names host {b} and --host names {a}: give one of them"),
        )),
        (Some(_), _) if !cmd.takes_host() => Err(Failure::new(
            2,
            "--host applies to commands that act on an agent (status, logs, start, deploy…);              this one works on this computer",
        )),
        (Some(a), _) => Ok(Some(a.to_owned())),
        (None, Some(b)) => Ok(Some(b)),
        (None, None) => Ok(std::env::var("HOMEPORT_HOST")
            .ok()
            .filter(|h| !h.is_empty() && cmd.takes_host())),
    }
}

/// The host this run acts on, if not this computer.
pub fn host() -> Option<&'static str> {
    HOST.get().and_then(Option::as_deref)
}

/// An app argument without its `HOST:` prefix.
fn bare(app: &str) -> String {
    targets::split_host(app).1
}

/// A client of the agent that the config file's data folder names, or, with a host chosen, of
/// that host's agent through this one (which holds the SSH connection).
fn client(config_path: &Path) -> Result<Client, Failure> {
    let local = Client::discover(&homeport_config::agent_data_dir(config_path)).map_err(|e| {
        match (host(), e) {
            (Some(h), ClientError::NotRunning(why)) => Failure::new(
                3,
                format!(
                    "this computer's agent is not running ({why}); it holds the connection to {h}:                      start it with `homeport agent --detach` (or the tray), then try again"
                ),
            ),
            (_, e) => e.into(),
        }
    })?;
    Ok(match host() {
        Some(h) => local.via_host(h),
        None => local,
    })
}

/// How long `homeport agent` waits for services to stop on SIGTERM before it gives up on them.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(120);
