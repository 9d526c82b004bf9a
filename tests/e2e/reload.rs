//! Config edits applied while the agent runs: `homeport reload`, SIGHUP, and the file saved on
//! disk (as vim saves: a new file renamed over the old one). Only what changed is touched; a
//! file with a mistake changes nothing and says where the mistake is.

use std::path::Path;

use homeport_types::{Event, EventKind, ServiceState, StatusSnapshot, Target};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::*;

/// The `[agent]` section the test environment wrote (its ports and data folder), so that a
/// rewrite of the file keeps them.
fn agent_section(env: &TestEnv) -> String {
    let text = read(&env.config);
    let (agent, _) = text.split_once("\n\n").expect("an [agent] section");
    agent.to_owned()
}

/// Saves the config as editors that write a new file and rename it over the old one do.
fn save(env: &TestEnv, agent: &str, body: &str) {
    let text = format!(
        "{agent}\n\n{}",
        body.replace("@FIXTURE@", &fixture_bin().display().to_string())
    );
    let tmp = env.config.with_file_name(".homeport.toml.swp");
    std::fs::write(&tmp, text).expect("write the new version");
    std::fs::rename(&tmp, &env.config).expect("rename it over the config");
}

fn find<'a>(s: &'a StatusSnapshot, key: &str) -> Option<&'a homeport_types::ServiceStatus> {
    s.services.iter().find(|x| x.key.to_string() == key)
}

fn config_events(env: &TestEnv) -> Vec<Event> {
    env.block_on(env.client().event_history(
        &Target::All,
        &["config_applied", "config_rejected"],
        50,
    ))
    .expect("events")
}

/// The 1-based number of the line of `file` that contains `needle`.
fn line_of(file: &Path, needle: &str) -> usize {
    read(file)
        .lines()
        .position(|l| l.contains(needle))
        .expect("the line")
        + 1
}

const BEFORE: &str = r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
autostart = true
health = { http = "/health", interval = "100ms" }

[apps.a.env.prod.services.keep]
command = ["@FIXTURE@"]
autostart = true

[apps.a.env.prod.services.old]
command = ["@FIXTURE@"]
autostart = true
"#;

