//! The user's own OpenSSH client, run as a program: their keys, their agent, their
//! `~/.ssh/config` (aliases, `ProxyJump`, ports). Homeport adds only what makes it safe and
//! unattended: the host key pinned in a known_hosts file of its own (and no other), no prompts
//! outside `homeport host add`, no agent or X11 forwarding, and a connection multiplexed through
//! a control socket (ControlMaster) so one login serves every command, copy and forward.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::dest::Destination;
use crate::record::{HostFiles, key_alias};

/// How `ssh` treats a host key it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// Only the pinned key (every connection after enrolment).
    Pinned,
    /// First contact: record the key the host shows, so it can be shown and pinned.
    FirstContact,
}

/// How to run `ssh` for one host.
#[derive(Debug, Clone)]
pub struct Ssh {
    program: PathBuf,
    pub name: String,
    pub dest: Destination,
    known_hosts: PathBuf,
    check: KeyCheck,
    control: Option<PathBuf>,
    /// `BatchMode`: never prompt (the agent, scripts). Off only for `host add` on a terminal,
    /// where ssh may ask for a key's passphrase.
    batch: bool,
    /// The pinned key's fingerprint, to name it when the host shows another.
    pinned: String,
}

impl Ssh {
    pub fn new(name: &str, dest: Destination, files: &HostFiles) -> Self {
        Self {
            program: std::env::var_os("HOMEPORT_SSH")
                .map_or_else(|| PathBuf::from("ssh"), PathBuf::from),
            name: name.to_owned(),
            dest,
            known_hosts: files.known_hosts(),
            check: KeyCheck::Pinned,
            control: None,
            batch: true,
            pinned: String::new(),
        }
    }

    /// Names the pinned key's fingerprint in a refusal.
    pub fn pinned(mut self, fingerprint: &str) -> Self {
        self.pinned = fingerprint.to_owned();
        self
    }

    /// The key check for first contact, recording into `known_hosts` instead of the pin file.
    pub fn first_contact(mut self, known_hosts: PathBuf) -> Self {
        self.check = KeyCheck::FirstContact;
        self.known_hosts = known_hosts;
        self
    }

    pub fn with_control(mut self, path: PathBuf) -> Self {
        self.control = Some(path);
        self
    }

    pub fn prompts(mut self, allowed: bool) -> Self {
        self.batch = !allowed;
        self
    }

    pub fn control(&self) -> Option<&Path> {
        self.control.as_deref()
    }

    /// The options every invocation gets, ahead of the destination.
    fn options(&self) -> Vec<OsString> {
        let mut o: Vec<String> = vec![
            format!("BatchMode={}", if self.batch { "yes" } else { "no" }),
            format!("UserKnownHostsFile={}", config_path(&self.known_hosts)),
            // Our pin and nothing else decides: not the system's file, not a DNS record.
            "GlobalKnownHostsFile=/dev/null".into(),
            "VerifyHostKeyDNS=no".into(),
            format!(
                "StrictHostKeyChecking={}",
                match self.check {
                    KeyCheck::Pinned => "yes",
                    KeyCheck::FirstContact => "accept-new",
                }
            ),
            format!("HostKeyAlias={}", key_alias(&self.name)),
            "CheckHostIP=no".into(),
            "UpdateHostKeys=no".into(),
            "HashKnownHosts=no".into(),
            "ConnectTimeout=15".into(),
            "ForwardAgent=no".into(),
            "ForwardX11=no".into(),
            "PermitLocalCommand=no".into(),
            "RequestTTY=no".into(),
            "LogLevel=ERROR".into(),
        ];
        if let Some(c) = &self.control {
            o.push(format!("ControlPath={}", config_path(c)));
        }
        let mut args: Vec<OsString> = Vec::new();
        for opt in o {
            args.push("-o".into());
            args.push(opt.into());
        }
        if let Some(p) = self.dest.port {
            args.push("-p".into());
            args.push(p.to_string().into());
        }
        args
    }

    fn base(&self) -> Command {
        let mut std = std::process::Command::new(&self.program);
        homeport_fs::inherit::restore(&mut std);
        let mut c = Command::from(std);
        c.kill_on_drop(true);
        c
    }

    /// `ssh` with this host's options, as a command line for rsync's `-e` and git's
    /// `GIT_SSH_COMMAND` (each word single-quoted; both split it as a shell would). Over the
    /// control socket when one is set.
    pub fn rsh(&self) -> Result<String, SshError> {
        let mut words: Vec<String> = vec![self.program.display().to_string()];
        words.extend(
            self.options()
                .into_iter()
                .map(|o| o.to_string_lossy().into_owned()),
        );
        if self.control.is_some() {
            words.push("-o".into());
            words.push("ControlMaster=no".into());
        }
        Ok(words
            .iter()
            .map(|w| quote(w))
            .collect::<Result<Vec<_>, _>>()?
            .join(" "))
    }

