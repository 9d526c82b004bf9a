// Generated from crates/homeport-types by its `typescript` test; do not edit.
// After changing a type: HOMEPORT_WRITE_TS=1 cargo test -p homeport-types typescript

export type ServiceKey = { app: string, env: string, service: string, };

export type Target = string;

export type ServiceState = "stopped" | "starting" | "running" | "healthy" | "unhealthy" | "stopping" | "exited" | "crashed" | "backing_off" | "failed";

export type ExitReason = { "kind": "code", "value": number } | { "kind": "signal", "value": number } | { "kind": "lost" };

export type Health = "unknown" | "healthy" | "unhealthy";

export type ServiceStatus = { key: ServiceKey, state: ServiceState, health: Health, pid: number | null, 
/**
 * Seconds since the current process started.
 */
uptime_secs: number | null, 
/**
 * Seconds the service has been in its current state.
 */
state_secs: number | null, 
/**
 * Restarts since the agent first saw this service (kept across agent restarts).
 */
restarts: number, last_exit: ExitReason | null, 
/**
 * Human-readable detail of the current state ("waiting for db", "port 8080 is held by ...").
 */
message: string | null, cpu_percent: number | null, rss_bytes: number | null, 
/**
 * Its main port; of a blue-green instance, the service's public port.
 */
port: number | null, 
/**
 * Named extra ports (`ports = { admin = 9001 }`).
 */
ports: { [key in string]: number }, 
/**
 * Set for the two instances of a blue-green service.
 */
instance: Instance | null, url: string | null, autostart: boolean, 
/**
 * The service's current log file (`DATA/logs/APP/ENV/SERVICE.log`).
 */
log_file: string | null, 
/**
 * While it waits to restart after a crash: in how many seconds it starts again.
 */
retry_in_secs: number | null, 
/**
 * Which desktop notifications its environment wants (`notify` in the config).
 */
notify: NotifyPolicy, };

export type NotifyPolicy = "all" | "failures" | "none";

export type ServiceDetail = { status: ServiceStatus, command: Array<string>, cwd: string, 
/**
 * The variables Homeport adds; values of secret ones are replaced by [`MASK`].
 */
env: { [key in string]: string }, health: string | null, restart: string, depends_on: Array<ServiceKey>, 
/**
 * Named extra ports (`ports = { admin = 9001 }`); the main one is `status.port`.
 */
ports: { [key in string]: number }, log_file: string, 
/**
 * The newest recorded events, newest first.
 */
events: Array<Event>, };

export type Action = "start" | "stop" | "restart";

export type ActionRequest = { target: Target, };

export type ActionOutcome = { key: ServiceKey, state: ServiceState, 
/**
 * Set when the command failed for this service.
 */
error: string | null, };

export type Stream = "stdout" | "stderr";

export type LogLine = { 
/**
 * RFC 3339 UTC time with microseconds, as written by the log holder.
 */
time: string, stream: Stream, text: string, };

export type LogEntry = { service: ServiceKey, 
/**
 * RFC 3339 UTC time with microseconds, as written by the log holder.
 */
time: string, stream: Stream, text: string, };

export type LogStreamItem = { "type": "line" } & LogEntry | { "type": "skipped", count: number | null, };

export type AgentInfo = { pid: number, version: string, config_path: string, uptime_secs: number, 
/**
 * The service manager that runs the agent and restarts it (`systemd`, `launchd`), if any.
 */
service_manager: string | null, 
/**
 * The agent's own log file (its warnings, whoever started it).
 */
log: string | null, 
/**
 * The config file as last refused, while it has a mistake: the agent keeps running the
 * config it had until the file is fixed.
 */
config_rejected: ConfigRejection | null, };

export type StatusSnapshot = { agent: AgentInfo, services: Array<ServiceStatus>, };

export type StatusReport = { overall: Verdict, agent: AgentInfo, services: Array<ServiceStatus>, };

export type Level = "healthy" | "degraded" | "down";

export type Verdict = { level: Level, 
/**
 * "production healthy · beta: web crash-looping".
 */
reason: string, };

export type ApiError = { kind: string, message: string, };

