//! `homeport top` in a real terminal (tmux): it shows every service, follows the selected one's
//! log, and its keys restart and stop services — production only after a `y`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use homeport_types::ServiceState;

use crate::util::*;

const CONFIG: &str = r#"[agent]
sample_every = "1s"

[apps.shop.env.production]
autostart = true

[apps.shop.env.production.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
health = { http = "/health", interval = "200ms" }

[apps.shop.env.beta]
autostart = true

[apps.shop.env.beta.services.worker]
command = ["@FIXTURE@", "--lines", "3", "--line-bytes", "40"]
"#;

struct Tmux<'a> {
    socket: &'a Path,
}

impl Tmux<'_> {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(self.socket)
            .args(args)
            .output()
            .expect("tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "top", keys]);
    }

    /// Waits until the screen satisfies `pred`; returns it.
    fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the screen never showed {what}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn top_shows_services_follows_a_log_and_acts_on_keys() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is missing: ./scripts/setup.sh --browser installs it");
    }
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    env.wait_service("shop/production/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    env.wait_service("shop/beta/worker", "runs", |s| {
        s.state == ServiceState::Running
    });

    let socket = env.dir.path().join("tmux.sock");
    let tmux = Tmux { socket: &socket };
    let command = format!(
        "env -i HOME={home} TERM=xterm-256color PATH=/usr/bin:/bin {bin} --config {config} top",
        home = env.dir.path().display(),
        bin = homeport_bin().display(),
        config = env.config.display()
    );
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "130",
        "-y",
        "32",
        &command,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let screen = tmux.wait("both services with their state", |s| {
        s.contains("shop/production/web") && s.contains("shop/beta/worker") && s.contains("healthy")
    });
    assert!(
        screen.contains("RESTARTS") && screen.contains("MEMORY"),
        "{screen}"
    );
    // The first service's log is followed from the start.
    tmux.wait("the log of the first service", |s| {
        s.contains(" log of shop/")
    });

    // Select beta's worker (the list is sorted as the agent sends it: find its row), follow its
    // log, restart it: no question asked outside production.
    let rows: Vec<String> = env
        .status()
        .services
        .iter()
        .map(|s| s.key.to_string())
        .collect();
    let worker = rows
        .iter()
        .position(|k| k == "shop/beta/worker")
        .expect("worker row");
    let web = rows
        .iter()
        .position(|k| k == "shop/production/web")
        .expect("web row");
    for _ in 0..rows.len() {
        tmux.keys("k");
    }
    for _ in 0..worker {
        tmux.keys("j");
    }
    tmux.keys("Enter");
    tmux.wait("the worker's log followed", |s| {
        s.contains("log of shop/beta/worker") && s.contains("line 0000000002")
    });
    let pid = service(&env.status(), "shop/beta/worker").pid;
    tmux.keys("r");
    env.wait_service("shop/beta/worker", "restarted", |s| {
        s.state == ServiceState::Running && s.pid.is_some() && s.pid != pid
    });
    tmux.wait("the restart's outcome", |s| {
        s.contains("restart shop/beta/worker: done")
    });

    // Stop it with x.
    tmux.keys("x");
    env.wait_service("shop/beta/worker", "is stopped", |s| {
        s.state == ServiceState::Stopped
    });
    tmux.wait("the worker stopped", |s| {
        s.contains("stop shop/beta/worker: done")
    });

    // Production asks first: a stop not confirmed does nothing; `y` goes ahead.
    for _ in 0..rows.len() {
        tmux.keys("k");
    }
    for _ in 0..web {
        tmux.keys("j");
    }
    tmux.keys("x");
    tmux.wait("the question", |s| {
        s.contains("in production? y to go ahead")
    });
    tmux.keys("n");
    tmux.wait("the cancel", |s| {
        s.contains("stop shop/production/web: cancelled")
    });
    assert_eq!(
        service(&env.status(), "shop/production/web").state,
        ServiceState::Healthy
    );
    tmux.keys("x");
    tmux.wait("the question again", |s| {
        s.contains("in production? y to go ahead")
    });
    tmux.keys("y");
    env.wait_service("shop/production/web", "is stopped", |s| {
        s.state == ServiceState::Stopped
    });
    // s starts it again.
    tmux.keys("s");
    env.wait_service("shop/production/web", "is healthy again", |s| {
        s.state == ServiceState::Healthy
    });

    let screen = tmux.screen();
    let artifacts = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("tests/artifacts");
    std::fs::write(artifacts.join("cli-top.txt"), &screen).expect("write capture");

    // q leaves, and gives the terminal back.
    tmux.keys("q");
    let start = Instant::now();
    while tmux.run(&["has-session", "-t", "top"]).status.success() {
        assert!(
            start.elapsed() < DEADLINE,
            "top did not quit:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    tmux.run(&["kill-server"]);
}
