//! The API's connections: accepted, timed and counted so that no local process can use them up.
//!
//! Any local process can connect to the API's port, token or not. Left alone, connections that
//! never finish their request header hold a descriptor each until the agent has none left for
//! health probes, spawns and logs. So:
//! - a request header (and the wait for the next request on a kept-alive connection) must
//!   arrive within [`Limits::header_timeout`];
//! - at most [`Limits::max_connections`] are open at once, well below the descriptor limit; at
//!   the cap, a new connection takes the place of the oldest one that has no request in flight
//!   (a client that sends its request at once is served; one that dawdles is the one closed);
//! - connections from processes of another user (looked up from the kernel's socket table) get
//!   at most [`Limits::max_per_foreign_user`]: they have no credential, so nothing but `/livez`
//!   and sign-in pages to ask for;
//! - the agent raises its soft descriptor limit to the hard one at start
//!   (`homeport_fs::inherit::raise_descriptor_limit`), and the cap is computed from what it got.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::body::Watched;

/// The uid of the process at the other end of a connection, where the platform can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerUid(pub u32);

impl PeerUid {
    pub fn is_agent_user(self) -> bool {
        self.0 == euid()
    }
}

pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request header must arrive within this (and the next one, on a kept-alive connection).
    pub header_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections at most from the processes of any one other user.
    pub max_per_foreign_user: usize,
}

/// Descriptors kept free of API connections for everything else the agent does: state.db, pidfds
/// and log files of services, health probes, spawns, backups, deploys.
pub const RESERVED_DESCRIPTORS: u64 = 256;

impl Limits {
    /// Limits for an agent that may hold `nofile` descriptors: a quarter of them (at least
    /// [`RESERVED_DESCRIPTORS`]) stay free of connections; never more than 4,096 connections,
    /// more than a local dashboard and CLI ever need.
    pub fn for_descriptors(nofile: u64) -> Self {
        let reserve = RESERVED_DESCRIPTORS.max(nofile / 4);
        let max = nofile.saturating_sub(reserve).clamp(32, 4096);
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: usize::try_from(max).unwrap_or(4096),
            max_per_foreign_user: 16,
        }
    }
}

/// Listens on 127.0.0.1:`port` with a deep accept queue: under a flood of connections, the
/// queue absorbs the burst while the agent accepts and sorts them, instead of dropping a real
/// client's connection attempt (which then waits a second or more to retry).
pub fn listen(port: u16) -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(4096)
}

/// One open connection, as the table sees it.
struct Slot {
    id: u64,
    /// Some(uid) when the peer is a process of another user.
    foreign: Option<u32>,
    opened: Instant,
    /// Requests whose response is not yet sent or abandoned.
    busy: AtomicUsize,
    evicted: AtomicBool,
    evict: Notify,
}

#[derive(Default)]
struct Table {
    slots: HashMap<u64, Arc<Slot>>,
    next: u64,
}

/// The open connections, and a signal each time one is gone.
#[derive(Default)]
struct Connections {
    table: Mutex<Table>,
    gone: Notify,
}

struct Admission {
    conns: Arc<Connections>,
    slot: Arc<Slot>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        lock(&self.conns).slots.remove(&self.slot.id);
        self.conns.gone.notify_one();
    }
}

fn lock(c: &Connections) -> std::sync::MutexGuard<'_, Table> {
    c.table.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Admit {
    Yes(Admission),
    /// Every connection has a request in flight.
    Busy,
    /// Connections told to close have not closed yet: wait for them to free their descriptors.
    Closing,
}