export type SignInLink = { url: string, 
/**
 * A page only this user can read that leads a browser to `url`: what the desktop's opener
 * is given, since any local user can read a command line.
 */
page?: string | null, };

export type AgentEndpoint = { pid: number, 
/**
 * `host:port`, always a loopback address.
 */
addr: string, };

export type Subject = string;

export type Event = { 
/**
 * RFC 3339 UTC time (of the first time, when `count` > 1).
 */
time: string, subject: Subject, 
/**
 * How many times this happened in a row. state.db records transitions, not repetitions:
 * a service that stays unhealthy is one row whose count grows, and a crash loop one group
 * of rows (started → running → crashed → restarting), each counting its rounds. Live
 * events are always 1.
 */
count: number, 
/**
 * RFC 3339 UTC time of the last time, when `count` > 1; the event's fields are the last
 * time's (pid, restarts, message).
 */
last_time: string | null, } & ({ "type": "state", from: ServiceState, to: ServiceState, pid: number | null, exit: ExitReason | null, 
/**
 * Restarts so far, counting the one this transition may begin.
 */
restarts: number, message: string | null, } | { "type": "health", health: Health, message: string | null, } | { "type": "deploy_started", 
/**
 * The deploy's id in the history (`GET /api/v1/deploys`).
 */
id: number, kind: DeployKind, } | { "type": "deploy_step", id: number, kind: DeployKind, step: string, status: StepStatus, ms: number | null, detail: string | null, } | { "type": "deploy_finished", id: number, kind: DeployKind, result: DeployResult, 
/**
 * The release it rolled out, when it got that far.
 */
release: string | null, 
/**
 * The release live before it (still serving when it failed).
 */
previous: string | null, error: string | null, 
/**
 * Data its rollback discarded, and where it is kept (see [`crate::Discarded`]).
 */
discarded: Array<Discarded>, } | { "type": "backup_finished", id: number, trigger: BackupTrigger, size: number, duration_ms: number, verified: boolean, } | { "type": "backup_failed", trigger: BackupTrigger, error: string, } | { "type": "restore_finished", backup: number, restored: Array<string>, safety_copies: Array<string>, } | { "type": "restore_failed", backup: number | null, error: string, } | { "type": "config_applied", source: ConfigSource, added: Array<ServiceKey>, removed: Array<ServiceKey>, restarted: Array<ServiceKey>, 
/**
 * How many services were left alone.
 */
unchanged: number, 
/**
 * Settings of environments and apps that apply from now on
 * (`shop/production: health_stable`).
 */
settings: Array<string>, needs_agent_restart: boolean, } | { "type": "config_rejected", file: string, line: number, column: number, field: string, message: string, 
/**
 * How many problems in all.
 */
problems: number, source: ConfigSource, } | { "type": "auto_update_started", commit: string, commits: number, } | { "type": "auto_update_finished", 
/**
 * Its deploy in the history, when one began.
 */
id: number | null, result: DeployResult, 
/**
 * The commit it rolled out or tried to.
 */
commit: string, 
/**
 * That commit's version, when a release was staged.
 */
version: string | null, commits: number, 
/**
 * The short commit the environment ran before (still running when it failed).
 */
previous: string | null, 
/**
 * The step that failed.
 */
step: string | null, error: string | null, 
/**
 * This failure paused the environment's automatic updates.
 */
paused: boolean, } | { "type": "auto_update_refused", reason: string, } | { "type": "auto_updates_resumed" } | { "type": "agent_started", version: string, pid: number, } | { "type": "agent_stopping" } | { "type": "host", host: string, state: HostState, reason: string | null, overall: Verdict | null, });

