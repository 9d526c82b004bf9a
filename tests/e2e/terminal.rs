//! The CLI in a terminal and in scripts: colour on a pty and plain in a pipe, tables cut to the
//! terminal's width, completion in real shells, `show`, `logs` of everything, typo
//! suggestions, help, and the errors people meet first. Screens are captured with tmux into
//! tests/artifacts/.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use homeport_types::ServiceState;

use crate::util::*;

/// Two environments of one app: production (web with a secret and a health check, and a worker
/// that depends on it) and beta.
const SHOP: &str = r#"
[apps.shop.env.production]
autostart = true
databases = { main = "@HOME@/shop.db" }
backup = { keep_last = 3 }

[apps.shop.env.production.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--db", "{db.main}", "--print-env", "MODE"]
port = @P0@
env = { MODE = "live" }
secret_env = { STRIPE_KEY = "sk_live_very_secret" }
health = { http = "/health", interval = "200ms" }
restart = { policy = "always", max_failures = "unlimited" }

[apps.shop.env.production.services.worker]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P1@
depends_on = ["web"]
health = { tcp = true, interval = "200ms" }

[apps.shop.env.beta.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P2@
"#;

fn healthy(env: &TestEnv, key: &str) -> homeport_types::ServiceStatus {
    env.wait_service(key, "is healthy", |s| s.state == ServiceState::Healthy)
}

/// Runs `cmd` with stdout and stderr on a new pseudo-terminal `cols` wide (stdin stays null, as
/// in CI); returns the exit code and every byte the terminal received.
pub fn run_in_pty(mut cmd: Command, cols: u16) -> (Option<i32>, String) {
    let ws = nix::pty::Winsize {
        ws_row: 50,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).expect("openpty");
    let slave: OwnedFd = pty.slave;
    cmd.stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("spawn in pty");
    // Drop our copies of the slave (moved into the Command), so reading ends at the child's exit.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    // EIO once every holder of the slave has closed it: that is the end.
    let _ = master.read_to_end(&mut out);
    let status = child.wait().expect("wait");
    (status.code(), String::from_utf8_lossy(&out).into_owned())
}

fn has_colour(s: &str) -> bool {
    s.contains("\u{1b}[")
}

#[test]
fn colour_on_a_terminal_plain_in_a_pipe_and_as_asked() {
    let mut env = TestEnv::new(SHOP);
    env.start_agent();
    healthy(&env, "shop/production/web");
    healthy(&env, "shop/production/worker");

    // A terminal: coloured state words, production first, CRLF from the pty's line discipline.
    let (code, tty) = run_in_pty(env.command_with(&["status"]), 160);
    assert_eq!(code, Some(0), "{tty}");
    assert!(has_colour(&tty), "no colour on a terminal:\n{tty}");
    let plain = strip_ansi(&tty);
    // The agent's verdict comes first, then the table.
    assert!(
        plain.starts_with("Healthy: ") || plain.starts_with("Degraded: "),
        "{plain}"
    );
    let rows: Vec<&str> = plain.lines().skip(1).collect();
    assert!(rows[0].starts_with("SERVICE"), "{plain}");
    assert!(rows[1].starts_with("shop/production/web"), "{plain}");
    assert!(rows[2].starts_with("shop/production/worker"), "{plain}");
    assert!(
        rows[3].starts_with("shop/beta/web"),
        "production first:\n{plain}"
    );
    // Green for healthy: comfy-table writes it as a 256-colour index (10 = bright green).
    assert!(tty.contains("\u{1b}[38;5;10mhealthy"), "{tty:?}");

    // NO_COLOR and --color never win on a terminal.
    let mut no_color = env.command_with(&["status"]);
    no_color.env("NO_COLOR", "1");
    let (_, out) = run_in_pty(no_color, 160);
    assert!(!has_colour(&out), "NO_COLOR:\n{out:?}");
    let (_, out) = run_in_pty(env.command_with(&["--color", "never", "status"]), 160);
    assert!(!has_colour(&out), "--color never:\n{out:?}");

    // A pipe: plain unless asked.
    let piped = stdout(&env.cli(&["status"]));
    assert!(!has_colour(&piped), "{piped:?}");
    let forced = stdout(&env.cli(&["--color", "always", "status"]));
    assert!(
        has_colour(&forced),
        "--color always into a pipe:\n{forced:?}"
    );

    // Logs: each service's prefix in its own colour on a terminal.
    let (_, logs) = run_in_pty(
        env.command_with(&["logs", "shop/production", "-n", "50"]),
        160,
    );
    assert!(has_colour(&logs), "{logs:?}");
    assert!(!has_colour(&stdout(&env.cli(&[
        "logs",
        "shop/production",
        "-n",
        "5"
    ]))));
}

#[test]
fn a_wide_message_is_cut_to_the_terminal_but_not_in_a_pipe() {
    let mut env = TestEnv::new(
        r#"
[apps.shop.env.production.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
autostart = true
health = { http = "/health", interval = "200ms" }

[apps.shop.env.production.services.worker]
command = ["@FIXTURE@"]
depends_on = ["web"]
autostart = false
"#,
    );
    // A service holding the port makes the start fail with a long message naming the holder.
    let holder = std::net::TcpListener::bind(("127.0.0.1", env.ports[0])).expect("hold port");
    env.start_agent();
    env.wait_service("shop/production/web", "fails on the taken port", |s| {
        s.state == ServiceState::Failed && s.message.is_some()
    });
    let full = stdout(&env.cli(&["status"]));
    let long = full
        .lines()
        .find(|l| l.starts_with("shop/production/web"))
        .expect("row")
        .to_owned();
    assert!(long.chars().count() > 90, "the message is long: {long}");
    let (_, tty) = run_in_pty(env.command_with(&["status"]), 80);
    for line in strip_ansi(&tty).lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than the terminal: {line:?}"
        );
    }
    assert!(
        strip_ansi(&tty).contains('…'),
        "cut with an ellipsis:\n{tty}"
    );
    drop(holder);
}

/// What a person sees, kept as text captures of a tmux window in tests/artifacts/.
#[test]
fn screens_are_captured_with_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is missing: ./scripts/setup.sh --browser installs it");
    }
    let mut env = TestEnv::new(SHOP);
    env.start_agent();
    healthy(&env, "shop/production/web");
    healthy(&env, "shop/production/worker");
    let socket = env.dir.path().join("tmux.sock");
    let session = "homeport";
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(args)
            .output()
            .expect("tmux")
    };
    let bin_dir = homeport_bin().parent().expect("bin dir").to_path_buf();
    let shell_env = format!(
        "env -i HOME={home} TERM=xterm-256color PATH={bin}:/usr/bin:/bin HOMEPORT_CONFIG={config} bash --norc --noprofile",
        home = env.dir.path().display(),
        bin = bin_dir.display(),
        config = env.config.display()
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "120",
        "-y",
        "40",
        &shell_env,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let artifacts = artifacts_dir();
    let mut shots = Vec::new();
    let capture = |extra: &[&str]| {
        let mut args = vec!["capture-pane", "-p", "-t", session];
        args.extend_from_slice(extra);
        let cap = tmux(&args);
        format!(
            "{}{}",
            String::from_utf8_lossy(&cap.stdout),
            String::from_utf8_lossy(&cap.stderr)
        )
    };
    // Keys go to the shell only once it is reading them (a Ctrl-C before that ends it).
    let wait_for_prompt = || {
        let start = Instant::now();
        while !capture(&[]).trim_end().ends_with(['$', '#']) {
            assert!(start.elapsed() < DEADLINE, "no prompt:\n{}", capture(&[]));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for_prompt();
    for (name, command, wait_for) in [
        ("cli-status", "clear; homeport status", "shop/beta/web"),
        (
            "cli-show",
            "clear; homeport show shop/production/web",
            "recent events",
        ),
        ("cli-typo", "clear; homeport start shpo", "did you mean"),
        (
            "cli-logs-all",
            "clear; homeport logs -n 4",
            "shop/production/worker",
        ),
    ] {
        tmux(&["send-keys", "-t", session, command, "Enter"]);
        let start = Instant::now();
        let screen = loop {
            let text = capture(&[]);
            if text.contains(wait_for) {
                break text;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{name}: {wait_for:?} never appeared:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // Wait until the command is done (logs keeps following: stop it as a person would).
        if name == "cli-logs-all" {
            std::thread::sleep(Duration::from_millis(300));
        } else {
            wait_for_prompt();
        }
        let screen = if name == "cli-logs-all" {
            capture(&[])
        } else {
            screen
        };
        let coloured = capture(&["-e"]);
        assert!(
            coloured.contains("\u{1b}["),
            "{name}: no colour in the terminal"
        );
        std::fs::write(artifacts.join(format!("{name}.txt")), &screen).expect("write capture");
        std::fs::write(artifacts.join(format!("{name}.ansi")), &coloured).expect("write capture");
        shots.push(screen);
    }
    tmux(&["send-keys", "-t", session, "C-c", ""]);
    tmux(&["kill-server"]);
    assert!(shots[0].contains("SERVICE") && shots[0].contains("healthy"));
    assert!(shots[2].contains("no service matches shpo — did you mean shop?"));
}

fn artifacts_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    std::fs::create_dir_all(&dir).expect("tests/artifacts");
    dir
}

/// Drops ANSI escape sequences and the pty's carriage returns.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

#[test]
fn show_tells_everything_about_one_service_with_secrets_masked() {
    let mut env = TestEnv::new(SHOP);
    env.start_agent();
    healthy(&env, "shop/production/web");
    let out = env.cli(&["backup", "shop/production"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.cli(&["show", "shop/production/web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let log = env.log_file("shop", "production", "web");
    let port = env.ports[0].to_string();
    let field = |label: &str, value: &str| format!("{label:<11}  {value}");
    for needle in [
        "shop/production/web  healthy (pid ".to_owned(),
        format!("--port {port}"),
        field("cwd", ""),
        field("url", &format!("http://127.0.0.1:{port}/")),
        format!("GET http://127.0.0.1:{port}/health every 200ms"),
        "now healthy".to_owned(),
        field("restart", "always, backoff 500ms–1m, never gives up"),
        field("", "MODE=live"),
        "STRIPE_KEY=••••••".to_owned(),
        field("log file", &log.display().to_string()),
        field("release", "- (not deployed by Homeport)"),
        field("last backup", "1 at "),
        "stopped → starting".to_owned(),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in:\n{text}");
    }
    assert!(
        !text.contains("sk_live_very_secret"),
        "a secret leaked:\n{text}"
    );
    // The dependent names what it depends on; JSON carries the same facts.
    let worker = stdout(&env.cli(&["show", "shop/production/worker"]));
    assert!(
        worker.contains(&field("depends on", "shop/production/web")),
        "{worker}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&env.cli(&[
        "show",
        "shop/production/web",
        "--json",
    ])))
    .expect("json");
    assert_eq!(json["service"]["status"]["state"], "healthy");
    assert_eq!(json["last_backup"]["id"], 1);
    // A target with several services says which to name.
    let out = env.cli(&["show", "shop/production"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("homeport show shop/production/worker"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn logs_without_a_target_follow_every_service_with_its_name() {
    let mut env = TestEnv::new(SHOP);
    env.start_agent();
    healthy(&env, "shop/production/web");
    healthy(&env, "shop/production/worker");
    env.cli(&["start", "shop/beta"]);
    env.wait_service("shop/beta/web", "runs", |s| {
        s.state == ServiceState::Running
    });
    let mut child = env
        .command()
        .args(["logs", "-n", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("logs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // New lines from two environments arrive while it follows: requests to each web service,
    // sent until both are seen (the follower may begin after the first ones were written).
    let mut seen: Vec<&str> = Vec::new();
    let start = Instant::now();
    while seen.len() < 2 {
        for (i, port) in [env.ports[0], env.ports[2]].iter().enumerate() {
            // Beta has no health check: it may not listen yet; the next round tries again.
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", *port)) {
                let _ = std::io::Write::write_all(
                    &mut s,
                    format!("GET /followed-{i} HTTP/1.0\r\n\r\n").as_bytes(),
                );
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            for (key, i) in [("shop/production/web", 0), ("shop/beta/web", 1)] {
                if line.contains(&format!(" {key} out request"))
                    && line.contains(&format!("/followed-{i}"))
                    && !seen.contains(&key)
                {
                    seen.push(key);
                }
            }
            if seen.len() == 2 || start.elapsed() > DEADLINE {
                break;
            }
        }
        assert!(start.elapsed() < DEADLINE, "saw only {seen:?}");
    }
    let still_running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(still_running, "without a target, logs keeps following");
    assert_eq!(seen.len(), 2);
    // `--no-follow` prints what there is and ends.
    let out = env.cli(&["logs", "--no-follow", "-n", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn typos_get_the_nearest_target_and_status_filters() {
    let mut env = TestEnv::new(SHOP);
    env.start_agent();
    healthy(&env, "shop/production/web");
    for (args, hint) in [
        (
            &["start", "shpo"][..],
            "no service matches shpo — did you mean shop?",
        ),
        (
            &["stop", "shop/prodution"][..],
            "did you mean shop/production?",
        ),
        (
            &["logs", "shop/beta/wbe"][..],
            "did you mean shop/beta/web?",
        ),
        (&["status", "shop/bta"][..], "did you mean shop/beta?"),
        (
            &["show", "shop/production/wrker"][..],
            "did you mean shop/production/worker?",
        ),
    ] {
        let out = env.cli(args);
        assert_eq!(out.status.code(), Some(4), "{args:?}");
        assert!(stderr(&out).contains(hint), "{args:?}: {}", stderr(&out));
    }
    let table = stdout(&env.cli(&["status", "shop/beta"]));
    let rows: Vec<&str> = table
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        rows.len(),
        2,
        "after the verdict, a header and one row:\n{table}"
    );
    assert!(rows[1].starts_with("shop/beta/web"), "{table}");
    assert!(!table.contains("shop/production"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&env.cli(&["status", "shop/production", "--json"])))
            .expect("json");
    let services = json["services"].as_array().expect("services");
    assert_eq!(services.len(), 2);
    let log_file = services[0]["log_file"]
        .as_str()
        .expect("log_file in --json");
    assert_eq!(
        Path::new(log_file),
        env.log_file("shop", "production", "web").as_path()
    );
    // `all` is a target too (and documented).
    let out = env.cli(&["start", "all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("shop/beta/web: "), "{}", stdout(&out));
}

#[test]
fn the_first_errors_people_meet_say_what_to_do() {
    let env = TestEnv::new(SHOP);
    // A config path that does not exist is named, not "the agent is not running".
    let out = Command::new(homeport_bin())
        .args(["--config", "/nowhere/missing.toml", "status"])
        .env("HOME", env.dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the config file /nowhere/missing.toml does not exist"),
        "{}",
        stderr(&out)
    );
    // Every argument has help text, e.g. the ones that had none.
    for (args, needle) in [
        (
            &["start", "--help"][..],
            "What to start: APP, APP/ENV, APP/ENV/SERVICE, or `all`",
        ),
        (
            &["promote", "--help"][..],
            "The environment whose current release is rolled out",
        ),
        (&["rollback", "--help"][..], "The release to go back to"),
    ] {
        let text = stdout(&env.cli(args));
        assert!(text.contains(needle), "{args:?}:\n{text}");
    }
    // The man page is roff with every command.
    let man = stdout(&env.cli(&["man"]));
    assert!(man.starts_with(".ie") && man.contains(".SH NAME") && man.contains("import"));
}

#[test]
fn update_check_without_an_upstream_says_what_to_do() {
    let mut env = TestEnv::new("");
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).expect("src");
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(&src)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@e")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@e")
            .output()
            .expect("git");
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(src.join("a"), "a").expect("file");
    git(&["add", "a"]);
    git(&["commit", "-q", "-m", "one"]);
    env.write_config(&format!(
        "[apps.shop]\nsource = \"{}\"\nbuild = []\nartifacts = [\"a\"]\n\n[apps.shop.env.production.services.web]\ncommand = [\"@FIXTURE@\"]\n",
        src.display()
    ));
    env.start_agent();
    let out = env.cli(&["update", "shop", "--check"]);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("branch main of") && err.contains("has no upstream") && err.contains("git -C"),
        "{err}"
    );
    assert!(!err.contains("fatal:"), "git's own words: {err}");
}

#[test]
fn completion_scripts_complete_commands_and_targets_in_real_shells() {
    let env = TestEnv::new(SHOP);
    let bin_dir = homeport_bin().parent().expect("bin dir").to_path_buf();
    let path = format!("{}:/usr/bin:/bin", bin_dir.display());
    let shell = |program: &str, script: &str| {
        let o = Command::new(program)
            .args(["-c", script])
            .env("PATH", &path)
            .env("HOME", env.dir.path())
            .env("HOMEPORT_CONFIG", &env.config)
            .output()
            .unwrap_or_else(|e| {
                panic!("{program}: {e} (./scripts/setup.sh --browser installs it)")
            });
        assert!(
            o.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // bash: the function the script registers, called as bash's completion would.
    let bash = shell(
        "bash",
        r#"source <(homeport completions bash)
           COMP_WORDS=(homeport start shop/p); COMP_CWORD=2; COMP_TYPE=9
           _clap_complete_homeport homeport shop/p homeport
           printf '%s\n' "${COMPREPLY[@]}"
           COMP_WORDS=(homeport sh); COMP_CWORD=1
           _clap_complete_homeport homeport sh homeport
           printf '%s\n' "${COMPREPLY[@]}""#,
    );
    let words: Vec<&str> = bash.lines().collect();
    for w in [
        "shop/production",
        "shop/production/web",
        "shop/production/worker",
        "show",
    ] {
        assert!(words.contains(&w), "bash offered {words:?}");
    }
    assert!(
        !words.contains(&"shop/beta"),
        "only what matches the prefix: {words:?}"
    );
    // fish: its own completion engine.
    let fish = shell(
        "fish",
        "homeport completions fish | source; complete --do-complete 'homeport logs shop/b'",
    );
    assert!(
        fish.lines().any(|l| l.trim() == "shop/beta/web"),
        "fish offered {fish:?}"
    );
    // zsh: the script parses, and the binary answers the protocol it speaks.
    let zsh = shell(
        "zsh",
        "homeport completions zsh > $HOME/_homeport && zsh -n $HOME/_homeport && echo parsed",
    );
    assert!(zsh.contains("parsed"));
    let out = Command::new(homeport_bin())
        .args(["--", "homeport", "deploy", "sh"])
        .env("COMPLETE", "zsh")
        .env("_CLAP_COMPLETE_INDEX", "2")
        .env("HOMEPORT_CONFIG", &env.config)
        .output()
        .expect("complete");
    assert_eq!(stdout(&out).trim(), "shop", "apps for `deploy`");
    // A --config on the line being completed is the config completed from.
    let other = env.dir.path().join("other.toml");
    std::fs::write(
        &other,
        "[apps.blog.env.prod.services.server]\ncommand = \"x\"\n",
    )
    .expect("other");
    let out = Command::new(homeport_bin())
        .args([
            "--",
            "homeport",
            "--config",
            &other.display().to_string(),
            "start",
            "b",
        ])
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", "4")
        .env("HOMEPORT_CONFIG", &env.config)
        .output()
        .expect("complete");
    assert!(
        stdout(&out).contains("blog/prod/server"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_service_waiting_to_restart_reads_as_words_not_a_state_name() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.beta.services.flaky]
command = ["@FIXTURE@", "--crash-after", "0"]
autostart = true
restart = { policy = "on-failure", backoff_min = "2m", backoff_max = "2m", max_failures = "unlimited" }
"#,
    );
    env.start_agent();
    env.wait_service("a/beta/flaky", "waits to restart", |s| {
        s.state == ServiceState::BackingOff
    });
    let out = env.cli(&["status"]);
    let text = stdout(&out);
    assert!(
        text.contains("restarting in 1") && !text.contains("backing_off"),
        "{text}"
    );
    let out = env.cli(&["show", "a/beta/flaky"]);
    let text = stdout(&out);
    assert!(
        text.contains("restarting in") && !text.contains("backing_off"),
        "{text}"
    );
}
