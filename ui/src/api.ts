import { invoke, isTauri } from '@tauri-apps/api/core';

// The one module that talks to the agent. Every screen calls the agent through these functions,
// so the wire format lives in one place (it mirrors crates/homeport-types).

// The wire types are generated from crates/homeport-types (types.gen.ts), so they cannot drift.
import type {
  Action, ActionOutcome, AppInfo, AutoUpdateState, BackupInfo, ConfigApplied, ConfigChange, ConfigPreview,
  ConfigView, DeployEvent, DeployKind, DeployRecord, EnvBackups, Event, HostInfo, LogEntry, MetricsReport,
  MetricsResolution, RestoreOutcome, ServiceDetail, ServiceKey, StatusReport, Verdict, VerifyOutcome,
} from './types.gen';
export type * from './types.gen';
/** An event of the agent's stream (`Event` in homeport-types). */
export type AgentEvent = Event;
export type Preview = ConfigPreview;
export type ApplyResult = ConfigApplied;

export class ApiError extends Error {
  constructor(public status: number, public kind: string, message: string, public body?: unknown) {
    super(message);
  }
}

export function keyString(k: ServiceKey): string {
  return `${k.app}/${k.env}/${k.service}`;
}

// Where the agent is. In a browser the page comes from the agent itself: same origin, signed in
// by the session cookie plus the session's secret, which the sign-in page stored in this origin's
// storage (the browser sends the cookie to every server on 127.0.0.1, whatever its port; only
// this origin's pages can read the secret). In the tray app's window the page is the bundled UI
// (tauri://localhost): the tray says where the agent listens and hands over its token, sent as a
// header.
interface Connection { base: string; init: RequestInit }
let connection: Promise<Connection> | null = null;

/** Where the sign-in page (served by the agent at /login) leaves the session's secret. */
const SESSION_SECRET = 'homeport.session';

function browserConnection(): Connection {
  const secret = localStorage.getItem(SESSION_SECRET);
  const headers: Record<string, string> = secret ? { 'X-Homeport-Session': secret } : {};
  return { base: '', init: { credentials: 'same-origin', headers } };
}

function connect(): Promise<Connection> {
  connection ??= isTauri()
    ? invoke<{ base_url: string; token: string }>('agent_connection').then((c) => ({
        base: `${c.base_url}/`,
        init: { credentials: 'omit', headers: { Authorization: `Bearer ${c.token}` } },
      }))
    : Promise.resolve(browserConnection());
  // A restarted agent has a new port and token: ask again after a failure.
  connection.catch(() => (connection = null));
  return connection;
}

/** Who wants to know that the browser's session has ended (a 401): the screens then show the
 *  sign-in page instead of numbers nobody can refresh. */
const signedOutListeners = new Set<() => void>();
export function onSignedOut(listener: () => void): () => void {
  signedOutListeners.add(listener);
  return () => signedOutListeners.delete(listener);
}

/** Forget the agent's address and token (after a network error or a 401), so the next request
 *  asks the tray again; in a browser, a 401 means the session is over: forget its secret and
 *  say so. */
function reconnect(status?: number) {
  if (isTauri()) connection = null;
  else if (status === 401) {
    localStorage.removeItem(SESSION_SECRET);
    connection = null;
    for (const l of signedOutListeners) l();
  }
}

// Which host's agent the screens show: this computer's (null), or another host's through this
// agent, which relays `api/v1/hosts/NAME/api/v1/…` over the SSH connection it holds. The page
// keeps one origin and one session whatever host it shows.
let host: string | null = null;

/** Shows another host's agent (by its name in `homeport host list`), or this computer's (null). */
export function setHost(name: string | null) {
  host = name;
}

export function currentHost(): string | null {
  return host;
}

/** The path of an API call on the host the screens show. */
function onHost(path: string): string {
  return host && path.startsWith('api/v1/') ? `api/v1/hosts/${encodeURIComponent(host)}/${path}` : path;
}

async function send(path: string, init: RequestInit = {}, local = false): Promise<Response> {
  const c = await connect();
  if (!local) path = onHost(path);
  const headers = { ...(c.init.headers as Record<string, string>), ...(init.headers as Record<string, string>) };
  try {
    const resp = await fetch(c.base + path, { ...c.init, ...init, headers });
    if (resp.status === 401) reconnect(401);
    return resp;
  } catch (e) {
    reconnect();
    throw e;
  }
}

async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown, local = false): Promise<T> {
  const init: RequestInit = { method, headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  const resp = await send(path, init, local);
  const text = await resp.text();
  const data: unknown = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    const err = (data ?? {}) as { kind?: string; message?: string };
    throw new ApiError(resp.status, err.kind ?? 'http', err.message ?? `HTTP ${resp.status}`, data);
  }
  return data as T;
}

/** True in the tray app's own window (the bundled UI), false in a browser. */
export const inTrayWindow = isTauri();
/** Whether the tray app starts at login (tray window only). */
export const startAtLogin = () => invoke<boolean>('start_at_login');
export const setStartAtLogin = (enabled: boolean) => invoke<boolean>('set_start_at_login', { enabled });

/** The other hosts this computer's agent reaches, and how each connection is (always asked of
 *  this computer's agent, whatever host the screens show). */
