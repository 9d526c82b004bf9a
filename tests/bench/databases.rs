//! `homeport-bench --databases`: PostgreSQL (1 GiB), MariaDB and Redis (256 MiB) servers run by
//! `homeport db serve`, each under a steady writer, backed up by Homeport's dump (what the agent
//! runs: the dump streamed through zstd and SHA-256, checked, fsynced, renamed) and by the
//! server's own dump tool to a file, in the same run. One writer runs through the whole run; the
//! p99 of its commits is read over each window: the backup's, the plain dump's, and a quiet
//! window of the same length before them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use homeport_backup::ServerSource;
use homeport_db::{Conn, Engine, Server};

use crate::{Bins, Res, Row, median};

const GIB: f64 = (1u64 << 30) as f64;

/// Commits a second each writer aims at: one every 2 ms, on a fixed schedule (a late commit does
/// not push the next ones back).
const WRITER_PERIOD: Duration = Duration::from_millis(2);

/// Rows (PostgreSQL: pgbench's scale) that make the sizes above.
const PG_SCALE: u32 = 68;
const MARIADB_ROWS: u32 = 1_000_000;
const REDIS_KEYS: u32 = 500_000;

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A managed server, started as the agent starts one: `homeport db serve`.
struct Running {
    server: Server,
    child: Child,
}

