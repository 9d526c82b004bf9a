//! The dashboard's TypeScript types, generated from these Rust types so the two cannot drift:
//! `ui/src/types.gen.ts` must be exactly what [`generate`] makes. After changing a type, run
//! `HOMEPORT_WRITE_TS=1 cargo test -p homeport-types typescript` and commit the file.

use ts_rs::{Config, TS};

use crate::*;

macro_rules! decls {
    ($cfg:expr; $($t:ty),* $(,)?) => {
        vec![$(format!("export {}", <$t as TS>::decl($cfg))),*]
    };
}

fn generate() -> String {
    // Counts and sizes fit in a JavaScript number; the API sends them as JSON numbers.
    let cfg = &Config::new().with_large_int("number");
    let decls = decls![cfg;
        ServiceKey, Target, ServiceState, ExitReason, Health, ServiceStatus, NotifyPolicy,
        ServiceDetail,
        Action, ActionRequest, ActionOutcome, Stream, LogLine, LogEntry, LogStreamItem,
        AgentInfo, StatusSnapshot, StatusReport, Level, Verdict, ApiError, SignInLink,
        AgentEndpoint, Subject, Event, EventKind, ConfigChange, AgentOption, ConfigView,
        AgentSettingsView, EnvView, ServiceView, ConfigEdit, Problem, ConfigPreview,
        ConfigApplied, ConfigSource, NotStarted, ConfigRejection, BackupTrigger, ArtifactKind,
        BackupArtifact, BackupInfo, EnvBackups, BackupFailure,
        BackupRequest, RestoreRequest, RestoreOutcome, VerifyOutcome, DeployKind, DeployResult,
        StepStatus, DeployRequest, StepRecord, DeployRecord, DeployEvent, AppInfo, EnvRelease,
        ReleaseInfo, HostState, HostInfo, EnvVerdict, Preflight, MissingTool,
        AutoUpdateState, ResumeRequest, Discarded, TableRows, DeployDetail, Instance,
        MetricsResolution, MetricsReport, ServiceMetrics, MetricPoints, EnvUptime, Annotation,
        AnnotationKind,
    ];
    let mut out = String::from(
        "// Generated from crates/homeport-types by its `typescript` test; do not edit.\n\
         // After changing a type: HOMEPORT_WRITE_TS=1 cargo test -p homeport-types typescript\n\n",
    );
    for d in decls {
        out.push_str(&d);
        out.push_str("\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[test]
fn typescript_types_match_the_committed_file() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/types.gen.ts");
    let want = generate();
    if std::env::var_os("HOMEPORT_WRITE_TS").is_some() {
        std::fs::write(&path, &want).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} differs from the Rust types; run `HOMEPORT_WRITE_TS=1 cargo test -p homeport-types typescript` and commit it",
        path.display()
    );
}
