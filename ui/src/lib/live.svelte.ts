// Live status shared by every screen: one event stream, one snapshot, updated in place.
import * as api from '../api';

class Live {
  snapshot = $state<api.StatusReport | null>(null);
  /** The agent's verdict ("production healthy · beta: web crash-looping"), computed by the
   *  agent: with each snapshot, and again on the stream whenever a service's change alters it. */
  overall = $state<api.Verdict | null>(null);
  connected = $state(false);
  /** 401 from the agent: the browser has no session. */
  signedOut = $state(false);
  error = $state<string | null>(null);
  /** Events received since this page opened, newest last. */
  recent = $state<api.AgentEvent[]>([]);
  #close: (() => void) | null = null;
  #poll: ReturnType<typeof setInterval> | null = null;

  async start() {
    try {
      this.snapshot = await api.status();
      this.overall = this.snapshot.overall;
      this.signedOut = false;
    } catch (e) {
      if (e instanceof api.ApiError && e.status === 401) {
        this.signedOut = true;
        return;
      }
      this.error = e instanceof Error ? e.message : String(e);
    }
    this.#close = api.subscribeEvents({
      snapshot: (s) => {
        this.snapshot = s;
        this.overall = s.overall;
      },
      event: (e) => this.apply(e),
      overall: (v) => (this.overall = v),
      connection: (open) => (this.connected = open),
    });
    // CPU, memory and uptime change without events: refresh them now and then.
    this.#poll = setInterval(() => this.refresh(), 5000);
  }

  stop() {
    this.#close?.();
    if (this.#poll) clearInterval(this.#poll);
  }

  async refresh() {
    try {
      this.snapshot = await api.status();
      this.overall = this.snapshot.overall;
      this.error = null;
    } catch (e) {
      this.error = e instanceof Error ? e.message : String(e);
    }
  }

  apply(e: api.AgentEvent) {
    this.recent = [...this.recent.slice(-999), e];
    const svc = this.snapshot?.services.find((s) => api.keyString(s.key) === e.subject);
    if (!svc) return;
    if (e.type === 'state') {
      svc.state = e.to;
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