impl Running {
    fn start(bins: &Bins, engine: Engine, root: &Path) -> Res<Running> {
        let server = Server {
            name: "main".into(),
            engine,
            version: match engine {
                Engine::Postgres => "15",
                Engine::Mariadb => "10.11",
                Engine::Redis => "7",
            }
            .into(),
            port: free_port()?,
            dir: root.join(engine.key()),
            bin_dir: None,
            database: match engine {
                Engine::Redis => "0".into(),
                _ => "main".into(),
            },
            // PostgreSQL and MariaDB refuse root; so does Homeport, for every server.
            user: nix::unistd::geteuid().is_root().then(|| "nobody".into()),
        };
        let log = std::fs::File::create(root.join(format!("{}.log", engine.key())))?;
        let child = Command::new(&bins.homeport)
            .args(["db", "serve"])
            .args(server.to_args())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut r = Running { server, child };
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if homeport_db::ping(&r.server).is_ok() {
                return Ok(r);
            }
            if let Some(st) = r.child.try_wait()? {
                return Err(format!(
                    "{engine} exited ({st}): {}",
                    std::fs::read_to_string(root.join(format!("{}.log", engine.key())))?
                )
                .into());
            }
            if Instant::now() > deadline {
                return Err(format!("{engine} did not answer in 300 s").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) -> Res<()> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let sig = nix::sys::signal::Signal::try_from(self.server.engine.stop_signal())?;
        nix::sys::signal::kill(pid, sig)?;
        self.child.wait()?;
        Ok(())
    }
}

fn password(conn: &Conn) -> String {
    conn.password.clone().unwrap_or_default()
}

fn tool(conn: &Conn, name: &str) -> Res<std::path::PathBuf> {
    // pgbench is not among the programs Homeport needs; it sits beside psql.
    let client = conn.bins.tool("client")?;
    let dir = client.parent().ok_or("a client without a folder")?;
    Ok(dir.join(name))
}

/// A client command with the password in its environment.
fn sql(conn: &Conn) -> Res<Command> {
    let port = conn.port.to_string();
    Ok(match conn.engine {
        Engine::Postgres => {
            let mut c = Command::new(conn.bins.tool("client")?);
            c.args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args(["-p", &port, "-U", "homeport", "-d", &conn.database])
            .env("PGPASSWORD", password(conn));
            c
        }
        Engine::Mariadb => {
            let mut c = Command::new(conn.bins.tool("client")?);
            c.args([
                "--no-defaults",
                "--protocol=TCP",
                "-h",
                "127.0.0.1",
                "-P",
                &port,
            ])
            .args([
                "-u",
                "homeport",
                "--batch",
                "--skip-column-names",
                "--unbuffered",
            ])
            .arg(&conn.database)
            .env("MYSQL_PWD", password(conn));
            c
        }
        Engine::Redis => {
            let mut c = Command::new(conn.bins.tool("client")?);
            c.args(["--no-auth-warning", "-p", &port])
                .env("REDISCLI_AUTH", password(conn));
            c
        }
    })
}

fn run_ok(mut cmd: Command, what: &str) -> Res<String> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("{what}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fills the server; returns the size of its data (bytes).
fn populate(conn: &Conn) -> Res<u64> {
    match conn.engine {
        Engine::Postgres => {
            let mut c = Command::new(tool(conn, "pgbench")?);
            c.args(["-i", "-q", "-s", &PG_SCALE.to_string(), "-h", "127.0.0.1"])
                .args([
                    "-p",
                    &conn.port.to_string(),
                    "-U",
                    "homeport",
                    &conn.database,
                ])
                .env("PGPASSWORD", password(conn));
            run_ok(c, "pgbench -i")?;
            let mut c = sql(conn)?;
            c.args(["-c", "SELECT pg_database_size(current_database())"]);
            Ok(run_ok(c, "the database's size")?.trim().parse()?)
        }
        Engine::Mariadb => {
            let mut c = sql(conn)?;
            c.arg("-e").arg(format!(
                "CREATE TABLE accounts (aid INT PRIMARY KEY, abalance INT NOT NULL, filler \
                 CHAR(200)) ENGINE=InnoDB; CREATE TABLE history (id BIGINT AUTO_INCREMENT \
                 PRIMARY KEY, aid INT, delta INT, mtime TIMESTAMP) ENGINE=InnoDB; INSERT INTO \
                 accounts SELECT seq, 0, REPEAT('x', 200) FROM seq_1_to_{MARIADB_ROWS}; ANALYZE \
                 TABLE accounts; SELECT data_length + index_length FROM information_schema.tables \
                 WHERE table_schema = 'main' AND table_name = 'accounts'"
            ));
            let out = run_ok(c, "filling MariaDB")?;
            Ok(out.lines().last().ok_or("no size")?.trim().parse()?)
        }
        Engine::Redis => {
            let mut s = redis(conn)?;
            let value = "x".repeat(400);
            let mut i = 0;
            while i < REDIS_KEYS {
                let batch = (REDIS_KEYS - i).min(1000);
                let mut msg = String::new();
                for k in i..i + batch {
                    let key = format!("key:{k}");
                    msg.push_str(&format!(
                        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                        key.len(),
                        value.len()
                    ));
                }
                s.get_mut().write_all(msg.as_bytes())?;
                for _ in 0..batch {
                    reply(&mut s)?;
                }
                i += batch;
            }
            let mut c = sql(conn)?;
            c.args(["INFO", "memory"]);
            let info = run_ok(c, "INFO memory")?;
            let used = info
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .ok_or("no used_memory")?;
            Ok(used.trim().parse()?)
        }
    }
}

fn redis(conn: &Conn) -> Res<BufReader<TcpStream>> {
    let stream = TcpStream::connect(("127.0.0.1", conn.port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut s = BufReader::new(stream);
    resp(&mut s, &["AUTH", &password(conn)])?;
    Ok(s)
}

/// Reads one reply; a bulk reply's payload is skipped.
fn reply(s: &mut BufReader<TcpStream>) -> Res<String> {
    let mut line = String::new();
    s.read_line(&mut line)?;
    if line.starts_with('-') {
        return Err(line.trim().to_owned().into());
    }
    if let Some(n) = line.trim().strip_prefix('$')
        && let Ok(n) = n.parse::<usize>()
    {
        let mut body = vec![0; n + 2];
        std::io::Read::read_exact(s, &mut body)?;
    }
    Ok(line.trim().to_owned())
}

fn resp(s: &mut BufReader<TcpStream>, words: &[&str]) -> Res<String> {
    let mut msg = format!("*{}\r\n", words.len());
    for w in words {
        msg.push_str(&format!("${}\r\n{w}\r\n", w.len()));
    }
    s.get_mut().write_all(msg.as_bytes())?;
    reply(s)
}

/// One commit's start and latency (ms).
type Sample = (Instant, f64);

/// A steady writer: pgbench's TPC-B-like transaction (one account updated, one history row) for
/// PostgreSQL and MariaDB, one HINCRBY plus one RPUSH (MULTI/EXEC) for Redis, every 2 ms, through
/// one session.
struct Writer {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

enum Session {
    Sql {
        child: Child,
        stdin: std::process::ChildStdin,
        stdout: BufReader<std::process::ChildStdout>,
        engine: Engine,
        accounts: u32,
    },
    Redis(BufReader<TcpStream>),
}

impl Session {
    fn commit(&mut self, n: u64) -> Res<()> {
        // A cheap, repeatable spread over the accounts (Knuth's multiplicative hash).
        let pick = |accounts: u32| (n.wrapping_mul(2_654_435_761) % u64::from(accounts)) + 1;
        match self {
            Session::Redis(s) => {
                let aid = pick(REDIS_KEYS).to_string();
                let mut msg = String::new();
                for words in [
                    &["MULTI"][..],
                    &["HINCRBY", &format!("acct:{aid}"), "balance", "1"],
                    &["RPUSH", "history", &aid],
                    &["EXEC"],
                ] {
                    msg.push_str(&format!("*{}\r\n", words.len()));
                    for w in words {
                        msg.push_str(&format!("${}\r\n{w}\r\n", w.len()));
                    }
                }
                s.get_mut().write_all(msg.as_bytes())?;
                for _ in 0..3 {
                    reply(s)?;
                }
                // EXEC's reply is an array of the two results.
                let head = reply(s)?;
                if !head.starts_with('*') {
                    return Err(format!("EXEC answered {head}").into());
                }
                for _ in 0..2 {
                    reply(s)?;
                }
                Ok(())
            }
            Session::Sql {
                stdin,
                stdout,
                engine,
                accounts,
                ..
            } => {
                let aid = pick(*accounts);
                let text = match engine {
                    Engine::Postgres => format!(
                        "BEGIN; UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = \
                         {aid}; INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES \
                         (1, 1, {aid}, 1, CURRENT_TIMESTAMP); COMMIT; SELECT {n};\n"
                    ),
                    _ => format!(
                        "BEGIN; UPDATE accounts SET abalance = abalance + 1 WHERE aid = {aid}; \
                         INSERT INTO history (aid, delta, mtime) VALUES ({aid}, 1, \
                         CURRENT_TIMESTAMP); COMMIT; SELECT {n};\n"
                    ),
                };
                stdin.write_all(text.as_bytes())?;
                stdin.flush()?;
                let mut line = String::new();
                stdout.read_line(&mut line)?;
                if line.trim() != n.to_string() {
                    return Err(format!("the server answered {line:?}").into());
                }
                Ok(())
            }
        }
    }
}

impl Writer {
    fn start(conn: &Conn) -> Res<Writer> {
        let mut session = match conn.engine {
            Engine::Redis => Session::Redis(redis(conn)?),
            engine => {
                let mut child = sql(conn)?
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()?;
                let stdin = child.stdin.take().ok_or("stdin")?;
                let stdout = BufReader::new(child.stdout.take().ok_or("stdout")?);
                Session::Sql {
                    child,
                    stdin,
                    stdout,
                    engine,
                    accounts: match engine {
                        Engine::Postgres => PG_SCALE * 100_000,
                        _ => MARIADB_ROWS,
                    },
                }
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (st, sa, er) = (stop.clone(), samples.clone(), errors.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut n: u64 = 0;
            while !st.load(Ordering::Relaxed) {
                n += 1;
                let slot = start + WRITER_PERIOD * n as u32;
                let now = Instant::now();
                if slot > now {
                    std::thread::sleep(slot - now);
                }
                let t = Instant::now();
                match session.commit(n) {
                    Ok(()) => {
                        let ms = t.elapsed().as_secs_f64() * 1000.0;
                        if let Ok(mut v) = sa.lock() {
                            v.push((t, ms));
                        }
                    }
                    Err(e) => {
                        if let Ok(mut v) = er.lock() {
                            v.push(e.to_string());
                        }
                        return;
                    }
                }
            }
            if let Session::Sql {
                mut child, stdin, ..
            } = session
            {
                drop(stdin);
                let _ = child.wait();
            }
        });
        Ok(Writer {
            stop,
            samples,
            errors,
            thread,
        })
    }

    /// The p99 latency (ms) and the commits a second of the commits that started in the window.
    fn window(&self, from: Instant, to: Instant) -> Res<(f64, f64)> {
        if let Some(e) = self.errors.lock().map_err(|_| "poisoned")?.first() {
            return Err(format!("the writer failed: {e}").into());
        }
        let mut lat: Vec<f64> = self
            .samples
            .lock()
            .map_err(|_| "poisoned")?
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, ms)| *ms)
            .collect();
        let rate = lat.len() as f64 / (to - from).as_secs_f64();
        lat.sort_by(f64::total_cmp);
        let p99 = lat.get(lat.len() * 99 / 100).copied().unwrap_or(f64::NAN);
        Ok((p99, rate))
    }

    fn stop(self) -> Res<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| "the writer panicked")?;
        if let Some(e) = self.errors.lock().map_err(|_| "poisoned")?.first() {
            return Err(format!("the writer failed: {e}").into());
        }
        Ok(())
    }
}

/// The server's own tool, writing one file, as a person would back it up by hand.
fn plain_dump(conn: &Conn, out: &Path) -> Res<()> {
    let port = conn.port.to_string();
    match conn.engine {
        Engine::Postgres => {
            let mut c = Command::new(conn.bins.tool("dump")?);
            c.args(["-Fc", "-h", "127.0.0.1", "-p", &port, "-U", "homeport"])
                .args(["-d", &conn.database, "-f"])
                .arg(out)
                .env("PGPASSWORD", password(conn));
            run_ok(c, "pg_dump")?;
        }
        Engine::Mariadb => {
            let mut c = Command::new(conn.bins.tool("dump")?);
            c.args([
                "--no-defaults",
                "--protocol=TCP",
                "-h",
                "127.0.0.1",
                "-P",
                &port,
            ])
            .args(["-u", "homeport", "--single-transaction", "--routines"])
            .args(["--events", "--triggers", "--result-file"])
            .arg(out)
            .arg(&conn.database)
            .env("MYSQL_PWD", password(conn));
            run_ok(c, "mariadb-dump")?;
        }
        Engine::Redis => {
            let mut c = sql(conn)?;
            c.arg("--rdb").arg(out);
            run_ok(c, "redis-cli --rdb")?;
        }
    }
    Ok(())
}

fn size_of(dir: &Path) -> Res<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let m = e?.metadata()?;
        if m.is_file() {
            total += m.len();
        }
    }
    Ok(total)
}

