//! What differs between the engines in these tests: the config line, a client to run
//! statements, a writer that commits continuously, and reading the rows out of a backup file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use homeport_types::{ServiceState, Target};

use crate::util::*;

/// Waits on database work (first starts initialise a data folder) get longer than DEADLINE.
pub const DB_DEADLINE: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Mariadb,
    Redis,
}

impl Kind {
    pub fn key(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Mariadb => "mariadb",
            Kind::Redis => "redis",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Kind::Postgres => "15",
            Kind::Mariadb => "10.11",
            Kind::Redis => "7",
        }
    }
}

/// `, user = "nobody"` when the tests run as root.
pub fn user_clause() -> &'static str {
    if nix::unistd::geteuid().is_root() {
        ", user = \"nobody\""
    } else {
        ""
    }
}

/// A shell line that succeeds when the table (or Redis key) `app_ready` exists, reading the URL
/// from `$DATABASE_URL` as an app would (`{{`/`}}` are Homeport's escapes for a brace).
fn app_check(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            r#"psql -X -q -At \"$DATABASE_URL\" -c 'SELECT 1 FROM app_ready LIMIT 1' >/dev/null"#
        }
        Kind::Mariadb => {
            r#"pw=${{DATABASE_URL#mysql://homeport:}}; pw=${{pw%%@*}}; MYSQL_PWD=$pw mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P $DB_PORT -u homeport -e 'SELECT 1 FROM app_ready LIMIT 1' main >/dev/null"#
        }
        Kind::Redis => {
            r#"pw=${{DATABASE_URL#redis://:}}; pw=${{pw%%@*}}; test \"$(REDISCLI_AUTH=$pw redis-cli --no-auth-warning -p $DB_PORT EXISTS app_ready)\" = 1"#
        }
    }
}

/// An environment `a/prod` with the server `main` and an app that runs only while `app_ready`
/// exists in it (its health check asks the database too). The server's folder is in the
/// test's folder, opened so the server's own user can reach it.
pub fn env_with(kind: Kind, extra_env: &str) -> TestEnv {
    let check = app_check(kind);
    let env = TestEnv::new(&format!(
        r#"
[apps.a.env.prod]
autostart = true
databases = {{ main = {{ {key} = "{version}", port = @P1@, dir = "@HOME@/db-main"{user} }} }}
{extra_env}

[apps.a.env.prod.services.app]
command = "{check} && exec sleep 100000"
shell = true
autostart = false
env = {{ DATABASE_URL = "{{db.main}}", DB_PORT = "@P1@" }}
health = {{ command = ["sh", "-c", "{check}"], interval = "300ms", start_period = "0s", retries = 2 }}
restart = {{ policy = "on-failure", max_failures = 1 }}
"#,
        key = kind.key(),
        version = kind.version(),
        user = user_clause(),
    ));
    open_to_all(env.dir.path());
    env
}

