// Starts a real agent with the fixture app and a real headless Chromium for the browser tests.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';

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
    writeFileSync(config, `# Homeport browser test config\n[agent]\nport = 0\nrouter_port = ${routerPort}\n${agentLines}\ndata_dir = "${data}"\n\n${body.replaceAll('@FIXTURE@', FIXTURE).replaceAll('@DIR@', dir)}`);
    const env = { ...process.env, HOME: dir, HOMEPORT_UI_DIR: join(ROOT, 'ui/dist'), RUST_LOG: 'info' };
    const child = spawn(HOMEPORT, ['--config', config, 'agent'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d) => (log += d));
    const agent = new Agent(dir, config, data, child, env, () => log);
    agent.routerPort = routerPort;
    await until('the agent writes agent.json', () => existsSync(join(data, 'agent.json')));
    agent.addr = JSON.parse(readFileSync(join(data, 'agent.json'), 'utf8')).addr;
    agent.base = `http://${agent.addr}`;
    return agent;
  }

  constructor(dir, config, data, child, env, log) {
    Object.assign(this, { dir, config, data, child, env, log });
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
    this.child.kill('SIGTERM');
    await new Promise((r) => this.child.once('exit', r));
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

export async function shot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}