    /// `ssh … DEST LINE`: runs `line` in the login shell of the user there (over the control
    /// socket when one is set and its master runs).
    pub fn command(&self, line: &str) -> Command {
        let mut c = self.base();
        c.args(self.options());
        if self.control.is_some() {
            c.args(["-o", "ControlMaster=no"]);
        }
        c.arg(self.dest.ssh_target()).arg(line);
        c
    }

    /// The master of a multiplexed connection: logs in, holds the connection, runs nothing.
    fn master_command(&self) -> Command {
        let mut c = self.base();
        c.args(self.options());
        c.args([
            "-o",
            "ControlMaster=yes",
            "-o",
            "ControlPersist=no",
            // A forward's socket left by a master that was killed is replaced, not refused.
            "-o",
            "StreamLocalBindUnlink=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            // Only the forwards Homeport asks for, not `LocalForward` lines of the user's config.
            "-o",
            "ClearAllForwardings=yes",
            // A host that stops answering is noticed within about 15 s.
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-N",
        ]);
        c.arg(self.dest.ssh_target());
        c
    }

    /// `ssh -O OP` to the master.
    fn control_command(&self, op: &str, extra: &[OsString]) -> Command {
        let mut c = self.base();
        c.args(self.options());
        c.arg("-O").arg(op).args(extra).arg(self.dest.ssh_target());
        c
    }

    /// Runs `line` there and returns its stdout; stdin is `input` (or nothing).
    pub async fn run(&self, line: &str, input: Option<&[u8]>) -> Result<String, SshError> {
        let out = self.run_raw(line, input).await?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(self.failure(
            line,
            out.status.code(),
            &String::from_utf8_lossy(&out.stderr),
        ))
    }

    /// Like [`Ssh::run`], with the exit status and both outputs whatever they are.
    pub async fn run_raw(
        &self,
        line: &str,
        input: Option<&[u8]>,
    ) -> Result<std::process::Output, SshError> {
        let mut cmd = self.command(line);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(SshError::NoSsh)?;
        if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
            // The remote command may exit before reading everything; its status says why.
            let _ = stdin.write_all(bytes).await;
            drop(stdin);
        }
        child.wait_with_output().await.map_err(SshError::NoSsh)
    }

    /// Streams the file at `local` into `line`'s stdin there.
    pub async fn run_with_file(&self, line: &str, local: &Path) -> Result<String, SshError> {
        let file = std::fs::File::open(local).map_err(SshError::NoSsh)?;
        let mut cmd = self.command(line);
        cmd.stdin(Stdio::from(file))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = cmd.output().await.map_err(SshError::NoSsh)?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(self.failure(
            line,
            out.status.code(),
            &String::from_utf8_lossy(&out.stderr),
        ))
    }

    /// What a failed run means: ssh's own failure (exit 255) in words, or the remote
    /// command's.
    pub fn failure(&self, line: &str, code: Option<i32>, stderr: &str) -> SshError {
        if code == Some(255) || code.is_none() {
            return classify(&self.name, &self.dest, &self.pinned, stderr);
        }
        SshError::Remote {
            host: self.name.clone(),
            command: line.to_owned(),
            status: code.map_or_else(|| "killed".to_owned(), |c| format!("exit {c}")),
            detail: last_lines(stderr, 6),
        }
    }
}

/// A path as an ssh option's value: in double quotes (a data folder may have spaces: macOS's
/// "Application Support"), with `%` doubled (ssh expands `%h`, `%p`… in these options).
fn config_path(p: &Path) -> String {
    format!("\"{}\"", p.display().to_string().replace('%', "%%"))
}

/// One argument for the remote login shell, single-quoted. Refused when it holds a quote, a
/// backslash or a line break: quoting rules differ between sh, zsh and fish there, and no path
/// Homeport sends needs them.
pub fn quote(arg: &str) -> Result<String, SshError> {
    if arg.contains(['\'', '\\', '\n', '\r', '\0']) {
        return Err(SshError::Unquotable(arg.to_owned()));
    }
    Ok(format!("'{arg}'"))
}

