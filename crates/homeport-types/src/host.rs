//! Other hosts: the same agent on a second computer or a VPS, reached through OpenSSH.

use serde::{Deserialize, Serialize};

use crate::Verdict;

/// What `homeport remote hello` prints on a host, read over SSH: who runs there, where its
/// files are, and where its agent listens. The API token only when asked, and only ever on the
/// SSH channel's output, into the memory of the agent that asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteHello {
    pub version: String,
    /// `linux`, `macos` (as Rust's `std::env::consts::OS` says).
    pub os: String,
    /// `x86_64`, `aarch64` (as `std::env::consts::ARCH` says).
    pub arch: String,
    pub home: String,
    /// The config file the host's agent reads.
    pub config: String,
    pub config_exists: bool,
    pub data_dir: String,
    /// The running agent, if one runs.
    pub agent: Option<crate::AgentEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Free bytes on the data folder's file system.
    #[serde(default)]
    pub free_bytes: Option<u64>,
}

/// How the connection to a host is.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Connecting for the first time since the local agent started.
    Connecting,
    /// SSH is up and the host's agent answers.
    Connected,
    /// SSH is up, but no agent answers there.
    AgentDown,
    /// SSH cannot reach the host (or refuses it: a changed host key, a refused login).
    Unreachable,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Connecting => "connecting",
            HostState::Connected => "connected",
            HostState::AgentDown => "agent down",
            HostState::Unreachable => "unreachable",
        }
    }
}

impl std::fmt::Display for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An enrolled host as `GET /api/v1/hosts` shows it.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub name: String,
    /// What `ssh` is given: `user@host`, with `:port` when not 22, or a name of ssh_config.
    pub destination: String,
    pub os: String,
    pub arch: String,
    pub state: HostState,
    /// Since when it is in that state (RFC 3339 UTC).
    pub since: String,
    /// Why it is not connected, in words.
    pub reason: Option<String>,
    /// The host agent's version, once it answered.
    pub version: Option<String>,
    /// The host agent's verdict, while connected.
    pub overall: Option<Verdict>,
    /// Each of its environments' verdict, while connected (production first).
    #[serde(default)]
    pub envs: Vec<EnvVerdict>,
}

/// One environment's verdict (an environment outside production is never "down").
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVerdict {
    pub app: String,
    pub env: String,
    pub verdict: Verdict,
}

/// What a deploy checks on the agent that runs it before it begins (`GET /api/v1/preflight`).
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preflight {
    pub version: String,
    pub os: String,
    pub arch: String,
    /// Free bytes where releases are kept.
    pub free_bytes: Option<u64>,
    /// Programs the environment's build steps or services run that the agent's PATH does not
    /// find, each with what needs it.
    pub missing: Vec<MissingTool>,
    /// The agent's PATH, where it looked.
    pub path: String,
}

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingTool {
    pub program: String,
    /// `build`, `test`, `migrate` or the service (`shop/production/web`).
    pub needed_by: String,
}