export type EventKind = { "type": "state", from: ServiceState, to: ServiceState, pid: number | null, exit: ExitReason | null, 
/**
 * Restarts so far, counting the one this transition may begin.
 */
restarts: number, message: string | null, } | { "type": "health", health: Health, message: string | null, } | { "type": "deploy_started", 
/**
 * The deploy's id in the history (`GET /api/v1/deploys`).
 */
id: number, kind: DeployKind, } | { "type": "deploy_step", id: number, kind: DeployKind, step: string, status: StepStatus, ms: number | null, detail: string | null, } | { "type": "deploy_finished", id: number, kind: DeployKind, result: DeployResult, 
/**
 * The release it rolled out, when it got that far.
 */
release: string | null, 
/**
 * The release live before it (still serving when it failed).
 */
previous: string | null, error: string | null, 
/**
 * Data its rollback discarded, and where it is kept (see [`crate::Discarded`]).
 */
discarded: Array<Discarded>, } | { "type": "backup_finished", id: number, trigger: BackupTrigger, size: number, duration_ms: number, verified: boolean, } | { "type": "backup_failed", trigger: BackupTrigger, error: string, } | { "type": "restore_finished", backup: number, restored: Array<string>, safety_copies: Array<string>, } | { "type": "restore_failed", backup: number | null, error: string, } | { "type": "config_applied", source: ConfigSource, added: Array<ServiceKey>, removed: Array<ServiceKey>, restarted: Array<ServiceKey>, 
/**
 * How many services were left alone.
 */
unchanged: number, 
/**
 * Settings of environments and apps that apply from now on
 * (`shop/production: health_stable`).
 */
settings: Array<string>, needs_agent_restart: boolean, } | { "type": "config_rejected", file: string, line: number, column: number, field: string, message: string, 
/**
 * How many problems in all.
 */
problems: number, source: ConfigSource, } | { "type": "auto_update_started", commit: string, commits: number, } | { "type": "auto_update_finished", 
/**
 * Its deploy in the history, when one began.
 */
id: number | null, result: DeployResult, 
/**
 * The commit it rolled out or tried to.
 */
commit: string, 
/**
 * That commit's version, when a release was staged.
 */
version: string | null, commits: number, 
/**
 * The short commit the environment ran before (still running when it failed).
 */
previous: string | null, 
/**
 * The step that failed.
 */
step: string | null, error: string | null, 
/**
 * This failure paused the environment's automatic updates.
 */
paused: boolean, } | { "type": "auto_update_refused", reason: string, } | { "type": "auto_updates_resumed" } | { "type": "agent_started", version: string, pid: number, } | { "type": "agent_stopping" } | { "type": "host", host: string, state: HostState, reason: string | null, overall: Verdict | null, };

export type ConfigChange = { "kind": "port", app: string, env: string, service: string, port: number, } | { "kind": "database", app: string, env: string, name: string, path: string, } | { "kind": "agent", key: AgentOption, value: number, };

export type AgentOption = "port" | "log_max_bytes" | "log_keep";

export type ConfigView = { file: string, 
/**
 * SHA-256 of the file's text; edits name the revision they were made against.
 */
revision: string, agent: AgentSettingsView, envs: Array<EnvView>, };

export type AgentSettingsView = { port: number, log_max_bytes: number, log_keep: number, data_dir: string, };

export type EnvView = { app: string, env: string, autostart: boolean, databases: { [key in string]: string }, services: Array<ServiceView>, };

export type ServiceView = { service: string, port: number | null, 
/**
 * Names of secret variables; their values are never sent.
 */
secret_env: Array<string>, };

export type ConfigEdit = { changes: Array<ConfigChange>, 
/**
 * The [`ConfigView::revision`] the changes were made against.
 */
revision: string, };

export type Problem = { field: string, line: number, column: number, message: string, help: string | null, };

export type ConfigPreview = { valid: boolean, problems: Array<Problem>, 
/**
 * Unified diff of the file.
 */
diff: string, 
/**
 * Running services that applying would restart.
 */
restart: Array<ServiceKey>, revision: string, };

export type ConfigApplied = { 
/**
 * The config file.
 */
file: string, source: ConfigSource, 
/**
 * New services (started when they autostart).
 */
added: Array<ServiceKey>, 
/**
 * Services the file no longer names, stopped.
 */
removed: Array<ServiceKey>, 
/**
 * Changed services that were running, restarted with their new config.
 */
restarted: Array<ServiceKey>, 
/**
 * Changed services that were not running: they start with the new config when started.
 */
updated: Array<ServiceKey>, 
/**
 * Services whose config did not change, left alone.
 */
unchanged: Array<ServiceKey>, 
/**
 * Added services that were to start and could not.
 */
not_started: Array<NotStarted>, 
/**
 * Agent options changed; they take effect when the agent restarts.
 */
needs_agent_restart: boolean, 
/**
 * Which ones (`port`, `router_port`, …).
 */
agent_changes: Array<string>, 
/**
 * Settings of environments and apps that changed (`shop/production: auto_update,
 * health_stable`); they apply from now on — the next update check, backup or deploy —
 * without restarting anything.
 */
settings_changed: Array<string>, 
/**
 * The file's new revision.
 */
revision: string, };

