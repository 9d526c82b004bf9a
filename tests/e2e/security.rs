//! Attacks by the agent's neighbours — other local users, other local servers, slow clients —
//! each performed for real against the real agent, and each refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::api::{agent_port, request, token};
use crate::util::*;

const CONFIG: &str = r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@"]
autostart = true
"#;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// A sign-in link made with the token, as `homeport dashboard --print` gets it.
fn sign_in_link(port: u16, token: &str) -> String {
    let auth = format!("Bearer {token}");
    let (code, _, body) = request(
        port,
        "POST",
        "/api/v1/sessions",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(code, 200, "{body}");
    let link: homeport_types::SignInLink = serde_json::from_str(&body).expect("link");
    link.url
        .split_once(&format!(":{port}"))
        .map(|(_, p)| p.to_owned())
        .expect("a path")
}

/// What a browser gets from a sign-in link: the session cookie (`name=value`) and the secret the
/// dashboard page keeps and sends with every API call.
pub fn sign_in(port: u16, token: &str) -> (String, String) {
    let path = sign_in_link(port, token);
    let (code, head, body) = request(port, "GET", &path, &[], None);
    assert_eq!(code, 200, "{head}\n{body}");
    let cookie = header(&head, "set-cookie").expect("a cookie");
    let cookie = cookie.split(';').next().expect("name=value").to_owned();
    let secret = body
        .split_once(r#"name="homeport-session" content=""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(s, _)| s.to_owned())
        .unwrap_or_else(|| panic!("no session secret in the sign-in page: {body}"));
    (cookie, secret)
}

#[test]
fn the_sign_in_link_never_appears_on_a_command_line() {
    let mut env = TestEnv::new(CONFIG);
    open_to_all(env.dir.path());
    env.start_agent();
    let port = agent_port(&env);
    // The desktop's opener, replaced by one that records its arguments: what every local user
    // can read in /proc/PID/cmdline while it runs.
    let bin = env.dir.path().join("bin");
    fs::create_dir(&bin).expect("bin");
    let opener = bin.join("xdg-open");
    let argv_file = env.dir.path().join("opener-argv");
    fs::write(
        &opener,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {0}.tmp && mv {0}.tmp {0}\n",
            argv_file.display()
        ),
    )
    .expect("opener");
    fs::set_permissions(&opener, fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = env
        .command()
        .arg("dashboard")
        .env("PATH", path)
        .env("DISPLAY", ":99")
        .output()
        .expect("homeport dashboard");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("ticket"),
        "the link is printed: {}",
        stdout(&out)
    );
    let argv = env.wait_until("the opener ran", || fs::read_to_string(&argv_file).ok());
    assert!(
        !argv.contains("ticket") && !argv.contains("http"),
        "the sign-in link is on the opener's command line: {argv}"
    );
    // The opener gets a file that only this user can read, in a folder only this user can open.
    let page = PathBuf::from(argv.trim());
    assert!(page.is_absolute(), "{argv}");
    assert_eq!(mode(&page), 0o600, "{}", page.display());
    assert_eq!(mode(page.parent().expect("folder")), 0o700);
    let text = read(&page);
    let link = text
        .split_once("url=")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(u, _)| u.replace("&amp;", "&"))
        .unwrap_or_else(|| panic!("no redirect in {text}"));
    let link_path = link
        .split_once(&format!(":{port}"))
        .map(|(_, p)| p.to_owned())
        .expect("a link to the agent");
    assert!(link_path.starts_with("/login?ticket="), "{link_path}");

    if let Some(other) = OtherUser::create("the_sign_in_link_never_appears_on_a_command_line") {
        let seen = other.fixture(&["--read", &page.display().to_string()]);
        assert!(
            seen.starts_with("error:"),
            "another user read the sign-in page: {seen}"
        );
        // Even holding the link, another user cannot redeem it: the ticket is for this user's
        // browser only, and it still works for that browser afterwards.
        let stolen = other.fixture(&["--fetch", &port.to_string(), &format!("GET {link_path}")]);
        assert!(
            stolen.starts_with("403"),
            "another user redeemed the ticket: {stolen}"
        );
    }
    let (code, head, _) = request(port, "GET", &link_path, &[], None);
    assert_eq!(code, 200, "{head}");
    assert!(header(&head, "set-cookie").is_some(), "{head}");
    env.wait_until("the used sign-in page is removed", || {
        (!page.exists()).then_some(())
    });
}

#[test]
fn a_session_cookie_alone_is_worth_nothing() {
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    let port = agent_port(&env);
    let t = token(&env);
    let (cookie, secret) = sign_in(port, &t);
    let origin = format!("http://127.0.0.1:{port}");
    let stop = r#"{"target":"a/prod/web"}"#;

    // The browser sends the cookie to every server on 127.0.0.1, whatever its port: one that logs
    // headers replays it with a forged Origin.
    let (code, _, body) = request(
        port,
        "POST",
        "/api/v1/stop",
        &[("Cookie", &cookie), ("Origin", &origin)],
        Some(stop),
    );
    assert_eq!(code, 401, "a replayed cookie stopped a service: {body}");
    for path in [
        "/api/v1/status",
        "/api/v1/events/stream",
        "/api/v1/logs/stream?target=a",
        "/api/v1/config",
    ] {
        let (code, _, body) = request(port, "GET", path, &[("Cookie", &cookie)], None);
        assert_eq!(code, 401, "{path} answered a cookie alone: {body}");
    }
    // The secret is in no page the cookie can fetch.
    for path in ["/", "/login"] {
        let (_, _, body) = request(port, "GET", path, &[("Cookie", &cookie)], None);
        assert!(!body.contains(&secret), "{path} reveals the session secret");
    }
    // A secret without the cookie is nothing either.
    let (code, _, _) = request(
        port,
        "GET",
        "/api/v1/status",
        &[("X-Homeport-Session", &secret)],
        None,
    );
    assert_eq!(code, 401);

    // The dashboard page holds both.
    let both = [
        ("Cookie", cookie.as_str()),
        ("X-Homeport-Session", secret.as_str()),
        ("Origin", origin.as_str()),
    ];
    let (code, _, body) = request(port, "GET", "/api/v1/status", &both[..2], None);
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = request(port, "POST", "/api/v1/stop", &both, Some(stop));
    assert_eq!(code, 200, "{body}");
    // …but cannot make sign-in links: only the CLI and the tray (the token) can.
    let (code, _, body) = request(port, "POST", "/api/v1/sessions", &both, None);
    assert_eq!(code, 403, "a browser session minted a sign-in link: {body}");
}
