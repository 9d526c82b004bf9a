//! The HTTP router of the agent: names instead of ports, local HTTPS, and request-level
//! blue-green flips.
//!
//! ```text
//!  browser ──▶ listener (HTTP / HTTPS) ──▶ connection task ──▶ proxy::handle ──▶ Route ──▶ Backend
//!   Host: beta.shop.localhost    timeouts, limits      name → route      current    127.0.0.1:port
//! ```
//! - [`Router`] owns the table of names ([`RouteSpec`] per environment, swapped whole on a config
//!   change) and serves listeners it is given ([`Router::serve`]), so tests bind port 0.
//! - A [`Route`] holds its environment's current backend. [`Route::flip`] swaps it atomically:
//!   every request that starts afterwards — including the next one on a kept-alive connection —
//!   goes to the new backend; the returned [`Drain`] says when the old one has nothing running
//!   (requests until their body ends, WebSockets until they close) and cuts what is left at a
//!   deadline.
//! - [`LocalCa`] makes the local CA and, through the TLS resolver, a leaf certificate for each
//!   name when a client first asks for it.
//! - When a backend does not answer, the router asks [`Status`] what the agent knows and serves a
//!   page that says it ("shop/beta is stopped — start it with `homeport start shop/beta`").
//!
//! The router never serves the agent's API: it only knows the names it is given.

mod body;
pub mod ca;
pub mod host;
pub mod hosts;
mod page;
mod proxy;
mod serve;
mod table;
pub mod trust;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use ca::{CaError, LocalCa};
pub use page::TargetState;
pub use serve::Listen;
pub use table::{Drain, DrainOutcome, Route, RouteKey, RouteSpec};

/// Limits and timeouts. The defaults suit a desktop: generous for people, short for connections
/// that send nothing.
#[derive(Debug, Clone)]
pub struct Options {
    /// A client must send a whole request head within this time (also how long an HTTP/1
    /// connection may sit idle between requests).
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection with no request running is closed after this time.
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// Open client connections, WebSockets included. When all are taken, a new one takes the
    /// place of the oldest that has not sent a whole request yet, or is closed at once.
    pub max_connections: usize,
    /// Largest request head (HTTP/1 buffer, HTTP/2 header list), in bytes.
    pub max_header_bytes: usize,
    /// How long connecting to a backend may take.
    pub connect_timeout: Duration,
    /// After the router stops, how long open connections may finish their requests.
    pub shutdown_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(120),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 2048,
            max_header_bytes: 64 * 1024,
            connect_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What the agent knows about an environment, asked when its web service does not answer.
pub trait Status: Send + Sync {
    fn state(&self, key: &RouteKey) -> TargetState;
}

/// The router. Cheap to clone; every clone serves the same table.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) table: Arc<ArcSwap<table::Table>>,
    pub(crate) client: Client<HttpConnector, Incoming>,
    pub(crate) status: Option<Arc<dyn Status>>,
    pub(crate) opts: Options,
    pub(crate) http: hyper_util::server::conn::auto::Builder<TokioExecutor>,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) ca: Option<Arc<LocalCa>>,
    pub(crate) conns: Arc<tokio::sync::Semaphore>,
    pub(crate) open: AtomicUsize,
    pub(crate) waiting: serve::Waiting,
}

impl Router {
    /// A router with no names yet. With a CA it can also serve HTTPS.
    pub fn new(
        opts: Options,
        status: Option<Arc<dyn Status>>,
        ca: Option<Arc<LocalCa>>,
    ) -> Result<Self, CaError> {
        let table: Arc<ArcSwap<table::Table>> = Arc::default();
        let tls = match &ca {
            Some(ca) => {
                let t = Arc::clone(&table);
                let known = Arc::new(move |name: &str| t.load().by_name.contains_key(name));
                let resolver = ca::Resolver::new(Arc::clone(ca), known)?;
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_no_client_auth()
                    .with_cert_resolver(Arc::new(resolver));
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
            }
            None => None,
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(opts.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(opts.header_read_timeout)
            .max_buf_size(opts.max_header_bytes.max(8192))
            .max_headers(128);
        http.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(opts.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        Ok(Self {
            shared: Arc::new(Shared {
                table,
                client,
                status,
                conns: Arc::new(tokio::sync::Semaphore::new(opts.max_connections)),
                opts,
                http,
                tls,
                ca,
                open: AtomicUsize::new(0),
                waiting: serve::Waiting::default(),
            }),
        })
    }

    /// Replaces the table. Environments it had keep their route (and what runs on it); a changed
    /// upstream is a flip whose old backend is left to finish on its own.
    pub fn set_routes(&self, specs: &[RouteSpec]) {
        let old = self.shared.table.load();
        let new = table::Table::rebuild(&old, specs);
        self.shared.table.store(Arc::new(new));
    }

    /// The route of one environment.
    pub fn route(&self, key: &RouteKey) -> Option<Arc<Route>> {
        self.shared
            .table
            .load()
            .routes
            .iter()
            .find(|r| r.key() == key)
            .cloned()
    }

    /// Every name served, with the environment it routes to, sorted by name.
    pub fn names(&self) -> Vec<(String, RouteKey)> {
        let t = self.shared.table.load();
        let mut v: Vec<_> = t
            .by_name
            .iter()
            .map(|(n, r)| (n.clone(), r.key().clone()))
            .collect();
        v.sort();
        v
    }

    /// The CA, when the router serves HTTPS.
    pub fn ca(&self) -> Option<&Arc<LocalCa>> {
        self.shared.ca.as_ref()
    }

    /// Client connections open now (WebSockets included).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Accepts on `listener` until `shutdown` resolves, then lets open connections finish their
    /// requests for [`Options::shutdown_grace`].
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        listen: Listen,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        serve::serve(Arc::clone(&self.shared), listener, listen, shutdown).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("this router has no local CA, so it cannot serve HTTPS")]
    NoCa,
}

pub(crate) type ServiceResult = Result<http::Response<body::Body>, Infallible>;
