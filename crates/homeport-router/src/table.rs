//! The routing table: names → routes, and each route's current backend. A flip swaps a route's
//! backend atomically; the old backend counts what still runs on it until that reaches zero.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::Notify;

/// An environment of an app, the thing a name routes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub app: String,
    pub env: String,
}

impl RouteKey {
    pub fn new(app: impl Into<String>, env: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            env: env.into(),
        }
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.env)
    }
}

/// What the table should hold for one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub key: RouteKey,
    /// Every name it answers to, lower case.
    pub names: Vec<String>,
    /// Where its web service listens; `None` when it has none.
    pub upstream: Option<SocketAddr>,
}

/// One upstream address, and what is still running on it.
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    /// `127.0.0.1:PORT`, the authority of upstream request URIs.
    pub(crate) authority: http::uri::Authority,
    /// Requests whose response has not ended, plus open upgraded connections.
    busy: AtomicUsize,
    /// Open upgraded connections (WebSockets) alone.
    tunnels: AtomicUsize,
    idle: Notify,
    /// Set when a drain's deadline passed: open tunnels close.
    cut: AtomicBool,
    cut_notify: Notify,
}

impl Backend {
    fn new(addr: SocketAddr) -> Arc<Self> {
        let authority = addr
            .to_string()
            .parse()
            .unwrap_or_else(|_| http::uri::Authority::from_static("127.0.0.1"));
        Arc::new(Self {
            addr,
            authority,
            busy: AtomicUsize::new(0),
            tunnels: AtomicUsize::new(0),
            idle: Notify::new(),
            cut: AtomicBool::new(false),
            cut_notify: Notify::new(),
        })
    }

