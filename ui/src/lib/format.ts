import type { ExitReason, ServiceState } from '../api';

export function duration(secs: number | null): string {
  if (secs === null) return '–';
  if (secs < 60) return `${secs}s`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m ${secs % 60}s`;
  if (secs < 86400) return `${Math.floor(secs / 3600)}h ${Math.floor((secs % 3600) / 60)}m`;
  return `${Math.floor(secs / 86400)}d ${Math.floor((secs % 86400) / 3600)}h`;
}

export function bytes(b: number | null): string {
  if (b === null) return '–';
  if (b < 1024 * 1024) return `${(b / 1024).toFixed(1)} KiB`;
  const mib = b / 1024 / 1024;
  return mib >= 1024 ? `${(mib / 1024).toFixed(1)} GiB` : `${mib.toFixed(1)} MiB`;
}

const SIGNALS: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 6: 'SIGABRT', 9: 'SIGKILL', 11: 'SIGSEGV', 15: 'SIGTERM' };

export function exit(e: ExitReason | null): string {
  if (!e) return '';
  if (e.kind === 'lost') return 'lost';
  return e.kind === 'code' ? `exit ${e.value}` : (SIGNALS[e.value] ?? `signal ${e.value}`);
}

/** The colour family of a state badge. */
export function tone(s: ServiceState): 'good' | 'info' | 'warn' | 'bad' | 'idle' {
  switch (s) {
    case 'healthy':
    case 'running':
      return 'good';
    case 'starting':
    case 'stopping':
      return 'info';
    case 'unhealthy':
    case 'backing_off':
      return 'warn';
    case 'crashed':
    case 'failed':
      return 'bad';
    default:
      return 'idle';
  }
}

/** A service's state in words: "restarting in 15 s", never `backing_off`. */
export function stateWords(s: { state: ServiceState; retry_in_secs: number | null }): string {
  return s.state === 'backing_off' && s.retry_in_secs ? `restarting in ${s.retry_in_secs} s` : stateLabel(s.state);
}

export function stateLabel(s: ServiceState): string {
  return s === 'backing_off' ? 'restarting' : s;
}

/** `HH:MM:SS.mmm` of an RFC 3339 time, in local time. */
export function clock(rfc3339: string): string {
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return rfc3339;
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** A time as a person reads it: local time with its zone ("14:03:22 CET"). The API and files
 *  keep UTC; only what is shown is local. */
export function timeWithZone(t: Date | string): string {
  const d = typeof t === 'string' ? new Date(t) : t;
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false, timeZoneName: 'short' });
}

/** A date and time as a person reads it, local with its zone ("3 Dec 2026, 14:03 CET"). */
export function dateTimeWithZone(t: Date | string): string {
  const d = typeof t === 'string' ? new Date(t) : t;
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false, timeZoneName: 'short',
  });
}

/** The level a log line says it is, or null for an ordinary line: a JSON `level` (or `severity`,
 *  `lvl`, `levelname`) field, a level word as loggers print it (`ERROR`, `[warn]`, `level=error`),
 *  a Rust or Go panic, or a Python traceback or exception line. The stream does not decide it. */
export function logLevel(text: string): 'error' | 'warn' | null {
  const t = text.trimStart();
  if (t.startsWith('{')) {
    try {
      const v = JSON.parse(t) as Record<string, unknown>;
      const raw = v.level ?? v.severity ?? v.lvl ?? v.levelname;
      if (typeof raw === 'string') return levelWord(raw);
      // pino and bunyan: numbers (50 error, 60 fatal, 40 warn).
      if (typeof raw === 'number') return raw >= 50 ? 'error' : raw >= 40 ? 'warn' : null;
    } catch {
      // Not JSON after all: read it as text.
    }
  }
  if (ERROR_WORDS.test(text) || PANIC.test(text)) return 'error';
  if (WARN_WORDS.test(text)) return 'warn';
  return null;
}

function levelWord(w: string): 'error' | 'warn' | null {
  const l = w.toLowerCase();
  if (['error', 'err', 'fatal', 'critical', 'crit', 'panic', 'alert', 'emerg', 'emergency'].includes(l)) return 'error';
  if (['warn', 'warning'].includes(l)) return 'warn';
  return null;
}

// Level words in capitals, as key=value or as a bracketed tag: "ERROR", "[error]", "level=error".
// Lower-case words in a sentence ("0 errors", "no error") are not a level.
const ERROR_WORDS = /(?:^|[\s\[(|:])(?:ERROR|ERR|FATAL|CRITICAL|CRIT|PANIC)(?:[\s\]):|]|$)|\b(?:level|severity|lvl)=["']?(?:error|err|fatal|critical|panic)\b|\[(?:error|fatal|critical)\]/;
const PANIC = /^thread '.*' panicked at |^Traceback \(most recent call last\):|^panic: |^\w*(?:Error|Exception): /;
const WARN_WORDS = /(?:^|[\s\[(|:])(?:WARN|WARNING)(?:[\s\]):|]|$)|\b(?:level|severity|lvl)=["']?warn(?:ing)?\b|\[warn(?:ing)?\]/;
