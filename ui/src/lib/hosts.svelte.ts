// The other hosts this computer's agent reaches (`homeport host add`), and which one the screens
// show. The choice is kept for this tab (sessionStorage), so a reload stays on the same host.
import * as api from '../api';

const CHOSEN = 'homeport.host';

class Hosts {
  list = $state<api.HostInfo[]>([]);
  /** The host the screens show; null: this computer. */
  chosen = $state<string | null>(null);
  #timer: ReturnType<typeof setInterval> | null = null;

  /** What this computer's agent says of the chosen host (its connection, since when, why). */
  get current(): api.HostInfo | undefined {
    return this.list.find((h) => h.name === this.chosen);
  }

  start() {
    const saved = sessionStorage.getItem(CHOSEN);
    if (saved) {
      this.chosen = saved;
      api.setHost(saved);
    }
    void this.refresh();
    // The connections change without the chosen host's stream saying so: ask now and then.
    this.#timer = setInterval(() => void this.refresh(), 3000);
  }

  stop() {
    if (this.#timer) clearInterval(this.#timer);
  }

  async refresh() {
    try {
      this.list = await api.hosts();
      // A host removed meanwhile: back to this computer.
      if (this.chosen && !this.list.some((h) => h.name === this.chosen)) this.choose(null);
    } catch {
      // This computer's agent is not heard: the page's own banner says so.
    }
  }

  choose(name: string | null) {
    this.chosen = name;
    api.setHost(name);
    if (name) sessionStorage.setItem(CHOSEN, name);
    else sessionStorage.removeItem(CHOSEN);
  }
}

export const hosts = new Hosts();

/** "connected", "unreachable"… as a person reads it. */
export function stateWord(s: api.HostState): string {
  return s === 'agent_down' ? 'its agent is down' : s;
}