    /// Resolves once the backend's drain deadline has passed.
    pub(crate) async fn cut(&self) {
        loop {
            let notified = self.cut_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.cut.load(SeqCst) {
                return;
            }
            notified.await;
        }
    }

    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.busy.load(SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Held while a request (until its response body ends) or a tunnel runs on a backend.
pub(crate) struct InFlight {
    pub(crate) backend: Arc<Backend>,
    tunnel: bool,
}

impl InFlight {
    /// Turns a request's hold into a tunnel's: the upgraded connection keeps the backend busy.
    pub(crate) fn into_tunnel(mut self) -> Self {
        self.backend.tunnels.fetch_add(1, SeqCst);
        self.tunnel = true;
        self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.tunnel {
            self.backend.tunnels.fetch_sub(1, SeqCst);
        }
        if self.backend.busy.fetch_sub(1, SeqCst) == 1 {
            self.backend.idle.notify_waiters();
        }
    }
}

/// The route of one environment. Its backend can be swapped while requests run.
pub struct Route {
    key: RouteKey,
    current: ArcSwapOption<Backend>,
}

impl Route {
    fn new(key: RouteKey, upstream: Option<SocketAddr>) -> Self {
        Self {
            key,
            current: ArcSwapOption::new(upstream.map(Backend::new)),
        }
    }

    pub fn key(&self) -> &RouteKey {
        &self.key
    }

    /// Where new requests go now.
    pub fn upstream(&self) -> Option<SocketAddr> {
        self.current.load().as_ref().map(|b| b.addr)
    }

    /// Takes the current backend for one request. Counting and choosing are one step as far as a
    /// drain can tell: a request counted on a backend that was swapped out meanwhile is moved to
    /// the new one, so once [`Route::flip`] returns, no new request reaches the old backend and
    /// every one that did is counted.
    pub(crate) fn acquire(&self) -> Option<InFlight> {
        loop {
            let backend = self.current.load_full()?;
            backend.busy.fetch_add(1, SeqCst);
            let hold = InFlight {
                backend,
                tunnel: false,
            };
            let still = self
                .current
                .load()
                .as_ref()
                .is_some_and(|b| Arc::ptr_eq(b, &hold.backend));
            if still {
                return Some(hold);
            }
        }
    }

    /// Sends every new request — including the next one on a connection that is already open —
    /// to `upstream`. Returns the drain of the backend that was current, if it changed.
    pub fn flip(&self, upstream: Option<SocketAddr>) -> Option<Drain> {
        if self.upstream() == upstream {
            return None;
        }
        let old = self.current.swap(upstream.map(Backend::new))?;
        Some(Drain { backend: old })
    }
}

/// The old backend after a flip: what still runs on it, and a way to wait until nothing does.
pub struct Drain {
    backend: Arc<Backend>,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    /// Nothing ran on the old backend any more when the wait ended.
    pub drained: bool,
    /// Requests and tunnels still open at the deadline (0 when drained).
    pub left: usize,
    /// Of those, WebSockets and other upgraded connections; they were closed.
    pub tunnels_closed: usize,
}

impl Drain {
    pub fn upstream(&self) -> SocketAddr {
        self.backend.addr
    }

    /// Requests and tunnels still running on the old backend.
    pub fn in_flight(&self) -> usize {
        self.backend.busy.load(SeqCst)
    }

    /// Waits until nothing runs on the old backend, or `deadline` passes; then closes the
    /// upgraded connections still open on it.
    pub async fn wait(self, deadline: Duration) -> DrainOutcome {
        let drained = tokio::time::timeout(deadline, self.backend.idle())
            .await
            .is_ok();
        if drained {
            return DrainOutcome {
                drained,
                left: 0,
                tunnels_closed: 0,
            };
        }
        let left = self.backend.busy.load(SeqCst);
        let tunnels = self.backend.tunnels.load(SeqCst);
        self.backend.cut.store(true, SeqCst);
        self.backend.cut_notify.notify_waiters();
        DrainOutcome {
            drained: left == 0,
            left,
            tunnels_closed: tunnels,
        }
    }
}

/// Names → routes. Replaced whole (atomically) when the configuration changes.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) by_name: HashMap<String, Arc<Route>>,
    pub(crate) routes: Vec<Arc<Route>>,
}

impl Table {
    /// A new table from `specs`, keeping the route objects (and so their current backends and
    /// the requests counted on them) of environments the old table had.
    pub(crate) fn rebuild(old: &Table, specs: &[RouteSpec]) -> Table {
        let mut t = Table::default();
        for spec in specs {
            let route = match old.routes.iter().find(|r| r.key == spec.key) {
                Some(r) => {
                    r.flip(spec.upstream);
                    Arc::clone(r)
                }
                None => Arc::new(Route::new(spec.key.clone(), spec.upstream)),
            };
            for name in &spec.names {
                t.by_name
                    .entry(name.to_ascii_lowercase())
                    .or_insert_with(|| Arc::clone(&route));
            }
            t.routes.push(route);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn a_flip_sends_new_requests_to_the_new_backend_and_drains_the_old() {
        let route = Route::new(RouteKey::new("shop", "production"), Some(addr(1)));
        let old_request = route.acquire().expect("a backend");
        assert_eq!(old_request.backend.addr, addr(1));
        let drain = route.flip(Some(addr(2))).expect("changed");
        let new_request = route.acquire().expect("a backend");
        assert_eq!(new_request.backend.addr, addr(2));
        assert_eq!(drain.in_flight(), 1);
        let waiter = tokio::spawn(drain.wait(Duration::from_secs(60)));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(old_request);
        let outcome = waiter.await.expect("join");
        assert_eq!(
            outcome,
            DrainOutcome {
                drained: true,
                left: 0,
                tunnels_closed: 0
            }
        );
        drop(new_request);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_deadline_cuts_open_tunnels() {
        let route = Route::new(RouteKey::new("shop", "production"), Some(addr(1)));
        let tunnel = route.acquire().expect("backend").into_tunnel();
        let backend = Arc::clone(&tunnel.backend);
        let drain = route.flip(Some(addr(2))).expect("changed");
        let outcome = drain.wait(Duration::from_secs(30)).await;
        assert_eq!(
            outcome,
            DrainOutcome {
                drained: false,
                left: 1,
                tunnels_closed: 1
            }
        );
        // The tunnel's task sees the cut and ends.
        tokio::time::timeout(Duration::from_secs(1), backend.cut())
            .await
            .expect("cut");
        drop(tunnel);
        assert_eq!(backend.busy.load(SeqCst), 0);
    }

    #[test]
    fn flipping_to_the_same_upstream_changes_nothing() {
        let route = Route::new(RouteKey::new("a", "b"), Some(addr(1)));
        assert!(route.flip(Some(addr(1))).is_none());
        assert!(route.flip(None).is_some());
        assert!(route.acquire().is_none());
        assert!(route.flip(Some(addr(3))).is_none(), "nothing to drain");
        assert_eq!(route.upstream(), Some(addr(3)));
    }

    #[test]
    fn a_rebuilt_table_keeps_routes_of_known_environments() {
        let specs = vec![RouteSpec {
            key: RouteKey::new("shop", "production"),
            names: vec!["shop.localhost".into(), "Shop.Test".into()],
            upstream: Some(addr(1)),
        }];
        let t1 = Table::rebuild(&Table::default(), &specs);
        let held = t1.by_name["shop.localhost"].acquire().expect("backend");
        let t2 = Table::rebuild(&t1, &specs);
        assert!(Arc::ptr_eq(&t1.routes[0], &t2.routes[0]));
        assert!(t2.by_name.contains_key("shop.test"));
        assert_eq!(held.backend.busy.load(SeqCst), 1);
    }

    #[test]
    fn racing_requests_and_flips_never_lose_a_count() {
        let route = Arc::new(Route::new(RouteKey::new("a", "b"), Some(addr(1))));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (route, stop) = (Arc::clone(&route), Arc::clone(&stop));
                std::thread::spawn(move || {
                    while !stop.load(SeqCst) {
                        drop(route.acquire());
                    }
                })
            })
            .collect();
        let mut drains = Vec::new();
        for i in 0..2000u16 {
            drains.extend(route.flip(Some(addr(2 + i))));
        }
        stop.store(true, SeqCst);
        for w in workers {
            w.join().expect("worker");
        }
        assert!(drains.iter().all(|d| d.in_flight() == 0));
    }
}
