//! The test environment: a temp home with a config, the real `homeport` binary running as the
//! agent, and helpers that wait on conditions with deadlines (never fixed sleeps).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use homeport_client::Client;
use homeport_types::{ServiceStatus, StatusSnapshot};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How long any wait in these tests may take before it counts as a failure.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The `homeport` binary under test: `$HOMEPORT_BIN` (to try these tests on another build), or
/// the one built beside the fixture.
pub fn homeport_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("HOMEPORT_BIN") {
        return PathBuf::from(bin);
    }
    // The fixture and the homeport binary are built into the same target folder.
    let fixture = PathBuf::from(env!("CARGO_BIN_EXE_homeport-fixture"));
    let bin = fixture.with_file_name("homeport");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        bin.display()
    );
    bin
}

pub fn fixture_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_homeport-fixture"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` different ports nobody listens on right now. Each is held until all are chosen: a port
/// let go at once may be the kernel's next answer to another bind of port 0.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub data: PathBuf,
    pub ports: Vec<u16>,
    /// The router's port (`[agent] router_port`), free when the test began.
    pub router_port: u16,
    agent: Option<Child>,
    rt: tokio::runtime::Runtime,
    /// The `homeport` binary the agent and CLI run as.
    bin: PathBuf,
    /// Variables the agent and CLI get besides the test's own (`SSH_AUTH_SOCK`).
    extra_env: Vec<(String, std::ffi::OsString)>,
}

