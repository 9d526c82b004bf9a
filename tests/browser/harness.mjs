// Starts a real agent with the fixture app and a real headless Chromium for the browser tests.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

export const ROOT = resolve(import.meta.dirname, '../..');
export const ARTIFACTS = join(ROOT, 'tests/artifacts');

function targetDir() {
  if (process.env.CARGO_TARGET_DIR) return resolve(ROOT, process.env.CARGO_TARGET_DIR);
  const meta = JSON.parse(execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: ROOT }).toString());
  return meta.target_directory;
}

const TARGET = targetDir();
export const HOMEPORT = process.env.HOMEPORT_BIN ?? join(TARGET, 'debug/homeport');
export const FIXTURE = process.env.HOMEPORT_FIXTURE ?? join(TARGET, 'debug/homeport-fixture');
/** Writes made-up history into a state.db (tests/history/main.rs). */
export const HISTORY = process.env.HOMEPORT_HISTORY ?? join(TARGET, 'debug/homeport-history');

/** Waits until `check` returns a truthy value, or fails after `ms`. */
export async function until(what, check, ms = 20000) {
  const start = Date.now();
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() - start > ms) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

export class Agent {
  /** `body` is the config after [agent]; @FIXTURE@ is replaced. `agentLines` go into [agent]. */
  static async start(body, prepare, agentLines = '') {
    for (const f of [HOMEPORT, FIXTURE]) {
      if (!existsSync(f)) throw new Error(`${f} is missing: cargo build --workspace --bins`);
    }
    const dir = mkdtempSync(join(tmpdir(), 'homeport-browser-'));
    // Files the config refers to (a git source, say) are made before the agent reads it.
    prepare?.(dir);
    const data = join(dir, 'data');
    const config = join(dir, 'homeport.toml');
    // The router gets a port of its own, so agents of parallel runs do not meet on the default.
    const routerPort = await freePort();
    // `agentLines` may choose the API's port (to find the agent again after a restart).
    const port = /^port\s*=/m.test(agentLines) ? '' : 'port = 0\n';
    writeFileSync(config, `# Homeport browser test config\n[agent]\n${port}router_port = ${routerPort}\n${agentLines}\ndata_dir = "${data}"\n\n${body.replaceAll('@FIXTURE@', FIXTURE).replaceAll('@DIR@', dir)}`);
    const env = { ...process.env, HOME: dir, HOMEPORT_UI_DIR: process.env.TEST_UI_DIR ?? join(ROOT, 'ui/dist'), RUST_LOG: 'info' };
    const agent = new Agent(dir, config, data, env);
    agent.routerPort = routerPort;
    await agent.run();
    return agent;
  }

  constructor(dir, config, data, env) {
    Object.assign(this, { dir, config, data, env });
    this.output = '';
    this.log = () => this.output;
  }

  /** Starts `homeport agent` on this config and waits until it has written where it listens. */
  async run() {
    const endpoint = join(this.data, 'agent.json');
    const before = existsSync(endpoint) ? readFileSync(endpoint, 'utf8') : null;
    this.child = spawn(HOMEPORT, ['--config', this.config, 'agent'], { env: this.env, stdio: ['ignore', 'ignore', 'pipe'] });
    this.child.stderr.on('data', (d) => (this.output += d));
    const pid = this.child.pid;
    await until('the agent writes agent.json', () => existsSync(endpoint) && readFileSync(endpoint, 'utf8') !== before
      && JSON.parse(readFileSync(endpoint, 'utf8')).pid === pid);
    this.addr = JSON.parse(readFileSync(endpoint, 'utf8')).addr;
    this.base = `http://${this.addr}`;
  }

  cli(...args) {
    return execFileSync(HOMEPORT, ['--config', this.config, ...args], { env: this.env }).toString();
  }

  token() {
    return readFileSync(join(this.data, 'token'), 'utf8').trim();
  }

  async status() {
    const r = await fetch(`${this.base}/api/v1/status`, { headers: { Authorization: `Bearer ${this.token()}` } });
    return r.json();
  }

  signInLink() {
    return this.cli('dashboard', '--print').trim();
  }

  /** The private page `homeport dashboard` gives the desktop's opener (a file:// URL). */
  async signInPage() {
    const r = await fetch(`${this.base}/api/v1/sessions`, { method: 'POST', headers: { Authorization: `Bearer ${this.token()}` } });
    const { page } = await r.json();
    return `file://${page}`;
  }

  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

/** `env` replaces Chromium's environment (a HOME with its own NSS database, say). */
export async function browser(env) {
  return chromium.launch({
    ...(env ? { env } : {}),
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** Asserts that `page` does not scroll sideways and that every button on it is whole on screen:
 *  inside the window, and not cut by a box around it that clips or scrolls. */
export async function assertFits(page, what) {
  const problems = await page.evaluate(() => {
    const out = [];
    const doc = document.documentElement;
    const vw = doc.clientWidth;
    if (doc.scrollWidth > vw) out.push(`the page is ${doc.scrollWidth} px wide in a ${vw} px window`);
    const label = (el) => `${el.tagName.toLowerCase()}${el.className ? `.${String(el.className).split(' ')[0]}` : ''}`;
    for (const b of document.querySelectorAll('button')) {
      const r = b.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue; // not rendered (a closed dialog)
      const name = b.getAttribute('aria-label') || b.textContent.trim().slice(0, 40);
      if (r.left < -0.5 || r.right > vw + 0.5) out.push(`button "${name}" spans ${Math.round(r.left)}–${Math.round(r.right)} px of ${vw}`);
      for (let el = b.parentElement; el && el !== doc; el = el.parentElement) {
        if (getComputedStyle(el).overflowX === 'visible') continue;
        const p = el.getBoundingClientRect();
        if (r.left < p.left - 0.5 || r.right > p.right + 0.5) out.push(`button "${name}" is cut by ${label(el)}`);
      }
    }
    return out;
  });
  assert.deepEqual(problems, [], `${what}: ${problems.join('; ')}`);
}

export async function shot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}
