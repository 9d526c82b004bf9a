//! `homeport host add`: first contact and the pinned key, what the host is, the `homeport`
//! binary there (copied from here when OS and architecture match), the agent under the host's
//! service manager with a PATH in which the apps' tools are found, and a check that it answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use homeport_types::RemoteHello;
use sha2::{Digest, Sha256};

use crate::dest::{Destination, check_name};
use crate::link::{CONNECT_DEADLINE, LinkError, hello};
use crate::record::{self, HostFiles, HostRecord, RecordError, key_alias};
use crate::ssh::{Master, Ssh, SshError, line, quote};

#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(
        "{name} is already enrolled as {had}; to point it at {given}, run `homeport host remove {name}` first"
    )]
    OtherDestination {
        name: String,
        had: String,
        given: String,
    },
    #[error(
        "the host key of {dest} is {offered}, not the {expected} you gave with --fingerprint; nothing was pinned or installed"
    )]
    WrongKey {
        dest: String,
        expected: String,
        offered: String,
    },
    #[error("the host key {fingerprint} was not confirmed; nothing was pinned or installed")]
    NotConfirmed { fingerprint: String },
    #[error("cannot read the host key ssh recorded: {0}")]
    KeyUnreadable(String),
    /// Another OS or architecture than this binary's, and no homeport installed there.
    #[error("{0}")]
    NeedInstall(String),
    #[error("the homeport binary on {name} does not run: {detail}")]
    BinaryDoesNotRun { name: String, detail: String },
    #[error("cannot read {0}: {1}")]
    Local(PathBuf, #[source] std::io::Error),
    #[error(
        "the agent on {name} did not answer within {secs} s after it was started; its log: {log}"
    )]
    NoAnswer {
        name: String,
        secs: u64,
        log: String,
    },
}

/// What `host add` is told.
pub struct Enrol<'a> {
    pub name: String,
    pub dest: Destination,
    /// The key the user expects (`--fingerprint SHA256:…`): anything else is refused.
    pub fingerprint: Option<String>,
    /// Asks the user to confirm a key seen for the first time (on a terminal); `None` pins
    /// it without asking (`--yes`).
    pub confirm: Option<&'a mut dyn FnMut(&str) -> bool>,
    /// Whether ssh may prompt (a key's passphrase) on the terminal.
    pub prompts: bool,
    /// The `homeport` binary to copy; `homeport-shim` is beside it.
    pub local_bin: PathBuf,
}

/// A line of progress for the person watching.
pub type Say<'a> = &'a mut dyn FnMut(String);

