//! Zero-downtime switches for `strategy = "blue-green"` services. The environment's web service
//! is served on its public port by the router (see `routing`), which flips per request; any
//! other blue-green service gets a TCP proxy here that forwards each new connection to the
//! active instance. A deploy starts the other instance
//! with the new release, waits until it is healthy, makes it active (new connections go to it at
//! once), lets the old instance's open connections finish, and stops it. Forwarding bytes, not
//! parsing HTTP, makes WebSocket upgrades and long polls just work.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use homeport_types::ServiceKey;

struct State {
    active: usize,
    /// Open connections per instance.
    conns: [usize; 2],
}

pub struct Proxy {
    pub app: String,
    pub env: String,
    pub service: String,
    pub public_port: u16,
    /// Blue, green.
    pub slots: [ServiceKey; 2],
    ports: [u16; 2],
    pub autostart: bool,
    /// Remembers the active instance across agent restarts.
    file: PathBuf,
    state: Mutex<State>,
}

impl Proxy {
    pub fn new(
        specs: [&homeport_config::ServiceSpec; 2],
        data_dir: &std::path::Path,
    ) -> Option<Self> {
        let [blue, green] = specs;
        let slot = blue.slot.as_ref()?;
        let file = data_dir
            .join("apps")
            .join(&blue.key.app)
            .join(&blue.key.env)
            .join(format!("{}.active", slot.service));
        let active = usize::from(std::fs::read_to_string(&file).is_ok_and(|s| s.trim() == "green"));
        Some(Self {
            app: blue.key.app.clone(),
            env: blue.key.env.clone(),
            service: slot.service.clone(),
            public_port: slot.public_port,
            slots: [blue.key.clone(), green.key.clone()],
            ports: [blue.port?, green.port?],
            autostart: slot.autostart,
            file,
            state: Mutex::new(State {
                active,
                conns: [0, 0],
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn active(&self) -> ServiceKey {
        self.slots[self.lock().active].clone()
    }

    /// The port of the active instance, where the router sends an HTTP service's requests.
    pub fn active_port(&self) -> Option<u16> {
        Some(self.ports[self.lock().active])
    }

    /// The port of an instance.
    pub fn port_of(&self, slot: &ServiceKey) -> u16 {
        self.ports[usize::from(slot == &self.slots[1])]
    }

    pub fn inactive(&self) -> ServiceKey {
        self.slots[1 - self.lock().active].clone()
    }

    /// Makes the other instance active for new connections; returns the one that was.
    pub fn flip(&self) -> ServiceKey {
        let mut st = self.lock();
        let old = st.active;
        st.active = 1 - old;
        let name = if st.active == 0 { "blue" } else { "green" };
        drop(st);
        if let Some(dir) = self.file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = homeport_fs::atomic_write(&self.file, name.as_bytes(), 0o644) {
            tracing::warn!("cannot record the active instance of {}: {e}", self.service);
        }
        self.slots[old].clone()
    }

    /// Waits until `slot` has no open connection, or `limit` passes.
    pub async fn drain(&self, slot: &ServiceKey, limit: Duration) {
        let i = usize::from(slot == &self.slots[1]);
        let end = tokio::time::Instant::now() + limit;
        while self.lock().conns[i] > 0 && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Accepts on the public port until `stop` resolves.
    pub async fn serve(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", self.public_port)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(
                    "cannot listen on 127.0.0.1:{} for {}/{}/{}: {e}",
                    self.public_port,
                    self.app,
                    self.env,
                    self.service
                );
                return;
            }
        };
        tokio::pin!(stop);
        loop {
            let (mut down, _) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(_) => continue,
                },
                () = &mut stop => return,
            };
            // Pick the instance and count the connection in one step, so a drain that sees zero
            // can never miss a connection on its way to the old instance.
            let (i, port) = {
                let mut st = self.lock();
                let i = st.active;
                st.conns[i] += 1;
                (i, self.ports[i])
            };
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                if let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
                me.lock().conns[i] -= 1;
            });
        }
    }
}
