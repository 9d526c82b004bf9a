//! The log holder ("shim"): a small process that runs one service and owns its output.
//!
//! The agent never holds a service's pipes itself. It starts `homeport-shim RUN_DIR` with one
//! end of a socket pair as stdin and asks it, over that control connection ([`proto`]), to start
//! the service; the shim (in a session of its own) starts it in a process group of its own,
//! writes every line of its stdout and stderr to the log file ([`log`]), reaps it and what it
//! leaves behind, and reports how it ended. Because the shim, not the agent, holds the pipes, an
//! agent that is killed or upgraded loses no log line and does not take production down: the
//! shim listens on `RUN_DIR/ctl.sock`, and the next agent connects there and asks what runs.
//! The agent binds that socket before it starts the shim and passes the listener as stdout, so
//! the shim is reachable from the moment it exists (run by hand, it binds the socket itself).
//! The same idea as containerd's shim or conmon.
//!
//! The shim outlives a service's crash: the agent decides about a restart and, if it says so,
//! the same shim starts the service again at once — no new process, exec or handshake — which is
//! what keeps a restart close to the cost of spawning the service itself.
//!
//! The agent learns that a shim ended when its control connection closes: the same on every OS,
//! so no per-OS exit watch (pidfd, kqueue) is needed. The connection proves identity too: only
//! this user can reach the socket in the 0700 run folder, and only a live shim answers on it.
//!
//! One thread, one `poll` loop, no async runtime, no allocation per line: the shim's memory stays
//! small next to the service it watches.
//!
//! Files in RUN_DIR ([`records`]): `shim.json` (who runs), `exit.json` (how the last run ended,
//! when no agent was there to hear it), `ctl.sock`, and `shim.log` (the shim's own messages).

pub mod log;
pub mod proto;
pub mod records;
mod run;

pub use run::{PIPE_GRACE, SOCKET, run};
