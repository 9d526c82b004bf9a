//! Other hosts — a second computer, a VPS — running the same agent, reached only through the
//! user's own OpenSSH client (no SSH library, no open port, no new protocol).
//!
//! - [`dest`]: host names and SSH destinations as the user writes them.
//! - [`record`]: what is kept per host in the data folder: `hosts/NAME/host.json` and the
//!   pinned host key (`known_hosts`), both private.
//! - [`ssh`]: `ssh` as a program with the pinned key and no prompts; a multiplexed connection
//!   ([`ssh::Master`]) and its forwards; ssh's failures in words.
//! - [`link`]: a connection to a host's agent: the master, `homeport remote hello` (where the
//!   agent listens, its token — read over SSH into memory, never written here), and a forward
//!   from a private Unix socket to the agent's loopback port.
//! - [`enrol`]: `homeport host add`, step by step.
//!
//! The agent holds one [`link::Connection`] per host and proxies the API to it; the CLI,
//! dashboard and tray reach every host through their own agent.

pub mod dest;
pub mod enrol;
pub mod link;
pub mod record;
pub mod ssh;

pub use dest::{Destination, check_name};
pub use link::{Connection, LinkError};
pub use record::{HostFiles, HostRecord};
pub use ssh::{Master, Ssh, SshError};
