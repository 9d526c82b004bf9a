//! Running a managed server: `homeport db serve` initialises its folder the first time, checks
//! the version that made it, drops root, and becomes the server (exec), so the supervisor's
//! signals reach the server itself.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::bins::{self, Bins};
use crate::{ADMIN_USER, DbError, Engine, Server, password};

/// The record of what made a data folder: `postgres 15`.
const VERSION_FILE: &str = "version";

/// Initialises (first start) and execs the server. Returns only on failure.
pub fn serve(server: &Server) -> DbError {
    match prepare(server) {
        Ok(mut cmd) => {
            let e = cmd.exec();
            DbError::Failed(format!("cannot start {}: {e}", server.engine))
        }
        Err(e) => e,
    }
}

fn prepare(server: &Server) -> Result<Command, DbError> {
    let bins = Bins::find(
        server.engine,
        Some(&server.version),
        server.bin_dir.as_deref(),
    )?;
    let found = bins.server_version()?;
    if !bins::matches(&server.version, &found) {
        return Err(DbError::Refused(format!(
            "the config asks for {} {} for {}, but the {} found ({}) is {found}. Install {} {} \
             or write the installed version ({} = \"{}\")",
            server.engine,
            server.version,
            server.name,
            server.engine,
            bins.tool("server")?.display(),
            server.engine,
            server.version,
            server.engine.key(),
            bins::major(server.engine, &found),
        )));
    }
    let major = bins::major(server.engine, &found);
    let secret = password(&server.dir).map_err(DbError::io(&server.password_file()))?;
    become_owner(server)?;
    homeport_fs::create_private_dir(&server.run_dir()).map_err(DbError::io(&server.run_dir()))?;
    std::env::set_current_dir(&server.dir).map_err(DbError::io(&server.dir))?;
    check_version(server, &major)?;
    if !server.data_dir().exists() {
        init(server, &bins, &secret)?;
        let record = format!("{} {major}\n", server.engine.key());
        homeport_fs::atomic_write(&server.dir.join(VERSION_FILE), record.as_bytes(), 0o600)
            .map_err(DbError::io(&server.dir.join(VERSION_FILE)))?;
    }
    launch(server, &bins, &secret)
}

/// Refuses a data folder made by another major version, saying how to move on.
fn check_version(server: &Server, major: &str) -> Result<(), DbError> {
    let file = server.dir.join(VERSION_FILE);
    let recorded = match std::fs::read_to_string(&file) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if server.data_dir().exists() {
                return Err(DbError::Refused(format!(
                    "{} holds a data folder that Homeport did not make (no {VERSION_FILE} file \
                     beside it); move it away or write `{} {major}` into {} if it is yours",
                    server.dir.display(),
                    server.engine.key(),
                    file.display()
                )));
            }
            return Ok(());
        }
        Err(e) => return Err(DbError::Io(file, e)),
    };
    let mut words = recorded.split_whitespace();
    let (engine, made_by) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if engine != server.engine.key() {
        return Err(DbError::Refused(format!(
            "{} holds a {engine} data folder, not {}; give {} its own `dir`",
            server.dir.display(),
            server.engine,
            server.name
        )));
    }
    if made_by == major {
        return Ok(());
    }
    Err(DbError::Refused(format!(
        "{name}'s data folder ({dir}) was made by {e} {made_by} and cannot run under {e} {major}. \
         Either keep {made_by}: write {key} = \"{made_by}\" and have it installed; or upgrade: \
         with {made_by} running, `homeport backup APP/ENV`; stop it; move {dir} aside; set {key} \
         = \"{major}\" and start (a new, empty server); then `homeport restore APP/ENV`{extra}",
        name = server.name,
        dir = server.dir.display(),
        e = server.engine,
        key = server.engine.key(),
        extra = match server.engine {
            Engine::Postgres => " (or upgrade the folder in place with pg_upgrade)",
            Engine::Mariadb => " (or start it once with the newer server and run mariadb-upgrade)",
            Engine::Redis => "",
        }
    )))
}

