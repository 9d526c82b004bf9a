//! `homeport`: the CLI and, as `homeport agent`, the agent itself. Glue only: parsing arguments,
//! printing, and exit codes; the work happens in the library crates.
//!
//! Exit codes: 0 success; 1 the operation failed; 2 bad usage or an invalid config;
//! 3 the agent is not running; 4 no service matches the target.

mod agent;
mod autostart;
mod output;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use homeport_client::{Client, ClientError, LogRequest};
use homeport_types::{Action, LogStreamItem, Target};

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
    match cmd {
        Cmd::Agent => agent::run(&config_path).await,
        Cmd::Config {
            command: ConfigCmd::Check,
        } => config_check(&config_path),
        Cmd::Status { json } => {
            let status = client(&config_path)?.status().await?;
            if json {
                let text = serde_json::to_string_pretty(&status)
                    .map_err(|e| Failure::new(1, e.to_string()))?;
                print_out(&format!("{text}\n"))
            } else {
                print_out(&output::status_table(&status))
            }
        }
        Cmd::Start { target } => act(&config_path, Action::Start, &target).await,
        Cmd::Stop { target } => act(&config_path, Action::Stop, &target).await,
        Cmd::Restart { target } => act(&config_path, Action::Restart, &target).await,
        Cmd::Logs {
            target,
            follow,
            lines,
            since,
            grep,
        } => {
            let since = since.map(|s| parse_since(&s)).transpose()?;
            if let Some(g) = &grep {
                regex::Regex::new(g).map_err(|e| Failure::new(2, format!("--grep: {e}")))?;
            }
            let req = LogRequest {
                target: Some(target),
                tail: Some(lines),
                since,
                grep,
                follow,
            };
            let mut stream = Box::pin(client(&config_path)?.logs(&req).await?);
            while let Some(item) = stream.next().await {
                match item? {
                    LogStreamItem::Line(entry) => {
                        if !write_out(&format!("{}\n", output::log_line(&entry)))? {
                            return Ok(());
                        }
                    }
                    LogStreamItem::Skipped { count } => {
                        let what =
                            count.map_or_else(|| "some lines".to_owned(), |n| format!("{n} lines"));
                        eprintln!(
                            "homeport: {what} skipped: this reader fell behind the log rotation"
                        )
                    }
                }
            }
            Ok(())
        }
        Cmd::Dashboard { print } => {
            let url = client(&config_path)?.sign_in_link().await?;
            if !print && open_browser(&url) {
                println!("Opened the dashboard in your browser (the sign-in link works once).");
            } else {
                println!("{url}");
            }
            Ok(())
        }
        Cmd::Backup {
            action: Some(BackupAction::Verify { id }),
            ..
        } => {
            let c = client(&config_path)?;
            let ids: Vec<i64> = match id {
                Some(id) => vec![id],
                None => c
                    .backups(&Target::All)
                    .await?
                    .iter()
                    .flat_map(|e| e.backups.iter().map(|b| b.id))
                    .collect(),
            };
            let mut bad = 0;
            for id in ids {
                let v = c.verify_backup(id).await?;
                if v.ok {
                    println!("backup {id}: ok");
                } else {
                    bad += 1;
                    eprintln!("backup {id}: FAILED: {}", v.problems.join("; "));
                }
            }
            if bad > 0 {
                return Err(Failure::new(
                    1,
                    format!("{bad} backup(s) failed verification"),
                ));
            }
            Ok(())
        }
        Cmd::Backup {
            action: None,
            target,
        } => {
            let target = target.ok_or_else(|| {
                Failure::new(
                    2,
                    "name the environment to back up: homeport backup APP/ENV",
                )
            })?;
            let b = client(&config_path)?.backup(&target).await?;
            println!(
                "backup {}: {target}, {} in {} ms, verified",
                b.id,
                output::size(b.size),
                b.duration_ms
            );
            for a in &b.artifacts {
                println!(
                    "  {} ({}, sha256 {})",
                    a.file,
                    output::size(a.size),
                    &a.sha256[..16]
                );
            }
            Ok(())
        }
        Cmd::Backups { target } => {
            let list = client(&config_path)?
                .backups(&target.unwrap_or(Target::All))
                .await?;
            print_out(&output::backups_table(&list))?;
            Ok(())
        }
        Cmd::Restore {
            target,
            backup,
            db,
            to,
        } => {
            let req = homeport_types::RestoreRequest {
                target: target.clone(),
                backup,
                database: db,
                to: to.map(|p| std::path::absolute(&p).unwrap_or(p).display().to_string()),
            };
            let out = client(&config_path)?.restore(&req).await?;
            for r in &out.restored {
                println!("restored {r} from backup {}", out.backup);
            }
            for s in &out.safety_copies {
                println!("the previous database is kept in {s}");
            }
            Ok(())
        }
        Cmd::Deploy { app, env } => {
            deploy(
                &config_path,
                homeport_types::DeployRequest {
                    app,
                    env,
                    kind: homeport_types::DeployKind::Deploy,
                    from_env: None,
                    release: None,
                },
            )
            .await
        }
        Cmd::Promote { app, from, to } => {
            deploy(
                &config_path,
                homeport_types::DeployRequest {
                    app,
                    env: to,
                    kind: homeport_types::DeployKind::Promote,
                    from_env: Some(from),
                    release: None,
                },
            )
            .await
        }
        Cmd::Rollback { app, release, env } => {
            deploy(
                &config_path,
                homeport_types::DeployRequest {
                    app,
                    env,
                    kind: homeport_types::DeployKind::Rollback,
                    from_env: None,
                    release,
                },
            )
            .await
        }
        Cmd::Update { app, env, check } => {
            if check {
                let (behind, ahead) = client(&config_path)?.update_check(&app).await?;
                match (behind, ahead) {
                    (0, _) => println!("{app} is up to date with its upstream"),
                    (b, 0) => println!(
                        "Update available ({b} commit{})",
                        if b == 1 { "" } else { "s" }
                    ),
                    (b, a) => println!("{app} has diverged: {b} upstream, {a} local commits"),
                }
                return Ok(());
            }
            deploy(
                &config_path,
                homeport_types::DeployRequest {
                    app,
                    env,
                    kind: homeport_types::DeployKind::Update,
                    from_env: None,
                    release: None,
                },
            )
            .await
        }
        Cmd::Releases { app } => {
            for r in client(&config_path)?.releases(&app).await? {
                let live = if r.current_in.is_empty() {
                    String::new()
                } else {
                    format!("  ← {}", r.current_in.join(", "))
                };
                print_out(&format!(
                    "{}  {}{}  {}{live}\n",
                    r.id,
                    &r.commit[..r.commit.len().min(10)],
                    if r.dirty { " dirty" } else { "" },
                    r.time
                ))?;
            }
            Ok(())
        }
        Cmd::Service { command } => match command {
            ServiceCmd::Install => service::install(&config_path),
            ServiceCmd::Uninstall => service::uninstall(),
            ServiceCmd::Status => service::status(),
        },
        Cmd::Shim { .. } => Ok(()),
        Cmd::Autostart { command } => {
            // The tray is told the config file only when it is not the default one (a default
            // under "Application Support" would not fit the entry's unquoted command line).
            let explicit = (std::env::var_os("HOMEPORT_CONFIG").is_some()
                || config_path != homeport_config::default_config_path())
            .then_some(config_path.as_path());
            match command {
                AutostartCmd::Enable => autostart::enable(explicit),
                AutostartCmd::Disable => autostart::disable(),
                AutostartCmd::Status => autostart::status(),
            }
        }
    }
}

