//! History: the agent samples its services, keeps the last hour in memory, writes roll-ups to
//! state.db, and answers `/api/v1/metrics` with them and with annotations of what happened.

use homeport_types::{AnnotationKind, MetricsReport, MetricsResolution};

use crate::api::{agent_port, token};
use crate::util::*;

const CONFIG: &str = r#"[agent]
sample_every = "1s"

[apps.shop.env.production]
autostart = true

[apps.shop.env.production.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
health = { http = "/health", interval = "200ms" }

[apps.shop.env.production.services.crasher]
command = ["@FIXTURE@", "--crash-after", "700", "--exit-code", "3"]
restart = { policy = "always", backoff_min = "100ms", backoff_max = "200ms", max_failures = "unlimited" }
"#;

fn report(env: &TestEnv, query: &str) -> (u16, String) {
    let port = agent_port(env);
    let req = format!(
        "GET /api/v1/metrics?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token(env)
    );
    raw_http(port, &req)
}

fn parsed(env: &TestEnv, query: &str) -> MetricsReport {
    let (status, body) = report(env, query);
    assert_eq!(status, 200, "{query}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn services_are_sampled_rolled_up_and_annotated() {
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    env.wait_service("shop/production/web", "is healthy", |s| {
        s.state == homeport_types::ServiceState::Healthy
    });

    // The last hour comes from memory, one point per sample: CPU and memory of the running
    // service, the latency of its passing probes, and its uptime.
    let last_hour = env.wait_until("three samples of web with a probe latency", || {
        let r = parsed(&env, "target=shop/production&range=1h");
        let web = r.services.iter().find(|s| s.key.service == "web")?;
        let with_latency = web.points.latency.iter().filter(|l| l.is_some()).count();
        let with_rss = web
            .points
            .rss
            .iter()
            .filter(|m| m.is_some_and(|m| m > 0))
            .count();
        (with_latency >= 3 && with_rss >= 3).then_some(r)
    });
    assert_eq!(last_hour.resolution, MetricsResolution::Raw);
    assert_eq!((last_hour.step, last_hour.sample_every), (1, 1));
    let web = last_hour
        .services
        .iter()
        .find(|s| s.key.service == "web")
        .expect("web");
    assert!(web.points.cpu.iter().any(Option::is_some), "{web:?}");
    let latency = web
        .points
        .latency
        .iter()
        .flatten()
        .copied()
        .fold(0.0, f32::max);
    assert!(
        latency > 0.0 && latency < 5_000.0,
        "a local probe answers in milliseconds: {latency} ms"
    );
    assert!(
        web.points.t.windows(2).all(|w| w[0] < w[1]),
        "points in time order: {:?}",
        web.points.t
    );

    // The crasher restarts again and again: marked on its chart with its exit code (one mark
    // that counts the rounds: history keeps a crash loop as a few rows), and down for part of
    // the time.
    let crashed = env.wait_until("two restarts of the crasher are annotated", || {
        let r = parsed(&env, "target=shop/production/crasher&range=1h");
        let restarts: u64 = r
            .annotations
            .iter()
            .filter(|a| a.kind == AnnotationKind::Restart)
            .map(|a| {
                a.label
                    .rsplit_once("(×")
                    .and_then(|(_, n)| n.trim_end_matches(')').parse().ok())
                    .unwrap_or(1)
            })
            .sum();
        let down = r.services[0].uptime.is_some_and(|u| u < 100.0);
        (restarts >= 2 && down).then_some(r)
    });
    let restart = crashed
        .annotations
        .iter()
        .find(|a| a.kind == AnnotationKind::Restart)
        .expect("a restart");
    assert!(
        restart.label.starts_with("exit code 3; restarted"),
        "{}",
        restart.label
    );
    assert_eq!(restart.subject.to_string(), "shop/production/crasher");
    assert!(
        crashed
            .annotations
            .iter()
            .any(|a| a.kind == AnnotationKind::AgentStarted),
        "the agent's start is on every chart: {:?}",
        crashed.annotations
    );
    assert_eq!(crashed.services.len(), 1);
    assert_eq!(crashed.envs.len(), 1, "the service's environment");
    assert!(
        crashed.envs[0].uptime.is_some_and(|u| u < 100.0),
        "the environment is down while its crasher is: {:?}",
        crashed.envs[0]
    );

    // Stopping the agent writes the minute in progress; the minute, ten-minute and hour rows
    // are all there, and the hour holds exactly what its minutes hold.
    env.stop_agent();
    let db = rusqlite::Connection::open(env.data.join("state.db")).expect("state.db");
    let count = |res: i64| -> i64 {
        db.query_row(
            "SELECT COUNT(*) FROM metric_rollups r JOIN metric_series s ON s.id = r.series
             WHERE s.name = 'shop/production/web' AND r.res = ?1",
            [res],
            |r| r.get(0),
        )
        .expect("count")
    };
    assert!(count(60) >= 1 && count(600) >= 1 && count(3600) >= 1);
    let sums = |res: i64| -> (i64, i64, i64, i64) {
        db.query_row(
            "SELECT SUM(cpu_n), SUM(rss_n), SUM(lat_sum), SUM(up_ms) FROM metric_rollups r
             JOIN metric_series s ON s.id = r.series
             WHERE s.name = 'shop/production/web' AND r.res = ?1",
            [res],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("sums")
    };
    assert_eq!(
        sums(60),
        sums(600),
        "the ten minutes are the sum of the minutes"
    );
    assert_eq!(
        sums(60),
        sums(3600),
        "the hour rows are the sum of the minutes"
    );
    assert!(sums(60).1 >= 3, "{:?}", sums(60));
    drop(db);

    // A new agent answers a day's range from the roll-ups: the samples of the first agent are
    // there, and its uptime comes from them.
    env.start_agent();
    let day = parsed(&env, "target=shop/production/web&range=24h");
    assert_eq!(day.resolution, MetricsResolution::Minute);
    assert_eq!(day.step, 60);
    let web = &day.services[0];
    assert!(
        web.points.rss.iter().any(Option::is_some),
        "the stored minutes: {web:?}"
    );
    assert!(web.uptime.is_some_and(|u| u > 50.0), "{:?}", web.uptime);
    let month = parsed(&env, "target=shop&range=30d");
    assert_eq!(month.resolution, MetricsResolution::Hour);
    assert_eq!(month.services.len(), 2);
}

#[test]
fn bad_requests_for_history_say_what_to_ask_instead() {
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    for (query, status, says) in [
        ("target=shop&range=500d", 400, "from 1m to 400d"),
        ("target=shop&range=soon", 400, "such as 1h, 24h, 7d or 30d"),
        (
            "target=shop&range=1h&resolution=5m",
            400,
            "raw, 1m, 10m, 1h or auto",
        ),
        ("target=shop&range=7d&resolution=raw", 400, "last hour only"),
        (
            "target=shop&range=30d&resolution=1m",
            400,
            "coarser resolution",
        ),
        ("target=shpo&range=1h", 404, "shpo"),
    ] {
        let (got, body) = report(&env, query);
        assert_eq!(got, status, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
    }
    let port = agent_port(&env);
    let (unauthenticated, _) = raw_http(
        port,
        &format!(
            "GET /api/v1/metrics?target=shop HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(unauthenticated, 401);
}

#[test]
fn sampling_can_be_turned_off() {
    let mut env = TestEnv::new(&CONFIG.replace("sample_every = \"1s\"", "sample_every = \"0s\""));
    env.start_agent();
    env.wait_service("shop/production/web", "is healthy", |s| {
        s.state == homeport_types::ServiceState::Healthy
    });
    // `status` still reads CPU and memory when asked.
    let web = env.wait_service("shop/production/web", "has its memory read", |s| {
        s.rss_bytes.is_some_and(|r| r > 0)
    });
    assert!(web.cpu_percent.is_some());
    let r = parsed(&env, "target=shop/production/web&range=1h");
    assert_eq!(r.sample_every, 0);
    assert_eq!(
        r.resolution,
        MetricsResolution::Minute,
        "no raw samples to show"
    );
    assert!(r.services[0].points.t.is_empty(), "{r:?}");
    let (code, body) = report(&env, "target=shop&range=1h&resolution=raw");
    assert_eq!(code, 200, "{body}");
}
