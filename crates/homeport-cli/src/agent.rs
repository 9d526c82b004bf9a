//! `homeport agent`: the agent process, in the foreground or (`--detach`) in the background;
//! `homeport agent stop|restart`, and readiness for systemd (`Type=notify`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use homeport_core::Core;
use homeport_core::runtime::{self, InstanceLock, LockError};
use homeport_types::{AgentEndpoint, AgentStopRequest, StatusSnapshot};
use tracing_subscriber::EnvFilter;

use crate::agent_log::AgentLog;

use crate::progress::Spinner;
use crate::{Failure, SHUTDOWN_LIMIT};

/// The exit status that asks the service manager to start the agent again at once
/// (EX_TEMPFAIL; the unit lists it in `RestartForceExitStatus=` and `SuccessExitStatus=`).
pub const EXIT_RESTART: u8 = 75;

/// Set by the unit (systemd) or plist (launchd) that runs the agent: which manager restarts it.
pub const MANAGER_VAR: &str = "HOMEPORT_SERVICE_MANAGER";

/// What the service manager told this process, taken out of the environment at start.
struct Manager {
    name: Option<String>,
    notify_socket: Option<OsString>,
}

static MANAGER: OnceLock<Manager> = OnceLock::new();

/// Takes `NOTIFY_SOCKET` and [`MANAGER_VAR`] out of the environment, so that services never
/// inherit them (a service that speaks sd_notify would otherwise talk to the agent's manager).
/// Must run before any thread starts: changing the environment is not thread-safe.
pub fn take_notify_socket() {
    let name = std::env::var(MANAGER_VAR).ok().filter(|n| !n.is_empty());
    let notify_socket = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty());
    // SAFETY: called first thing in main, before the async runtime or any other thread exists.
    unsafe {
        std::env::remove_var(MANAGER_VAR);
        std::env::remove_var("NOTIFY_SOCKET");
    }
    let _ = MANAGER.set(Manager {
        name,
        notify_socket,
    });
}

/// Tells systemd (`Type=notify`) how the agent is doing, through the datagram socket it named in
/// `NOTIFY_SOCKET` (sd_notify(3)): a path, or an abstract name written with a leading `@`.
/// Written here rather than through a crate: the socket must be read from the environment
/// before any thread starts (above), and the crates read the variable when they send.
fn sd_notify(state: &str) {
    let Some(socket) = MANAGER.get().and_then(|m| m.notify_socket.as_ref()) else {
        return;
    };
    if let Err(e) = send_datagram(socket, state) {
        tracing::warn!("cannot tell the service manager {state:?}: {e}");
    }
}

fn send_datagram(socket: &OsString, msg: &str) -> std::io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_encoded_bytes();
    #[cfg(target_os = "linux")]
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(msg.as_bytes(), &addr)?;
        return Ok(());
    }
    let _ = bytes;
    sock.send_to(msg.as_bytes(), socket)?;
    Ok(())
}