/// Writes a command's output to stdout; false when the reader has gone. A reader that stops
/// early (`homeport status | head -1`, `homeport logs -f | head`) closes the pipe: that is
/// success, not a panic.
fn write_out(text: &str) -> Result<bool, Failure> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::new(1, e.to_string())),
    }
}

fn print_out(text: &str) -> Result<(), Failure> {
    write_out(text).map(drop)
}

/// Opens `url` in a browser when there is a desktop to show it; false otherwise.
fn open_browser(url: &str) -> bool {
    let graphical = cfg!(target_os = "macos")
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    graphical && homeport_client::open_in_browser(url).is_ok()
}

fn client(config_path: &std::path::Path) -> Result<Client, Failure> {
    Ok(Client::discover(&homeport_config::agent_data_dir(
        config_path,
    ))?)
}

fn config_check(path: &std::path::Path) -> Result<(), Failure> {
    match homeport_config::load(path) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} environments, {} services)",
                path.display(),
                cfg.envs.len(),
                cfg.services.len()
            );
            Ok(())
        }
        Err(diags) => {
            for d in &diags.0 {
                eprintln!("{d}");
            }
            let n = diags.0.len();
            Err(Failure::new(
                2,
                format!(
                    "{n} problem{} in {}",
                    if n == 1 { "" } else { "s" },
                    path.display()
                ),
            ))
        }
    }
}