/// A command line of quoted words.
pub fn line(args: &[&str]) -> Result<String, SshError> {
    Ok(args
        .iter()
        .map(|a| quote(a))
        .collect::<Result<Vec<_>, _>>()?
        .join(" "))
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "cannot run ssh: {0}; Homeport reaches other hosts with OpenSSH's client (apt install openssh-client)"
    )]
    NoSsh(#[source] std::io::Error),
    #[error(
        "the host key of {host} has CHANGED: Homeport pinned {pinned}, and the host now shows {offered}. \
         Nothing was sent to it. If {host} was reinstalled or its key replaced on purpose, check the new \
         fingerprint with whoever runs it, then run `homeport host remove {host}` and add it again; \
         otherwise someone may be intercepting the connection"
    )]
    HostKeyChanged {
        host: String,
        pinned: String,
        offered: String,
    },
    #[error("{host} did not prove it holds the pinned host key: {detail}")]
    HostKeyUnverified { host: String, detail: String },
    #[error(
        "SSH refused the login to {dest}: {detail}. Check that your key is loaded (`ssh-add -l`) and \
         authorised there (`ssh {dest}` works without a password); Homeport uses your ssh, keys and \
         ~/.ssh/config and never asks for a password"
    )]
    Auth { dest: String, detail: String },
    #[error("cannot reach {dest}: {detail}")]
    Unreachable { dest: String, detail: String },
    #[error("ssh to {dest} failed: {detail}")]
    Other { dest: String, detail: String },
    #[error("on {host}, `{command}` failed ({status}): {detail}")]
    Remote {
        host: String,
        command: String,
        status: String,
        detail: String,
    },
    #[error("{0:?} cannot be passed to a remote shell safely (a quote, backslash or line break)")]
    Unquotable(String),
    #[error("the connection to {dest} did not come up within {secs} s")]
    Timeout { dest: String, secs: u64 },
}

impl SshError {
    /// Whether trying again later may help (the host or network is down), as opposed to a
    /// refusal that needs the user (a changed key, a refused login).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SshError::Unreachable { .. } | SshError::Other { .. } | SshError::Timeout { .. }
        )
    }
}

/// The last `n` non-empty lines of `text`, joined.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// Reads ssh's stderr (exit 255) as a person would.
pub fn classify(name: &str, dest: &Destination, pinned: &str, stderr: &str) -> SshError {
    let dest_s = dest.to_string();
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("Host key for") && stderr.contains("has changed")
    {
        let offered = stderr
            .split_whitespace()
            .find(|w| w.starts_with("SHA256:"))
            .map_or_else(
                || "a different key".to_owned(),
                |w| w.trim_end_matches('.').to_owned(),
            );
        return SshError::HostKeyChanged {
            host: name.to_owned(),
            pinned: if pinned.is_empty() {
                "another key".to_owned()
            } else {
                pinned.to_owned()
            },
            offered,
        };
    }
    if stderr.contains("Host key verification failed") || stderr.contains("No ED25519 host key") {
        return SshError::HostKeyUnverified {
            host: name.to_owned(),
            detail: last_lines(stderr, 3),
        };
    }
    if stderr.contains("Permission denied") || stderr.contains("Too many authentication failures") {
        return SshError::Auth {
            dest: dest_s,
            detail: last_lines(stderr, 2),
        };
    }
    let unreachable = [
        "Connection refused",
        "Could not resolve hostname",
        "No route to host",
        "timed out",
        "Network is unreachable",
        "Connection closed by",
        "closed by remote host",
        "Connection reset",
        "Broken pipe",
        "Timeout, server",
        "kex_exchange_identification",
        "Name or service not known",
    ];
    if unreachable.iter().any(|u| stderr.contains(u)) {
        return SshError::Unreachable {
            dest: dest_s,
            detail: last_lines(stderr, 2),
        };
    }
    SshError::Other {
        dest: dest_s,
        detail: if stderr.trim().is_empty() {
            "ssh exited without saying why".to_owned()
        } else {
            last_lines(stderr, 3)
        },
    }
}

/// A multiplexed connection: one `ssh -M -N` process that holds the login; commands, copies
/// and forwards ride on it through its control socket. Ended (SIGTERM) when dropped.
pub struct Master {
    child: Child,
    ssh: Ssh,
    stderr: Arc<Mutex<String>>,
}

