//! Crash-safe file writes, from [`homeport_fs`] (kept under this name for the supervisor's modules).

pub use homeport_fs::{Durability, atomic_write, create_private_dir, replace_file};
