//! Another host for the tests: a real OpenSSH server (Debian's `sshd`, which scripts/setup.sh
//! installs and leaves disabled) started by the test on a loopback port with a throwaway host
//! key, a throwaway unprivileged user with a home of its own (the "remote" Homeport lives
//! there, with its own data folder), and a key that only an `ssh-agent` of the test holds — so
//! the user's own `ssh` authenticates as it would from a desktop session.
//!
//! Needs root (to create the user and run sshd); [`SshHost::start`] says why it skips
//! otherwise. Everything it started is ended by pid when it is dropped: sshd and its
//! connection processes, the agent, and every process of the throwaway user (which only
//! this test ran).

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long sshd may take to listen.
const START: Duration = Duration::from_secs(30);

pub struct SshHost {
    pub dir: tempfile::TempDir,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub port: u16,
    sshd: Option<Child>,
    agent: Child,
    /// `SSH_AUTH_SOCK` of the test's ssh-agent, which holds the authorised key.
    pub auth_sock: PathBuf,
}

/// One useradd/userdel at a time (they lock /etc/passwd).
static USERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 4];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("random");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SshHost {
    /// A running sshd with a fresh user, or None (with a note) where the test cannot make one.
    pub fn start(test: &str) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "{test}: skipped: it runs sshd and creates a throwaway user, which needs root"
            );
            return None;
        }
        if !Path::new("/usr/sbin/sshd").exists() {
            panic!(
                "{test}: /usr/sbin/sshd is missing: run ./scripts/setup.sh (it installs openssh-server, disabled)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("hp-ssh-")
            .tempdir()
            .expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let user = format!("hps{}", random_hex());
        let home = dir.path().join("home");
        {
            let _one = USERS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // `-p '*'`: no password, and not a locked account (sshd refuses those even for keys).
            run(Command::new("useradd")
                .args(["--system", "--user-group", "--create-home", "-p", "*"])
                .args(["--shell", "/bin/bash", "--home-dir"])
                .arg(&home)
                .arg(&user));
        }
        let pw = nix::unistd::User::from_name(&user)
            .ok()
            .flatten()
            .expect("the new user");
        let (uid, gid) = (pw.uid.as_raw(), pw.gid.as_raw());
        let keys = dir.path().join("keys");
        fs::create_dir(&keys).expect("keys dir");
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o700)).expect("chmod");
        for k in ["host_ed25519", "client_ed25519"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", k, "-f"])
                .arg(keys.join(k)));
        }
        let ssh_dir = home.join(".ssh");
        fs::create_dir_all(&ssh_dir).expect(".ssh");
        fs::copy(
            keys.join("client_ed25519.pub"),
            ssh_dir.join("authorized_keys"),
        )
        .expect("authorized_keys");
        fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700)).expect("chmod");
        fs::set_permissions(
            ssh_dir.join("authorized_keys"),
            fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        chown_tree(&home, uid, gid);
        // sshd's privilege separation folder; the system's service, which would make it, is off.
        fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let auth_sock = dir.path().join("agent.sock");
        let agent = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&auth_sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent");
        let deadline = Instant::now() + START;
        // The socket's file appears at bind, before the agent listens: wait until it answers.
        while std::os::unix::net::UnixStream::connect(&auth_sock).is_err() {
            assert!(
                Instant::now() < deadline,
                "ssh-agent did not listen on its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        run(Command::new("ssh-add")
            .arg("-q")
            .arg(keys.join("client_ed25519"))
            .env("SSH_AUTH_SOCK", &auth_sock));
        let mut host = SshHost {
            dir,
            user,
            uid,
            gid,
            home,
            port: free_port(),
            sshd: None,
            agent,
            auth_sock,
        };
        host.start_sshd();
        Some(host)
    }

    fn host_key(&self) -> PathBuf {
        self.dir.path().join("keys/host_ed25519")
    }

    /// (Re)starts sshd on the same port with the current host key.
    pub fn start_sshd(&mut self) {
        let config = self.dir.path().join("sshd_config");
        let text = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile none\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin no\nAllowUsers {user}\nStrictModes yes\nLogLevel VERBOSE\n\
             ClientAliveInterval 5\nClientAliveCountMax 3\n",
            port = self.port,
            key = self.host_key().display(),
            user = self.user
        );
        fs::write(&config, text).expect("sshd_config");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sshd.log"))
            .expect("sshd log");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("sshd");
        self.sshd = Some(child);
        let deadline = Instant::now() + START;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on {}: {}",
                self.port,
                self.sshd_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops sshd and every connection it holds: the host is unreachable until started again.
    pub fn stop_sshd(&mut self) {
        self.kill_connections();
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Ends every SSH connection (the per-connection sshd processes), as a network drop
    /// would; sshd keeps listening.
    pub fn kill_connections(&self) {
        let Some(sshd) = self.sshd.as_ref().map(Child::id) else {
            return;
        };
        for pid in descendants(sshd) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// A new host key, as after a reinstall (or an attacker in between).
    pub fn replace_host_key(&mut self) {
        self.stop_sshd();
        let _ = fs::remove_file(self.host_key());
        let _ = fs::remove_file(self.host_key().with_extension("pub"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "new", "-f"])
            .arg(self.host_key()));
        self.start_sshd();
    }

    /// `SHA256:…` of the current host key.
    pub fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.host_key().with_extension("pub"))
            .output()
            .expect("ssh-keygen");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .expect("a fingerprint")
            .to_owned()
    }

    pub fn destination(&self) -> String {
        format!("{}@127.0.0.1:{}", self.user, self.port)
    }

    pub fn sshd_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn config_path(&self) -> PathBuf {
        self.home.join(".config/homeport/homeport.toml")
    }

    pub fn data(&self) -> PathBuf {
        self.home.join(".local/share/homeport")
    }

    /// Writes the host's own homeport.toml (as its user would), `@HOME@` filled in.
    pub fn write_config(&self, text: &str) {
        let path = self.config_path();
        let dir = path.parent().expect("parent");
        fs::create_dir_all(dir).expect("config dir");
        fs::write(
            &path,
            text.replace("@HOME@", &self.home.display().to_string()),
        )
        .expect("write config");
        chown_tree(&self.home.join(".config"), self.uid, self.gid);
    }

    /// A command run as the host's user, in its home, as a login over SSH would.
    pub fn as_user(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(program);
        c.uid(self.uid)
            .gid(self.gid)
            .current_dir(&self.home)
            .env_clear()
            .env("HOME", &self.home)
            .env("USER", &self.user)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::null());
        c
    }

    /// The pid of the host's running agent (its agent.json, if that process lives).
    pub fn agent_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data().join("agent.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let pid = v.get("pid")?.as_u64()? as u32;
        (nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
            && !homeport_platform::is_zombie(pid))
        .then_some(pid)
    }

    /// Every live process of the throwaway user.
    fn user_processes(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(status) = fs::read_to_string(e.path().join("status"))
                && let Some(uid) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|u| u.parse::<u32>().ok())
                && uid == self.uid
            {
                out.push(pid);
            }
        }
        out
    }
}

/// The children of `pid`, theirs, and so on (a connection is a privileged monitor process
/// and the user's own process under it, which holds the socket too).
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for c in children(pid) {
        out.push(c);
        out.extend(descendants(c));
    }
    out
}

/// The direct children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let _ = std::os::unix::fs::lchown(path, Some(uid), Some(gid));
    if path.is_dir() && !path.is_symlink() {
        for e in fs::read_dir(path).into_iter().flatten().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        self.stop_sshd();
        // The host's agent, its shims and services, and any session left: everything this
        // user runs was started by this test.
        for _ in 0..3 {
            let pids = self.user_processes();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        let _one = USERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = Command::new("userdel").arg(&self.user).status();
    }
}
