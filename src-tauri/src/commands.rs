//! The commands the dashboard window may call. The window's page is the bundled ui/; all it
//! needs from the tray is where the agent listens and its token, after which it talks to the
//! agent directly (the agent answers CORS for the app's origin only, and only with the token).

use std::path::PathBuf;

use homeport_client::{Client, ClientError};
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
        .invoke_handler(tauri::generate_handler![agent_connection])
}

#[tauri::command]
fn agent_connection(dir: State<'_, AgentDir>) -> Result<Connection, String> {
    let client = Client::discover(&dir.0).map_err(|e| match e {
        ClientError::NotRunning(_) => "the agent is not running".to_owned(),
        other => other.to_string(),
    })?;
    Ok(Connection {
        base_url: client.base_url().to_owned(),
        token: client.token().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;

    use tauri::ipc::{CallbackFn, InvokeBody};
    use tauri::test::{INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder, mock_context};
    use tauri::webview::InvokeRequest;

    use super::*;

    fn invoke(dir: &Path, cmd: &str) -> Result<serde_json::Value, serde_json::Value> {
        let app = register(mock_builder(), dir.to_owned())
            .build(mock_context(tauri::test::noop_assets()))
            .expect("mock app");
        let window = tauri::WebviewWindowBuilder::<MockRuntime, _>::new(
            &app,
            "dashboard",
            Default::default(),
        )
        .build()
        .expect("window");
        get_ipc_response(
            &window,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().unwrap(),
                body: InvokeBody::default(),
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

    #[test]
    fn the_window_may_call_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        assert!(invoke(dir.path(), "plugin:shell|open").is_err());
        assert!(invoke(dir.path(), "agent_status").is_err());
    }
}