/// As root: gives the server's folder to its `user` and becomes that user, so initdb, the
/// server and everything they write belong to it. Refuses to run a server as root.
fn become_owner(server: &Server) -> Result<(), DbError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let Some(name) = &server.user else {
        return Err(DbError::Refused(format!(
            "{} does not run as root, and Homeport runs no database server as root. Run Homeport \
             as your own user, or name an account for the server: databases.{} = {{ {} = \"{}\", \
             port = {}, user = \"{}\" }}",
            server.engine,
            server.name,
            server.engine.key(),
            server.version,
            server.port,
            match server.engine {
                Engine::Postgres => "postgres",
                Engine::Mariadb => "mysql",
                Engine::Redis => "redis",
            }
        )));
    };
    let user = nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .ok_or_else(|| DbError::Refused(format!("there is no user {name} on this machine")))?;
    homeport_fs::create_private_dir(&server.dir).map_err(DbError::io(&server.dir))?;
    // The folders above must let the user through, or the server cannot reach its own data.
    for dir in server.dir.ancestors().skip(1) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let Ok(m) = std::fs::metadata(dir) else {
            continue;
        };
        if m.uid() != user.uid.as_raw() && m.permissions().mode() & 0o001 == 0 {
            return Err(DbError::Refused(format!(
                "{name} cannot reach {}: {} is closed to other users. Put the database's folder \
                 where {name} can reach it with `dir = \"…\"` (e.g. under /var/lib)",
                server.dir.display(),
                dir.display()
            )));
        }
    }
    chown_tree(&server.dir, user.uid, user.gid)?;
    nix::unistd::setgroups(&[user.gid])
        .and_then(|()| nix::unistd::setgid(user.gid))
        .and_then(|()| nix::unistd::setuid(user.uid))
        .map_err(|e| DbError::Failed(format!("cannot become {name}: {e}")))?;
    Ok(())
}

/// Gives `dir` and everything under it to `uid:gid`, without following links.
fn chown_tree(dir: &Path, uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> Result<(), DbError> {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).map_err(DbError::io(&p))?;
        if m.uid() != uid.as_raw() || m.gid() != gid.as_raw() {
            std::os::unix::fs::lchown(&p, Some(uid.as_raw()), Some(gid.as_raw()))
                .map_err(DbError::io(&p))?;
        }
        if m.is_dir() {
            for e in std::fs::read_dir(&p).map_err(DbError::io(&p))? {
                stack.push(e.map_err(DbError::io(&p))?.path());
            }
        }
    }
    Ok(())
}

/// Runs a step of the initialisation; its output goes to the service's log.
fn run_step(what: &str, cmd: &mut Command, stdin: Option<&str>) -> Result<(), DbError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .map_err(|e| DbError::Failed(format!("cannot run {what}: {e}")))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .map_err(|e| DbError::Failed(format!("{what}: {e}")))?;
    }
    let status = child
        .wait()
        .map_err(|e| DbError::Failed(format!("{what}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(DbError::Failed(format!(
            "{what} failed ({status}); its messages are above in this log"
        )))
    }
}

/// Makes the data folder, as `data.partial` renamed when complete: a crash half-way is
/// started over at the next start, never mistaken for a server.
fn init(server: &Server, bins: &Bins, secret: &str) -> Result<(), DbError> {
    let partial = server.dir.join("data.partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(DbError::io(&partial))?;
    }
    eprintln!(
        "homeport: initialising {} {} for {} in {}",
        server.engine,
        server.version,
        server.name,
        server.data_dir().display()
    );
    match server.engine {
        Engine::Postgres => {
            let pwfile = server.run_dir().join(".initdb-password");
            let _ = std::fs::remove_file(&pwfile);
            {
                let mut f =
                    homeport_fs::create_new_private(&pwfile).map_err(DbError::io(&pwfile))?;
                f.write_all(secret.as_bytes())
                    .map_err(DbError::io(&pwfile))?;
            }
            let made = run_step(
                "initdb",
                Command::new(bins.tool("init")?)
                    .arg("-D")
                    .arg(&partial)
                    .args(["-U", ADMIN_USER, "-A", "scram-sha-256", "-E", "UTF8"])
                    .args(["--locale=C", "--no-instructions"])
                    .arg(format!("--pwfile={}", pwfile.display())),
                None,
            );
            let _ = std::fs::remove_file(&pwfile);
            made?;
            // The app's database, made in single-user mode: no server listens yet.
            run_step(
                "creating the database",
                Command::new(bins.tool("server")?)
                    .args(["--single", "-D"])
                    .arg(&partial)
                    .arg("postgres"),
                Some(&format!("CREATE DATABASE {}\n", pg_ident(&server.database))),
            )?;
        }
        Engine::Mariadb => {
            run_step(
                "mariadb-install-db",
                Command::new(bins.tool("init")?)
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", partial.display()))
                    .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
                    .stdout(Stdio::null()),
                None,
            )?;
        }
        Engine::Redis => {
            homeport_fs::create_private_dir(&partial).map_err(DbError::io(&partial))?;
        }
    }
    std::fs::rename(&partial, server.data_dir()).map_err(DbError::io(&server.data_dir()))?;
    homeport_fs::sync_dir(&server.dir).map_err(DbError::io(&server.dir))
}

