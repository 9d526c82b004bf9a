//! The commands the dashboard window may call. The window's page is the bundled ui/; all it
//! needs from the tray is where the agent listens and its token, after which it talks to the
//! agent directly (the agent answers CORS for the app's origin only, and only with the token).

use std::path::PathBuf;

use serde::Serialize;
use tauri::{Builder, Runtime, State};

/// The data folder of the agent this tray talks to.
pub struct AgentDir(pub PathBuf);

#[derive(Debug, Serialize)]
pub struct Connection {
    base_url: String,
    token: String,
}

/// Adds the commands, and the agent's data folder they read, to an app.
pub fn register<R: Runtime>(builder: Builder<R>, dir: PathBuf) -> Builder<R> {
    builder
        .manage(AgentDir(dir))
        .invoke_handler(tauri::generate_handler![
            agent_connection,
            start_at_login,
            set_start_at_login
        ])
}

/// Whether the tray app starts at login (the same entry as the menu's checkbox and
/// `homeport autostart`).
#[tauri::command]
fn start_at_login() -> Result<bool, String> {
    crate::agent::autostart()?
        .is_enabled()
        .map_err(|e| e.to_string())
}

#[tauri::command]
fn set_start_at_login(enabled: bool) -> Result<bool, String> {
    crate::agent::set_autostart(enabled)?;
    start_at_login()
}

#[tauri::command]
fn agent_connection(dir: State<'_, AgentDir>) -> Result<Connection, String> {
    let client = crate::agent::discover(&dir.0)?;
    Ok(Connection {
        base_url: client.base_url().to_owned(),
        token: client.token().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;

    use tauri::Manager;
    use tauri::ipc::{CallbackFn, InvokeBody};
    use tauri::test::{INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder, mock_context};
    use tauri::webview::InvokeRequest;

    use super::*;

    fn invoke(dir: &Path, cmd: &str) -> Result<serde_json::Value, serde_json::Value> {
        invoke_with(dir, cmd, serde_json::Value::Null)
    }

    fn invoke_with(
        dir: &Path,
        cmd: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, serde_json::Value> {
        let app = register(mock_builder(), dir.to_owned())
            .build(mock_context(tauri::test::noop_assets()))
            .expect("mock app");
        call(&app, "tauri://localhost", cmd, args)
    }

    /// Invokes `cmd` as a page at `url` in a new window of `app` would.
    fn call(
        app: &tauri::App<MockRuntime>,
        url: &str,
        cmd: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, serde_json::Value> {
        // The label the app's dashboard window has, which capabilities name.
        let window = app
            .get_webview_window(crate::windows::DASHBOARD)
            .unwrap_or_else(|| {
                tauri::WebviewWindowBuilder::<MockRuntime, _>::new(
                    app,
                    crate::windows::DASHBOARD,
                    Default::default(),
                )
                .build()
                .expect("window")
            });
        get_ipc_response(
            &window,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: url.parse().unwrap(),
                body: if args.is_null() {
                    InvokeBody::default()
                } else {
                    InvokeBody::Json(args)
                },
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|b| b.deserialize().unwrap())
    }

    #[test]
    fn the_window_learns_the_agents_address_and_token_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let err = invoke(dir.path(), "agent_connection").unwrap_err();
        assert_eq!(err, "the agent is not running");

        std::fs::write(
            dir.path().join("agent.json"),
            r#"{"pid": 1, "addr": "127.0.0.1:48123"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        // An agent holds the lock while it runs; without it agent.json is stale.
        let lock = std::fs::File::create(dir.path().join("agent.lock")).unwrap();
        let err = invoke(dir.path(), "agent_connection").unwrap_err();
        assert_eq!(err, "the agent is not running", "a stale agent.json");
        lock.lock().unwrap();
        // Another open file description sees the lock as held.
        let ok = invoke(dir.path(), "agent_connection").unwrap();
        assert_eq!(
            ok,
            serde_json::json!({"base_url": "http://127.0.0.1:48123", "token": "s3cret"})
        );
    }

    /// Start at login writes under `$HOME`: this test runs itself again in a child process
    /// whose HOME is a temp folder, never the real one.
    #[test]
    fn start_at_login_is_read_and_switched_from_the_window() {
        const CHILD: &str = "HOMEPORT_TEST_TEMP_HOME";
        let Some(home) = std::env::var_os(CHILD) else {
            let home = tempfile::tempdir().unwrap();
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "commands::tests::start_at_login_is_read_and_switched_from_the_window",
                    "--nocapture",
                ])
                .env(CHILD, home.path())
                .env("HOME", home.path())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && text.contains("1 passed"), "{text}");
            return;
        };
        let entry = Path::new(&home).join(".config/autostart/Homeport.desktop");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(invoke(dir.path(), "start_at_login"), Ok(false.into()));
        let on = invoke_with(
            dir.path(),
            "set_start_at_login",
            serde_json::json!({"enabled": true}),
        );
        assert_eq!(on, Ok(true.into()));
        let text = std::fs::read_to_string(&entry).unwrap();
        assert!(text.contains("--minimized"), "{text}");
        assert_eq!(invoke(dir.path(), "start_at_login"), Ok(true.into()));
        let off = invoke_with(
            dir.path(),
            "set_start_at_login",
            serde_json::json!({"enabled": false}),
        );
        assert_eq!(off, Ok(false.into()));
        assert!(!entry.exists());
    }

    /// With the app's real configuration and capabilities: the bundled page may call the app's
    /// commands and none of Tauri's own (which exist, so a refusal here is the capability's);
    /// a page from elsewhere may call nothing.
    #[test]
    fn the_window_may_call_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let app = register(mock_builder(), dir.path().to_owned())
            .build(tauri::generate_context!(test = true))
            .expect("mock app with the real config");
        let null = serde_json::Value::Null;
        let own = "tauri://localhost";
        assert_eq!(
            call(&app, own, "agent_connection", null.clone()),
            Err("the agent is not running".into()),
            "allowed, and it ran"
        );
        // Commands that exist (Tauri's own, always registered) and that only the capability
        // keeps from the page: refused as not allowed, not as unknown.
        for cmd in [
            "plugin:window|close",
            "plugin:app|version",
            "plugin:webview|create_webview_window",
        ] {
            let refused = call(&app, own, cmd, null.clone());
            assert!(
                matches!(&refused, Err(serde_json::Value::String(e)) if e.contains("not allowed. Permissions associated with this command")),
                "{cmd}: {refused:?}"
            );
        }
        let remote = call(&app, "https://example.com", "agent_connection", null);
        assert!(
            remote.is_err() && remote != Err("the agent is not running".into()),
            "a remote page must not reach the command: {remote:?}"
        );
    }
}
