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
mod autostart;
mod backup;
mod config;
mod dashboard;
mod deploy;
mod hosts;
mod logs;
mod output;
mod service;
mod status;
mod trust;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use homeport_client::{Client, ClientError};
use homeport_types::{Action, DeployKind, Target};

#[derive(Parser)]
#[command(
    name = "homeport",
    version,
    about = "Run your own apps in production on your own computer"
)]
struct Cli {
    /// Config file [default: $HOMEPORT_CONFIG, else ~/.config/homeport/homeport.toml]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent in the foreground: supervise every configured service
    Agent,
    /// Show every service: state, health, pid, uptime, restarts, CPU, memory
    Status {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Start services (and what they depend on): APP, APP/ENV or APP/ENV/SERVICE
    Start { target: Target },
    /// Stop services, dependents first
    Stop { target: Target },
    /// Stop, then start services
    Restart { target: Target },
    /// Show log lines of services
    Logs {
        target: Target,
        /// Keep printing new lines as they come
        #[arg(short, long)]
        follow: bool,
        /// Show the last N lines
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
        /// Only lines since this time: RFC 3339 (2026-11-22T10:00:00Z) or an age (10m, 2h)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only lines matching this regular expression
        #[arg(long, value_name = "REGEX")]
        grep: Option<String>,
    },
    /// Back up an environment now (APP/ENV), or check backups (`backup verify [ID]`)
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        #[command(subcommand)]
        action: Option<BackupAction>,
        target: Option<Target>,
    },
    /// List backups: ID, time, size, trigger, verified
    Backups { target: Option<Target> },
    /// Put an environment's databases back from a backup (default: the newest verified one)
    Restore {
        /// APP/ENV
        target: Target,
        /// Backup ID (see `homeport backups`)
        backup: Option<i64>,
        /// Only this database of the backup
        #[arg(long, value_name = "NAME")]
        db: Option<String>,
        /// Write the database into this new file for inspection; the live one is not touched
        #[arg(long, value_name = "FILE")]
        to: Option<PathBuf>,
    },
    /// Build the app's source and roll it out to an environment
    Deploy {
        app: String,
        #[arg(long, default_value = "production")]
        env: String,
    },
    /// Roll out the release another environment runs, without building
    Promote {
        app: String,
        #[arg(long)]
        from: String,
        #[arg(long, default_value = "production")]
        to: String,
    },
    /// Go back to an earlier release (default: the one live before the current one)
    Rollback {
        app: String,
        release: Option<String>,
        #[arg(long, default_value = "production")]
        env: String,
    },
    /// Fast-forward the app's source to its upstream and deploy it
    Update {
        app: String,
        #[arg(long, default_value = "production")]
        env: String,
        /// Only say how many commits the source is behind
        #[arg(long)]
        check: bool,
    },
    /// List an app's releases and which environments run them
    Releases { app: String },
    /// Open the dashboard in a browser through a one-time sign-in link
    Dashboard {
        /// Print the link instead of opening a browser
        #[arg(long)]
        print: bool,
    },
    /// Start the tray app at login (an XDG autostart entry, a LaunchAgent, a Run key)
    Autostart {
        #[command(subcommand)]
        command: AutostartCmd,
    },
    /// Run the agent from your service manager (systemd user unit, launchd LaunchAgent)
    Service {
        #[command(subcommand)]
        command: ServiceCmd,
    },
    /// Trust the router's local CA (HTTPS names): system store and browsers' NSS databases
    Trust {
        #[command(subcommand)]
        command: TrustCmd,
    },
    /// An opt-in block of the router's names in /etc/hosts (for Safari and extra names)
    Hosts {
        #[command(subcommand)]
        command: HostsCmd,
    },
    /// Work with the config file
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Run one service and hold its output (started by the agent, not by hand)
    #[command(hide = true)]
    Shim { run_dir: PathBuf },
}

#[derive(Subcommand)]
enum ServiceCmd {
    /// Write the unit (or plist) that starts the agent at login and restarts it if it crashes
    Install,
    /// Remove it
    Uninstall,
    /// Say whether it is installed
    Status,
}