export const hosts = () => call<HostInfo[]>('GET', 'api/v1/hosts', undefined, true);
export const status = () => call<StatusReport>('GET', 'api/v1/status');
export const act = (action: Action, target: string) => call<ActionOutcome[]>('POST', `api/v1/${action}`, { target });
export const service = (key: ServiceKey) =>
  call<ServiceDetail>('GET', `api/v1/services/${[key.app, key.env, key.service].map(encodeURIComponent).join('/')}`);
/** History of a target (`all`, APP, APP/ENV or APP/ENV/SERVICE) over `range` (`1h`, `24h`, `7d`,
 *  `30d`…), at the agent's choice of resolution unless one is named. */
export const metrics = (target: string, range: string, resolution: MetricsResolution | 'auto' = 'auto') =>
  call<MetricsReport>('GET', `api/v1/metrics?target=${encodeURIComponent(target)}&range=${range}&resolution=${resolution}`);
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
export const resumeUpdates = (app: string, env: string) => call<AutoUpdateState>('POST', 'api/v1/auto-update/resume', { app, env });
export const deploys = (app: string) => call<DeployRecord[]>('GET', `api/v1/deploys?app=${encodeURIComponent(app)}`);

/** Starts a deploy and calls `onEvent` for each step and output line as it happens; resolves
 *  with the final record. */
export async function deploy(
  req: { app: string; env: string; kind: DeployKind; from_env?: string; release?: string },
  onEvent: (e: DeployEvent) => void,
): Promise<DeployRecord> {
  const resp = await send('api/v1/deploy', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(req),
  });
  if (!resp.ok || !resp.body) {
    const err = (await resp.json().catch(() => ({}))) as { kind?: string; message?: string };
    throw new ApiError(resp.status, err.kind ?? 'http', err.message ?? `HTTP ${resp.status}`);
  }
  for await (const line of lines(resp.body)) {
    const ev = JSON.parse(line) as DeployEvent;
    onEvent(ev);
    if (ev.type === 'done') return ev.record;
  }
  throw new ApiError(0, 'stream', 'the deploy stream ended early');
}

/** The lines of a streamed body (NDJSON, server-sent events) as they arrive, without their
 *  line ends (`\n` or `\r\n`). */
async function* lines(body: NonNullable<Response['body']>): AsyncGenerator<string> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      yield buf.slice(0, i).replace(/\r$/, '');
      buf = buf.slice(i + 1);
    }
  }
}

/** Reads a server-sent event stream with fetch (an EventSource cannot send the tray window's
 *  token), reconnecting with backoff like an EventSource would. Returns a function that closes
 *  it. */
function eventStream(
  path: string,
  onEvent: (name: string, data: string) => void,
  connection: (open: boolean) => void,
): () => void {
  const abort = new AbortController();
  const run = async () => {
    let delay = 500;
    while (!abort.signal.aborted) {
      try {
        const resp = await send(path, { headers: { Accept: 'text/event-stream' }, signal: abort.signal, cache: 'no-store' });
        // A browser whose session ended cannot get it back by retrying: the sign-in page says
        // what to do (`send` told the listeners).
        if (resp.status === 401 && !isTauri()) {
          connection(false);
          return;
        }
        if (!resp.ok || !resp.body) throw new ApiError(resp.status, 'http', `HTTP ${resp.status}`);
        connection(true);
        delay = 500;
        let name = 'message';
        let data: string[] = [];
        for await (const line of lines(resp.body)) {
          if (line === '') {
            if (data.length) onEvent(name, data.join('\n'));
            name = 'message';
            data = [];
          } else if (!line.startsWith(':')) {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'event') name = val;
            else if (field === 'data') data.push(val);
          }
        }
      } catch {
        // Closed by us, or the agent went away: retry below unless closed.
      }
      if (abort.signal.aborted) return;
      connection(false);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  };
  void run();
  return () => abort.abort();
}

/** Live status: a snapshot (with the agent's verdict) first, then every event, and the verdict
 *  again whenever a service's change alters it; `resync` replaces the snapshot when the
 *  browser fell behind. Returns a function that closes the stream. */
export function subscribeEvents(handlers: {
  snapshot: (s: StatusReport) => void;
  event: (e: AgentEvent) => void;
  overall: (v: Verdict) => void;
  connection: (open: boolean) => void;
}): () => void {
  return eventStream(
    'api/v1/events/stream',
    (name, data) => {
      if (name === 'snapshot' || name === 'resync') handlers.snapshot(JSON.parse(data));
      else if (name === 'event') handlers.event(JSON.parse(data));
      else if (name === 'overall') handlers.overall(JSON.parse(data));
    },
    handlers.connection,
  );
}

/** Live log lines of a target (APP, APP/ENV or APP/ENV/SERVICE): the last `tail` lines, then
 *  new ones in batches. */
export function subscribeLogs(
  target: string,
  tail: number,
  handlers: { lines: (l: LogEntry[]) => void; skipped: (n: number | null) => void; connection: (open: boolean) => void },
): () => void {
  return eventStream(
    `api/v1/logs/stream?target=${encodeURIComponent(target)}&tail=${tail}`,
    (name, data) => {
      if (name === 'lines') handlers.lines(JSON.parse(data));
      else if (name === 'skipped') handlers.skipped(JSON.parse(data).count);
    },
    handlers.connection,
  );
}
