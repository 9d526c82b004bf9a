//! Database servers run and backed up by the real agent: PostgreSQL, MariaDB and Redis from the
//! machine's packages (`scripts/setup.sh --databases`), each test with its own server in its own
//! temp folder on a free loopback port, configured as a user would.
//!
//! As root (CI), the servers run as `nobody` (`user = "nobody"`): PostgreSQL and MariaDB refuse
//! to run as root, and Homeport runs no server as root.

// A failed expectation in the harness is a failed test: panicking is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../e2e/util.rs"]
mod util;

mod engines;
mod faults;
mod lifecycle;
