//! The local API's guards, each tried over a real loopback connection.

use crate::util::*;

pub fn agent_port(env: &TestEnv) -> u16 {
    let ep: homeport_types::AgentEndpoint =
        serde_json::from_str(&read(&env.data.join("agent.json"))).expect("agent.json");
    ep.addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

pub fn token(env: &TestEnv) -> String {
    read(&env.data.join("token")).trim().to_owned()
}

fn get(port: u16, path: &str, host: Option<&str>, auth: Option<&str>) -> (u16, String) {
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if let Some(h) = host {
        req.push_str(&format!("Host: {h}\r\n"));
    }
    if let Some(t) = auth {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    raw_http(port, &req)
}

const CONFIG: &str = r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@"]
"#;

#[test]
fn the_token_file_is_private_and_every_api_route_needs_it() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    let port = agent_port(&env);
    let host = format!("127.0.0.1:{port}");
    let mode = std::fs::metadata(env.data.join("token"))
        .expect("token")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let t = token(&env);
    assert_eq!(get(port, "/api/v1/status", Some(&host), Some(&t)).0, 200);
    assert_eq!(get(port, "/api/v1/status", Some(&host), None).0, 401);
    assert_eq!(
        get(port, "/api/v1/status", Some(&host), Some("wrong")).0,
        401
    );
    assert_eq!(get(port, "/api/v1/logs?target=a", Some(&host), None).0, 401);
    let body = r#"{"target":"a"}"#;
    let post = format!(
        "POST /api/v1/stop HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(raw_http(port, &post).0, 401);
    // The liveness probe needs nothing and says nothing.
    assert_eq!(
        get(port, "/livez", Some(&host), None),
        (200, "ok".to_owned())
    );
}

#[test]
fn foreign_host_headers_are_refused() {
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    let port = agent_port(&env);
    let t = token(&env);
    for good in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(
            get(port, "/api/v1/status", Some(&good), Some(&t)).0,
            200,
            "{good}"
        );
    }
    for bad in [
        "evil.test".to_owned(),
        format!("evil.test:{port}"),
        format!("localhost.evil.test:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("0.0.0.0:{port}"),
        "127.0.0.1".to_owned(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        String::new(),
    ] {
        let (code, body) = get(port, "/api/v1/status", Some(&bad), Some(&t));
        assert_eq!(code, 403, "Host {bad:?} was let in: {body}");
        assert!(body.contains("forbidden_host"), "{body}");
    }
    assert_eq!(
        get(port, "/api/v1/status", None, Some(&t)).0,
        403,
        "a request without Host"
    );
    assert_eq!(
        get(port, "/livez", Some("evil.test"), None).0,
        403,
        "even the liveness probe"
    );
}

#[test]
fn state_changes_from_another_origin_are_refused() {
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    let port = agent_port(&env);
    let t = token(&env);
    let body = r#"{"target":"a/prod/web"}"#;
    let post = |origin: &str, ctype: &str| {
        raw_http(
            port,
            &format!(
                "POST /api/v1/start HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {t}\r\n{origin}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    assert_eq!(
        post("Origin: http://evil.test\r\n", "application/json").0,
        403
    );
    assert_eq!(post("Origin: null\r\n", "application/json").0, 403);
    assert_eq!(
        post(
            &format!("Origin: http://localhost:{port}\r\n"),
            "application/json"
        )
        .0,
        200
    );
    assert_eq!(
        post("", "application/json").0,
        200,
        "the CLI sends no Origin"
    );
    assert_eq!(post("", "text/plain").0, 415, "JSON bodies only");
}

#[test]
fn the_tray_windows_origin_gets_cors_but_must_use_the_token() {
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    let port = agent_port(&env);
    let auth = format!("Bearer {}", token(&env));
    let app = ("Origin", "tauri://localhost");
    let header = |head: &str, name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };

    // The preflight carries no credentials and is answered for the app's origin only.
    let preflight = |origin: &str| {
        request(
            port,
            "OPTIONS",
            "/api/v1/start",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                ),
            ],
            None,
        )
    };
    let (code, head, _) = preflight("tauri://localhost");
    assert_eq!(code, 204, "{head}");
    assert_eq!(
        header(&head, "access-control-allow-origin"),
        "tauri://localhost"
    );
    assert!(header(&head, "access-control-allow-headers").contains("authorization"));
    let (code, head, _) = preflight("http://evil.test");
    assert_ne!(code, 204);
    assert_eq!(header(&head, "access-control-allow-origin"), "", "{head}");

    // With the token it reads and changes state, even marked cross-site (it is, to WebKit).
    let (code, head, body) = request(
        port,
        "GET",
        "/api/v1/status",
        &[
            app,
            ("Authorization", &auth),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        header(&head, "access-control-allow-origin"),
        "tauri://localhost"
    );
    let (code, _, body) = request(
        port,
        "POST",
        "/api/v1/start",
        &[app, ("Authorization", &auth)],
        Some(r#"{"target":"a/prod/web"}"#),
    );
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = request(
        port,
        "GET",
        "/api/v1/events/stream",
        &[app, ("Authorization", "Bearer wrong")],
        None,
    );
    assert_eq!(code, 401, "{body}");

    // A browser session may not pose as the app's window.
    let (cookie, secret) = crate::security::sign_in(port, &token(&env));
    let session = [
        ("Cookie", cookie.as_str()),
        ("X-Homeport-Session", secret.as_str()),
    ];
    let (code, _, _) = request(port, "GET", "/api/v1/status", &session, None);
    assert_eq!(code, 200, "the session works from the agent's own pages");
    let (code, _, body) = request(
        port,
        "GET",
        "/api/v1/status",
        &[app, session[0], session[1]],
        None,
    );
    assert_eq!(code, 403, "{body}");
}

#[test]
fn unknown_targets_are_404_and_bad_input_400() {
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    let port = agent_port(&env);
    let t = token(&env);
    let host = format!("127.0.0.1:{port}");
    let (code, body) = get(port, "/api/v1/logs?target=nope", Some(&host), Some(&t));
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no service matches nope"), "{body}");
    assert_eq!(
        get(port, "/api/v1/logs?target=a&grep=(", Some(&host), Some(&t)).0,
        400
    );
    assert_eq!(
        get(port, "/api/v1/logs?target=a//b", Some(&host), Some(&t)).0,
        400
    );
    assert_eq!(
        get(
            port,
            "/api/v1/logs?target=a&since=yesterday",
            Some(&host),
            Some(&t)
        )
        .0,
        400
    );
}

pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String, String) {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    std::io::Write::write_all(&mut s, req.as_bytes()).expect("write");
    let mut resp = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut resp);
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (code, head.to_owned(), body.to_owned())
}

#[test]
fn a_one_time_link_gives_a_browser_a_strict_session_once() {
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    let port = agent_port(&env);
    let t = token(&env);
    let auth = format!("Bearer {t}");
    let (code, _, body) = request(
        port,
        "POST",
        "/api/v1/sessions",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(code, 200, "{body}");
    let link: homeport_types::SignInLink = serde_json::from_str(&body).expect("link");
    let path = link
        .url
        .split_once(&format!("{port}"))
        .map(|(_, p)| p.to_owned())
        .expect("path");
    assert!(path.starts_with("/login?ticket="), "{path}");

    let (code, head, page) = request(port, "GET", &path, &[], None);
    assert_eq!(code, 200, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .expect("a cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "the sign-in page is under the policy too: {head}"
    );
    let secret = page
        .split_once(r#"name="homeport-session" content=""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(s, _)| s.to_owned())
        .expect("the session's secret");
    let cookie = cookie.split(';').next().expect("name=value").to_owned();
    assert_eq!(
        request(port, "GET", &path, &[], None).0,
        401,
        "the link works once"
    );
    let (js_code, _, js) = request(port, "GET", "/login.js", &[], None);
    assert_eq!(js_code, 200);
    assert!(js.contains("localStorage"), "{js}");

    let session = [
        ("Cookie", cookie.as_str()),
        ("X-Homeport-Session", secret.as_str()),
    ];
    assert_eq!(
        request(port, "GET", "/api/v1/status", &session, None).0,
        200
    );
    assert_eq!(
        request(
            port,
            "GET",
            "/api/v1/status",
            &[
                ("Cookie", "homeport_session=forged"),
                ("X-Homeport-Session", &secret)
            ],
            None
        )
        .0,
        401
    );
    let body = r#"{"target":"a/prod/web"}"#;
    let origin = format!("http://127.0.0.1:{port}");
    assert_eq!(
        request(port, "POST", "/api/v1/start", &session, Some(body)).0,
        403,
        "a browser session must prove its origin to change state"
    );
    assert_eq!(
        request(
            port,
            "POST",
            "/api/v1/start",
            &[session[0], session[1], ("Origin", &origin)],
            Some(body)
        )
        .0,
        200
    );
    assert_eq!(
        request(
            port,
            "GET",
            "/api/v1/status",
            &[session[0], session[1], ("Sec-Fetch-Site", "cross-site")],
            None
        )
        .0,
        403,
        "another site's page may not read through the browser's session"
    );
}

#[test]
fn event_streams_start_with_a_snapshot_and_check_their_origin() {
    use std::io::{BufRead, BufReader, Write};
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    let port = agent_port(&env);
    let t = token(&env);
    let auth = format!("Bearer {t}");
    assert_eq!(
        request(
            port,
            "GET",
            "/api/v1/events/stream",
            &[("Authorization", &auth), ("Origin", "http://evil.test")],
            None
        )
        .0,
        403
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(s, "GET /api/v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {auth}\r\n\r\n").expect("write");
    let mut lines = BufReader::new(s).lines().map_while(Result::ok);
    assert!(lines.next().is_some_and(|l| l.contains("200")));
    let mut next_event = || -> (String, String) {
        let mut name = String::new();
        for line in lines.by_ref() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                return (name, d.to_owned());
            }
        }
        panic!("the stream ended");
    };
    let (name, data) = next_event();
    assert_eq!(name, "snapshot");
    let snap: homeport_types::StatusSnapshot = serde_json::from_str(&data).expect("snapshot");
    assert_eq!(snap.services.len(), 1);
    let out = env.cli(&["start", "a/prod/web"]);
    assert!(out.status.success());
    let (name, data) = next_event();
    assert_eq!(name, "event");
    let ev: homeport_types::Event = serde_json::from_str(&data).expect("event");
    assert!(
        matches!(
            ev.kind,
            homeport_types::EventKind::State {
                to: homeport_types::ServiceState::Starting,
                ..
            }
        ),
        "{ev:?}"
    );
}

#[test]
fn metrics_need_the_token_and_describe_every_service() {
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    let port = agent_port(&env);
    let auth = format!("Bearer {}", token(&env));
    assert_eq!(request(port, "GET", "/metrics", &[], None).0, 401);
    env.cli(&["start", "a"]);
    let (code, _, body) = request(port, "GET", "/metrics", &[("Authorization", &auth)], None);
    assert_eq!(code, 200);
    assert!(
        body.contains(r#"homeport_service_up{app="a",env="prod",service="web"} 1"#),
        "{body}"
    );
    assert!(
        body.contains("# TYPE homeport_service_restarts_total counter"),
        "{body}"
    );
    assert!(body.contains("homeport_agent_rss_bytes "), "{body}");
}

#[test]
fn secrets_are_never_returned_or_logged() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--print-env", "API_KEY"]
secret_env = { API_KEY = "hunter2-very-secret" }
autostart = true
"#,
    );
    env.start_agent();
    env.wait_until("the service printed its env", || {
        read(&env.log_file("a", "prod", "web"))
            .contains("env API_KEY=")
            .then_some(())
    });
    let port = agent_port(&env);
    let auth = format!("Bearer {}", token(&env));
    for path in [
        "/api/v1/status",
        "/api/v1/config",
        "/api/v1/services/a/prod/web",
        "/api/v1/events",
        "/metrics",
    ] {
        let (code, _, body) = request(port, "GET", path, &[("Authorization", &auth)], None);
        assert_eq!(code, 200, "{path}: {body}");
        assert!(!body.contains("hunter2"), "{path} leaks the secret: {body}");
    }
    let (_, _, detail) = request(
        port,
        "GET",
        "/api/v1/services/a/prod/web",
        &[("Authorization", &auth)],
        None,
    );
    assert!(detail.contains(homeport_types::MASK), "{detail}");
    assert!(
        !env.agent_log().contains("hunter2"),
        "the agent's log leaks the secret"
    );
}

#[test]
fn settings_edits_are_validated_previewed_and_applied() {
    let mut env = TestEnv::new(
        r#"
# my services
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@   # keep this comment
autostart = true
health = { http = "/health", interval = "100ms" }

[apps.a.env.beta.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P1@
"#,
    );
    env.start_agent();
    env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == homeport_types::ServiceState::Healthy
    });
    let port = agent_port(&env);
    let auth = format!("Bearer {}", token(&env));
    let (_, _, body) = request(
        port,
        "GET",
        "/api/v1/config",
        &[("Authorization", &auth)],
        None,
    );
    let view: homeport_types::ConfigView = serde_json::from_str(&body).expect("view");
    let edit = |p: u16, rev: &str| {
        format!(
            r#"{{"revision":"{rev}","changes":[{{"kind":"port","app":"a","env":"prod","service":"web","port":{p}}}]}}"#
        )
    };

    // A clash is reported on the field, with the other service named, and nothing is written.
    let (code, _, body) = request(
        port,
        "POST",
        "/api/v1/config/preview",
        &[("Authorization", &auth)],
        Some(&edit(env.ports[1], &view.revision)),
    );
    assert_eq!(code, 200);
    let preview: homeport_types::ConfigPreview = serde_json::from_str(&body).expect("preview");
    assert!(!preview.valid);
    assert!(
        preview
            .problems
            .iter()
            .any(|p| p.field == "apps.a.env.prod.services.web.port"
                && p.message.contains("a/beta/web")),
        "{preview:?}"
    );
    let (code, _, body) = request(
        port,
        "POST",
        "/api/v1/config/apply",
        &[("Authorization", &auth)],
        Some(&edit(env.ports[1], &view.revision)),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("problems"), "{body}");

    // A stale revision is a conflict.
    let fresh = free_port();
    assert_eq!(
        request(
            port,
            "POST",
            "/api/v1/config/apply",
            &[("Authorization", &auth)],
            Some(&edit(fresh, "0000"))
        )
        .0,
        409
    );

    // A valid change: diff, write (comments kept), restart of just that service.
    let (_, _, body) = request(
        port,
        "POST",
        "/api/v1/config/preview",
        &[("Authorization", &auth)],
        Some(&edit(fresh, &view.revision)),
    );
    let preview: homeport_types::ConfigPreview = serde_json::from_str(&body).expect("preview");
    assert!(preview.valid, "{preview:?}");
    assert!(
        preview
            .diff
            .contains(&format!("+port = {fresh}   # keep this comment")),
        "{}",
        preview.diff
    );
    assert_eq!(
        preview.restart,
        vec![homeport_types::ServiceKey::new("a", "prod", "web")]
    );
    let (code, _, body) = request(
        port,
        "POST",
        "/api/v1/config/apply",
        &[("Authorization", &auth)],
        Some(&edit(fresh, &view.revision)),
    );
    assert_eq!(code, 200, "{body}");
    let text = read(&env.config);
    assert!(
        text.contains("# my services")
            && text.contains(&format!("port = {fresh}   # keep this comment")),
        "{text}"
    );
    let svc = env.wait_service("a/prod/web", "is healthy on its new port", |s| {
        s.port == Some(fresh) && s.state == homeport_types::ServiceState::Healthy
    });
    assert_eq!(svc.port, Some(fresh));
    // Its name follows it to the new port.
    let (code, body) = raw_http(
        env.router_port,
        "GET / HTTP/1.1\r\nHost: prod.a.localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        service(&env.status(), "a/beta/web").state,
        homeport_types::ServiceState::Stopped,
        "untouched"
    );

    // The refused edit and the applied one are one event each, located and counted.
    let events = env.wait_until("both edits are recorded", || {
        let e = env
            .block_on(env.client().event_history(
                &homeport_types::Target::All,
                &["config_applied", "config_rejected"],
                10,
            ))
            .expect("events");
        (e.len() >= 2).then_some(e)
    });
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, ["config_applied", "config_rejected"], "{events:?}");
    assert!(
        matches!(&events[1].kind, homeport_types::EventKind::ConfigRejected { field, .. }
            if field == "apps.a.env.prod.services.web.port"),
        "{events:?}"
    );
    assert!(
        matches!(&events[0].kind, homeport_types::EventKind::ConfigApplied { restarted, .. }
            if restarted == &vec![homeport_types::ServiceKey::new("a", "prod", "web")]),
        "{events:?}"
    );
}

#[test]
fn the_dashboard_is_served_under_a_strict_policy_and_only_with_a_session() {
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    let port = agent_port(&env);
    let (code, head, body) = request(port, "GET", "/", &[], None);
    assert_eq!(code, 401);
    assert!(body.contains("homeport dashboard"), "{body}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
}