/// A quoted PostgreSQL identifier.
pub(crate) fn pg_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted MariaDB identifier.
pub(crate) fn my_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn launch(server: &Server, bins: &Bins, secret: &str) -> Result<Command, DbError> {
    let data = server.data_dir();
    let run = server.run_dir();
    let mut cmd = Command::new(bins.tool("server")?);
    match server.engine {
        Engine::Postgres => {
            cmd.arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(server.port.to_string());
            // Loopback only; the socket in a private folder.
            cmd.args(["-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", run.display()))
                .args(["-c", "unix_socket_permissions=0700"]);
        }
        Engine::Mariadb => {
            // Run at every start, so the account always has the current password; the file
            // holds it, so it is private like the password file.
            let init = server.dir.join("init.sql");
            let user = |host: &str| format!("'{ADMIN_USER}'@'{host}'");
            let mut sql = String::new();
            for host in ["127.0.0.1", "localhost", "::1"] {
                let u = user(host);
                sql.push_str(&format!(
                    "CREATE USER IF NOT EXISTS {u} IDENTIFIED BY '{secret}';\n\
                     ALTER USER {u} IDENTIFIED BY '{secret}';\n\
                     GRANT ALL PRIVILEGES ON *.* TO {u} WITH GRANT OPTION;\n"
                ));
            }
            sql.push_str(&format!(
                "CREATE DATABASE IF NOT EXISTS {};\n",
                my_ident(&server.database)
            ));
            homeport_fs::atomic_write(&init, sql.as_bytes(), 0o600).map_err(DbError::io(&init))?;
            cmd.arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--port={}", server.port))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--socket={}", run.join("mysqld.sock").display()))
                .arg(format!("--pid-file={}", run.join("mysqld.pid").display()))
                .arg(format!("--init-file={}", init.display()))
                .arg("--skip-name-resolve");
        }
        Engine::Redis => {
            let conf = server.dir.join("redis.conf");
            let text = format!(
                "bind 127.0.0.1\nport {port}\nprotected-mode yes\ndaemonize no\n\
                 dir {data}\ndbfilename dump.rdb\nrequirepass {secret}\n\
                 unixsocket {sock}\nunixsocketperm 700\n\
                 save 3600 1 300 100 60 10000\nappendonly no\n",
                port = server.port,
                data = data.display(),
                sock = run.join("redis.sock").display(),
            );
            homeport_fs::atomic_write(&conf, text.as_bytes(), 0o600).map_err(DbError::io(&conf))?;
            cmd.arg(&conf);
        }
    }
    Ok(cmd)
}

/// The health check: the server answers on its port, logged in.
pub fn ping(server: &Server) -> Result<(), DbError> {
    let conn = server.conn()?;
    match server.engine {
        Engine::Postgres => {
            let out = Command::new(conn.bins.tool("ready")?)
                .args(["-h", "127.0.0.1", "-p", &server.port.to_string()])
                .args(["-U", ADMIN_USER, "-d", &server.database, "-t", "5"])
                .output()
                .map_err(|e| DbError::Failed(e.to_string()))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(DbError::Failed(
                    String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                ))
            }
        }
        Engine::Mariadb | Engine::Redis => crate::client::ping(&conn),
    }
}
