//! Upstream servers, a router on port 0 and clients for the router's tests.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use homeport_router::{Listen, LocalCa, Options, RouteKey, RouteSpec, Router, Status};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// How long any one thing a test waits for may take on a busy machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn spec(app: &str, env: &str, extra: &[&str], upstream: Option<SocketAddr>) -> RouteSpec {
    let mut names = homeport_router::host::default_names(app, env);
    names.extend(extra.iter().map(|n| n.to_ascii_lowercase()));
    RouteSpec {
        key: RouteKey::new(app, env),
        names,
        upstream,
    }
}

pub async fn wait_for(mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < end,
            "condition not met in {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An address nothing listens on.
pub async fn free_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

pub struct TestRouter {
    pub router: Router,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
}

impl TestRouter {
    pub async fn start(opts: Options, status: Option<Arc<dyn Status>>) -> Self {
        let router = Router::new(opts, status, None).expect("router");
        let http = listen(&router, Listen::Http).await;
        Self {
            router,
            http,
            https: None,
        }
    }

    pub async fn start_tls(opts: Options, ca: Arc<LocalCa>) -> Self {
        let router = Router::new(opts, None, Some(ca)).expect("router");
        let http = listen(&router, Listen::Http).await;
        let https = listen(&router, Listen::Https).await;
        Self {
            router,
            http,
            https: Some(https),
        }
    }

    /// A reqwest client that resolves `names` to the router, as a browser resolves *.localhost.
    pub fn client(&self, names: &[&str]) -> reqwest::Client {
        let mut b = reqwest::Client::builder().no_proxy();
        for n in names {
            b = b.resolve(n, self.http);
        }
        b.build().expect("client")
    }
}

async fn listen(router: &Router, listen: Listen) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let router = router.clone();
    tokio::spawn(async move { router.serve(l, listen, std::future::pending()).await });
    addr
}

/// Sends `request` as written on a new connection and reads until the router closes it or the
/// response is complete: (status, head, body).
pub async fn raw(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(request.as_bytes()).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let read = tokio::time::timeout(DEADLINE, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if complete(&got) {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no complete answer to {request:.80?}");
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .is_some_and(|n| body.len() >= n)
}

/// A keep-alive HTTP/1 and HTTP/2 server that says who it is and what it saw.
pub struct Upstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
    holding: Arc<AtomicU64>,
    /// Lets `/stream` send its second chunk and `/hold` answer.
    pub release: Arc<Notify>,
}

impl Upstream {
    pub async fn start(tag: &'static str) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let hits = Arc::new(AtomicU64::new(0));
        let holding = Arc::new(AtomicU64::new(0));
        let release = Arc::new(Notify::new());
        let (h, hold, rel) = (
            Arc::clone(&hits),
            Arc::clone(&holding),
            Arc::clone(&release),
        );
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                let (h, hold, rel) = (Arc::clone(&h), Arc::clone(&hold), Arc::clone(&rel));
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        upstream_answer(
                            tag,
                            req,
                            Arc::clone(&h),
                            Arc::clone(&hold),
                            Arc::clone(&rel),
                        )
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
                });
            }
        });
        Self {
            addr,
            hits,
            holding,
            release,
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn holding(&self) -> u64 {
        self.holding.load(Ordering::SeqCst)
    }
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn upstream_answer(
    tag: &'static str,
    req: http::Request<Incoming>,
    hits: Arc<AtomicU64>,
    holding: Arc<AtomicU64>,
    release: Arc<Notify>,
) -> Result<http::Response<UpBody>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let seen = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut b = http::Response::builder()
        .header("x-upstream", tag)
        .header(
            "x-seen-path",
            req.uri().path_and_query().map_or("/", |p| p.as_str()),
        )
        .header("x-seen-host", seen("host"))
        .header("x-seen-forwarded-for", seen("x-forwarded-for"))
        .header("x-seen-forwarded-proto", seen("x-forwarded-proto"))
        .header("x-seen-forwarded-host", seen("x-forwarded-host"));
    let body: UpBody = match req.uri().path() {
        "/stream" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"first\n"))))
                    .await;
                release.notified().await;
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"second\n"))))
                    .await;
            });
            b = b.header("content-type", "text/plain");
            BodyExt::boxed(StreamBody::new(tokio_stream_from(rx)))
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    n += d.len() as u64;
                }
            }
            Full::new(Bytes::from(n.to_string())).boxed()
        }
        "/hold" => {
            holding.fetch_add(1, Ordering::SeqCst);
            release.notified().await;
            holding.fetch_sub(1, Ordering::SeqCst);
            Full::new(Bytes::from(format!("{tag} held"))).boxed()
        }
        _ => Full::new(Bytes::from_static(tag.as_bytes())).boxed(),
    };
    Ok(b.body(body).expect("response"))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A WebSocket server that echoes each text message prefixed with its tag.
pub struct WsEcho {
    pub addr: SocketAddr,
}

impl WsEcho {
    pub async fn start(tag: &'static str) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                        return;
                    };
                    while let Some(Ok(m)) = ws.next().await {
                        if m.is_text() {
                            let text = format!("{tag}: {}", m.into_text().expect("text"));
                            if ws.send(text.into()).await.is_err() {
                                return;
                            }
                        } else if m.is_close() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr }
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket client connected through the router to `name`.
pub async fn ws_connect(router: SocketAddr, name: &str) -> Ws {
    let tcp = tokio::net::TcpStream::connect(router)
        .await
        .expect("connect");
    let url = format!("ws://{name}:{}/ws", router.port());
    let (ws, resp) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("upgrade");
    assert_eq!(resp.status(), 101);
    ws
}

/// A TLS connection to the router's HTTPS listener for `name`, trusting only `ca`.
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(std::io::Error::other)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let server_name =
        rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(std::io::Error::other)?;
    connector.connect(server_name, tcp).await
}
