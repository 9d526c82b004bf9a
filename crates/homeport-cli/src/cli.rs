//! The command line: every command, argument and its help text (also the source of the man
//! page and of shell completion).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use clap_complete::ArgValueCandidates;

use crate::style::ColorWhen;
use crate::targets::{HostTarget, complete_apps, complete_targets};

#[derive(Parser)]
#[command(
    name = "homeport",
    version,
    about = "Run your own apps in production on your own computer",
    after_help = "TARGET is APP, APP/ENV, APP/ENV/SERVICE or `all`, on another host HOST:TARGET. \
                  Exit codes: 0 success, 1 failed, 2 bad usage or config, 3 agent not running, \
                  4 no service matches."
)]
pub struct Cli {
    /// Config file [default: $HOMEPORT_CONFIG, else ~/.config/homeport/homeport.toml]
    #[arg(long, global = true, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// When to colour the output (NO_COLOR in the environment means never for `auto`)
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: ColorWhen,
    /// Act on the agent of another host (see `homeport host`) [default: $HOMEPORT_HOST, else this computer]
    #[arg(long, global = true, value_name = "NAME")]
    pub host: Option<String>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the agent in the foreground: supervise every configured service
    #[command(args_conflicts_with_subcommands = true)]
    Agent {
        #[command(subcommand)]
        command: Option<AgentCmd>,
        /// Run it in the background; return once its API answers, and print its pid
        #[arg(long)]
        detach: bool,
    },
    /// Show services: state, health, pid, uptime, restarts, CPU, memory, URL
    Status {
        /// Only these services (APP, APP/ENV or APP/ENV/SERVICE)
        #[arg(add = ArgValueCandidates::new(complete_targets))]
        target: Option<HostTarget>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Everything about one service: command, env, ports, health, restarts, logs, release, backup
    Show {
        /// The service, APP/ENV/SERVICE (APP or APP/ENV when it names only one)
        #[arg(add = ArgValueCandidates::new(complete_targets))]
        target: HostTarget,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// A live view of every service: state, CPU, memory, restarts, sparklines of the last hour,
    /// the selected one's log; keys to start, stop and restart
    Top,
    /// Start services (and what they depend on)
    Start {
        /// What to start: APP, APP/ENV, APP/ENV/SERVICE, or `all`
        #[arg(add = ArgValueCandidates::new(complete_targets))]
        target: HostTarget,
    },
    /// Stop services, dependents first
    Stop {
        /// What to stop: APP, APP/ENV, APP/ENV/SERVICE, or `all`
        #[arg(add = ArgValueCandidates::new(complete_targets))]
        target: HostTarget,
    },
    /// Stop, then start services
    Restart {
        /// What to restart: APP, APP/ENV, APP/ENV/SERVICE, or `all`
        #[arg(add = ArgValueCandidates::new(complete_targets))]
        target: HostTarget,
    },
    /// Show log lines of services; without a target, follow every service
    Logs {
        /// Whose lines: APP, APP/ENV or APP/ENV/SERVICE [default: all, followed]
        #[arg(add = ArgValueCandidates::new(complete_targets))]
        target: Option<HostTarget>,
        /// Keep printing new lines as they come
        #[arg(short, long)]
        follow: bool,
        /// Print the lines there are and exit, even without a target
        #[arg(long, conflicts_with = "follow")]
        no_follow: bool,
        /// Show the last N lines
        #[arg(short = 'n', long, default_value_t = 100, value_name = "N")]
        lines: usize,
        /// Only lines since this time: local (10:30, "2026-11-22 10:30"), RFC 3339
        /// (2026-11-22T10:00:00Z) or an age (10m, 2h)
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
        /// The environment to back up, APP/ENV
        #[arg(add = ArgValueCandidates::new(complete_targets))]
        target: Option<HostTarget>,
    },
    /// List backups (and the safety copies restores kept): ID, time, size, trigger, state
    Backups {
        /// Only these environments' backups (APP or APP/ENV) [default: all]
        #[arg(add = ArgValueCandidates::new(complete_targets))]
        target: Option<HostTarget>,
    },
    /// Put an environment's databases and files back from a backup (default: the newest
    /// verified one)
    Restore {
        /// The environment to restore, APP/ENV
        #[arg(add = ArgValueCandidates::new(complete_targets))]
        target: HostTarget,
        /// Backup ID (see `homeport backups`) [default: the newest verified one]
        backup: Option<i64>,
        /// Only this database of the backup
        #[arg(long, value_name = "NAME", conflicts_with = "path")]
        db: Option<String>,
        /// Only this one of the environment's `files` (its path, or its name in `backups`)
        #[arg(long, value_name = "PATH")]
        path: Option<String>,
        /// Write the backup out here for inspection, nothing live is touched: a new FILE for
        /// one database, else a new or empty folder
        #[arg(long, value_name = "FILE|DIR")]
        to: Option<PathBuf>,
    },
    /// Build the app's source and roll it out to an environment (on its host, if it has one)
    Deploy {
        /// The app to build and deploy
        #[arg(add = ArgValueCandidates::new(complete_apps))]
        app: String,
        /// The environment to roll it out to
        #[arg(long, default_value = "production")]
        env: String,
        /// Build this branch, tag or commit of the source (clean, whatever is checked out)
        #[arg(long = "ref", value_name = "BRANCH|TAG|COMMIT")]
        git_ref: Option<String>,
        /// For an environment on another host: build there from the pushed commit, not here
        #[arg(long)]
        build_on_host: bool,
    },
    /// Deploy history (of every app, or of APP), or one deploy's steps, output and diagnostics
    Deploys {
        /// Only this app's deploys
        #[arg(add = ArgValueCandidates::new(complete_apps))]
        app: Option<String>,
        /// One deploy, by its ID in the history
        id: Option<i64>,
    },
    /// Roll out the release another environment runs, without building
    Promote {
        /// The app whose release to promote
        #[arg(add = ArgValueCandidates::new(complete_apps))]
        app: String,
        /// The environment whose current release is rolled out (e.g. beta)
        #[arg(long, value_name = "ENV")]
        from: String,
        /// The environment that gets it
        #[arg(long, value_name = "ENV", default_value = "production")]
        to: String,
    },
    /// Go back to an earlier release (default: the one live before the current one)
    Rollback {
        /// The app to roll back
        #[arg(add = ArgValueCandidates::new(complete_apps))]
        app: String,
        /// The release to go back to (see `homeport releases APP`) [default: the previous one]
        release: Option<String>,
        /// The environment to roll back
        #[arg(long, default_value = "production")]
        env: String,
    },
    /// Fast-forward the app's source to its upstream and deploy it
    Update {
        /// The app to update
        #[arg(add = ArgValueCandidates::new(complete_apps))]
        app: String,
        /// The environment to deploy the update to
        #[arg(long, default_value = "production")]
        env: String,
        /// Only say how many commits the source is behind its upstream
        #[arg(long)]
        check: bool,
    },
    /// Automatic updates of an environment (`auto_update` in the config)
    #[command(name = "auto-update")]
    AutoUpdate {
        #[command(subcommand)]
        command: AutoUpdateCmd,
    },
    /// List an app's releases and which environments run them
    Releases {
        /// The app whose releases to list
        #[arg(add = ArgValueCandidates::new(complete_apps))]
        app: String,
    },
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
    /// Other hosts (a second computer, a VPS) running Homeport, reached through your OpenSSH
    Host {
        #[command(subcommand)]
        command: HostCmd,
    },
    /// Write units that run an environment's services without Homeport (systemd, launchd)
    Export {
        /// The format
        #[arg(value_enum)]
        format: crate::export::Format,
        /// The environment, APP/ENV
        #[arg(add = ArgValueCandidates::new(complete_targets))]
        target: String,
        /// Write the files into this folder instead of printing them
        #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
        out: Option<PathBuf>,
    },
    /// Answers another computer's Homeport over SSH (run by it, not by hand)
    #[command(hide = true)]
    Remote {
        #[command(subcommand)]
        command: RemoteCmd,
    },
    /// Apply homeport.toml now: new services start, removed ones stop, changed ones restart
    #[command(
        long_about = "Read homeport.toml again and apply it: the whole file is checked first; \
                      then new services appear (started if they autostart), removed ones stop, \
                      changed ones restart (only those), and the rest are not touched. A file \
                      with mistakes changes nothing: the agent keeps the config it runs. The \
                      agent also does this by itself when the file is saved, and on SIGHUP."
    )]
    Reload,
    /// Work with the config file
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Print a shell completion script (targets and apps are completed from your config)
    #[command(
        after_help = "Install: bash: homeport completions bash > ~/.local/share/bash-completion/completions/homeport\n\
                            zsh: homeport completions zsh > ~/.zfunc/_homeport (with ~/.zfunc in fpath)\n\
                            fish: homeport completions fish > ~/.config/fish/completions/homeport.fish"
    )]
    Completions {
        /// The shell to complete in
        #[arg(value_enum)]
        shell: crate::completions::Shell,
    },
    /// Print the manual page (roff): homeport man | man -l -
    Man {
        /// Write homeport.1 and a page per command (homeport-status.1, …) into this folder
        #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
        out: Option<PathBuf>,
    },
    /// Write homeport.toml services from a Procfile, `pm2 jlist` output or a docker-compose file
    Import {
        /// The file to read (Procfile, pm2 jlist JSON, compose YAML)
        #[arg(value_hint = clap::ValueHint::FilePath)]
        file: PathBuf,
        /// Its format [default: guessed from the name and content]
        #[arg(long, value_enum)]
        format: Option<crate::import::Format>,
        /// The app the services belong to [default: the folder or project name]
        #[arg(long)]
        app: Option<String>,
        /// The environment the services belong to
        #[arg(long, default_value = "production")]
        env: String,
        /// Append to the config file (comments kept) instead of printing
        #[arg(long)]
        write: bool,
    },
    /// Remove what Homeport installed: the service unit, the login entry; the data only with --data
    Uninstall {
        /// Also delete the data folder: logs, releases, backups, state.db, the token
        #[arg(long)]
        data: bool,
        /// Do not ask before deleting the data folder
        #[arg(long, short)]
        yes: bool,
    },
    /// Run one service and hold its output (started by the agent, not by hand)
    #[command(hide = true)]
    Shim {
        /// The service's run folder
        run_dir: PathBuf,
    },
    /// Run or check a managed database server (the agent's command for its service)
    #[command(hide = true)]
    Db {
        /// serve (initialise on first start, then run) or ping (the health check)
        action: String,
        /// The server, as the agent describes it
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

impl Cmd {
    /// Whether the command reads the config file (or the data folder it names). `import
    /// --write` creates the file when it is missing.
    pub fn needs_config(&self) -> bool {
        !matches!(
            self,
            Cmd::Completions { .. }
                | Cmd::Man { .. }
                | Cmd::Shim { .. }
                | Cmd::Db { .. }
                | Cmd::Autostart { .. }
                | Cmd::Import { .. }
                | Cmd::Host { .. }
                | Cmd::Remote { .. }
        )
    }

    /// Whether the command acts on an agent that `--host` may name instead of this
    /// computer's.
    pub fn takes_host(&self) -> bool {
        matches!(
            self,
            Cmd::Status { .. }
                | Cmd::Show { .. }
                | Cmd::Start { .. }
                | Cmd::Stop { .. }
                | Cmd::Restart { .. }
                | Cmd::Logs { .. }
                | Cmd::Backup { .. }
                | Cmd::Backups { .. }
                | Cmd::Restore { .. }
                | Cmd::Deploy { .. }
                | Cmd::Deploys { .. }
                | Cmd::Promote { .. }
                | Cmd::Rollback { .. }
                | Cmd::Update { .. }
                | Cmd::Releases { .. }
                | Cmd::Reload
        )
    }

    /// The host a target or app argument names (`vps:shop`), if any.
    pub fn target_host(&self) -> Option<String> {
        let from_app = |a: &str| crate::targets::split_host(a).0;
        match self {
            Cmd::Status { target, .. }
            | Cmd::Logs { target, .. }
            | Cmd::Backups { target }
            | Cmd::Backup { target, .. } => target.as_ref().and_then(|t| t.host.clone()),
            Cmd::Show { target, .. }
            | Cmd::Start { target }
            | Cmd::Stop { target }
            | Cmd::Restart { target }
            | Cmd::Restore { target, .. } => target.host.clone(),
            Cmd::Deploy { app, .. }
            | Cmd::Promote { app, .. }
            | Cmd::Rollback { app, .. }
            | Cmd::Update { app, .. }
            | Cmd::Releases { app } => from_app(app),
            Cmd::Deploys { app: Some(app), .. } => from_app(app),
            _ => None,
        }
    }
}

#[derive(Subcommand)]
pub enum HostCmd {
    /// Enrol a host: pin its SSH host key, install homeport there, run its agent, check it answers
    Add {
        /// The name you will use for it (`--host NAME`, `NAME:app/env`, `host = "NAME"`)
        name: String,
        /// How ssh reaches it: user@host, user@host:port, or a Host name of your ~/.ssh/config
        destination: String,
        /// Pin only this host key (SHA256:… as `ssh-keygen -lf` prints it); anything else is refused
        #[arg(long, value_name = "SHA256")]
        fingerprint: Option<String>,
        /// Pin the host key it shows without asking (first contact)
        #[arg(long, short)]
        yes: bool,
    },
    /// List enrolled hosts and how the connection to each is
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Forget a host: its record and pinned key here (Homeport on the host is left as it is)
    Remove {
        /// The host to forget
        name: String,
    },
    /// Connect to a host and check everything: key, system, version, agent, disk, PATH
    Check {
        /// The host to check
        name: String,
    },
}

#[derive(Subcommand)]
pub enum RemoteCmd {
    /// Print this host's Homeport facts as JSON (version, folders, the agent)
    Hello {
        /// Include the API token (read over SSH by the computer that asked)
        #[arg(long)]
        token: bool,
    },
    /// Merge app and environment tables from stdin into this host's config, then check it
    MergeConfig,
}

#[derive(Subcommand)]
pub enum AgentCmd {
    /// Ask the running agent to stop; it stops its services first unless --keep-services
    Stop {
        /// Leave every service running; the next agent re-adopts them
        #[arg(long)]
        keep_services: bool,
    },
    /// Replace the running agent with this binary; services keep running and are re-adopted
    Restart,
}

#[derive(Subcommand)]
pub enum ServiceCmd {
    /// Write the unit (or plist) that starts the agent at login and restarts it if it crashes
    Install,
    /// Remove it, after saying what to run first
    Uninstall,
    /// Say whether it is installed
    Status,
}

#[derive(Subcommand)]
pub enum TrustCmd {
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
        /// Only the system store
        #[arg(long)]
        system: bool,
        /// Only the NSS databases
        #[arg(long)]
        nss: bool,
    },
    /// Say in which stores the CA is trusted
    Status,
}

