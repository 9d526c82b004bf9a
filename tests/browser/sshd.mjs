// Another host for the browser tests, made as the Rust end-to-end tests make it
// (tests/e2e/sshd.rs): Debian's sshd started on a loopback port with a throwaway host key, a
// throwaway unprivileged user whose home holds the "remote" Homeport, and a key that only an
// ssh-agent of the test holds. Needs root; `SshHost.start` returns null (and says why) otherwise.
// Everything it started is ended by pid in `stop`.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, mkdirSync, chmodSync, copyFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { freePort, until } from './harness.mjs';

const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }).toString();

const listening = (port) =>
  new Promise((res) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      res(true);
    });
    s.on('error', () => res(false));
  });

export class SshHost {
  /** A running sshd with a fresh user, or null when this process is not root. */
  static async start() {
    if (process.getuid() !== 0) {
      console.log('# skipped: another host needs root (sshd and a throwaway user)');
      return null;
    }
    if (!existsSync('/usr/sbin/sshd')) throw new Error('/usr/sbin/sshd is missing: run ./scripts/setup.sh');
    const dir = mkdtempSync(join(tmpdir(), 'hp-ssh-browser-'));
    chmodSync(dir, 0o755);
    const user = `hpb${randomBytes(4).toString('hex')}`;
    const home = join(dir, 'home');
    run('useradd', ['--system', '--user-group', '--create-home', '-p', '*', '--shell', '/bin/bash', '--home-dir', home, user]);
    const host = new SshHost(dir, user, home);
    try {
      host.uid = Number(run('id', ['-u', user]).trim());
      const keys = join(dir, 'keys');
      mkdirSync(keys, { mode: 0o700 });
      for (const k of ['host_ed25519', 'client_ed25519']) run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', k, '-f', join(keys, k)]);
      mkdirSync(join(home, '.ssh'), { mode: 0o700 });
      copyFileSync(join(keys, 'client_ed25519.pub'), join(home, '.ssh/authorized_keys'));
      chmodSync(join(home, '.ssh/authorized_keys'), 0o600);
      run('chown', ['-R', `${user}:${user}`, home]);
      mkdirSync('/run/sshd', { recursive: true });
      host.authSock = join(dir, 'agent.sock');
      host.agent = spawn('ssh-agent', ['-D', '-a', host.authSock], { stdio: 'ignore' });
      // The socket's file appears at bind, before the agent listens: wait until it answers.
      await until('ssh-agent listens', () => new Promise((res) => {
        const s = net.connect(host.authSock, () => { s.destroy(); res(true); });
        s.on('error', () => res(false));
      }), 30000);
      run('ssh-add', ['-q', join(keys, 'client_ed25519')], { env: { ...process.env, SSH_AUTH_SOCK: host.authSock } });
      host.port = await freePort();
      await host.startSshd();
      return host;
    } catch (e) {
      await host.stop();
      throw e;
    }
  }

  constructor(dir, user, home) {
    Object.assign(this, { dir, user, home });
  }

  destination() {
    return `${this.user}@127.0.0.1:${this.port}`;
  }

  fingerprint() {
    return run('ssh-keygen', ['-lf', join(this.dir, 'keys/host_ed25519.pub')]).split(/\s+/)[1];
  }

  /** A copy of `bin` the host's user can run. */
  shared(bin) {
    const to = join(this.dir, 'fixture');
    copyFileSync(bin, to);
    chmodSync(to, 0o755);
    return to;
  }

  /** The host's own homeport.toml, as its user would write it. */
  writeConfig(text) {
    const dir = join(this.home, '.config/homeport');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'homeport.toml'), text);
    run('chown', ['-R', `${this.user}:${this.user}`, join(this.home, '.config')]);
  }

  async startSshd() {
    const config = join(this.dir, 'sshd_config');
    writeFileSync(config, `Port ${this.port}\nListenAddress 127.0.0.1\nHostKey ${join(this.dir, 'keys/host_ed25519')}\nPidFile none\nUsePAM no\n`
      + 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin no\n'
      + `AllowUsers ${this.user}\nStrictModes yes\nLogLevel VERBOSE\nClientAliveInterval 5\nClientAliveCountMax 3\n`);
    this.sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: 'ignore' });
    await until(`sshd listens on ${this.port}`, () => listening(this.port), 30000);
  }

  /** Stops sshd and every connection it holds: the host is unreachable until started again. */
  async stopSshd() {
    if (!this.sshd) return;
    for (const pid of descendants(this.sshd.pid)) kill(pid);
    const exited = this.sshd.exitCode === null ? new Promise((r) => this.sshd.once('exit', r)) : null;
    this.sshd.kill('SIGKILL');
    await exited;
    this.sshd = null;
  }

  /** Ends sshd, everything the throwaway user runs (only this test ran it), the ssh-agent, and
   *  removes the user. */
  async stop() {
    await this.stopSshd();
    for (let i = 0; i < 3; i++) {
      const pids = this.uid === undefined ? [] : userProcesses(this.uid);
      if (pids.length === 0) break;
      for (const pid of pids) kill(pid);
      await new Promise((r) => setTimeout(r, 50));
    }
    this.agent?.kill('SIGKILL');
    try {
      run('userdel', [this.user]);
    } catch {
      // Already gone.
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function kill(pid) {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // It ended by itself.
  }
}

function children(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function descendants(pid) {
  return children(pid).flatMap((c) => [c, ...descendants(c)]);
}

function userProcesses(uid) {
  const out = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const line = readFileSync(`/proc/${name}/status`, 'utf8').split('\n').find((l) => l.startsWith('Uid:'));
      if (line && Number(line.split(/\s+/)[1]) === uid) out.push(Number(name));
    } catch {
      // It ended meanwhile.
    }
  }
  return out;
}