/// Medians over the runs of one engine.
struct Measured {
    data_bytes: u64,
    plain_secs: f64,
    plain_bytes: u64,
    homeport_secs: f64,
    homeport_bytes: u64,
    p99_quiet: f64,
    p99_plain: f64,
    p99_homeport: f64,
    rate_quiet: f64,
}

fn measure(bins: &Bins, engine: Engine, root: &Path, runs: usize) -> Res<Measured> {
    let server = Running::start(bins, engine, root)?;
    let conn = server.server.conn()?;
    let t = Instant::now();
    let data_bytes = populate(&conn)?;
    eprintln!(
        "{engine}: {:.2} GiB of data in {:.0} s",
        data_bytes as f64 / GIB,
        t.elapsed().as_secs_f64()
    );
    let src = ServerSource {
        conn: conn.clone(),
        all_databases: true,
        rdb_file: (engine == Engine::Redis).then(|| server.server.rdb_file()),
    };
    let writer = Writer::start(&conn)?;
    std::thread::sleep(Duration::from_secs(2));
    let (mut plain, mut plain_b, mut hp, mut hp_b) = (vec![], vec![], vec![], vec![]);
    let (mut q99, mut p99p, mut h99, mut qrate) = (vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        let out_dir = root.join(format!("out{i}"));
        std::fs::create_dir_all(&out_dir)?;
        // Take turns going first: the second one finds more of the data in the page cache.
        let mut take = |homeport: bool| -> Res<()> {
            let from = Instant::now();
            if homeport {
                let dir = out_dir.join("homeport");
                std::fs::create_dir_all(&dir)?;
                homeport_backup::server::dump_server("main", &src, &dir, true)?;
                let to = Instant::now();
                hp.push((to - from).as_secs_f64());
                hp_b.push(size_of(&dir)? as f64);
                let (p, _) = writer.window(from, to)?;
                h99.push(p);
                std::fs::remove_dir_all(&dir)?;
            } else {
                let file = out_dir.join("plain");
                plain_dump(&conn, &file)?;
                let to = Instant::now();
                plain.push((to - from).as_secs_f64());
                plain_b.push(std::fs::metadata(&file)?.len() as f64);
                let (p, _) = writer.window(from, to)?;
                p99p.push(p);
                std::fs::remove_file(&file)?;
            }
            Ok(())
        };
        if i % 2 == 0 {
            take(true)?;
            take(false)?;
        } else {
            take(false)?;
            take(true)?;
        }
        // The writer alone, as long as the backup took.
        let from = Instant::now();
        let last = *hp.last().ok_or("no backup")?;
        std::thread::sleep(Duration::from_secs_f64(last.max(2.0)));
        let (p, r) = writer.window(from, Instant::now())?;
        q99.push(p);
        qrate.push(r);
        std::fs::remove_dir_all(&out_dir)?;
    }
    writer.stop()?;
    server.stop()?;
    Ok(Measured {
        data_bytes,
        plain_secs: median(plain),
        plain_bytes: median(plain_b) as u64,
        homeport_secs: median(hp),
        homeport_bytes: median(hp_b) as u64,
        p99_quiet: median(q99),
        p99_plain: median(p99p),
        p99_homeport: median(h99),
        rate_quiet: median(qrate),
    })
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1 << 20) as f64)
}