export type ConfigSource = "settings" | "reload" | "signal" | "watch";

export type NotStarted = { key: ServiceKey, error: string, };

export type ConfigRejection = { file: string, line: number, column: number, field: string, message: string, 
/**
 * How many problems in all.
 */
problems: number, source: ConfigSource, 
/**
 * RFC 3339 UTC time of the refusal.
 */
time: string, };

export type BackupTrigger = "manual" | "scheduled" | "pre_deploy" | "safety";

export type ArtifactKind = "sqlite" | "files" | "postgres_dump" | "postgres_globals" | "mariadb_dump" | "redis_rdb";

export type BackupArtifact = { 
/**
 * The database's name, or `files`.
 */
name: string, kind: ArtifactKind, file: string, size: number, sha256: string, compressed: boolean, 
/**
 * The server's database a dump holds (PostgreSQL, MariaDB).
 */
database?: string, 
/**
 * What the backup could not promise (a MariaDB table that is not transactional).
 */
warning?: string, };

export type BackupInfo = { id: number, app: string, env: string, 
/**
 * RFC 3339 UTC.
 */
time: string, trigger: BackupTrigger, size: number, duration_ms: number, 
/**
 * Its checksums and integrity were checked (when taken, or by the last `verify`).
 */
verified: boolean, 
/**
 * Why its last check failed (a checksum mismatch, a damaged copy, a missing file): a failed
 * backup is never picked by a plain `restore` and never kept by retention in place of a
 * good one.
 */
problem: string | null, dir: string, artifacts: Array<BackupArtifact>, };

export type EnvBackups = { app: string, env: string, 
/**
 * `every 6h`, `daily at 03:30 Europe/Berlin` (the agent's local time and zone), or none.
 */
schedule: string | null, 
/**
 * RFC 3339 UTC time of the next scheduled backup.
 */
next_due: string | null, 
/**
 * Newest first.
 */
backups: Array<BackupInfo>, 
/**
 * The last backup attempt, when it failed (no backup has succeeded since).
 */
last_failure?: BackupFailure, 
/**
 * Why "back up now" cannot work here (nothing is listed to back up), when it cannot.
 */
nothing_to_back_up?: string, };

export type BackupFailure = { 
/**
 * RFC 3339 UTC.
 */
time: string, trigger: BackupTrigger, error: string, };

export type BackupRequest = { 
/**
 * `APP/ENV`.
 */
target: Target, };

export type RestoreRequest = { 
/**
 * `APP/ENV`.
 */
target: Target, 
/**
 * The backup; default: the newest verified one.
 */
backup: number | null, 
/**
 * Only this database; default: everything in the backup.
 */
database: string | null, 
/**
 * Only this one of the environment's `files` (its path, or its name in the archive);
 * default: everything in the backup.
 */
path: string | null, 
/**
 * Write the backup out here for inspection instead of replacing anything live: a new file
 * when one database is restored, else a new (or empty) folder.
 */
to: string | null, };

export type RestoreOutcome = { backup: number, 
/**
 * Databases and files put in place (or what was written, with `to`).
 */
restored: Array<string>, 
/**
 * Safety copies of what was replaced (files of the safety backup).
 */
safety_copies: Array<string>, 
/**
 * The safety copy's id in the catalogue: restoring it undoes this restore.
 */
safety_backup: number | null, };

export type VerifyOutcome = { id: number, ok: boolean, problems: Array<string>, };

export type DeployKind = "deploy" | "promote" | "rollback" | "update";

export type DeployResult = "running" | "succeeded" | "failed" | "interrupted";

export type StepStatus = "started" | "ok" | "failed";

