//! Listeners and connections: accept within the connection limit, TLS with a handshake deadline,
//! HTTP/1.1 or HTTP/2 by what the client speaks, and an end for connections that idle.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use crate::body::Body;
use crate::proxy::{self, ConnInfo};
use crate::table::{Route, RouteKey};
use crate::{ServeError, ServiceResult, Shared};

/// What a listener serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Routes by name, plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge).
    Http,
    /// Routes by name over TLS (HTTP/2 or HTTP/1.1 by ALPN), with certificates from the CA.
    Https,
    /// Sends every request to one environment, whatever its Host: a blue-green service's public
    /// port, which its users reach by port rather than by name.
    Pinned(RouteKey),
}

/// One client connection's place in the limit. A WebSocket keeps it after its HTTP connection
/// has handed over the socket.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// When a connection last started or finished a request, and how many run on it.
pub(crate) struct Activity {
    busy: AtomicUsize,
    /// Milliseconds after `born`.
    last: AtomicU64,
    born: Instant,
    served: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.born + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// Held while one request runs on a connection, until its response body ends.
pub(crate) struct Active(Arc<Activity>);

impl Active {
    fn begin(a: &Arc<Activity>) -> Self {
        a.busy.fetch_add(1, Ordering::Relaxed);
        a.served.fetch_add(1, Ordering::Relaxed);
        a.touch();
        Active(Arc::clone(a))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connections that have not yet sent a whole request, oldest first, each with what ends it.
#[derive(Default)]
pub(crate) struct Waiting {
    next: AtomicU64,
    conns: Mutex<std::collections::BTreeMap<u64, Arc<tokio::sync::Notify>>>,
}

impl Waiting {
    fn add(&self) -> (u64, Arc<tokio::sync::Notify>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let end = Arc::new(tokio::sync::Notify::new());
        self.lock().insert(id, Arc::clone(&end));
        (id, end)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, Arc<tokio::sync::Notify>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ends the oldest connection still waiting for its first request; false if there is none.
fn shed_oldest_waiting(shared: &Shared) -> bool {
    let oldest = shared.waiting.lock().pop_first();
    match oldest {
        Some((_, end)) => {
            end.notify_one();
            true
        }
        None => false,
    }
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    listen: Listen,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    if listen == Listen::Https && shared.tls.is_none() {
        return Err(ServeError::NoCa);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut refused_logged = Instant::now() - Duration::from_secs(60);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, most likely: give the open connections a moment.
                    tracing::warn!("router: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match Arc::clone(&shared.conns).try_acquire_owned() {
            Ok(p) => p,
            // Full: the oldest connection that has not sent a whole request yet (a slow or
            // idle client) makes room, so a flood of such clients cannot lock everyone out.
            Err(_) if shed_oldest_waiting(&shared) => {
                match tokio::time::timeout(
                    Duration::from_millis(500),
                    Arc::clone(&shared.conns).acquire_owned(),
                )
                .await
                {
                    Ok(Ok(p)) => p,
                    _ => continue,
                }
            }
            Err(_) => {
                if refused_logged.elapsed() > Duration::from_secs(10) {
                    tracing::warn!(
                        "router: {} connections are open and all are busy, the most it keeps; closing new ones",
                        shared.opts.max_connections
                    );
                    refused_logged = Instant::now();
                }
                drop(stream);
                continue;
            }
        };
        shared.open.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            shared: Arc::clone(&shared),
            _permit: permit,
        };
        let _ = stream.set_nodelay(true);
        let pinned = match &listen {
            Listen::Pinned(key) => Some(pinned_route(&shared, key)),
            _ => None,
        };
        let info = ConnInfo {
            peer,
            https: listen == Listen::Https,
            pinned,
            slot: Mutex::new(Some(slot)),
        };
        let (shared, stop) = (Arc::clone(&shared), stop_rx.clone());
        tokio::spawn(async move {
            match &shared.tls {
                Some(tls) if info.https => {
                    let handshake =
                        tokio::time::timeout(shared.opts.tls_handshake_timeout, tls.accept(stream))
                            .await;
                    if let Ok(Ok(stream)) = handshake {
                        connection(Arc::clone(&shared), stream, info, stop).await;
                    }
                }
                _ => connection(Arc::clone(&shared), stream, info, stop).await,
            }
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

fn pinned_route(shared: &Shared, key: &RouteKey) -> Arc<Route> {
    let table = shared.table.load();
    match table.routes.iter().find(|r| r.key() == key) {
        Some(r) => Arc::clone(r),
        // Not configured (any more): answer with the "no web service" page.
        None => Arc::new(crate::table::Table::rebuild(
            &crate::table::Table::default(),
            &[crate::RouteSpec {
                key: key.clone(),
                names: vec![],
                upstream: None,
            }],
        ))
        .routes[0]
            .clone(),
    }
}

async fn connection<I>(shared: Arc<Shared>, io: I, info: ConnInfo, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity {
        busy: AtomicUsize::new(0),
        last: AtomicU64::new(0),
        born: Instant::now(),
        served: AtomicUsize::new(0),
    });
    let info = Arc::new(info);
    let (waiting_id, shed) = shared.waiting.add();
    let service = {
        let (shared, info, activity) = (
            Arc::clone(&shared),
            Arc::clone(&info),
            Arc::clone(&activity),
        );
        service_fn(move |req| {
            let (shared, info, activity) = (
                Arc::clone(&shared),
                Arc::clone(&info),
                Arc::clone(&activity),
            );
            async move {
                if activity.served.load(Ordering::Relaxed) == 0 {
                    shared.waiting.remove(waiting_id);
                }
                let active = Active::begin(&activity);
                let mut resp = proxy::handle(&shared, &info, req).await;
                if let Body::Upstream { active: a, .. } = resp.body_mut() {
                    *a = Some(active);
                }
                ServiceResult::Ok(resp)
            }
        })
    };
    let conn = shared
        .http
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let opts = &shared.opts;
    let mut closing: Option<Instant> = None;
    let mut check = Instant::now() + opts.header_read_timeout.min(opts.idle_timeout);
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            // Shed to make room for a new client: it never sent a whole request.
            () = shed.notified() => break,
            changed = stop.changed(), if closing.is_none() => {
                if changed.is_err() || *stop.borrow() {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + opts.shutdown_grace);
                    check = Instant::now() + opts.shutdown_grace;
                }
            }
            () = tokio::time::sleep_until(check) => {
                let now = Instant::now();
                if closing.is_some_and(|end| now >= end) {
                    // Graceful shutdown did not finish: the client holds it open.
                    break;
                }
                // Before its first request a connection gets the header deadline; after, the
                // idle one. HTTP/1 keeps its own (shorter) deadline between requests too.
                let limit = if activity.served.load(Ordering::Relaxed) == 0 {
                    opts.header_read_timeout
                } else {
                    opts.idle_timeout
                };
                let idle_until = activity.last() + limit;
                if closing.is_none() && activity.busy.load(Ordering::Relaxed) == 0 && now >= idle_until {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(now + opts.shutdown_grace);
                    check = now + opts.shutdown_grace;
                } else if closing.is_none() {
                    check = idle_until.max(now + Duration::from_millis(100)).max(now + limit / 4);
                } else {
                    check = closing.unwrap_or(now);
                }
            }
        }
    }
    shared.waiting.remove(waiting_id);
}

impl ConnInfo {
    /// Hands the connection's place in the limit to a tunnel that outlives the HTTP connection.
    pub(crate) fn take_slot(&self) -> Option<Slot> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}