#[test]
fn reload_adds_removes_and_restarts_only_what_changed_and_refuses_a_broken_file() {
    let mut env = TestEnv::new(&format!("[agent]\nwatch_config = false\n\n{BEFORE}"));
    let agent = agent_section(&env);
    env.start_agent();
    env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    let keep = env.wait_service("a/prod/keep", "runs", |s| s.pid.is_some());
    env.wait_service("a/prod/old", "runs", |s| s.pid.is_some());
    let old_web_pid = service(&env.status(), "a/prod/web").pid;

    // Before any reload, a service added by hand is not known (what people met first).
    let new_port = env.ports[1];
    let after = format!(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{{port}}"]
port = {new_port}
autostart = true
health = {{ http = "/health", interval = "100ms" }}

[apps.a.env.prod.services.keep]
command = ["@FIXTURE@"]
autostart = true

[apps.a.env.prod.services.new]
command = ["@FIXTURE@"]
autostart = true
"#
    );
    save(&env, &agent, &after);
    assert_eq!(env.cli(&["start", "a/prod/new"]).status.code(), Some(4));

    let out = env.cli(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "added                 1: a/prod/new",
        "removed               1: a/prod/old",
        "restarted             1: a/prod/web",
        "unchanged             1: a/prod/keep",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }

    let s = env.status();
    assert!(find(&s, "a/prod/old").is_none(), "removed: {s:#?}");
    assert!(
        find(&s, "a/prod/new").is_some_and(|n| n.pid.is_some()),
        "added and started (autostart): {s:#?}"
    );
    assert_eq!(
        service(&s, "a/prod/keep").pid,
        keep.pid,
        "an unchanged service is not touched"
    );
    let web = env.wait_service("a/prod/web", "is healthy on its new port", |s| {
        s.port == Some(new_port) && s.state == ServiceState::Healthy
    });
    assert_ne!(web.pid, old_web_pid, "restarted");
    // The router follows the new port.
    let (code, body) = raw_http(
        env.router_port,
        "GET / HTTP/1.1\r\nHost: prod.a.localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200, "{body}");

    // A mistake: nothing changes, and the answer says where.
    let broken = after.replace(&format!("port = {new_port}"), "port = \"eighty\"");
    save(&env, &agent, &broken);
    let line = line_of(&env.config, "port = \"eighty\"");
    let out = env.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    let file = env.config.display().to_string();
    assert!(
        err.contains(&format!("{file}:{line}:"))
            && err.contains("apps.a.env.prod.services.web")
            && err.contains("nothing changed"),
        "{err}"
    );
    let s = env.status();
    assert_eq!(service(&s, "a/prod/web").pid, web.pid, "still running");
    assert_eq!(service(&s, "a/prod/web").port, Some(new_port));
    assert_eq!(service(&s, "a/prod/keep").pid, keep.pid);
    let rejected = s
        .agent
        .config_rejected
        .clone()
        .expect("the refusal in status");
    assert_eq!(
        (rejected.line, rejected.file.as_str()),
        (line, file.as_str())
    );
    // Events are written to state.db a moment after they happen.
    let events = env.wait_until("the refusal is recorded", || {
        let e = config_events(&env);
        matches!(e[0].kind, EventKind::ConfigRejected { .. }).then_some(e)
    });
    assert!(
        matches!(&events[0].kind, EventKind::ConfigRejected { line: l, field, .. }
            if *l == line && field.starts_with("apps.a.env.prod.services.web")),
        "{events:?}"
    );

    // Fixed again, through SIGHUP this time: the old service stays, a second one appears.
    let fixed = format!(
        "{after}\n[apps.a.env.prod.services.second]\ncommand = [\"@FIXTURE@\"]\nautostart = true\n"
    );
    save(&env, &agent, &fixed);
    let pid = env.agent_pid().expect("agent pid");
    kill(Pid::from_raw(pid as i32), Signal::SIGHUP).expect("SIGHUP");
    env.wait_until("SIGHUP applied the fixed file", || {
        let s = env.status();
        (s.agent.config_rejected.is_none()
            && find(&s, "a/prod/second").is_some_and(|x| x.pid.is_some()))
        .then_some(())
    });
    assert!(
        env.agent_pid().is_some_and(alive),
        "SIGHUP does not end the agent"
    );
    let s = env.status();
    assert_eq!(
        service(&s, "a/prod/web").pid,
        web.pid,
        "unchanged by the fix"
    );
    let events = env.wait_until("the fix is recorded", || {
        let e = config_events(&env);
        matches!(e[0].kind, EventKind::ConfigApplied { .. }).then_some(e)
    });
    assert!(
        matches!(&events[0].kind, EventKind::ConfigApplied { source, added, .. }
            if *source == homeport_types::ConfigSource::Signal
                && added == &vec![homeport_types::ServiceKey::new("a", "prod", "second")]),
        "{events:?}"
    );

    // An environment's setting applies from now on (the next deploy reads it) and restarts
    // nothing; an agent option set at start says it waits for the agent's restart.
    let settings = format!("{fixed}\n[apps.a.env.prod]\nhealth_stable = \"2s\"\n");
    save(&env, &format!("{agent}\nsample_every = \"10s\""), &settings);
    let out = env.cli(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "restarted             0",
        "Settings applied from now on (nothing restarted for them): a/prod: health_stable.",
        "Changed agent options (sample_every) apply when the agent restarts",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let s = env.status();
    assert_eq!(service(&s, "a/prod/web").pid, web.pid, "not restarted");
    assert_eq!(service(&s, "a/prod/keep").pid, keep.pid, "not restarted");
}

#[test]
fn a_saved_edit_applies_by_itself_and_a_broken_save_is_said_once() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@"]
autostart = true
"#,
    );
    let agent = agent_section(&env);
    env.start_agent();
    let web = env.wait_service("a/prod/web", "runs", |s| s.pid.is_some());

    let two = r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@"]
autostart = true

[apps.a.env.prod.services.worker]
command = ["@FIXTURE@"]
autostart = true
"#;
    save(&env, &agent, two);
    env.wait_until("the saved service runs", || {
        find(&env.status(), "a/prod/worker")
            .is_some_and(|w| w.pid.is_some())
            .then_some(())
    });
    assert_eq!(service(&env.status(), "a/prod/web").pid, web.pid);

    // A broken save, then the same mistake saved again (an editor that saves twice, or an
    // unrelated line changed): one event, one notice.
    let broken = two.replace(
        "[\"@FIXTURE@\"]\nautostart = true\n\n[apps",
        "[\"@FIXTURE@\"]\nautostart = 1\n\n[apps",
    );
    assert_ne!(broken, two);
    save(&env, &agent, &broken);
    let line = line_of(&env.config, "autostart = 1");
    let rejected = env.wait_until("the broken save is refused", || {
        env.status().agent.config_rejected
    });
    assert_eq!(rejected.line, line);
    assert_eq!(rejected.source, homeport_types::ConfigSource::Watch);
    save(&env, &agent, &format!("{broken}\n# still editing\n"));
    env.wait_until("the second broken save is looked at", || {
        (env.agent_log()
            .matches("not applied (as the file was saved)")
            .count()
            >= 2)
            .then_some(())
    });
    let s = env.status();
    assert_eq!(service(&s, "a/prod/web").pid, web.pid, "nothing changed");
    assert!(find(&s, "a/prod/worker").is_some_and(|w| w.pid.is_some()));

    // Fixed: the refusal clears; removing the worker stops it.
    let worker = service(&s, "a/prod/worker").pid.expect("worker pid");
    save(
        &env,
        &agent,
        "\n[apps.a.env.prod.services.web]\ncommand = [\"@FIXTURE@\"]\nautostart = true\n",
    );
    env.wait_until("the fixed file is applied", || {
        let s = env.status();
        (s.agent.config_rejected.is_none() && find(&s, "a/prod/worker").is_none()).then_some(())
    });
    env.wait_until("the removed worker's process is gone", || {
        (!alive(worker)).then_some(())
    });
    assert_eq!(service(&env.status(), "a/prod/web").pid, web.pid);
    // Events are recorded in order: once the fix is in state.db, so is any refusal before it.
    let events = env.wait_until("the fix is recorded", || {
        let e = config_events(&env);
        matches!(&e[0].kind, EventKind::ConfigApplied { removed, .. } if !removed.is_empty())
            .then_some(e)
    });
    let rejections = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ConfigRejected { .. }))
        .count();
    assert_eq!(rejections, 1, "the same mistake is said once: {events:?}");
}