export type DeployRequest = { app: string, env: string, kind: DeployKind, 
/**
 * Promote: the environment whose release to roll out.
 */
from_env: string | null, 
/**
 * Rollback: the release to go back to (default: the one live before the current one).
 * Deploy: a release built on another computer and copied into this agent's
 * `apps/APP/incoming/` (an environment with `host = …` there), checked against its manifest.
 */
release: string | null, 
/**
 * Deploy: the branch, tag or commit to build (default: what the source has checked out).
 */
git_ref: string | null, 
/**
 * For an environment on another host: build there from the pushed commit instead of
 * here (which is what happens anyway when the host's OS or architecture differ).
 */
build_on_host: boolean, };

export type StepRecord = { name: string, ok: boolean, ms: number, detail: string | null, 
/**
 * The last lines a failed command step wrote.
 */
output: Array<string>, };

export type DeployRecord = { id: number, app: string, env: string, kind: DeployKind, release: string | null, 
/**
 * The release that was live before.
 */
previous: string | null, commit: string | null, started: string, finished: string | null, result: DeployResult, error: string | null, steps: Array<StepRecord>, 
/**
 * Step output, the last log lines of each service and their exits, when it failed.
 */
diagnostics: string | null, 
/**
 * How long it took in all, once finished.
 */
ms: number | null, 
/**
 * Data its rollback discarded from each database, and where it is kept.
 */
discarded: Array<Discarded>, };

export type DeployEvent = { "type": "step", name: string, status: StepStatus, ms: number | null, detail: string | null, } | { "type": "output", step: string, line: string, } | { "type": "done", record: DeployRecord, };

export type AppInfo = { name: string, 
/**
 * It has a `source` to build and deploy from.
 */
deployable: boolean, envs: Array<EnvRelease>, };

export type EnvRelease = { env: string, current: string | null, 
/**
 * The app's version in the current release (its nearest tag, else the short commit).
 */
version: string | null, 
/**
 * Automatic updates, when the environment has them (`auto_update = { ... }`).
 */
auto_update: AutoUpdateState | null, 
/**
 * The other host it runs on (`host = "NAME"`); a deploy of it from here ships there.
 */
host: string | null, 
/**
 * The release a rollback would go back to; none when there is no earlier one.
 */
rollback_to: string | null, };

export type ReleaseInfo = { id: string, 
/**
 * The app's version: its nearest tag (`1.5.0-rc1+3`), else the short commit.
 */
version: string, commit: string, branch: string, dirty: boolean, time: string, 
/**
 * Environments whose `current` is this release.
 */
current_in: Array<string>, };

export type HostState = "connecting" | "connected" | "agent_down" | "unreachable";

export type HostInfo = { name: string, 
/**
 * What `ssh` is given: `user@host`, with `:port` when not 22, or a name of ssh_config.
 */
destination: string, os: string, arch: string, state: HostState, 
/**
 * Since when it is in that state (RFC 3339 UTC).
 */
since: string, 
/**
 * Why it is not connected, in words.
 */
reason: string | null, 
/**
 * The host agent's version, once it answered.
 */
version: string | null, 
/**
 * The host agent's verdict, while connected.
 */
overall: Verdict | null, 
/**
 * Each of its environments' verdict, while connected (production first).
 */
envs: Array<EnvVerdict>, };

export type EnvVerdict = { app: string, env: string, verdict: Verdict, };

export type Preflight = { version: string, os: string, arch: string, 
/**
 * Free bytes where releases are kept.
 */
free_bytes: number | null, 
/**
 * Programs the environment's build steps or services run that the agent's PATH does not
 * find, each with what needs it.
 */
missing: Array<MissingTool>, 
/**
 * The agent's PATH, where it looked.
 */
path: string, };

export type MissingTool = { program: string, 
/**
 * `build`, `test`, `migrate` or the service (`shop/production/web`).
 */
needed_by: string, };

