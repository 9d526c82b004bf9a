//! One request: find its route, send it to the route's current backend, stream the answer back;
//! hand upgraded connections (WebSockets) to a tunnel that keeps the backend busy until it ends.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::body::Body;
use crate::page::{self, TargetState};
use crate::table::{InFlight, Route};
use crate::{Shared, host};

/// What a request's connection knows about itself.
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    pub(crate) https: bool,
    /// Set on a service's own public port: every request goes to this route, whatever its Host.
    pub(crate) pinned: Option<Arc<Route>>,
    /// The connection's place in the connection limit.
    pub(crate) slot: std::sync::Mutex<Option<crate::serve::Slot>>,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

pub(crate) async fn handle(
    shared: &Shared,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
) -> Response<Body> {
    // The authority a request names: HTTP/2's `:authority` or an absolute-form target come in
    // the URI; otherwise the one Host header (RFC 9112 §3.2).
    let authority = match req.uri().authority() {
        Some(a) => a.as_str().to_owned(),
        None => {
            let mut hosts = req.headers().get_all(header::HOST).iter();
            match (hosts.next(), hosts.next()) {
                (Some(h), None) => match h.to_str() {
                    Ok(h) => h.to_owned(),
                    Err(_) => return page::bad_request("The Host header is not text."),
                },
                (Some(_), Some(_)) => {
                    return page::bad_request("The request has more than one Host header.");
                }
                (None, _) => {
                    return page::bad_request(
                        "The request has no Host header: the router routes by name.",
                    );
                }
            }
        }
    };
    let route = match &conn.pinned {
        Some(r) => Arc::clone(r),
        None => {
            let Some(name) = host::request_name(&authority) else {
                return page::bad_request(&format!("{authority:?} is not a host name."));
            };
            let table = shared.table.load();
            match table.by_name.get(&name) {
                Some(r) => Arc::clone(r),
                None => {
                    let mut known: Vec<String> = table.by_name.keys().cloned().collect();
                    known.sort();
                    return page::unknown_name(&name, &known);
                }
            }
        }
    };
    if req.method() == Method::CONNECT {
        return page::html(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not a forward proxy",
            "<p>The router sends requests to your apps by name; it does not tunnel CONNECT.</p>",
            false,
        );
    }
    let Some(hold) = route.acquire() else {
        return page::not_serving(route.key(), &shared.state_of(&route), None);
    };

    let upgrade = wants_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    parts.uri = match Uri::builder()
        .scheme("http")
        .authority(hold.backend.authority.clone())
        .path_and_query(path)
        .build()
    {
        Ok(u) => u,
        Err(_) => return page::bad_request("The request's path is not valid."),
    };
    let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(v) = upgrade_value.filter(|_| upgrade) {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, v);
    }
    if (parts.version == Version::HTTP_2 || !parts.headers.contains_key(header::HOST))
        && let Ok(v) = HeaderValue::from_str(&authority)
    {
        parts.headers.insert(header::HOST, v);
    }
    parts.version = Version::HTTP_11;
    forwarded_headers(&mut parts.headers, conn, &authority);

    let sent = shared
        .client
        .request(Request::from_parts(parts, body))
        .await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => {
            let upstream = hold.backend.addr;
            drop(hold);
            if e.is_connect() {
                return page::not_serving(route.key(), &shared.state_of(&route), Some(upstream));
            }
            tracing::debug!("{}: upstream {upstream}: {e:?}", route.key());
            return page::bad_gateway(
                route.key(),
                &format!(
                    "The connection to its web service on {upstream} broke before it answered."
                ),
            );
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return page::bad_gateway(route.key(), "It switched protocols without being asked to.");
        };
        let server_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel(
            client_upgrade,
            server_upgrade,
            hold.into_tunnel(),
            conn.take_slot(),
        ));
        let (mut parts, _) = resp.into_parts();
        let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
        strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(v) = upgrade_value {
            parts.headers.insert(header::UPGRADE, v);
        }
        return Response::from_parts(parts, Body::empty());
    }
    strip_hop_by_hop(resp.headers_mut());
    resp.map(|inner| Body::Upstream {
        inner,
        hold: Some(hold),
        active: None,
    })
}

impl Shared {
    fn state_of(&self, route: &Route) -> TargetState {
        match &self.status {
            Some(s) => s.state(route.key()),
            None if route.upstream().is_none() => TargetState::NoWebService,
            None => TargetState::Running,
        }
    }
}

async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    server: hyper::upgrade::OnUpgrade,
    hold: InFlight,
    _slot: Option<crate::serve::Slot>,
) {
    let (client, server) = tokio::join!(client, server);
    let (Ok(client), Ok(server)) = (client, server) else {
        return;
    };
    let (mut client_read, mut client_write) = tokio::io::split(TokioIo::new(client));
    let (mut server_read, mut server_write) = tokio::io::split(TokioIo::new(server));
    // Either side ending ends the tunnel (as a WebSocket's close does); a half-open upgraded
    // connection would otherwise hold the old backend until the drain deadline.
    tokio::select! {
        _ = tokio::io::copy(&mut client_read, &mut server_write) => {}
        _ = tokio::io::copy(&mut server_read, &mut client_write) => {}
        () = hold.backend.cut() => {}
    }
    let closing = async {
        let _ = server_write.shutdown().await;
        let _ = client_write.shutdown().await;
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), closing).await;
}

fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes what describes one connection rather than the message (RFC 9110 §7.6.1), including
/// headers the Connection header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// The client as the router saw it. Values a client sent itself are replaced, not appended to:
/// the router is the first hop, so anything before it would be a claim nobody checked.
fn forwarded_headers(headers: &mut HeaderMap, conn: &ConnInfo, authority: &str) {
    if let Ok(v) = HeaderValue::from_str(&conn.peer.ip().to_string()) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if conn.https { "https" } else { "http" }),
    );
    match HeaderValue::from_str(authority) {
        Ok(v) => {
            headers.insert(X_FORWARDED_HOST, v);
        }
        Err(_) => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn forwarded_headers_replace_what_the_client_claimed() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        let conn = ConnInfo {
            peer: SocketAddr::from(([127, 0, 0, 1], 5000)),
            https: true,
            pinned: None,
            slot: std::sync::Mutex::new(None),
        };
        forwarded_headers(&mut h, &conn, "shop.localhost:7443");
        assert_eq!(h[X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_HOST], "shop.localhost:7443");
    }
}