impl Master {
    /// Starts the master and waits until its control socket answers. `ssh` must have a control
    /// path. Fails with ssh's reason (unreachable, refused, a changed host key).
    pub async fn start(ssh: Ssh, deadline: Duration) -> Result<Master, SshError> {
        let ctl = ssh.control.clone().ok_or_else(|| SshError::Other {
            dest: ssh.dest.to_string(),
            detail: "no control path".into(),
        })?;
        // A socket left by a master that was killed would make ssh refuse to multiplex.
        let _ = std::fs::remove_file(&ctl);
        let mut cmd = ssh.master_command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(SshError::NoSsh)?;
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let keep = Arc::clone(&stderr);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut s = keep.lock().unwrap_or_else(PoisonError::into_inner);
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    // Only the end matters: why it stopped.
                    if s.len() > 16_384 {
                        let cut = s.len() - 8_192;
                        let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
                        s.drain(..cut);
                    }
                }
            });
        }
        let mut master = Master { child, ssh, stderr };
        let start = tokio::time::Instant::now();
        loop {
            if let Ok(Some(_)) = master.child.try_wait() {
                return Err(master.reason().await);
            }
            if master.check().await {
                return Ok(master);
            }
            if start.elapsed() > deadline {
                return Err(SshError::Timeout {
                    dest: master.ssh.dest.to_string(),
                    secs: deadline.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    /// Whether the master answers on its control socket.
    pub async fn check(&self) -> bool {
        let mut c = self.ssh.control_command("check", &[]);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.status().await.is_ok_and(|s| s.success())
    }

    /// The ssh to run commands over this connection.
    pub fn ssh(&self) -> &Ssh {
        &self.ssh
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Forwards connections to the Unix socket `local` (created 0600 by ssh) to `to` there.
    pub async fn forward(&self, local: &Path, to: std::net::SocketAddr) -> Result<(), SshError> {
        self.forward_op("forward", local, to).await
    }

    pub async fn cancel_forward(
        &self,
        local: &Path,
        to: std::net::SocketAddr,
    ) -> Result<(), SshError> {
        self.forward_op("cancel", local, to).await
    }

    async fn forward_op(
        &self,
        op: &str,
        local: &Path,
        to: std::net::SocketAddr,
    ) -> Result<(), SshError> {
        let spec = format!("{}:{to}", local.display());
        let mut c = self
            .ssh
            .control_command(op, &["-L".into(), spec.clone().into()]);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = c.output().await.map_err(SshError::NoSsh)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(SshError::Other {
                dest: self.ssh.dest.to_string(),
                detail: format!(
                    "cannot {op} {spec}: {}",
                    last_lines(&String::from_utf8_lossy(&out.stderr), 2)
                ),
            })
        }
    }

    /// Waits until the connection ends, and says why.
    pub async fn closed(&mut self) -> SshError {
        let _ = self.child.wait().await;
        self.reason().await
    }

    /// Whether the master process has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    async fn reason(&mut self) -> SshError {
        // The stderr reader may still be copying ssh's last words.
        for _ in 0..20 {
            let done = !self
                .stderr
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty();
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let text = self
            .stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let code = self.child.try_wait().ok().flatten().and_then(|s| s.code());
        if text.trim().is_empty() {
            return SshError::Unreachable {
                dest: self.ssh.dest.to_string(),
                detail: match code {
                    Some(c) => format!("the SSH connection ended (ssh exit {c})"),
                    None => "the SSH connection ended".into(),
                },
            };
        }
        classify(&self.ssh.name, &self.ssh.dest, &self.ssh.pinned, &text)
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        // SIGTERM rather than kill_on_drop's SIGKILL: ssh then removes its control socket.
        // The pid is ours and not yet reaped (reaping happens through this Child only).
        if let Ok(None) = self.child.try_wait()
            && let Some(pid) = self.child.id()
        {
            // SAFETY: kill(2) with a pid of our own unreaped child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        // ssh leaves its control socket behind when signalled; the path is ours.
        if let Some(ctl) = &self.ssh.control {
            let _ = std::fs::remove_file(ctl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> Destination {
        "ana@vps:2222".parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn ssh_failures_are_read_as_a_person_would() {
        let changed = "@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
            The fingerprint for the ED25519 key sent by the remote host is\n\
            SHA256:j9QIDwJ/rdG1a7xDSP2I6ZlkitpUABAO2mSFE4p7IXY.\n\
            Host key verification failed.\n";
        match classify("vps", &dest(), "SHA256:old", changed) {
            SshError::HostKeyChanged {
                offered, pinned, ..
            } => {
                assert_eq!(
                    offered,
                    "SHA256:j9QIDwJ/rdG1a7xDSP2I6ZlkitpUABAO2mSFE4p7IXY"
                );
                assert_eq!(pinned, "SHA256:old");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(
                "vps",
                &dest(),
                "",
                "ana@127.0.0.1: Permission denied (publickey)."
            ),
            SshError::Auth { .. }
        ));
        let refused = classify(
            "vps",
            &dest(),
            "",
            "ssh: connect to host 127.0.0.1 port 2222: Connection refused\n",
        );
        assert!(refused.is_transient());
        assert!(refused.to_string().contains("Connection refused"));
        assert!(!classify("vps", &dest(), "SHA256:old", changed).is_transient());
    }

    #[test]
    fn remote_words_are_single_quoted_or_refused() {
        assert_eq!(
            line(&["/home/a b/x", "remote", "hello"]).ok(),
            Some("'/home/a b/x' 'remote' 'hello'".to_owned())
        );
        assert!(quote("it's").is_err() && quote("a\\b").is_err() && quote("a\nb").is_err());
    }

    #[test]
    fn paths_in_ssh_options_survive_spaces_and_percent_signs() {
        assert_eq!(
            config_path(Path::new(
                "/Users/a/Library/Application Support/Homeport/x%h"
            )),
            "\"/Users/a/Library/Application Support/Homeport/x%%h\""
        );
    }
}