pub async fn run(config_path: &Path) -> Result<(), Failure> {
    // SIGHUP means "apply the config file again", as for other daemons; installed first, so
    // that from here on it can never end the agent (its default action).
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    use tracing_subscriber::prelude::*;
    // The agent's own log, wherever its stderr goes; stderr too (a terminal, the journal) unless
    // it already is that file.
    let own_log = std::sync::Arc::new(AgentLog::new(&homeport_config::agent_log_path(
        &homeport_config::agent_data_dir(config_path),
    )));
    let to_stderr = (!own_log.stderr_is_log()).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(own_log.clone())
                .with_ansi(false),
        )
        .with(to_stderr)
        .init();

    // A write past a file-size limit must fail that write (a backup reports it), not kill the agent.
    // SAFETY: setting a signal disposition to SIG_IGN at startup.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let backend = homeport_supervisor::Backend::from_env().map_err(|e| Failure::new(2, e))?;
    // Everything the agent writes is its user's alone from the first byte; room for
    // connections, probes, spawns and logs (a desktop's soft limit of 1,024 is small). What it
    // starts gets back the umask and limit it found.
    homeport_fs::inherit::private_umask();
    let descriptors = homeport_fs::inherit::raise_descriptor_limit()
        .map_err(|e| Failure::new(1, format!("cannot read the descriptor limit: {e}")))?;
    let config = homeport_config::load(config_path).map_err(|d| {
        for item in &d.0 {
            eprintln!("{item}");
        }
        Failure::new(
            2,
            format!(
                "the config has {} problem(s); fix them and start again",
                d.0.len()
            ),
        )
    })?;
    let data = config.agent.data_dir.clone();
    // Made before the agent first ran, or loosened since: private again before anything is read
    // or written there; another user's folder, or one others can write, is refused.
    let tightened =
        homeport_fs::secure_data_dir(&data).map_err(|e| Failure::new(1, e.to_string()))?;
    if !tightened.made_private.is_empty() {
        tracing::warn!(
            "{} file(s) and folder(s) in {} could be read by other users; they are private now",
            tightened.made_private.len(),
            data.display()
        );
    }
    for f in &tightened.foreign {
        tracing::warn!(
            "{} belongs to another user; it is left as it is",
            f.display()
        );
    }
    let log_path = homeport_config::agent_log_path(&data);
    if let Err(e) = own_log.attach(&log_path) {
        tracing::warn!(
            "cannot write the agent's log {}: {e}; its lines go to stderr only",
            log_path.display()
        );
    }
    let _lock = InstanceLock::acquire(&data).map_err(|e| match e {
        LockError::AlreadyRunning(_) => Failure::new(1, e.to_string()),
        LockError::Io(..) => Failure::new(1, e.to_string()),
    })?;
    let token = runtime::load_or_create_token(&data).map_err(|e| {
        Failure::new(
            1,
            format!("cannot create the API token in {}: {e}", data.display()),
        )
    })?;

    let port = config.agent.port;
    let listener = homeport_api::listen(port).map_err(|e| {
        let who = homeport_supervisor::port_holder(port)
            .map(|h| format!(" (held by {h})"))
            .unwrap_or_default();
        Failure::new(
            1,
            format!(
                "cannot listen on 127.0.0.1:{port}{who}: {e}; set [agent] port in {}",
                config_path.display()
            ),
        )
    })?;
    let addr: SocketAddr = listener
        .local_addr()
        .map_err(|e| Failure::new(1, e.to_string()))?;

    let shim_exe = std::env::current_exe()
        .map_err(|e| Failure::new(1, format!("cannot find my own binary: {e}")))?;
    let core = Core::start(config, shim_exe)
        .await
        .map_err(|e| Failure::new(1, e.to_string()))?;
    core.set_service_manager(MANAGER.get().and_then(|m| m.name.clone()));
    core.start_background();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ui_dir = homeport_api::find_ui_dir();
    match &ui_dir {
        Some(d) => tracing::info!("dashboard from {}", d.display()),
        None => {
            tracing::warn!("the dashboard is not built (npm run build); the API works without it")
        }
    }
    let router = homeport_api::router(core.clone(), &token, addr, ui_dir);
    let limits = homeport_api::Limits::for_descriptors(descriptors.now);
    tracing::info!(
        "descriptor limit {} (was {}, hard {}): at most {} API connections",
        descriptors.now,
        descriptors.was,
        descriptors.hard,
        limits.max_connections
    );
    let server = tokio::spawn(homeport_api::serve(
        listener,
        router,
        async {
            let _ = stop_rx.await;
        },
        limits,
    ));
    runtime::write_endpoint(
        &data,
        &AgentEndpoint {
            pid: std::process::id(),
            addr: addr.to_string(),
        },
    )
    .map_err(|e| {
        Failure::new(
            1,
            format!("cannot write {}: {e}", data.join("agent.json").display()),
        )
    })?;
    tracing::info!(
        "listening on http://{addr}; data in {}; process backend: {}",
        data.display(),
        backend.name()
    );
    sd_notify(&format!(
        "READY=1\nMAINPID={}\nSTATUS=listening on {addr}",
        std::process::id()
    ));

    let starting = {
        let core = core.clone();
        tokio::spawn(async move {
            for o in core.autostart().await {
                if let Some(e) = o.error {
                    tracing::warn!(service = %o.key, "autostart failed: {e}");
                }
            }
        })
    };

    if let Some(mut hangups) = hangups {
        // Weak: the agent's end must not wait for this task to let go of the core.
        let core = std::sync::Arc::downgrade(&core);
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let Some(core) = core.upgrade() else { return };
                tracing::info!("SIGHUP: reading the config file again");
                // Applied or refused, the outcome is logged and on the event stream.
                let _ = core.reload(homeport_types::ConfigSource::Signal).await;
            }
        });
    } else {
        tracing::warn!("cannot handle SIGHUP; apply config edits with `homeport reload`");
    }

    let request = tokio::select! {
        () = wait_for_stop_signal() => AgentStopRequest::default(),
        req = core.stop_requested() => req,
    };
    sd_notify("STOPPING=1");
    starting.abort();
    if request.keep_services {
        // Like a crash, minus its loose ends: services and their shims run on, every event is
        // written, and the next agent re-adopts them. The process exits here, without running
        // the destructors of the service tasks.
        let restart = request.restart && core.service_manager().is_some();
        tracing::info!(
            "stopping the agent; services keep running{}",
            if restart {
                " and the service manager starts the agent again"
            } else {
                ""
            }
        );
        core.end_streams();
        core.flush_records(std::time::Duration::from_secs(5));
        runtime::remove_endpoint(&data);
        // The answer to `agent stop|restart` is still on its way: let the server finish it.
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
        std::process::exit(if restart { i32::from(EXIT_RESTART) } else { 0 });
    }
    tracing::info!("stopping every service");
    if tokio::time::timeout(SHUTDOWN_LIMIT, core.shutdown())
        .await
        .is_err()
    {
        tracing::error!("services did not stop within {SHUTDOWN_LIMIT:?}; exiting anyway");
    }
    core.flush_records(std::time::Duration::from_secs(5));
    runtime::remove_endpoint(&data);
    let _ = stop_tx.send(());
    // Streams end with the shutdown signal; a client that does not hang up is not waited for long.
    if tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .is_err()
    {
        tracing::warn!("some API clients did not disconnect; exiting anyway");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop me with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `homeport agent --detach`: starts the agent in the background, in a session of its own, its
/// output appended to its own log (`DATA/logs/agent.log`); returns once its API answers, printing its pid (alone on
/// stdout, for scripts: `pid=$(homeport agent --detach)`).
pub async fn detach(config_path: &Path) -> Result<(), Failure> {
    let data = homeport_config::agent_data_dir(config_path);
    if let Ok(s) = running_status(&data).await {
        return Err(Failure::new(
            1,
            format!(
                "an agent is already running (pid {}) with this data folder ({})",
                s.agent.pid,
                data.display()
            ),
        ));
    }
    let (mut child, log) = spawn_detached(config_path, &data)?;
    let pid = child.id();
    wait_ready(&data, &mut child, &log).await?;
    eprintln!(
        "homeport agent running (pid {pid}); its log: {}",
        log.display()
    );
    outln!("{pid}")?;
    Ok(())
}

/// Starts `homeport agent` (this binary) detached; returns it and its log file.
fn spawn_detached(
    config_path: &Path,
    data: &Path,
) -> Result<(std::process::Child, PathBuf), Failure> {
    use std::os::unix::process::CommandExt;
    homeport_fs::create_private_dir(data)
        .map_err(|e| Failure::new(1, format!("cannot create {}: {e}", data.display())))?;
    // Its stderr is its own log, so what it prints before its log is open (a config it cannot
    // read) or on a panic is there too.
    let log = homeport_config::agent_log_path(data);
    if let Some(dir) = log.parent() {
        homeport_fs::create_private_dir(dir)
            .map_err(|e| Failure::new(1, format!("cannot create {}: {e}", dir.display())))?;
    }
    let out = homeport_fs::open_append_private(&log)
        .map_err(|e| Failure::new(1, format!("cannot open {}: {e}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(|e| Failure::new(1, format!("cannot open {}: {e}", log.display())))?;
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(1, format!("cannot find my own binary: {e}")))?;
    let config = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("--config")
        .arg(&config)
        .arg("agent")
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe; it detaches the agent from this terminal, so closing
    // the terminal (SIGHUP) does not end production.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| Failure::new(1, format!("cannot start {}: {e}", exe.display())))?;
    Ok((child, log))
}

/// Waits until the agent `child` answers, or says why it did not (its log's last lines).
async fn wait_ready(
    data: &Path,
    child: &mut std::process::Child,
    log: &Path,
) -> Result<(), Failure> {
    let pid = child.id();
    let spinner = Spinner::start(&format!("starting the agent (pid {pid})"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = running_status(data).await
            && s.agent.pid == pid
        {
            spinner.finish();
            return Ok(());
        }
        if child.try_wait().ok().flatten().is_some() {
            spinner.finish();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(Failure::new(
                1,
                format!(
                    "the agent exited before it was ready; the end of {}:\n{}",
                    log.display(),
                    tail.join("\n")
                ),
            ));
        }
        if Instant::now() > deadline {
            spinner.finish();
            return Err(Failure::new(
                1,
                format!(
                    "the agent (pid {pid}) did not answer within 60 s; see {}",
                    log.display()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn running_status(data: &Path) -> Result<StatusSnapshot, Failure> {
    Ok(homeport_client::Client::discover(data)?.status().await?)
}

/// Waits until the agent with `pid` has exited (and so released its lock). Not the lock alone:
/// the agent lets go of it before its process has finished exiting.
async fn wait_exited(pid: u32, limit: Duration) -> Result<(), Failure> {
    let deadline = Instant::now() + limit;
    loop {
        // A zombie has exited: only its parent has yet to reap it.
        if !crate::uninstall::alive(pid) || homeport_platform::is_zombie(pid) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Failure::new(
                1,
                format!(
                    "the agent (pid {pid}) has not exited after {} s; see its log",
                    limit.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `homeport agent stop [--keep-services]`.
pub async fn stop(config_path: &Path, keep_services: bool) -> Result<(), Failure> {
    let client = crate::client(config_path)?;
    let before = client.status().await?;
    let reply = client
        .agent_stop(AgentStopRequest {
            keep_services,
            restart: false,
        })
        .await?;
    let what = if keep_services {
        format!("stopping the agent (pid {})", reply.pid)
    } else {
        format!(
            "stopping {} services and the agent (pid {})",
            before.services.iter().filter(|s| s.state.is_up()).count(),
            reply.pid
        )
    };
    let spinner = Spinner::start(&what);
    wait_exited(reply.pid, SHUTDOWN_LIMIT + Duration::from_secs(10)).await?;
    spinner.finish();
    let up = before.services.iter().filter(|s| s.state.is_up()).count();
    if keep_services {
        outln!(
            "Stopped the agent (pid {}); {up} service(s) keep running, and the next agent \
             (`homeport agent`) re-adopts them",
            reply.pid
        )?;
    } else {
        outln!("Stopped the agent (pid {}) and its services", reply.pid)?;
    }
    if let Some(m) = before.agent.service_manager {
        outln!(
            "It ran under {m}, which will not start it again until you do: {}",
            if m == "launchd" {
                "launchctl kickstart gui/$(id -u)/dev.homeport.agent"
            } else {
                "systemctl --user start homeport"
            }
        )?;
    }
    Ok(())
}

/// `homeport agent restart`: the running agent exits leaving its services, and a new one — this
/// binary, or the service manager's — starts and re-adopts them. The way to upgrade: replace
/// the binary, then run this; no service stops.
pub async fn restart(config_path: &Path) -> Result<(), Failure> {
    let data = homeport_config::agent_data_dir(config_path);
    let client = match crate::client(config_path) {
        Ok(c) => c,
        Err(f) if f.code == 3 => {
            outln!("No agent was running; starting one")?;
            return detach(config_path).await;
        }
        Err(f) => return Err(f),
    };
    let before = client.status().await?;
    let manager = before.agent.service_manager.clone();
    let reply = client
        .agent_stop(AgentStopRequest {
            keep_services: true,
            restart: manager.is_some(),
        })
        .await?;
    let spinner = Spinner::start(&format!("restarting the agent (pid {})", reply.pid));
    wait_exited(reply.pid, Duration::from_secs(30)).await?;
    let new_pid = match &reply.restarted_by {
        // The service manager starts the new agent; wait for it to answer.
        Some(_) => {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(s) = running_status(&data).await
                    && s.agent.pid != reply.pid
                {
                    break s.agent.pid;
                }
                if Instant::now() > deadline {
                    return Err(Failure::new(
                        1,
                        "the service manager did not start the agent again within 60 s; see \
                         `systemctl --user status homeport`",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        None => {
            let (mut child, log) = spawn_detached(config_path, &data)?;
            wait_ready(&data, &mut child, &log).await?;
            child.id()
        }
    };
    spinner.finish();
    let after = running_status(&data).await?;
    let kept = before
        .services
        .iter()
        .filter(|b| {
            b.pid.is_some()
                && after
                    .services
                    .iter()
                    .any(|a| a.key == b.key && a.pid == b.pid)
        })
        .count();
    outln!(
        "Restarted the agent: pid {} → {new_pid}{}; {kept} running service(s) re-adopted with \
         the same pids",
        reply.pid,
        reply
            .restarted_by
            .map(|m| format!(" (by {m})"))
            .unwrap_or_default()
    )?;
    Ok(())
}
