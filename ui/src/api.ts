// The one module that talks to the agent. Every screen calls the agent through these functions,
// so the wire format lives in one place (it mirrors crates/homeport-types).

export type ServiceState =
  | 'stopped' | 'starting' | 'running' | 'healthy' | 'unhealthy'
  | 'stopping' | 'exited' | 'crashed' | 'backing_off' | 'failed';
export type Health = 'unknown' | 'healthy' | 'unhealthy';
export type ExitReason = { kind: 'code' | 'signal'; value: number } | { kind: 'lost' };

export interface ServiceKey { app: string; env: string; service: string }

export interface ServiceStatus {
  key: ServiceKey;
  state: ServiceState;
  health: Health;
  pid: number | null;
  uptime_secs: number | null;
  restarts: number;
  last_exit: ExitReason | null;
  message: string | null;
  cpu_percent: number | null;
  rss_bytes: number | null;
  port: number | null;
  url: string | null;
  autostart: boolean;
}

export interface StatusSnapshot {
  agent: { pid: number; version: string; config_path: string; uptime_secs: number };
  services: ServiceStatus[];
}

export type AgentEvent = { time: string; key: ServiceKey } & (
  | { type: 'state'; from: ServiceState; to: ServiceState; pid: number | null; exit: ExitReason | null; restarts: number; message: string | null }
  | { type: 'health'; health: Health; message: string | null }
);

export interface LogEntry { service: ServiceKey; time: string; stream: 'stdout' | 'stderr'; text: string }

export interface ActionOutcome { key: ServiceKey; state: ServiceState; error: string | null }
export type Action = 'start' | 'stop' | 'restart';

export type ConfigChange =
  | { kind: 'port'; app: string; env: string; service: string; port: number }
  | { kind: 'database'; app: string; env: string; name: string; path: string }
  | { kind: 'agent'; key: 'port' | 'log_max_bytes' | 'log_keep'; value: number };

export interface ConfigView {
  file: string;
  revision: string;
  agent: { port: number; log_max_bytes: number; log_keep: number; data_dir: string };
  envs: {
    app: string;
    env: string;
    autostart: boolean;
    databases: Record<string, string>;
    services: { service: string; port: number | null; secret_env: string[] }[];
  }[];
}

export interface Problem { field: string; line: number; column: number; message: string; help: string | null }

export interface Preview {
  valid: boolean;
  problems: Problem[];
  diff: string;
  restart: ServiceKey[];
  revision: string;
}

export interface ApplyResult { restarted: ServiceKey[]; needs_agent_restart: boolean; revision: string }

export interface BackupArtifact { name: string; kind: 'database' | 'files'; file: string; size: number; sha256: string; compressed: boolean }
export interface BackupInfo {
  id: number; app: string; env: string; time: string; trigger: 'manual' | 'scheduled' | 'pre_deploy';
  size: number; duration_ms: number; verified: boolean; dir: string; artifacts: BackupArtifact[];
}
export interface EnvBackups { app: string; env: string; schedule: string | null; next_due: string | null; backups: BackupInfo[] }
export interface RestoreOutcome { backup: number; restored: string[]; safety_copies: string[] }
export interface VerifyOutcome { id: number; ok: boolean; problems: string[] }

export type DeployKind = 'deploy' | 'promote' | 'rollback' | 'update';
export interface StepRecord { name: string; ok: boolean; ms: number; detail: string | null }
export interface DeployRecord {
  id: number; app: string; env: string; kind: DeployKind; release: string | null; previous: string | null;
  commit: string | null; started: string; finished: string | null; result: string; error: string | null;
  steps: StepRecord[]; diagnostics: string | null;
}
export type DeployEvent =
  | { type: 'step'; name: string; status: string; ms: number | null; detail: string | null }
  | { type: 'output'; step: string; line: string }
  | { type: 'done'; record: DeployRecord };
export interface AppInfo { name: string; deployable: boolean; envs: { env: string; current: string | null }[] }

export class ApiError extends Error {
  constructor(public status: number, public kind: string, message: string, public body?: unknown) {
    super(message);
  }
}

export function keyString(k: ServiceKey): string {
  return `${k.app}/${k.env}/${k.service}`;
}

