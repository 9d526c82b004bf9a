//! The router with real clients (reqwest, hyper's own client connections, curl, a WebSocket
//! client, a TLS client trusting the local CA) against real upstream servers on loopback.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use homeport_router::{Listen, Options, RouteKey, TargetState};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use util::*;

#[tokio::test]
async fn names_route_to_their_environments_with_forwarded_headers() {
    let prod = Upstream::start("prod").await;
    let beta = Upstream::start("beta").await;
    let r = TestRouter::start(Options::default(), None).await;
    r.router.set_routes(&[
        spec("shop", "production", &["shop.test"], Some(prod.addr)),
        spec("shop", "beta", &[], Some(beta.addr)),
    ]);
    let client = r.client(&[
        "shop.localhost",
        "production.shop.localhost",
        "beta.shop.localhost",
        "shop.test",
    ]);
    for (name, tag) in [
        ("shop.localhost", "prod"),
        ("production.shop.localhost", "prod"),
        ("SHOP.Test", "prod"),
        ("beta.shop.localhost", "beta"),
    ] {
        let resp = client
            .get(format!("http://{name}:{}/hello?x=1", r.http.port()))
            .header("x-forwarded-for", "6.6.6.6")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{name}");
        let h = resp.headers().clone();
        assert_eq!(h["x-upstream"], tag, "{name}");
        assert_eq!(h["x-seen-path"], "/hello?x=1");
        assert_eq!(
            h["x-seen-forwarded-for"], "127.0.0.1",
            "a client's own claim is replaced"
        );
        assert_eq!(h["x-seen-forwarded-proto"], "http");
        assert_eq!(
            h["x-seen-forwarded-host"]
                .to_str()
                .expect("text")
                .to_ascii_lowercase(),
            format!("{}:{}", name.to_ascii_lowercase(), r.http.port())
        );
        assert_eq!(
            h["x-seen-host"]
                .to_str()
                .expect("text")
                .to_ascii_lowercase(),
            format!("{}:{}", name.to_ascii_lowercase(), r.http.port())
        );
        assert_eq!(resp.text().await.expect("body"), tag);
    }
}