/// `std::env::consts::OS` for `uname -s`.
pub fn os_of_uname(s: &str) -> String {
    match s.trim() {
        "Linux" => "linux".into(),
        "Darwin" => "macos".into(),
        "FreeBSD" => "freebsd".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// `std::env::consts::ARCH` for `uname -m`.
pub fn arch_of_uname(s: &str) -> String {
    match s.trim() {
        "x86_64" | "amd64" => "x86_64".into(),
        "aarch64" | "arm64" => "aarch64".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// The `KEY=value` lines of a probe's output.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// A PATH with absolute entries only, each once, in order.
pub fn clean_path(raw: &str) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for p in raw.split(':') {
        if p.starts_with('/') && !seen.contains(&p) {
            seen.push(p);
        }
    }
    seen.join(":")
}

/// The PATH that `env` printed between two markers (a login shell's rc files may print too).
fn path_between_markers(out: &str, marker: &str) -> Option<String> {
    let mut inside = false;
    for l in out.lines() {
        if l.trim() == marker {
            if inside {
                break;
            }
            inside = true;
            continue;
        }
        if inside && let Some(p) = l.strip_prefix("PATH=") {
            let p = clean_path(p);
            return (!p.is_empty()).then_some(p);
        }
    }
    None
}

fn sha256_file(path: &Path) -> Result<String, EnrolError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| EnrolError::Local(path.into(), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| EnrolError::Local(path.into(), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(homeport_fs::hex(&h.finalize()))
}

/// Parses `ssh-keygen -l` output: (`SHA256:…`, `ED25519`).
fn parse_fingerprint(out: &str) -> Option<(String, String)> {
    let l = out.lines().next()?;
    let mut words = l.split_whitespace();
    let _bits = words.next()?;
    let fp = words.next()?.to_owned();
    let kind = l
        .rsplit_once('(')
        .map(|(_, k)| k.trim_end_matches(')').to_owned())?;
    fp.starts_with("SHA256:").then_some((fp, kind))
}

/// The fingerprint of the key in a known_hosts file.
fn fingerprint_of(known_hosts: &Path) -> Result<(String, String), EnrolError> {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(known_hosts)
        .output()
        .map_err(|e| EnrolError::KeyUnreadable(format!("cannot run ssh-keygen: {e}")))?;
    parse_fingerprint(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
        EnrolError::KeyUnreadable(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    })
}

/// Connects for the first time, records the key the host shows, and pins it once the user
/// (or `--fingerprint`) agrees. The first login runs nothing there but `exit`.
async fn first_contact(
    files: &HostFiles,
    e: &mut Enrol<'_>,
    say: Say<'_>,
) -> Result<(String, String), EnrolError> {
    let seen = files.dir.join("known_hosts.new");
    let _ = std::fs::remove_file(&seen);
    let ssh = Ssh::new(&e.name, e.dest.clone(), files)
        .first_contact(seen.clone())
        .prompts(e.prompts);
    let result = async {
        ssh.run("exit 0", None).await?;
        let (fp, kind) = fingerprint_of(&seen)?;
        say(format!("Host key of {}: {kind} {fp}", e.dest));
        if let Some(want) = &e.fingerprint {
            if want.trim() != fp {
                return Err(EnrolError::WrongKey {
                    dest: e.dest.to_string(),
                    expected: want.trim().to_owned(),
                    offered: fp,
                });
            }
        } else if let Some(confirm) = e.confirm.as_mut()
            && !confirm(&fp)
        {
            return Err(EnrolError::NotConfirmed { fingerprint: fp });
        }
        // Only the one line ssh wrote, under our alias.
        let text =
            std::fs::read_to_string(&seen).map_err(|e| EnrolError::Local(seen.clone(), e))?;
        let alias = key_alias(&e.name);
        let pinned: String = text
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(alias.as_str()))
            .map(|l| format!("{l}\n"))
            .collect();
        if pinned.is_empty() {
            return Err(EnrolError::KeyUnreadable(format!(
                "{} has no line for {alias}",
                seen.display()
            )));
        }
        homeport_fs::atomic_write(&files.known_hosts(), pinned.as_bytes(), 0o600)
            .map_err(|err| EnrolError::Local(files.known_hosts(), err))?;
        say(format!(
            "Pinned it in {}: a different key is refused from now on",
            files.known_hosts().display()
        ));
        Ok((fp, kind))
    }
    .await;
    let _ = std::fs::remove_file(&seen);
    result
}

/// Runs the enrolment; returns the record it saved.
pub async fn enrol(data: &Path, mut e: Enrol<'_>, say: Say<'_>) -> Result<HostRecord, EnrolError> {
    check_name(&e.name).map_err(RecordError::BadName)?;
    let existing = record::load(data, &e.name).ok();
    if let Some(old) = &existing
        && old.destination != e.dest.to_string()
    {
        return Err(EnrolError::OtherDestination {
            name: e.name.clone(),
            had: old.destination.clone(),
            given: e.dest.to_string(),
        });
    }
    let files = record::create_dir(data, &e.name)?;
    let result = enrol_in(data, &files, &mut e, existing.as_ref(), say).await;
    if result.is_err() && existing.is_none() {
        // A first enrolment that failed leaves nothing behind (no half-pinned host).
        let _ = std::fs::remove_dir_all(&files.dir);
    }
    result
}

async fn enrol_in(
    data: &Path,
    files: &HostFiles,
    e: &mut Enrol<'_>,
    existing: Option<&HostRecord>,
    say: Say<'_>,
) -> Result<HostRecord, EnrolError> {
    let (fingerprint, key_type) = match existing {
        Some(old) if files.known_hosts().exists() => {
            say(format!(
                "{} is enrolled; its pinned host key is {} {}",
                e.name, old.key_type, old.fingerprint
            ));
            (old.fingerprint.clone(), old.key_type.clone())
        }
        _ => first_contact(files, e, say).await?,
    };
    let ssh = Ssh::new(&e.name, e.dest.clone(), files)
        .pinned(&fingerprint)
        .prompts(e.prompts)
        .with_control(files.control("enrol"));
    let master = Master::start(ssh, CONNECT_DEADLINE).await?;
    let ssh = master.ssh().clone();

    // What the host is.
    let probe = ssh
        .run(
            "sh -c 'echo \"os=$(uname -s)\"; echo \"arch=$(uname -m)\"; echo \"home=$HOME\"; \
             echo \"shell=$SHELL\"; echo \"path=$PATH\"; for t in sha256sum shasum systemctl \
             loginctl launchctl; do command -v $t >/dev/null 2>&1 && echo \"has=$t\"; done; true'",
            None,
        )
        .await?;
    let os = os_of_uname(field(&probe, "os").unwrap_or_default());
    let arch = arch_of_uname(field(&probe, "arch").unwrap_or_default());
    let home = field(&probe, "home").unwrap_or_default().to_owned();
    let has = |t: &str| probe.lines().any(|l| l == format!("has={t}"));
    say(format!("{}: {os}/{arch}, home {home}", e.name));

    // A login shell's PATH: where the user's own tools are (nvm, cargo, Homebrew…), which a
    // service manager's PATH and a non-interactive ssh command's PATH both miss.
    let marker = "__HOMEPORT_PATH__";
    let login = format!(
        "sh -c 'exec \"${{SHELL:-/bin/sh}}\" -l -i -c \"echo {marker}; env; echo {marker}\" </dev/null 2>/dev/null'"
    );
    let path = match tokio::time::timeout(Duration::from_secs(30), ssh.run_raw(&login, None)).await
    {
        Ok(Ok(out)) => path_between_markers(&String::from_utf8_lossy(&out.stdout), marker),
        _ => None,
    }
    .unwrap_or_else(|| clean_path(field(&probe, "path").unwrap_or("/usr/local/bin:/usr/bin:/bin")));
    say(format!("PATH of a login shell there: {path}"));

    // The binary.
    let version = env!("CARGO_PKG_VERSION");
    let lib = format!("{home}/.local/lib/homeport");
    let bin_dir = format!("{home}/.local/bin");
    let remote_bin = format!("{lib}/homeport");
    let same_platform = os == std::env::consts::OS && arch == std::env::consts::ARCH;
    let remote_bin = if same_platform {
        install_binaries(
            &ssh,
            e,
            &lib,
            &bin_dir,
            has("sha256sum"),
            has("shasum"),
            say,
        )
        .await?;
        remote_bin
    } else {
        find_installed(&ssh, e, &remote_bin, &path, &os, &arch).await?
    };
    let version_out = ssh
        .run(&line(&[&remote_bin, "--version"])?, None)
        .await
        .map_err(|err| EnrolError::BinaryDoesNotRun {
            name: e.name.clone(),
            detail: err.to_string(),
        })?;
    let remote_version = version_out
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    say(format!("{remote_bin}: homeport {remote_version}"));

    // Its config: kept when there is one; a small one otherwise.
    let h = hello(&ssh, &remote_bin, false).await?;
    if !h.config_exists {
        ssh.run(&line(&[&remote_bin, "remote", "merge-config"])?, Some(b""))
            .await?;
        say(format!(
            "Wrote {} (its [agent] settings are yours to edit there)",
            h.config
        ));
    }

    // The agent, under the host's service manager when it has one for the user.
    let env_path = format!("PATH={path}");
    let run = |args: &[&str]| -> Result<String, SshError> {
        let mut words = vec!["env", env_path.as_str(), remote_bin.as_str()];
        words.extend_from_slice(args);
        line(&words)
    };
    let mut run_by = "detached".to_owned();
    if os == "macos" {
        match ssh.run(&run(&["service", "install"])?, None).await {
            Ok(_) => {
                run_by = "launchd".into();
                say(format!(
                    "Installed the LaunchAgent on {}: it starts at login (a Mac mini with nobody logged in needs automatic login)",
                    e.name
                ));
            }
            Err(err) => say(format!("Could not load the LaunchAgent there ({err})")),
        }
    } else if has("systemctl") {
        ssh.run(&run(&["service", "install"])?, None).await?;
        say(format!(
            "Installed the systemd user unit on {} with that PATH",
            e.name
        ));
        if has("loginctl") {
            match ssh.run("loginctl enable-linger", None).await {
                Ok(_) => say(format!(
                    "Linger is on: the agent starts at boot and keeps running after you log out of {}",
                    e.name
                )),
                Err(err) => say(format!(
                    "Could not turn on linger ({err}); without it the agent stops when you log out. \
                     Ask an administrator there: sudo loginctl enable-linger $USER"
                )),
            }
        }
    }
    let was_running = h.agent.is_some();
    if was_running {
        // The new binary takes over; services keep running and are re-adopted.
        ssh.run(&run(&["agent", "restart"])?, None).await?;
        say(format!("Restarted the agent on {} on this binary", e.name));
    } else if run_by == "launchd" {
        // `service install` loaded it.
    } else if has("systemctl") {
        match ssh
            .run(
                "systemctl --user daemon-reload && systemctl --user enable --now homeport",
                None,
            )
            .await
        {
            Ok(_) => {
                run_by = "systemd".into();
                say(format!("Started homeport.service on {}", e.name));
            }
            Err(err) => {
                say(format!(
                    "{} has no systemd user instance for you ({}): the unit is installed for when \
                     it has one, and the agent runs detached now — it will not start again after \
                     a reboot until systemd runs it",
                    e.name,
                    short(&err.to_string())
                ));
            }
        }
    }
    if run_by == "detached" && !was_running {
        ssh.run(&run(&["agent", "--detach"])?, None).await?;
        say(format!("Started the agent on {} (detached)", e.name));
    }

    // It answers?
    let answered = wait_for_agent(&master, &remote_bin, files).await;
    let (status, log) = match answered {
        Ok(s) => (s, String::new()),
        Err(log) => (None, log),
    };
    let Some(status) = status else {
        return Err(EnrolError::NoAnswer {
            name: e.name.clone(),
            secs: 30,
            log,
        });
    };
    say(format!(
        "The agent on {} answers: homeport {} (pid {}), {} service(s); {}: {}",
        e.name,
        status.snapshot.agent.version,
        status.snapshot.agent.pid,
        status.snapshot.services.len(),
        status.overall.level.word(),
        status.overall.reason
    ));
    drop(master);

    let record = HostRecord {
        name: e.name.clone(),
        destination: e.dest.to_string(),
        fingerprint,
        key_type,
        os,
        arch,
        home,
        remote_bin,
        path,
        run_by,
        version: if remote_version.is_empty() {
            version.to_owned()
        } else {
            remote_version
        },
        enrolled: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    record::save(data, &record)?;
    Ok(record)
}

fn short(s: &str) -> String {
    s.chars().take(160).collect()
}

/// Copies `homeport` and `homeport-shim` there unless the same files are there already.
async fn install_binaries(
    ssh: &Ssh,
    e: &Enrol<'_>,
    lib: &str,
    bin_dir: &str,
    sha256sum: bool,
    shasum: bool,
    say: Say<'_>,
) -> Result<(), EnrolError> {
    let local_shim = e.local_bin.with_file_name("homeport-shim");
    let files = [
        ("homeport", e.local_bin.clone()),
        ("homeport-shim", local_shim),
    ];
    let mut local_sums = Vec::new();
    for (_, p) in &files {
        local_sums.push(sha256_file(p)?);
    }
    let sums = if sha256sum || shasum {
        let tool = if sha256sum {
            "sha256sum"
        } else {
            "shasum -a 256"
        };
        let cmd = format!(
            "sh -c 'cd \"$1\" 2>/dev/null && {tool} homeport homeport-shim 2>/dev/null; true' sh {}",
            quote(lib)?
        );
        ssh.run(&cmd, None).await?
    } else {
        String::new()
    };
    let there = |name: &str| {
        sums.lines().find_map(|l| {
            let (sum, file) = l.split_once(char::is_whitespace)?;
            (file.trim().trim_start_matches('*') == name).then(|| sum.to_owned())
        })
    };
    let same = files
        .iter()
        .zip(&local_sums)
        .all(|((name, _), sum)| there(name).as_deref() == Some(sum.as_str()));
    if same {
        say(format!(
            "homeport and homeport-shim on {} are these very files ({lib})",
            e.name
        ));
        return Ok(());
    }
    for (name, local) in &files {
        // Written beside, then renamed: a running agent or shim keeps its own file.
        let cmd = format!(
            "sh -c 'umask 077; mkdir -p \"$1\" \"$3\" && cat > \"$1/.$2.new\" && chmod 700 \"$1/.$2.new\" \
             && mv -f \"$1/.$2.new\" \"$1/$2\"' sh {} {} {}",
            quote(lib)?,
            quote(name)?,
            quote(bin_dir)?
        );
        ssh.run_with_file(&cmd, local).await?;
    }
    let link = format!(
        "sh -c 'ln -sfn \"$1/homeport\" \"$2/homeport\"' sh {} {}",
        quote(lib)?,
        quote(bin_dir)?
    );
    ssh.run(&link, None).await?;
    say(format!(
        "Copied homeport and homeport-shim to {lib} on {} (linked from {bin_dir})",
        e.name
    ));
    Ok(())
}

/// The `homeport` already installed there (another OS or architecture than ours).
async fn find_installed(
    ssh: &Ssh,
    e: &Enrol<'_>,
    ours: &str,
    path: &str,
    os: &str,
    arch: &str,
) -> Result<String, EnrolError> {
    let cmd = format!(
        "sh -c 'if [ -x \"$1\" ]; then echo \"$1\"; else PATH=\"$2\" command -v homeport; fi' sh {} {}",
        quote(ours)?,
        quote(path)?
    );
    let found = ssh.run(&cmd, None).await.unwrap_or_default();
    let found = found.lines().last().unwrap_or_default().trim().to_owned();
    if found.starts_with('/') {
        return Ok(found);
    }
    Err(EnrolError::NeedInstall(format!(
        "{name} is {os}/{arch} and this homeport is built for {}/{}, so it cannot be copied \
         there, and no `homeport` is installed there. Install homeport {} on {name} (from a \
         checkout: ./scripts/install.sh), then run `homeport host add` again",
        std::env::consts::OS,
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION"),
        name = e.name,
    )))
}

/// Waits until the agent there answers through a forward; its status, or the end of its log.
async fn wait_for_agent(
    master: &Master,
    remote_bin: &str,
    files: &HostFiles,
) -> Result<Option<homeport_types::StatusReport>, String> {
    let sock = files.forward("enrol");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    let mut forwarded: Option<std::net::SocketAddr> = None;
    loop {
        match hello(master.ssh(), remote_bin, true).await {
            Ok(RemoteHello {
                agent: Some(ep),
                token: Some(token),
                ..
            }) => {
                if let Ok(addr) = ep.addr.parse::<std::net::SocketAddr>() {
                    if forwarded != Some(addr) {
                        if let Some(old) = forwarded.take() {
                            let _ = master.cancel_forward(&sock, old).await;
                        }
                        if master.forward(&sock, addr).await.is_ok() {
                            forwarded = Some(addr);
                        }
                    }
                    let client = homeport_client::Client::over_unix_socket(&sock, &ep.addr, &token);
                    match client.status_report().await {
                        Ok(s) => {
                            let _ = std::fs::remove_file(&sock);
                            return Ok(Some(s));
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
            }
            Ok(h) => last = format!("no agent runs (data folder {})", h.data_dir),
            Err(e) => last = e.to_string(),
        }
        if tokio::time::Instant::now() > deadline {
            let _ = std::fs::remove_file(&sock);
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_words_become_rust_platform_names() {
        assert_eq!(os_of_uname("Linux\n"), "linux");
        assert_eq!(os_of_uname("Darwin"), "macos");
        assert_eq!(arch_of_uname("arm64"), "aarch64");
        assert_eq!(arch_of_uname("x86_64"), "x86_64");
    }

    #[test]
    fn a_login_shells_path_is_read_between_markers_and_cleaned() {
        let out = "Welcome!\n__M__\nHOME=/home/a\nPATH=/home/a/.nvm/bin:bin:/usr/bin:/usr/bin\nX=1\n__M__\n";
        assert_eq!(
            path_between_markers(out, "__M__").as_deref(),
            Some("/home/a/.nvm/bin:/usr/bin")
        );
        assert_eq!(path_between_markers("PATH=/x\n", "__M__"), None);
    }

    #[test]
    fn ssh_keygen_fingerprints_are_read() {
        assert_eq!(
            parse_fingerprint("256 SHA256:j9QIDwJ/rdG1a7 homeport-vps (ED25519)\n"),
            Some(("SHA256:j9QIDwJ/rdG1a7".into(), "ED25519".into()))
        );
        assert_eq!(parse_fingerprint("nonsense"), None);
    }
}
