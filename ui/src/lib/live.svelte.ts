// Live status shared by every screen: one event stream, one snapshot, updated in place.
import * as api from '../api';

class Live {
  snapshot = $state<api.StatusReport | null>(null);
  /** The agent's verdict ("production healthy · beta: web crash-looping"), computed by the
   *  agent: with each snapshot, and again on the stream whenever a service's change alters it. */
  overall = $state<api.Verdict | null>(null);
  /** The event stream is open: what the screens show is what the agent says now. */
  connected = $state(false);
  /** When the agent was last heard from (a snapshot, an event, an answer). */
  lastHeard = $state<Date | null>(null);
  /** 401 from the agent: the browser has no session (it ended, or the agent restarted). */
  signedOut = $state(false);
  error = $state<string | null>(null);
  /** Events received since this page opened, newest last. */
  recent = $state<api.AgentEvent[]>([]);
  /** The stream has opened, or failed to, at least once: before that the page is connecting,
   *  and a first snapshot is not "the past". */
  #tried = $state(false);
  #close: (() => void) | null = null;
  #poll: ReturnType<typeof setInterval> | null = null;
  #unlisten: (() => void) | null = null;

  /** The snapshot is from an agent this page no longer hears: show it, greyed, as the past. */
  get stale(): boolean {
    return this.snapshot !== null && !this.connected && this.#tried;
  }

  async start() {
    this.#unlisten = api.onSignedOut(() => this.signOut());
    try {
      this.#took(await api.status());
    } catch (e) {
      if (e instanceof api.ApiError && e.status === 401) return;
      this.error = e instanceof Error ? e.message : String(e);
    }
    if (this.signedOut) return;
    this.#close = api.subscribeEvents({
      snapshot: (s) => this.#took(s),
      event: (e) => {
        this.lastHeard = new Date();
        this.apply(e);
      },
      overall: (v) => (this.overall = v),
      connection: (open) => {
        this.connected = open;
        this.#tried = true;
        if (open) {
          this.error = null;
          this.lastHeard = new Date();
        }
      },
    });
    // CPU, memory and uptime change without events: refresh them now and then.
    this.#poll = setInterval(() => {
      if (this.connected) void this.refresh();
    }, 5000);
  }

  stop() {
    this.#close?.();
    this.#close = null;
    this.#unlisten?.();
    if (this.#poll) clearInterval(this.#poll);
  }

  /** Forgets what the last agent said: another host's is about to be shown. */
  reset() {
    this.snapshot = null;
    this.overall = null;
    this.connected = false;
    this.lastHeard = null;
    this.error = null;
    this.recent = [];
    this.#tried = false;
  }

  /** The session is over: stop asking, and let the screens say how to sign in again. */
  signOut() {
    this.signedOut = true;
    this.connected = false;
    this.#close?.();
    this.#close = null;
  }

  #took(s: api.StatusReport) {
    this.snapshot = s;
    this.overall = s.overall;
    this.lastHeard = new Date();
    this.error = null;
  }

  async refresh() {
    try {
      this.#took(await api.status());
    } catch (e) {
      if (!(e instanceof api.ApiError && e.status === 401)) this.error = e instanceof Error ? e.message : String(e);
    }
  }

  apply(e: api.AgentEvent) {
    this.recent = [...this.recent.slice(-999), e];
    if (e.type === 'config_applied') {
      // Services may have come or gone: take the agent's whole picture again.
      if (this.snapshot) this.snapshot.agent.config_rejected = null;
      void this.refresh();
      return;
    }
    if (e.type === 'config_rejected') {
      // A refused settings edit left the file as it was; a refused file is refused until fixed.
      if (this.snapshot && e.source !== 'settings') {
        const { file, line, column, field, message, problems, source } = e;
        this.snapshot.agent.config_rejected = { file, line, column, field, message, problems, source, time: e.time };
      }
      return;
    }
    const svc = this.snapshot?.services.find((s) => api.keyString(s.key) === e.subject);
    if (!svc) return;
    if (e.type === 'state') {
      svc.state = e.to;
      // The countdown comes with the next snapshot; the message says it meanwhile.
      svc.retry_in_secs = null;
      svc.pid = e.pid;
      svc.restarts = e.restarts;
      svc.message = e.message;
      if (e.exit) svc.last_exit = e.exit;
      if (e.to === 'starting' || e.to === 'running' || e.to === 'healthy') svc.uptime_secs ??= 0;
      if (!e.pid) {
        svc.uptime_secs = null;
        svc.cpu_percent = null;
        svc.rss_bytes = null;
      }
      if (e.to === 'stopped' || e.to === 'exited' || e.to === 'crashed' || e.to === 'failed') svc.health = 'unknown';
    } else if (e.type === 'health') {
      svc.health = e.health;
    }
  }
}

export const live = new Live();