#[tokio::test]
async fn an_unknown_name_gets_a_404_page_listing_the_names_served() {
    let prod = Upstream::start("prod").await;
    let r = TestRouter::start(Options::default(), None).await;
    r.router
        .set_routes(&[spec("shop", "production", &[], Some(prod.addr))]);
    let (status, head, body) = raw(
        r.http,
        "GET / HTTP/1.1\r\nHost: nope.localhost:1234\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    assert!(
        body.contains("No environment is called <code>nope.localhost</code>"),
        "{body}"
    );
    assert!(body.contains("<code>shop.localhost</code>"), "{body}");
    // The router's own address names nothing either, and never reaches an API.
    let (status, _, _) = raw(
        r.http,
        "GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(prod.hits(), 0);
}

#[tokio::test]
async fn hosts_that_name_nothing_are_refused_with_400() {
    let prod = Upstream::start("prod").await;
    let r = TestRouter::start(Options::default(), None).await;
    r.router
        .set_routes(&[spec("shop", "production", &[], Some(prod.addr))]);
    for (req, why) in [
        (
            "GET / HTTP/1.1\r\nHost: shop.localhost:99999\r\n\r\n",
            "not a host name",
        ),
        (
            "GET / HTTP/1.1\r\nHost: shop.localhost:80x\r\n\r\n",
            "not a host name",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a@shop.localhost\r\n\r\n",
            "not a host name",
        ),
        ("GET / HTTP/1.1\r\nHost: \r\n\r\n", "not a host name"),
        (
            "GET / HTTP/1.1\r\nHost: shop.localhost\r\nHost: evil.localhost\r\n\r\n",
            "more than one Host",
        ),
        ("GET / HTTP/1.0\r\n\r\n", "no Host header"),
    ] {
        let (status, _, body) = raw(r.http, req).await;
        assert_eq!(status, 400, "{req:?}: {body}");
        assert!(body.contains(why), "{req:?}: {body}");
    }
    // Any port in the Host is the router's own: the name alone decides.
    let (status, _, body) = raw(r.http, "GET / HTTP/1.1\r\nHost: shop.localhost:1\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "prod"));
    assert_eq!(prod.hits(), 1);
}

struct Says(TargetState);
impl homeport_router::Status for Says {
    fn state(&self, _: &RouteKey) -> TargetState {
        self.0.clone()
    }
}

#[tokio::test]
async fn a_stopped_environment_gets_a_page_that_says_how_to_start_it() {
    let closed = free_addr().await;
    let r = TestRouter::start(
        Options::default(),
        Some(Arc::new(Says(TargetState::Stopped))),
    )
    .await;
    r.router
        .set_routes(&[spec("shop", "beta", &[], Some(closed))]);
    let (status, _, body) = raw(
        r.http,
        "GET / HTTP/1.1\r\nHost: beta.shop.localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status, 503);
    assert!(
        body.contains("<title>shop/beta is stopped</title>"),
        "{body}"
    );
    assert!(body.contains("homeport start shop/beta"), "{body}");

    let r = TestRouter::start(
        Options::default(),
        Some(Arc::new(Says(TargetState::Down(
            "crash-looping: exited with code 3".into(),
        )))),
    )
    .await;
    r.router
        .set_routes(&[spec("shop", "beta", &[], Some(closed))]);
    let (status, _, body) = raw(
        r.http,
        "GET / HTTP/1.1\r\nHost: beta.shop.localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status, 503);
    assert!(body.contains("shop/beta is down"), "{body}");
    assert!(body.contains("crash-looping: exited with code 3"), "{body}");
    assert!(body.contains("homeport logs shop/beta"), "{body}");

    // No web service at all.
    let r = TestRouter::start(Options::default(), None).await;
    r.router.set_routes(&[spec("shop", "beta", &[], None)]);
    let (status, _, body) = raw(
        r.http,
        "GET / HTTP/1.1\r\nHost: beta.shop.localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status, 503);
    assert!(body.contains("shop/beta has no web service"), "{body}");
}

#[tokio::test]
async fn websockets_pass_through_and_hold_the_old_backend_until_they_close() {
    let ws = WsEcho::start("old").await;
    let next = Upstream::start("new").await;
    let r = TestRouter::start(Options::default(), None).await;
    r.router
        .set_routes(&[spec("chat", "production", &[], Some(ws.addr))]);
    let mut socket = ws_connect(r.http, "chat.localhost").await;
    socket
        .send(tokio_tungstenite::tungstenite::Message::text("hello"))
        .await
        .expect("send");
    let echo = socket.next().await.expect("an answer").expect("a message");
    assert_eq!(echo.into_text().expect("text").as_str(), "old: hello");

    let route = r
        .router
        .route(&RouteKey::new("chat", "production"))
        .expect("route");
    let drain = route.flip(Some(next.addr)).expect("flipped");
    assert_eq!(
        drain.in_flight(),
        1,
        "the open WebSocket keeps the old backend busy"
    );
    // New requests go to the new backend; the WebSocket stays where it was.
    let (status, _, body) = raw(r.http, "GET / HTTP/1.1\r\nHost: chat.localhost\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "new"));
    socket
        .send(tokio_tungstenite::tungstenite::Message::text("still"))
        .await
        .expect("send");
    let echo = socket.next().await.expect("an answer").expect("a message");
    assert_eq!(echo.into_text().expect("text").as_str(), "old: still");

    let waiting = tokio::spawn(drain.wait(Duration::from_secs(120)));
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    // A browser's close: the closing handshake, then the connection ends.
    socket.close(None).await.expect("close");
    while let Some(Ok(_)) = socket.next().await {}
    drop(socket);
    let outcome = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("the drain ends once the WebSocket closed")
        .expect("join");
    assert!(outcome.drained, "{outcome:?}");
}

#[tokio::test]
async fn a_drain_deadline_closes_websockets_left_on_the_old_backend() {
    let ws = WsEcho::start("old").await;
    let next = Upstream::start("new").await;
    let r = TestRouter::start(Options::default(), None).await;
    r.router
        .set_routes(&[spec("chat", "production", &[], Some(ws.addr))]);
    let mut socket = ws_connect(r.http, "chat.localhost").await;
    let route = r
        .router
        .route(&RouteKey::new("chat", "production"))
        .expect("route");
    let outcome = route
        .flip(Some(next.addr))
        .expect("flipped")
        .wait(Duration::from_millis(200))
        .await;
    assert!(!outcome.drained);
    assert_eq!(outcome.tunnels_closed, 1);
    // The client sees its socket end.
    let end = tokio::time::timeout(DEADLINE, async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(m)) if m.is_close() => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the WebSocket was closed");
}

#[tokio::test]
async fn http2_with_prior_knowledge_and_over_tls() {
    let prod = Upstream::start("prod").await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Arc::new(homeport_router::LocalCa::load_or_create(dir.path()).expect("ca"));
    let r = TestRouter::start_tls(Options::default(), Arc::clone(&ca)).await;
    r.router
        .set_routes(&[spec("shop", "production", &["shop.test"], Some(prod.addr))]);

    // h2c, prior knowledge, through hyper's own HTTP/2 client.
    let tcp = tokio::net::TcpStream::connect(r.http)
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = http::Request::get(format!("http://shop.localhost:{}/h2", r.http.port()))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = send.send_request(req).await.expect("h2 response");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(
            resp.headers()["x-seen-host"],
            format!("shop.localhost:{}", r.http.port())
        );
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"prod");
    }

    // HTTPS: the certificate chains to the local CA for each name; ALPN picks HTTP/2.
    let https = r.https.expect("https listener");
    for name in ["shop.localhost", "shop.test"] {
        let tls = tls_connect(https, name, ca.cert_der())
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .expect("h2 over tls");
        tokio::spawn(conn);
        let req = http::Request::get(format!("https://{name}:{}/", https.port()))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = send.send_request(req).await.expect("response");
        assert_eq!(resp.headers()["x-seen-forwarded-proto"], "https");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"prod");
    }
    // A name the router does not serve gets no certificate.
    assert!(
        tls_connect(https, "bank.example", ca.cert_der())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn curl_speaks_http2_through_the_router() {
    let prod = Upstream::start("prod").await;
    let r = TestRouter::start(Options::default(), None).await;
    r.router
        .set_routes(&[spec("shop", "production", &[], Some(prod.addr))]);
    let url = format!("http://shop.localhost:{}/curl", r.http.port());
    let resolve = format!("shop.localhost:{}:127.0.0.1", r.http.port());
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_version}",
            &url,
        ])
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text, "prod\n2");
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let up = Upstream::start("prod").await;
    let r = TestRouter::start(Options::default(), None).await;
    r.router
        .set_routes(&[spec("shop", "production", &[], Some(up.addr))]);
    let client = r.client(&["shop.localhost"]);
    // The first chunk arrives while the upstream is still holding back the second.
    let mut resp = client
        .get(format!("http://shop.localhost:{}/stream", r.http.port()))
        .send()
        .await
        .expect("request");
    let first = tokio::time::timeout(DEADLINE, resp.chunk())
        .await
        .expect("first chunk in time")
        .expect("chunk")
        .expect("some");
    assert_eq!(&first[..], b"first\n");
    up.release.notify_one();
    let rest = resp.text().await.expect("rest");
    assert_eq!(rest, "second\n");

    // 8 MiB up, counted by the upstream as it arrives.
    let big = vec![7u8; 8 << 20];
    let resp = client
        .post(format!("http://shop.localhost:{}/upload", r.http.port()))
        .body(big)
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.text().await.expect("body"), (8u64 << 20).to_string());
}