pub fn wait_long<T>(env: &TestEnv, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > DB_DEADLINE {
            panic!(
                "timed out waiting until {what}\n--- agent log ---\n{}\n--- db-main log ---\n{}",
                env.agent_log(),
                read(&env.log_file("a", "prod", "db-main"))
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_state(env: &TestEnv, key: &str, state: ServiceState) {
    wait_long(env, &format!("{key} is {state}"), || {
        let s = env.status();
        s.services
            .iter()
            .any(|x| x.key.to_string() == key && x.state == state)
            .then_some(())
    });
}

pub fn target() -> Target {
    "a/prod".parse().expect("target")
}

/// The server as Homeport made it: its port and password (read as the agent's user can).
pub struct Db {
    pub kind: Kind,
    pub port: u16,
    pub password: String,
}

impl Db {
    pub fn of(kind: Kind, env: &TestEnv) -> Self {
        let password = std::fs::read_to_string(env.dir.path().join("db-main/password"))
            .expect("the password file")
            .trim()
            .to_owned();
        Db {
            kind,
            port: env.ports[1],
            password,
        }
    }

    fn sql_command(&self, database: &str) -> Command {
        match self.kind {
            Kind::Postgres => {
                let mut c = Command::new("/usr/lib/postgresql/15/bin/psql");
                c.args([
                    "-X",
                    "-q",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                ])
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "homeport",
                    "-d",
                    database,
                ])
                .env("PGPASSWORD", &self.password);
                c
            }
            Kind::Mariadb => {
                let mut c = Command::new("mariadb");
                c.args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
                    .args(["-P", &self.port.to_string(), "-u", "homeport"])
                    .args(["--batch", "--skip-column-names", "--unbuffered", database])
                    .env("MYSQL_PWD", &self.password);
                c
            }
            Kind::Redis => {
                let mut c = Command::new("redis-cli");
                c.args(["--no-auth-warning", "-p", &self.port.to_string()])
                    .env("REDISCLI_AUTH", &self.password);
                c
            }
        }
    }

    /// Runs SQL (or, for Redis, one command's words) and returns its output.
    pub fn run(&self, database: &str, statement: &str) -> String {
        let mut c = self.sql_command(database);
        match self.kind {
            Kind::Redis => {
                c.args(statement.split_whitespace());
            }
            Kind::Postgres => {
                c.args(["-c", statement]);
            }
            Kind::Mariadb => {
                c.args(["-e", statement]);
            }
        }
        let out = c.output().expect("run a client");
        assert!(
            out.status.success(),
            "{statement}: {}{}",
            stderr(&out),
            stdout(&out)
        );
        stdout(&out)
    }

    /// Makes the app's table (`t` / the list `rows`).
    pub fn create_table(&self) {
        match self.kind {
            Kind::Postgres => {
                self.run(
                    "main",
                    "CREATE TABLE t (v bigint PRIMARY KEY, at timestamptz DEFAULT now())",
                );
            }
            Kind::Mariadb => {
                self.run("main", "CREATE TABLE t (v BIGINT PRIMARY KEY, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB");
            }
            Kind::Redis => {}
        }
    }

    pub fn mark_ready(&self) {
        match self.kind {
            Kind::Redis => {
                self.run("0", "SET app_ready 1");
            }
            _ => {
                self.run("main", "CREATE TABLE app_ready (x int)");
            }
        }
    }

    pub fn insert(&self, v: i64) {
        match self.kind {
            Kind::Redis => {
                self.run("0", &format!("RPUSH rows {v}"));
            }
            _ => {
                self.run("main", &format!("INSERT INTO t (v) VALUES ({v})"));
            }
        }
    }

    /// Every row of the live database.
    pub fn rows(&self) -> Vec<i64> {
        let text = match self.kind {
            Kind::Redis => self.run("0", "LRANGE rows 0 -1"),
            _ => self.run("main", "SELECT v FROM t ORDER BY v"),
        };
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// The rows in a backup's plain file (written by `restore --to`), read by loading it into a
    /// scratch database (or a scratch Redis).
    pub fn rows_in_backup(&self, file: &Path, scratch: &str) -> Vec<i64> {
        match self.kind {
            Kind::Postgres => {
                self.run("postgres", &format!("CREATE DATABASE {scratch}"));
                let out = Command::new("/usr/lib/postgresql/15/bin/pg_restore")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-U",
                        "homeport",
                    ])
                    .args(["--exit-on-error", "-d", scratch])
                    .arg(file)
                    .env("PGPASSWORD", &self.password)
                    .output()
                    .expect("pg_restore");
                assert!(out.status.success(), "pg_restore: {}", stderr(&out));
                let rows = self.run(scratch, "SELECT v FROM t ORDER BY v");
                self.run("postgres", &format!("DROP DATABASE {scratch}"));
                rows.lines().filter_map(|l| l.parse().ok()).collect()
            }
            Kind::Mariadb => {
                self.run("", &format!("CREATE DATABASE {scratch}"));
                let out = self
                    .sql_command(scratch)
                    .stdin(std::fs::File::open(file).expect("the dump"))
                    .output()
                    .expect("load the dump");
                assert!(out.status.success(), "loading the dump: {}", stderr(&out));
                let rows = self.run(scratch, "SELECT v FROM t ORDER BY v");
                self.run("", &format!("DROP DATABASE {scratch}"));
                rows.lines().filter_map(|l| l.parse().ok()).collect()
            }
            Kind::Redis => redis_rows_in(file),
        }
    }

    /// A client that commits row after row (1, 2, 3…) until stopped, recording each row the
    /// server acknowledged.
    pub fn start_writer(&self) -> Writer {
        let acked = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None::<String>));
        let mut session = Session::open(self);
        let (a, s, e) = (acked.clone(), stop.clone(), error.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(Ordering::SeqCst) {
                n += 1;
                match session.insert(n) {
                    Ok(()) => a.store(n, Ordering::SeqCst),
                    Err(why) => {
                        *e.lock().unwrap() = Some(format!("row {n}: {why}"));
                        return;
                    }
                }
            }
            session.close();
        });
        Writer {
            acked,
            stop,
            error,
            thread: Some(thread),
        }
    }
}