export type AutoUpdateState = { 
/**
 * How often the upstream is checked, as written (`"1h"`).
 */
every: string, 
/**
 * The daily window updates may start in, on the agent's local clock, with its zone
 * (`"02:00-05:00 Europe/Berlin"`), when there is one.
 */
window: string | null, 
/**
 * Paused after failures in a row: nothing updates until someone resumes.
 */
paused: boolean, 
/**
 * Automatic updates that failed in a row.
 */
failures: number, 
/**
 * The commit whose update failed, not tried again until the upstream moves or someone
 * deploys by hand.
 */
failed_commit: string | null, 
/**
 * Why the last check could not update (a dirty or diverged checkout), until one can.
 */
refused: string | null, 
/**
 * What the last check found to do and is waiting for: the window, or a new commit after
 * a failed one.
 */
waiting: string | null, 
/**
 * When the upstream was last checked (RFC 3339 UTC).
 */
last_check: string | null, };

export type ResumeRequest = { app: string, env: string, };

export type Discarded = { 
/**
 * The database's name in the environment's `databases`.
 */
database: string, 
/**
 * The live database's path.
 */
path: string, 
/**
 * Rows it held before the rollback that it no longer holds (new or changed since the
 * backup); `None` when the database was too large to compare.
 */
rows: number | null, 
/**
 * The same, per table (only tables that lost rows).
 */
tables: Array<TableRows>, 
/**
 * The safety backup that holds the database as it was just before (see `homeport backups`).
 */
backup: number | null, 
/**
 * The file of that backup holding this database.
 */
copy: string, 
/**
 * A database server's database (PostgreSQL, MariaDB, Redis) rather than a SQLite file: its
 * rows are not compared, so `rows` is `None` whatever its size.
 */
server: boolean, };

export type TableRows = { table: string, rows: number, };

export type DeployDetail = { record: DeployRecord, 
/**
 * `[step] line`, oldest first (the newest lines, when there were very many).
 */
output: Array<string>, };

export type Instance = { 
/**
 * `blue` or `green`.
 */
colour: string, 
/**
 * It is the one requests go to.
 */
live: boolean, 
/**
 * Its own port (the public one is the service's `port`).
 */
port: number, };

export type MetricsResolution = "raw" | "1m" | "10m" | "1h";

export type MetricsReport = { target: Target, 
/**
 * Unix seconds: the range covered.
 */
from: number, to: number, resolution: MetricsResolution, 
/**
 * Seconds between points (the sampling interval for `raw`).
 */
step: number, 
/**
 * How often the agent samples, in seconds; 0 when sampling is off.
 */
sample_every: number, services: Array<ServiceMetrics>, 
/**
 * Uptime of the environments the target covers.
 */
envs: Array<EnvUptime>, 
/**
 * What happened in the range, oldest first: restarts, deploys, rollbacks, backups,
 * restores, health flips, the agent starting.
 */
annotations: Array<Annotation>, };

export type ServiceMetrics = { key: ServiceKey, 
/**
 * Percent of the counted time it was up over the range (see docs/metrics.md); `null`
 * when it was never meant to run in it.
 */
uptime: number | null, points: MetricPoints, };

export type MetricPoints = { 
/**
 * Unix seconds at the start of each point's window.
 */
t: Array<number>, 
/**
 * CPU, percent of one core: the average over the window and its highest sample.
 */
cpu: Array<number | null>, cpu_max: Array<number | null>, 
/**
 * Resident memory of the service's processes, bytes: average and highest.
 */
rss: Array<number | null>, rss_max: Array<number | null>, 
/**
 * Health probe latency of the probes that passed, milliseconds: average and slowest.
 */
latency: Array<number | null>, latency_max: Array<number | null>, 
/**
 * Percent of the window's counted time it was up.
 */
up: Array<number | null>, };

export type EnvUptime = { app: string, env: string, 
/**
 * Percent of the counted time no service of it was down; `null` when nothing ran.
 */
uptime: number | null, up_secs: number, down_secs: number, t: Array<number>, up: Array<number | null>, };

export type Annotation = { 
/**
 * RFC 3339, as the event has it.
 */
time: string, 
/**
 * Unix seconds (with a fraction), for the chart.
 */
at: number, subject: Subject, kind: AnnotationKind, 
/**
 * One line a person reads: "exit code 3; restarted", "deploy of r42 went live".
 */
label: string, };

export type AnnotationKind = "restart" | "crash" | "stop" | "deploy" | "deploy_failed" | "rollback" | "backup" | "backup_failed" | "restore" | "restore_failed" | "unhealthy" | "healthy" | "agent_started";
