//! `homeport agent`: the foreground agent process.

use std::net::SocketAddr;
use std::path::Path;

use homeport_core::Core;
use homeport_core::runtime::{self, InstanceLock, LockError};
use homeport_types::AgentEndpoint;
use tracing_subscriber::EnvFilter;

use crate::{Failure, SHUTDOWN_LIMIT};

pub async fn run(config_path: &Path) -> Result<(), Failure> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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

    wait_for_stop_signal().await;
    tracing::info!("stopping every service");
    starting.abort();
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