impl TestEnv {
    /// Writes `config` with `@FIXTURE@`, `@DATA@`, `@HOME@` and `@P0@`..`@P3@` (free ports) filled in.
    pub fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let mut ports = free_ports(5);
        let router_port = ports.pop().expect("five ports");
        let mut text = config
            .replace("@FIXTURE@", &fixture_bin().display().to_string())
            .replace("@DATA@", &data.display().to_string())
            .replace("@HOME@", &dir.path().display().to_string());
        for (i, p) in ports.iter().enumerate() {
            text = text.replace(&format!("@P{i}@"), &p.to_string());
        }
        // A test's own [agent] lines come first, so they win over these defaults.
        let (agent_extra, text) = match text.strip_prefix("[agent]\n") {
            Some(rest) => match rest.split_once("\n\n") {
                Some((lines, rest)) => (format!("{lines}\n"), rest.to_owned()),
                None => (rest.to_owned(), String::new()),
            },
            None => (String::new(), text),
        };
        let text = format!(
            "[agent]\nport = 0\n{agent_extra}{}data_dir = \"{}\"\n\n{text}",
            if agent_extra.contains("router_port") {
                String::new()
            } else {
                format!("router_port = {router_port}\n")
            },
            data.display()
        );
        let config = dir.path().join("homeport.toml");
        fs::write(&config, text).expect("write config");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Self {
            dir,
            config,
            data,
            ports,
            router_port,
            agent: None,
            rt,
            bin: homeport_bin(),
            extra_env: Vec::new(),
        }
    }

    /// Gives the agent and CLI `key` (started from now on).
    pub fn set_env(&mut self, key: &str, value: impl Into<std::ffi::OsString>) {
        self.extra_env.push((key.to_owned(), value.into()));
    }

    /// Runs the agent and CLI as `bin` instead of the built `homeport`.
    pub fn use_binary(&mut self, bin: PathBuf) {
        self.bin = bin;
    }

    pub fn write_config(&self, body: &str) {
        let text = format!(
            "[agent]\nport = 0\nrouter_port = {}\ndata_dir = \"{}\"\n\n{}",
            self.router_port,
            self.data.display(),
            body.replace("@FIXTURE@", &fixture_bin().display().to_string())
        );
        fs::write(&self.config, text).expect("rewrite config");
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config")
            .arg(&self.config)
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join(".config"))
            .env("XDG_DATA_HOME", self.dir.path().join(".local/share"))
            .env_remove("HOMEPORT_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        c
    }

    /// Starts the agent through a shell that leaves descriptor 9 open, as a careless launcher
    /// would.
    pub fn start_agent_with_extra_fd(&mut self) {
        self.start_agent_via(Some("exec 9</dev/null; exec \"$0\" \"$@\""));
    }

    /// Starts the agent under a file-size limit, which makes large writes fail as on a full disk.
    pub fn start_agent_with_file_limit_kib(&mut self, kib: u64) {
        // A soft limit: a child may raise it again (as a build step does in the deploy test).
        let script = format!("ulimit -S -f {kib}; exec \"$0\" \"$@\"");
        self.start_agent_via(Some(&script));
    }

    /// Starts the agent with a descriptor limit of `soft`:`hard`, as `prlimit` sets it.
    pub fn start_agent_with_descriptor_limit(&mut self, soft: u64, hard: u64) {
        let script = format!("exec prlimit --nofile={soft}:{hard} \"$0\" \"$@\"");
        self.start_agent_via(Some(&script));
    }

    /// Starts `homeport agent` and waits until its API answers.
    pub fn start_agent(&mut self) {
        self.start_agent_via(None);
    }

    fn start_agent_via(&mut self, shell: Option<&str>) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let mut cmd = self.command();
        if let Some(script) = shell {
            let args: Vec<std::ffi::OsString> = cmd.get_args().map(ToOwned::to_owned).collect();
            let mut sh = Command::new("/bin/sh");
            sh.arg("-c")
                .arg(script)
                .arg(&self.bin)
                .args(args)
                .arg("agent");
            for (k, v) in cmd.get_envs() {
                match v {
                    Some(v) => sh.env(k, v),
                    None => sh.env_remove(k),
                };
            }
            cmd = sh;
        } else {
            cmd.arg("agent");
        }
        let child = cmd
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        let pid = child.id();
        self.agent = Some(child);
        self.wait_until("the agent answers", || {
            let ep = homeport_client::Client::discover(&self.data).ok()?;
            let status = self.rt.block_on(ep.status()).ok()?;
            (status.agent.pid == pid).then_some(())
        });
    }

    /// The pid in `agent.json`, when that process runs with this environment's config.
    pub fn detached_agent_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data.join("agent.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let pid = v.get("pid")?.as_u64()? as u32;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let config = self.config.display().to_string();
        (alive(pid) && String::from_utf8_lossy(&cmdline).contains(&config)).then_some(pid)
    }

    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Child::id)
    }

    pub fn agent_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// SIGKILL to the agent alone, as a crash would.
    pub fn kill_agent_hard(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to the agent; returns how it exited.
    pub fn stop_agent(&mut self) -> Option<ExitStatus> {
        let mut child = self.agent.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                panic!(
                    "the agent did not exit within {DEADLINE:?} of SIGTERM\n{}",
                    self.agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn client(&self) -> Client {
        Client::discover(&self.data).expect("agent endpoint")
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn status(&self) -> StatusSnapshot {
        self.rt.block_on(self.client().status()).expect("status")
    }

    /// Polls until `check` returns Some, or fails the test after [`DEADLINE`].
    pub fn wait_until<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "timed out waiting until {what}\n--- agent log ---\n{}",
                    self.agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until the service `key` satisfies `pred`, and returns its status.
    pub fn wait_service(
        &self,
        key: &str,
        what: &str,
        pred: impl Fn(&ServiceStatus) -> bool,
    ) -> ServiceStatus {
        let start = Instant::now();
        loop {
            let s = self.status();
            let last = service(&s, key).clone();
            if pred(&last) {
                return last;
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "timed out waiting until {key} {what}; last: {last:#?}\n--- agent log ---\n{}",
                    self.agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The CLI with this environment's config and `args`, not yet run.
    pub fn command_with(&self, args: &[&str]) -> Command {
        let mut c = self.command();
        c.args(args);
        c
    }

    /// Runs the CLI with this environment's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run homeport")
    }

    /// The lines of a service's current log file.
    pub fn log_file(&self, app: &str, env: &str, svc: &str) -> PathBuf {
        self.data
            .join("logs")
            .join(app)
            .join(env)
            .join(format!("{svc}.log"))
    }

    /// Every service process group recorded in the run folders.
    fn recorded_groups(&self) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let run = self.data.join("run");
        for app in fs::read_dir(&run).into_iter().flatten().flatten() {
            for env in fs::read_dir(app.path()).into_iter().flatten().flatten() {
                for svc in fs::read_dir(env.path()).into_iter().flatten().flatten() {
                    if let Ok(text) = fs::read_to_string(svc.path().join("shim.json"))
                        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                    {
                        let n = |k: &str| {
                            v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) as u32
                        };
                        out.push((n("shim_pid"), n("pid")));
                    }
                }
            }
        }
        out
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.agent.is_some() {
            let _ = self.stop_agent();
        }
        // An agent started with `--detach` or by `homeport agent restart` is not our child.
        if let Some(pid) = self.detached_agent_pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        // Whatever a failed test left running must not outlive it.
        for (shim, pid) in self.recorded_groups() {
            if pid > 0 {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            if shim > 0 {
                let _ = kill(Pid::from_raw(shim as i32), Signal::SIGKILL);
            }
        }
    }
}

pub fn service<'a>(s: &'a StatusSnapshot, key: &str) -> &'a ServiceStatus {
    s.services
        .iter()
        .find(|x| x.key.to_string() == key)
        .unwrap_or_else(|| panic!("no service {key} in {s:#?}"))
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok() && !homeport_platform::is_zombie(pid)
}

/// The process backend the agents of this test run use: the one `HOMEPORT_PROCESS_BACKEND`
/// forces (scripts/test.sh runs the suite once with `portable`), else the OS's own.
pub fn backend() -> homeport_platform::Backend {
    homeport_platform::Backend::from_env().expect("a known process backend")
}

/// Sends a raw HTTP/1.1 request and returns the status code and body.
pub fn raw_http(port: u16, request: &str) -> (u16, String) {
    raw_http_within(port, request, DEADLINE)
}

/// [`raw_http`] for an answer that may take up to `patience` between two reads.
pub fn raw_http_within(port: u16, request: &str, patience: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(patience)).expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// A throwaway local user, the neighbour in the security tests: created with `useradd` when the
/// tests run as root (as CI does), removed when dropped. Elsewhere [`OtherUser::create`] says
/// why the test is skipped and returns None.
pub struct OtherUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// useradd and userdel lock /etc/passwd: one at a time in this process.
static USERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl OtherUser {
    pub fn create(test: &str) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "{test}: the second-user part is skipped: it creates a throwaway user, which needs root"
            );
            return None;
        }
        let _one = USERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut bytes = [0u8; 4];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .expect("random");
        let name = format!(
            "hpt{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let out = Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group"])
            .args(["--shell", "/usr/sbin/nologin", &name])
            .output()
            .expect("run useradd");
        assert!(out.status.success(), "useradd: {}", stderr(&out));
        let user = nix::unistd::User::from_name(&name)
            .ok()
            .flatten()
            .expect("the new user");
        Some(Self {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    /// `program` as this user (std drops root's supplementary groups with the uid).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(program);
        c.uid(self.uid)
            .gid(self.gid)
            .current_dir("/")
            .env_clear()
            .stdin(Stdio::null());
        c
    }

    /// The fixture's neighbour modes (`--fetch`, `--hold`, `--read`) as this user.
    pub fn fixture(&self, args: &[&str]) -> String {
        let out = self
            .command(shared_fixture_bin())
            .args(args)
            .output()
            .expect("run as the other user");
        stdout(&out)
    }
}

/// A copy of the fixture binary that any user may run. The build's own copy may sit where
/// another user cannot reach it (CI keeps its cargo target under root's 0700 home).
pub fn shared_fixture_bin() -> &'static Path {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("homeport-e2e-fixture-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("a folder for the shared fixture");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod 755");
        let bin = dir.join("homeport-fixture");
        fs::copy(fixture_bin(), &bin).expect("copy the fixture");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod 755");
        bin
    })
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        let _one = USERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Tests end the processes they started as the user (by pid) before this runs.
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// Makes `dir` traversable and readable by everyone, as many home folders are: then only the
/// agent's own modes stand between another user and its files.
pub fn open_to_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod 755");
}