async fn act(
    config_path: &std::path::Path,
    action: Action,
    target: &Target,
) -> Result<(), Failure> {
    let outcomes = client(config_path)?.act(action, target).await?;
    let mut failed = 0;
    for o in &outcomes {
        match &o.error {
            None => println!("{}: {}", o.key, o.state),
            Some(e) => {
                failed += 1;
                eprintln!("{}: {}: {e}", o.key, o.state);
            }
        }
    }
    if failed > 0 {
        return Err(Failure::new(
            1,
            format!(
                "{action} failed for {failed} of {} services",
                outcomes.len()
            ),
        ));
    }
    Ok(())
}

/// Runs a deploy and prints its steps as they happen.
async fn deploy(
    config_path: &std::path::Path,
    req: homeport_types::DeployRequest,
) -> Result<(), Failure> {
    use homeport_types::DeployEvent;
    let mut events = Box::pin(client(config_path)?.deploy(&req).await?);
    while let Some(ev) = events.next().await {
        match ev? {
            DeployEvent::Step {
                name,
                status,
                ms,
                detail,
            } => match (status.as_str(), ms) {
                ("started", _) => println!("▸ {name}"),
                (s, Some(ms)) => println!(
                    "  {name}: {s} ({ms} ms){}",
                    detail.map(|d| format!(" — {d}")).unwrap_or_default()
                ),
                (s, None) => println!("  {name}: {s}"),
            },
            DeployEvent::Output { line, .. } => println!("    {line}"),
            DeployEvent::Done { record } => {
                if record.result == "succeeded" {
                    println!(
                        "{} {}/{}: {} is live",
                        record.kind.as_str(),
                        record.app,
                        record.env,
                        record.release.unwrap_or_default()
                    );
                    return Ok(());
                }
                return Err(Failure::new(
                    1,
                    format!(
                        "{} of {}/{} failed: {}{}",
                        record.kind.as_str(),
                        record.app,
                        record.env,
                        record.error.unwrap_or_default(),
                        if record.diagnostics.is_some() {
                            " (diagnostics saved with the deploy)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
    }
    Err(Failure::new(1, "the agent ended the deploy stream early"))
}

/// `--since`: an RFC 3339 time, or an age like `10m` meaning that long ago.
fn parse_since(s: &str) -> Result<String, Failure> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(humantime::format_rfc3339_micros(t).to_string());
    }
    let age = humantime::parse_duration(s).map_err(|_| {
        Failure::new(
            2,
            format!("--since {s:?}: expected an RFC 3339 time or an age such as 10m"),
        )
    })?;
    let t = SystemTime::now()
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(humantime::format_rfc3339_micros(t).to_string())
}

/// How long `homeport agent` waits for services to stop on SIGTERM before it gives up on them.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(120);
