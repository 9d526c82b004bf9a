//! The router's own pages: for a name that routes nowhere, an environment that is not serving,
//! and a request that is not HTTP a router can route. Plain HTML with inline style only, no
//! script; the same words a person would get from `homeport status`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::Body;
use crate::table::RouteKey;

/// What the agent knows about an environment whose web service did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// Stopped by someone, or never started.
    Stopped,
    /// Starting, restarting or waiting out a backoff.
    Starting,
    /// Crashed, crash-looping or given up on; the words say which.
    Down(String),
    /// Running as far as the agent can tell.
    Running,
    /// The environment has no service with a port to send requests to.
    NoWebService,
}

pub(crate) fn html(
    status: StatusCode,
    title: &str,
    body_html: &str,
    refresh: bool,
) -> Response<Body> {
    let refresh = if refresh {
        "<meta http-equiv=\"refresh\" content=\"3\">"
    } else {
        ""
    };
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}\
<meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title>\
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}}\
h1{{font-size:1.4em}}code{{background:#f2f2f2;padding:.1em .3em;border-radius:3px}}\
footer{{margin-top:3em;color:#777;font-size:.85em}}</style></head>\
<body><h1>{t}</h1>{body_html}<footer>Homeport router</footer></body></html>\n",
        t = escape(title)
    );
    let mut resp = Response::new(Body::full(Bytes::from(page)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    h.insert("x-homeport-router", HeaderValue::from_static("page"));
    resp
}

pub(crate) fn unknown_name(name: &str, known: &[String]) -> Response<Body> {
    let mut body = format!(
        "<p>No environment is called <code>{}</code> here.</p>",
        escape(name)
    );
    if known.is_empty() {
        body.push_str(
            "<p>No app has a web service yet: give one a <code>port</code> in homeport.toml.</p>",
        );
    } else {
        body.push_str("<p>These names are served:</p><ul>");
        for n in known {
            body.push_str(&format!("<li><code>{}</code></li>", escape(n)));
        }
        body.push_str("</ul>");
    }
    html(StatusCode::NOT_FOUND, "Unknown name", &body, false)
}

pub(crate) fn not_serving(
    key: &RouteKey,
    state: &TargetState,
    upstream: Option<std::net::SocketAddr>,
) -> Response<Body> {
    let k = escape(&key.to_string());
    let start = format!("<p>Start it from the tray or with <code>homeport start {k}</code>.</p>");
    let logs = format!("<p>Its logs: <code>homeport logs {k}</code>.</p>");
    let (title, body, refresh) = match state {
        TargetState::Stopped => (format!("{key} is stopped"), start, false),
        TargetState::Starting => (
            format!("{key} is starting"),
            "<p>This page reloads until it answers.</p>".to_owned(),
            true,
        ),
        TargetState::Down(why) => (
            format!("{key} is down"),
            format!("<p>{}</p>{start}{logs}", escape(why)),
            false,
        ),
        TargetState::Running => (
            format!("{key} does not answer"),
            match upstream {
                Some(a) => format!(
                    "<p>Its web service runs but nothing answers on <code>{a}</code>.</p>{logs}"
                ),
                None => logs,
            },
            false,
        ),
        TargetState::NoWebService => (
            format!("{key} has no web service"),
            format!(
                "<p>None of its services has a <code>port</code> to send requests to, or several do: \
say which one with <code>web = \"SERVICE\"</code> in <code>[apps.{}.env.{}]</code>.</p>",
                escape(&key.app),
                escape(&key.env)
            ),
            false,
        ),
    };
    html(StatusCode::SERVICE_UNAVAILABLE, &title, &body, refresh)
}

pub(crate) fn bad_request(why: &str) -> Response<Body> {
    html(
        StatusCode::BAD_REQUEST,
        "Bad request",
        &format!("<p>{}</p>", escape(why)),
        false,
    )
}

pub(crate) fn bad_gateway(key: &RouteKey, why: &str) -> Response<Body> {
    html(
        StatusCode::BAD_GATEWAY,
        &format!("{key} did not answer"),
        &format!(
            "<p>{}</p><p>Its logs: <code>homeport logs {}</code>.</p>",
            escape(why),
            escape(&key.to_string())
        ),
        false,
    )
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        assert_eq!(escape("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
    }
}