/// One kept-alive connection, a request every 10 ms, and 20 flips between two upstreams: no
/// request fails, and every request sent after a flip returned is answered by the new upstream.
#[tokio::test]
async fn a_kept_alive_connection_follows_every_flip_on_its_next_request() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let r = TestRouter::start(Options::default(), None).await;
    r.router
        .set_routes(&[spec("shop", "production", &[], Some(a.addr))]);
    let route = r
        .router
        .route(&RouteKey::new("shop", "production"))
        .expect("route");

    let tcp = tokio::net::TcpStream::connect(r.http)
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("handshake");
    let conn_done = Arc::new(AtomicBool::new(false));
    {
        let done = Arc::clone(&conn_done);
        tokio::spawn(async move {
            let _ = conn.await;
            done.store(true, Ordering::SeqCst);
        });
    }
    let expected = Arc::new(std::sync::Mutex::new("a"));
    let generation = Arc::new(AtomicU64::new(0));
    let (ok, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let host = format!("shop.localhost:{}", r.http.port());
    let client = {
        let (expected, generation, ok, wrong, stop) = (
            Arc::clone(&expected),
            Arc::clone(&generation),
            Arc::clone(&ok),
            Arc::clone(&wrong),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                // What must answer: the upstream current when the request is sent.
                let (gen_before, want) = (
                    generation.load(Ordering::SeqCst),
                    *expected.lock().expect("lock"),
                );
                let req = http::Request::get("/tick")
                    .header("host", &host)
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                match send.send_request(req).await {
                    Ok(resp) => {
                        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                        match body {
                            Ok(b) if b == want.as_bytes() => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            // A flip that began while this request was on its way may let the
                            // old one answer it; only a request sent after it must not.
                            Ok(_) if generation.load(Ordering::SeqCst) != gen_before => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            other => {
                                wrong.fetch_add(1, Ordering::SeqCst);
                                failures.push(format!("{other:?} instead of {want}"));
                            }
                        }
                    }
                    Err(e) => {
                        wrong.fetch_add(1, Ordering::SeqCst);
                        failures.push(e.to_string());
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            failures
        })
    };
    for i in 0..20 {
        let before = ok.load(Ordering::SeqCst);
        wait_for(|| ok.load(Ordering::SeqCst) >= before + 3).await;
        let (next, name) = if i % 2 == 0 {
            (b.addr, "b")
        } else {
            (a.addr, "a")
        };
        generation.fetch_add(1, Ordering::SeqCst);
        let drain = route.flip(Some(next)).expect("flipped");
        *expected.lock().expect("lock") = name;
        generation.fetch_add(1, Ordering::SeqCst);
        let outcome = drain.wait(DEADLINE).await;
        assert!(outcome.drained, "{outcome:?}");
    }
    assert!(!conn_done.load(Ordering::SeqCst), "all on one connection");
    stop.store(true, Ordering::SeqCst);
    let failures = client.await.expect("client");
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(wrong.load(Ordering::SeqCst), 0);
    assert!(ok.load(Ordering::SeqCst) >= 60);
    assert!(
        a.hits() > 20 && b.hits() > 20,
        "both answered: {} {}",
        a.hits(),
        b.hits()
    );
}

#[tokio::test]
async fn a_flip_waits_for_requests_in_flight_on_the_old_backend() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let r = TestRouter::start(Options::default(), None).await;
    r.router
        .set_routes(&[spec("shop", "production", &[], Some(a.addr))]);
    let client = r.client(&["shop.localhost"]);
    let url = format!("http://shop.localhost:{}/hold", r.http.port());
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.get(url).send().await.expect("request").text().await }
    });
    wait_for(|| a.holding() == 1).await;
    let drain = r
        .router
        .route(&RouteKey::new("shop", "production"))
        .expect("route")
        .flip(Some(b.addr))
        .expect("flipped");
    assert_eq!(drain.in_flight(), 1);
    let waiting = tokio::spawn(drain.wait(Duration::from_secs(120)));
    let (status, _, body) = raw(r.http, "GET / HTTP/1.1\r\nHost: shop.localhost\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "b"));
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "the held request still runs on a");
    a.release.notify_one();
    assert_eq!(slow.await.expect("join").expect("body"), "a held");
    let outcome = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("drained")
        .expect("join");
    assert!(outcome.drained);
}