/// Takes a place for a new connection, closing an idle one if the connection's user (or
/// everyone) is at the cap.
fn admit(conns: &Arc<Connections>, limits: &Limits, foreign: Option<u32>) -> Admit {
    let mut t = lock(conns);
    let live = |s: &&Arc<Slot>| !s.evicted.load(Ordering::Acquire);
    if let Some(uid) = foreign {
        let theirs = t
            .slots
            .values()
            .filter(live)
            .filter(|s| s.foreign == Some(uid))
            .count();
        if theirs >= limits.max_per_foreign_user
            && !evict_oldest_idle(&t, |s| s.foreign == Some(uid))
        {
            return Admit::Busy;
        }
    }
    let open = t.slots.values().filter(live).count();
    if open >= limits.max_connections
        // Strangers' connections go first, then anyone's.
        && !evict_oldest_idle(&t, |s| s.foreign.is_some())
        && !evict_oldest_idle(&t, |_| true)
    {
        return Admit::Busy;
    }
    // Closed connections leave the table as their tasks end; never let those pile up past a
    // small margin either.
    if t.slots.len() >= limits.max_connections + 64 {
        return Admit::Closing;
    }
    t.next += 1;
    let slot = Arc::new(Slot {
        id: t.next,
        foreign,
        opened: Instant::now(),
        busy: AtomicUsize::new(0),
        evicted: AtomicBool::new(false),
        evict: Notify::new(),
    });
    t.slots.insert(slot.id, Arc::clone(&slot));
    drop(t);
    Admit::Yes(Admission {
        conns: Arc::clone(conns),
        slot,
    })
}