pub fn run(bins: &Bins, runs: usize, only: &[String]) -> Res<Vec<Row>> {
    let root = tempfile::Builder::new()
        .prefix("homeport-bench-db")
        .tempdir_in(
            std::env::var_os("HOMEPORT_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
        )?;
    // The servers run as `nobody` under root: their folders must be reachable.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let mut rows = Vec::new();
    for engine in Engine::ALL {
        if !only.is_empty() && !only.iter().any(|o| o == engine.key()) {
            continue;
        }
        let m = measure(bins, engine, root.path(), runs)?;
        let (name_time, name_p99, tool) = match engine {
            Engine::Postgres => (
                "PostgreSQL backup under a steady writer (pgbench TPC-B-like, 500 tx/s)",
                "PostgreSQL writer p99 latency during the backup",
                "pg_dump -Fc to a file",
            ),
            Engine::Mariadb => (
                "MariaDB backup under a steady writer (500 tx/s)",
                "MariaDB writer p99 latency during the backup",
                "mariadb-dump --single-transaction to a file",
            ),
            Engine::Redis => (
                "Redis backup under a steady writer (500 tx/s)",
                "Redis writer p99 latency during the backup",
                "redis-cli --rdb to a file",
            ),
        };
        rows.push(Row {
            name: name_time,
            baseline: format!(
                "{tool}: {:.2} s, {} (data {})",
                m.plain_secs,
                mib(m.plain_bytes),
                mib(m.data_bytes)
            ),
            homeport: format!(
                "{:.2} s, {} (dump, zstd, SHA-256, check, fsync, rename)",
                m.homeport_secs,
                mib(m.homeport_bytes)
            ),
            ratio: format!("{:.2}×", m.homeport_secs / m.plain_secs),
            goal: "≤ 1.2×",
        });
        rows.push(Row {
            name: name_p99,
            baseline: format!(
                "{:.2} ms without a backup ({:.0} tx/s); {:.2} ms during the plain dump",
                m.p99_quiet, m.rate_quiet, m.p99_plain
            ),
            homeport: format!("{:.2} ms", m.p99_homeport),
            ratio: format!("{:.2}×", m.p99_homeport / m.p99_quiet),
            goal: "≤ 2×",
        });
    }
    Ok(rows)
}