#[derive(Subcommand)]
enum TrustCmd {
    /// Add the CA to the system store (update-ca-certificates, through sudo) and NSS databases
    Install {
        /// Only the system store
        #[arg(long)]
        system: bool,
        /// Only the NSS databases (Chromium's ~/.pki/nssdb, Firefox profiles)
        #[arg(long)]
        nss: bool,
    },
    /// Take the CA out of those stores again
    Uninstall {
        #[arg(long)]
        system: bool,
        #[arg(long)]
        nss: bool,
    },
    /// Say in which stores the CA is trusted
    Status,
}

#[derive(Subcommand)]
enum HostsCmd {
    /// Print the block and whether the file has it
    Show {
        #[arg(long, default_value = "/etc/hosts", value_name = "FILE")]
        file: PathBuf,
    },
    /// Add or update the block, after asking
    Install {
        #[arg(long, default_value = "/etc/hosts", value_name = "FILE")]
        file: PathBuf,
        /// Do not ask
        #[arg(long)]
        yes: bool,
    },
    /// Remove the block, after asking
    Uninstall {
        #[arg(long, default_value = "/etc/hosts", value_name = "FILE")]
        file: PathBuf,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum AutostartCmd {
    /// Start the tray app (minimised) at every login
    Enable,
    /// Stop starting it at login
    Disable,
    /// Say whether it starts at login, and with which command
    Status,
}

#[derive(Subcommand)]
enum BackupAction {
    /// Re-check checksums and database integrity (one backup, or all of them)
    Verify { id: Option<i64> },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Report every problem in the config file, with file, line, column and field
    Check,
}

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
            ClientError::Api { status: 404, .. } => 4,
            ClientError::Api { status: 400, .. } => 2,
            _ => 1,
        };
        Failure::new(code, e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(homeport_config::default_config_path);
    // The shim is synchronous and small on purpose: no async runtime.
    if let Cmd::Shim { run_dir } = &cli.command {
        return ExitCode::from(homeport_supervisor::shim::run(run_dir) as u8);
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
    match runtime.block_on(run(cli.command, config_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("homeport: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

async fn run(cmd: Cmd, config_path: PathBuf) -> Result<(), Failure> {
    let path = config_path.as_path();
    match cmd {
        Cmd::Agent => agent::run(path).await,
        Cmd::Config {
            command: ConfigCmd::Check,
        } => config::check(path),
        Cmd::Status { json } => status::run(path, json).await,
        Cmd::Start { target } => act::run(path, Action::Start, &target).await,
        Cmd::Stop { target } => act::run(path, Action::Stop, &target).await,
        Cmd::Restart { target } => act::run(path, Action::Restart, &target).await,
        Cmd::Logs {
            target,
            follow,
            lines,
            since,
            grep,
        } => logs::run(path, target, follow, lines, since, grep).await,
        Cmd::Dashboard { print } => dashboard::run(path, print).await,
        Cmd::Backup {
            action: Some(BackupAction::Verify { id }),
            ..
        } => backup::verify(path, id).await,
        Cmd::Backup {
            action: None,
            target,
        } => backup::take(path, target).await,
        Cmd::Backups { target } => backup::list(path, target).await,
        Cmd::Restore {
            target,
            backup,
            db,
            to,
        } => backup::restore(path, target, backup, db, to).await,
        Cmd::Deploy { app, env } => deploy::run(path, app, env, DeployKind::Deploy, None).await,
        Cmd::Promote { app, from, to } => {
            deploy::run(path, app, to, DeployKind::Promote, Some(from)).await
        }
        Cmd::Rollback { app, release, env } => deploy::rollback(path, app, env, release).await,
        Cmd::Update { app, env, check } => deploy::update(path, app, env, check).await,
        Cmd::Releases { app } => deploy::releases(path, &app).await,
        Cmd::Service { command } => match command {
            ServiceCmd::Install => service::install(path),
            ServiceCmd::Uninstall => service::uninstall(),
            ServiceCmd::Status => service::status(),
        },
        Cmd::Shim { .. } => Ok(()),
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

/// A client of the agent that the config file's data folder names.
fn client(config_path: &Path) -> Result<Client, Failure> {
    Ok(Client::discover(&homeport_config::agent_data_dir(
        config_path,
    ))?)
}

/// How long `homeport agent` waits for services to stop on SIGTERM before it gives up on them.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(120);