#[derive(Subcommand)]
pub enum HostsCmd {
    /// Print the block and whether the file has it
    Show {
        /// The hosts file
        #[arg(long, default_value = "/etc/hosts", value_name = "FILE")]
        file: PathBuf,
    },
    /// Add or update the block, after asking
    Install {
        /// The hosts file
        #[arg(long, default_value = "/etc/hosts", value_name = "FILE")]
        file: PathBuf,
        /// Do not ask
        #[arg(long)]
        yes: bool,
    },
    /// Remove the block, after asking
    Uninstall {
        /// The hosts file
        #[arg(long, default_value = "/etc/hosts", value_name = "FILE")]
        file: PathBuf,
        /// Do not ask
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub enum AutoUpdateCmd {
    /// Resume automatic updates paused after failed updates in a row
    Resume {
        /// The app
        #[arg(add = ArgValueCandidates::new(complete_apps))]
        app: String,
        /// The environment whose updates to resume
        #[arg(long, default_value = "production")]
        env: String,
    },
}

#[derive(Subcommand)]
pub enum AutostartCmd {
    /// Start the tray app (minimised) at every login
    Enable,
    /// Stop starting it at login
    Disable,
    /// Say whether it starts at login, and with which command
    Status,
}

#[derive(Subcommand)]
pub enum BackupAction {
    /// Re-check checksums and database integrity (one backup, or all of them)
    Verify {
        /// The backup to check (see `homeport backups`) [default: every backup]
        id: Option<i64>,
    },
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Report every problem in the config file, with file, line, column and field
    Check,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every command says what it is for (`--help`, the man page, completion).
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                if a.is_hide_set() || ["help", "version"].contains(&a.get_id().as_str()) {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "homeport", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
        Cli::command().debug_assert();
    }
}