fn evict_oldest_idle(t: &Table, which: impl Fn(&Slot) -> bool) -> bool {
    let victim = t
        .slots
        .values()
        .filter(|s| !s.evicted.load(Ordering::Acquire) && s.busy.load(Ordering::Acquire) == 0)
        .filter(|s| which(s))
        .min_by_key(|s| s.opened);
    match victim {
        Some(v) => {
            v.evicted.store(true, Ordering::Release);
            v.evict.notify_one();
            true
        }
        None => false,
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, within `limits`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let conns: Arc<Connections> = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut peers = peer::Lookup::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_warning: Option<Instant> = None;
    loop {
        let (stream, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (something else used them up): make room and wait a
                    // moment rather than spin; the connection waits in the backlog.
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::warn!("the API cannot accept a connection: {e}");
                        last_warning = Some(Instant::now());
                    }
                    let _ = evict_oldest_idle(&lock(&conns), |_| true);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let uid = peers.uid(local, addr);
        let foreign = uid.filter(|&u| u != euid());
        let admission = loop {
            match admit(&conns, &limits, foreign) {
                Admit::Yes(a) => break Some(a),
                Admit::Busy => break None,
                Admit::Closing => {
                    let gone = conns.gone.notified();
                    if tokio::time::timeout(Duration::from_millis(200), gone)
                        .await
                        .is_err()
                    {
                        break None;
                    }
                }
            }
        };
        let Some(admission) = admission else {
            // Every connection is busy with a request: this one is closed at once.
            drop(stream);
            continue;
        };
        tokio::spawn(connection(
            stream,
            router.clone(),
            admission,
            uid.map(PeerUid),
            limits,
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Connections finish their current request (streams end with the agent's shutdown signal).
    while !lock(&conns).slots.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn connection(
    stream: TcpStream,
    router: Router,
    admission: Admission,
    peer: Option<PeerUid>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slot = Arc::clone(&admission.slot);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        if let Some(p) = peer {
            req.extensions_mut().insert(p);
        }
        let slot = Arc::clone(&slot);
        slot.busy.fetch_add(1, Ordering::AcqRel);
        let router = router.clone();
        async move {
            let resp = router.oneshot(req.map(Body::new)).await;
            let done = Arc::clone(&slot);
            let idle = move || {
                done.busy.fetch_sub(1, Ordering::AcqRel);
            };
            match resp {
                Ok(resp) => Ok(resp.map(|b| Body::new(Watched::new(b).on_drop(idle)))),
                Err(e) => {
                    idle();
                    Err(e)
                }
            }
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let own = Arc::clone(&admission.slot);
    let evicted = own.evict.notified();
    let mut evicted = std::pin::pin!(evicted);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("API connection: {e}");
            }
        }
        () = &mut evicted => {}
        () = async { drop(stop.wait_for(|s| *s).await) } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
    drop(admission);
}

#[cfg(target_os = "linux")]
mod peer {
    //! The uid of a TCP peer on this machine, from the kernel's socket table (sock_diag, the
    //! interface `ss` uses): one exact lookup per connection, no privilege needed.

    use std::net::{IpAddr, SocketAddr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const INET_DIAG_NOCOOKIE: u32 = !0;

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct SockId {
        sport: u16,
        dport: u16,
        src: [u32; 4],
        dst: [u32; 4],
        iface: u32,
        cookie: [u32; 2],
    }

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Request {
        len: u32,
        kind: u16,
        flags: u16,
        seq: u32,
        pid: u32,
        family: u8,
        protocol: u8,
        ext: u8,
        pad: u8,
        states: u32,
        id: SockId,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Reply {
        len: u32,
        kind: u16,
        flags: u16,
        seq: u32,
        pid: u32,
        family: u8,
        state: u8,
        timer: u8,
        retrans: u8,
        id: SockId,
        expires: u32,
        rqueue: u32,
        wqueue: u32,
        uid: u32,
        inode: u32,
    }

    pub struct Lookup {
        sock: Option<OwnedFd>,
        seq: u32,
    }

    impl Lookup {
        pub fn new() -> Self {
            // SAFETY: plain socket(2); the descriptor is owned right away.
            let fd = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    libc::NETLINK_SOCK_DIAG,
                )
            };
            let sock = (fd >= 0).then(|| {
                // SAFETY: fd is a new descriptor nobody else owns.
                let sock = unsafe { OwnedFd::from_raw_fd(fd) };
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 200_000,
                };
                // SAFETY: setsockopt reads the timeval we own. A reply is queued before send
                // returns; the timeout only guards against a kernel that never answers.
                unsafe {
                    libc::setsockopt(
                        sock.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVTIMEO,
                        std::ptr::from_ref(&tv).cast(),
                        std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                    );
                }
                sock
            });
            if sock.is_none() {
                tracing::warn!(
                    "cannot look up who connects to the API ({}); per-user connection limits are off",
                    std::io::Error::last_os_error()
                );
            }
            Self { sock, seq: 0 }
        }

        /// The uid owning the client socket of the connection `peer` → `local`.
        pub fn uid(&mut self, local: SocketAddr, peer: SocketAddr) -> Option<u32> {
            let sock = self.sock.as_ref()?;
            let (IpAddr::V4(src), IpAddr::V4(dst)) = (peer.ip(), local.ip()) else {
                return None;
            };
            self.seq = self.seq.wrapping_add(1);
            let req = Request {
                len: std::mem::size_of::<Request>() as u32,
                kind: SOCK_DIAG_BY_FAMILY,
                flags: libc::NLM_F_REQUEST as u16,
                seq: self.seq,
                family: libc::AF_INET as u8,
                protocol: libc::IPPROTO_TCP as u8,
                states: !0,
                // The socket whose own end is the peer's address: the client's.
                id: SockId {
                    sport: peer.port().to_be(),
                    dport: local.port().to_be(),
                    src: [u32::from_ne_bytes(src.octets()), 0, 0, 0],
                    dst: [u32::from_ne_bytes(dst.octets()), 0, 0, 0],
                    iface: 0,
                    cookie: [INET_DIAG_NOCOOKIE; 2],
                },
                ..Request::default()
            };
            let mut addr: libc::sockaddr_nl = unsafe_zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            // SAFETY: sendto reads `req` and `addr`, both ours and of the sizes given.
            let sent = unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    std::ptr::from_ref(&req).cast(),
                    std::mem::size_of::<Request>(),
                    0,
                    std::ptr::from_ref(&addr).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if sent < 0 {
                return None;
            }
            let mut buf = [0u8; 512];
            for _ in 0..4 {
                // SAFETY: recv writes at most buf.len() bytes into buf.
                let n =
                    unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                let n = usize::try_from(n).ok()?;
                if n < std::mem::size_of::<Reply>() {
                    // An error message (the socket is gone already), or a stale short reply.
                    if reply_seq(&buf[..n]) == Some(self.seq) {
                        return None;
                    }
                    continue;
                }
                // SAFETY: buf holds at least size_of::<Reply>() bytes; Reply is plain data
                // valid for any bit pattern; read_unaligned needs no alignment.
                let reply: Reply = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
                if reply.seq != self.seq {
                    continue;
                }
                return (reply.kind == SOCK_DIAG_BY_FAMILY).then_some(reply.uid);
            }
            None
        }
    }

    fn reply_seq(buf: &[u8]) -> Option<u32> {
        buf.get(8..12)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    }

    fn unsafe_zeroed() -> libc::sockaddr_nl {
        // SAFETY: sockaddr_nl is plain data for which all-zero is valid.
        unsafe { std::mem::zeroed() }
    }
}

#[cfg(not(target_os = "linux"))]
mod peer {
    //! Elsewhere the peer's user is not looked up: the per-user cap is off, the total cap holds.
    pub struct Lookup;

    impl Lookup {
        pub fn new() -> Self {
            Self
        }

        pub fn uid(&mut self, _: std::net::SocketAddr, _: std::net::SocketAddr) -> Option<u32> {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_below_the_descriptor_limit() {
        let l = Limits::for_descriptors(1024);
        assert_eq!(l.max_connections, 768);
        assert_eq!(Limits::for_descriptors(4096).max_connections, 3072);
        assert_eq!(Limits::for_descriptors(1 << 20).max_connections, 4096);
        assert_eq!(Limits::for_descriptors(256).max_connections, 32);
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let limits = Limits {
            header_timeout: Duration::from_secs(1),
            max_connections: 2,
            max_per_foreign_user: 1,
        };
        let table: Arc<Connections> = Arc::default();
        let (Admit::Yes(a), Admit::Yes(b)) =
            (admit(&table, &limits, None), admit(&table, &limits, None))
        else {
            panic!("two fit");
        };
        let a = Arc::clone(&a.slot);
        b.slot.busy.store(1, Ordering::Release);
        let Admit::Yes(c) = admit(&table, &limits, None) else {
            panic!("a third fits in place of the idle one");
        };
        assert!(a.evicted.load(Ordering::Acquire), "the idle one goes");
        assert!(
            !b.slot.evicted.load(Ordering::Acquire),
            "the busy one stays"
        );
        c.slot.busy.store(1, Ordering::Release);
        assert!(
            matches!(admit(&table, &limits, None), Admit::Busy),
            "all busy: refused"
        );
    }

    #[test]
    fn another_user_gets_a_few_connections_only() {
        let limits = Limits {
            header_timeout: Duration::from_secs(1),
            max_connections: 100,
            max_per_foreign_user: 2,
        };
        let table: Arc<Connections> = Arc::default();
        let held: Vec<_> = (0..2)
            .filter_map(|_| match admit(&table, &limits, Some(4242)) {
                Admit::Yes(a) => Some(a),
                _ => None,
            })
            .collect();
        held.iter()
            .for_each(|a| a.slot.busy.store(1, Ordering::Release));
        assert_eq!(held.len(), 2);
        assert!(matches!(admit(&table, &limits, Some(4242)), Admit::Busy));
        assert!(
            matches!(admit(&table, &limits, Some(4243)), Admit::Yes(_)),
            "another user"
        );
        assert!(
            matches!(admit(&table, &limits, None), Admit::Yes(_)),
            "the agent's user"
        );
    }

    #[tokio::test]
    async fn the_peer_of_a_local_connection_is_this_user() -> std::io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?;
        let _client = TcpStream::connect(local).await?;
        let (_server, peer) = listener.accept().await?;
        let uid = peer::Lookup::new().uid(local, peer);
        if cfg!(target_os = "linux") {
            assert_eq!(uid, Some(euid()));
        }
        Ok(())
    }
}
