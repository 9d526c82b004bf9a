//! The local API's guards, each tried over a real loopback connection.

use crate::util::*;

fn agent_port(env: &TestEnv) -> u16 {
    let ep: homeport_types::AgentEndpoint =
        serde_json::from_str(&read(&env.data.join("agent.json"))).expect("agent.json");
    ep.addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

fn token(env: &TestEnv) -> String {
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