/// One long client session that writes.
enum Session {
    Sql {
        child: Child,
        stdin: ChildStdin,
        stdout: BufReader<ChildStdout>,
        kind: Kind,
    },
    Redis(BufReader<TcpStream>),
}

impl Session {
    fn open(db: &Db) -> Self {
        match db.kind {
            Kind::Redis => {
                let stream = TcpStream::connect(("127.0.0.1", db.port)).expect("connect to Redis");
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                let mut s = BufReader::new(stream);
                resp(&mut s, &["AUTH", &db.password]).expect("AUTH");
                Session::Redis(s)
            }
            kind => {
                let mut child = db
                    .sql_command("main")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("a client session");
                let stdin = child.stdin.take().expect("stdin");
                let stdout = BufReader::new(child.stdout.take().expect("stdout"));
                Session::Sql {
                    child,
                    stdin,
                    stdout,
                    kind,
                }
            }
        }
    }

    /// Inserts `n` and waits for the server's answer: a commit it acknowledged.
    fn insert(&mut self, n: i64) -> Result<(), String> {
        match self {
            Session::Redis(s) => {
                let reply = resp(s, &["RPUSH", "rows", &n.to_string()])?;
                if reply.starts_with(':') {
                    Ok(())
                } else {
                    Err(reply)
                }
            }
            Session::Sql {
                stdin,
                stdout,
                kind,
                child,
            } => {
                let sql = match kind {
                    Kind::Postgres => format!("INSERT INTO t (v) VALUES ({n}) RETURNING v;\n"),
                    _ => format!("INSERT INTO t (v) VALUES ({n}); SELECT {n};\n"),
                };
                stdin.write_all(sql.as_bytes()).map_err(|e| e.to_string())?;
                stdin.flush().map_err(|e| e.to_string())?;
                let mut line = String::new();
                stdout.read_line(&mut line).map_err(|e| e.to_string())?;
                if line.trim() == n.to_string() {
                    Ok(())
                } else {
                    let mut err = String::new();
                    if let Some(e) = child.stderr.as_mut() {
                        let _ = e.read_to_string(&mut err);
                    }
                    Err(format!("answered {line:?}: {err}"))
                }
            }
        }
    }

    fn close(self) {
        if let Session::Sql {
            mut child, stdin, ..
        } = self
        {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Sends one RESP command and reads a one-line reply.
fn resp(s: &mut BufReader<TcpStream>, words: &[&str]) -> Result<String, String> {
    let mut msg = format!("*{}\r\n", words.len());
    for w in words {
        msg.push_str(&format!("${}\r\n{w}\r\n", w.len()));
    }
    s.get_mut()
        .write_all(msg.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    s.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.starts_with('-') {
        Err(line.trim().to_owned())
    } else {
        Ok(line.trim().to_owned())
    }
}

/// The list `rows` in an RDB file: a scratch Redis loads it.
fn redis_rows_in(file: &Path) -> Vec<i64> {
    let dir = tempfile::tempdir().expect("scratch");
    open_to_all(dir.path());
    let rdb = dir.path().join("dump.rdb");
    std::fs::copy(file, &rdb).expect("copy the snapshot");
    let port = free_port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--dbfilename", "dump.rdb", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("a scratch redis-server");
    let start = Instant::now();
    let rows = loop {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "LRANGE", "rows", "0", "-1"])
            .output()
            .expect("redis-cli");
        let text = stdout(&out);
        if out.status.success() && !text.contains("LOADING") && !text.contains("Could not connect")
        {
            break text;
        }
        assert!(
            start.elapsed() < DB_DEADLINE,
            "the scratch Redis never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = server.kill();
    let _ = server.wait();
    rows.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

pub struct Writer {
    acked: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// The last row the server acknowledged.
    pub fn acked(&self) -> i64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Stops; the last acknowledged row, or the error the writer saw.
    pub fn stop(mut self) -> Result<i64, String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        match self.error.lock().unwrap().take() {
            Some(e) => Err(e),
            None => Ok(self.acked()),
        }
    }
}

/// The plain file of backup `id`'s database `main`, written by `homeport restore --to`.
pub fn backup_file(env: &TestEnv, id: i64, name: &str) -> PathBuf {
    let to = env.dir.path().join(format!("backup-{id}.{name}"));
    let out = env.cli(&[
        "restore",
        "a/prod",
        &id.to_string(),
        "--db",
        "main",
        "--to",
        &to.display().to_string(),
    ]);
    assert!(out.status.success(), "restore --to: {}", stderr(&out));
    to
}
