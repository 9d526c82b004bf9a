//! Load, default, expand and validate `homeport.toml`.
//!
//! Loading runs as named steps, each a function: [`parse`](load) the text into a spanned tree,
//! deserialize every table on its own (so one bad service does not hide the errors of the next),
//! resolve defaults and placeholders, then validate the whole set of services (ports, dependency
//! cycles, shared databases). Every problem becomes a [`Diagnostic`] that names the file, line,
//! column and dotted field, and [`load`] returns *all* of them at once.
//!
//! The result is a flat [`Config`]: agent settings and one fully expanded [`ServiceSpec`] per
//! `app/env/service`, ready for the supervisor.

mod diag;
pub mod edit;
mod host;
mod load;
mod model;
mod paths;
mod raw;

pub use diag::{Diagnostic, Diagnostics};
pub use host::{HostFragment, host_fragment};
pub use load::{StepEnv, install_argv, load, load_bytes, load_str, migrate_argv, step_env};
pub use model::{
    AgentSettings, AppSpec, AutoUpdate, BackupSchedule, BackupSettings, CommandSpec, Config,
    DbServer, EnvSpec, HealthCheck, HealthProbe, RemoteEnv, RestartMode, RestartPolicy,
    ServiceSpec, SlotSpec, UpdateWindow,
};
pub use paths::{
    agent_data_dir, agent_log_path, default_config_path, default_data_dir, expand_home,
};
pub use raw::parse_signal;