#[tokio::test]
async fn absurd_headers_get_431_and_the_router_goes_on() {
    let up = Upstream::start("prod").await;
    let r = TestRouter::start(Options::default(), None).await;
    r.router
        .set_routes(&[spec("shop", "production", &[], Some(up.addr))]);
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: shop.localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let (status, _, _) = raw(r.http, &huge).await;
    assert_eq!(status, 431);
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (status, _, _) = raw(
        r.http,
        &format!("GET / HTTP/1.1\r\nHost: shop.localhost\r\n{many}\r\n"),
    )
    .await;
    assert_eq!(status, 431);
    let (status, _, body) = raw(r.http, "GET / HTTP/1.1\r\nHost: shop.localhost\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "prod"));
    assert_eq!(up.hits(), 1, "nothing oversized reached the upstream");
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_others_are_served_meanwhile() {
    let up = Upstream::start("prod").await;
    let opts = Options {
        header_read_timeout: Duration::from_secs(1),
        ..Options::default()
    };
    let r = TestRouter::start(opts, None).await;
    r.router
        .set_routes(&[spec("shop", "production", &[], Some(up.addr))]);
    // 200 clients that trickle a header byte by byte, and a few that send nothing at all.
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut s = tokio::net::TcpStream::connect(r.http)
            .await
            .expect("connect");
        if i % 10 != 0 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: shop.lo")
                .await
                .expect("write");
        }
        slow.push(s);
    }
    let trickle = tokio::spawn(async move {
        // Three header deadlines' worth of trickling, then see who is still connected.
        for _ in 0..30 {
            for s in &mut slow {
                let _ = s.write_all(b"c").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut closed = 0;
        for s in &mut slow {
            let mut rest = Vec::new();
            // EOF or a reset: the router closed it.
            if tokio::time::timeout(DEADLINE, s.read_to_end(&mut rest))
                .await
                .is_ok()
            {
                closed += 1;
            }
        }
        closed
    });
    for _ in 0..50 {
        let (status, _, body) = raw(r.http, "GET / HTTP/1.1\r\nHost: shop.localhost\r\n\r\n").await;
        assert_eq!((status, body.as_str()), (200, "prod"));
    }
    let closed = trickle.await.expect("join");
    assert_eq!(closed, 200, "every slow client was cut off");
    wait_for(|| r.router.open_connections() == 0).await;
}

#[tokio::test]
async fn at_the_limit_idle_clients_make_room_and_busy_ones_do_not() {
    let up = Upstream::start("prod").await;
    let opts = Options {
        max_connections: 20,
        ..Options::default()
    };
    let r = TestRouter::start(opts, None).await;
    r.router
        .set_routes(&[spec("shop", "production", &[], Some(up.addr))]);
    // 20 clients that connect and send nothing hold every place...
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(
            tokio::net::TcpStream::connect(r.http)
                .await
                .expect("connect"),
        );
    }
    wait_for(|| r.router.open_connections() == 20).await;
    // ...yet a real request gets through: the oldest idle one made room.
    let (status, _, body) = raw(r.http, "GET / HTTP/1.1\r\nHost: shop.localhost\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "prod"));
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, idle[0].read(&mut buf))
        .await
        .expect("the oldest was closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(r.router.open_connections() <= 20);
    drop(idle);
    wait_for(|| r.router.open_connections() == 0).await;

    // 20 clients each in the middle of a request: nobody to shed, a new client is closed.
    let mut busy = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(r.http)
            .await
            .expect("connect");
        s.write_all(b"GET /hold HTTP/1.1\r\nHost: shop.localhost\r\n\r\n")
            .await
            .expect("write");
        busy.push(s);
    }
    wait_for(|| up.holding() == 20).await;
    let mut extra = tokio::net::TcpStream::connect(r.http)
        .await
        .expect("connect");
    let n = tokio::time::timeout(DEADLINE, extra.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert_eq!(r.router.open_connections(), 20);
    up.release.notify_waiters();
    for mut s in busy {
        let mut answer = vec![0u8; 256];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut answer))
            .await
            .expect("answered")
            .expect("read");
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    }
}

