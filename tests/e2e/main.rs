//! End-to-end tests: the real `homeport` binary supervising the real fixture app.

// A failed expectation in the harness is a failed test: panicking is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod api;
mod backup;
mod cli;
mod deploy;
mod hosts;
mod install;
mod logs;
mod metrics;
mod reload;
mod router;
mod security;
mod sshd;
mod supervision;
mod terminal;
mod top;
mod updates;
mod util;