async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['Content-Type'] = 'application/json';
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  const data: unknown = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    const err = (data ?? {}) as { kind?: string; message?: string };
    throw new ApiError(resp.status, err.kind ?? 'http', err.message ?? `HTTP ${resp.status}`, data);
  }
  return data as T;
}

export const status = () => call<StatusSnapshot>('GET', 'api/v1/status');
export const act = (action: Action, target: string) => call<ActionOutcome[]>('POST', `api/v1/${action}`, { target });
export const eventHistory = (limit = 500) => call<AgentEvent[]>('GET', `api/v1/events?limit=${limit}`);
export const config = () => call<ConfigView>('GET', 'api/v1/config');
export const previewConfig = (changes: ConfigChange[], revision: string) =>
  call<Preview>('POST', 'api/v1/config/preview', { changes, revision });
export const applyConfig = (changes: ConfigChange[], revision: string) =>
  call<ApplyResult>('POST', 'api/v1/config/apply', { changes, revision });

export const backups = () => call<EnvBackups[]>('GET', 'api/v1/backups');
export const backupNow = (target: string) => call<BackupInfo>('POST', 'api/v1/backups', { target });
export const verifyBackup = (id: number) => call<VerifyOutcome>('POST', `api/v1/backups/${id}/verify`);
export const restore = (target: string, backup: number) => call<RestoreOutcome>('POST', 'api/v1/restore', { target, backup });

export const apps = () => call<AppInfo[]>('GET', 'api/v1/apps');
export const deploys = (app: string) => call<DeployRecord[]>('GET', `api/v1/deploys?app=${encodeURIComponent(app)}`);

/** Starts a deploy and calls `onEvent` for each step and output line as it happens; resolves
 *  with the final record. */
export async function deploy(
  req: { app: string; env: string; kind: DeployKind; from_env?: string; release?: string },
  onEvent: (e: DeployEvent) => void,
): Promise<DeployRecord> {
  const resp = await fetch('api/v1/deploy', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(req),
  });
  if (!resp.ok || !resp.body) {
    const err = (await resp.json().catch(() => ({}))) as { kind?: string; message?: string };
    throw new ApiError(resp.status, err.kind ?? 'http', err.message ?? `HTTP ${resp.status}`);
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const ev = JSON.parse(buf.slice(0, i)) as DeployEvent;
      buf = buf.slice(i + 1);
      onEvent(ev);
      if (ev.type === 'done') return ev.record;
    }
  }
  throw new ApiError(0, 'stream', 'the deploy stream ended early');
}

/** Live status: a snapshot first, then every event; `resync` replaces the snapshot when the
 *  browser fell behind. Returns a function that closes the stream. */
export function subscribeEvents(handlers: {
  snapshot: (s: StatusSnapshot) => void;
  event: (e: AgentEvent) => void;
  connection: (open: boolean) => void;
}): () => void {
  const source = new EventSource('api/v1/events/stream');
  source.addEventListener('snapshot', (m) => handlers.snapshot(JSON.parse((m as MessageEvent).data)));
  source.addEventListener('resync', (m) => handlers.snapshot(JSON.parse((m as MessageEvent).data)));
  source.addEventListener('event', (m) => handlers.event(JSON.parse((m as MessageEvent).data)));
  source.onopen = () => handlers.connection(true);
  source.onerror = () => handlers.connection(false);
  return () => source.close();
}

/** Live log lines of a target (APP, APP/ENV or APP/ENV/SERVICE): the last `tail` lines, then
 *  new ones in batches. */
export function subscribeLogs(
  target: string,
  tail: number,
  handlers: { lines: (l: LogEntry[]) => void; skipped: (n: number | null) => void; connection: (open: boolean) => void },
): () => void {
  const source = new EventSource(`api/v1/logs/stream?target=${encodeURIComponent(target)}&tail=${tail}`);
  source.addEventListener('lines', (m) => handlers.lines(JSON.parse((m as MessageEvent).data)));
  source.addEventListener('skipped', (m) => handlers.skipped(JSON.parse((m as MessageEvent).data).count));
  source.onopen = () => handlers.connection(true);
  source.onerror = () => handlers.connection(false);
  return () => source.close();
}