#[tokio::test]
async fn a_pinned_listener_sends_everything_to_its_environment() {
    let a = Upstream::start("a").await;
    let r = TestRouter::start(Options::default(), None).await;
    r.router
        .set_routes(&[spec("shop", "production", &[], Some(a.addr))]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr");
    let router = r.router.clone();
    tokio::spawn(async move {
        router
            .serve(
                listener,
                Listen::Pinned(RouteKey::new("shop", "production")),
                std::future::pending(),
            )
            .await
    });
    let (status, _, body) = raw(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "a"));
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let up = Upstream::start("prod").await;
    let opts = Options {
        idle_timeout: Duration::from_millis(500),
        ..Options::default()
    };
    let r = TestRouter::start(opts, None).await;
    r.router
        .set_routes(&[spec("shop", "production", &[], Some(up.addr))]);
    let tcp = tokio::net::TcpStream::connect(r.http)
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    let ended = tokio::spawn(conn);
    let req = http::Request::get(format!("http://shop.localhost:{}/", r.http.port()))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = send.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    drop(resp);
    // The client keeps its side open; the router ends the connection (GOAWAY, then close).
    let outcome = tokio::time::timeout(DEADLINE, ended).await;
    assert!(outcome.is_ok(), "the idle connection was closed");
    wait_for(|| r.router.open_connections() == 0).await;
}
