// Automatic updates on the Deploys screen: a real agent, a git source with an upstream, two
// commits that fail their health gate (which pause updates), and the one-click resume.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, browser, freePort, shot, until, FIXTURE } from './harness.mjs';

let agent, chrome, page, other;

const git = (dir, ...args) =>
  execFileSync('git', ['-C', dir, '-c', 'user.email=t@x.invalid', '-c', 'user.name=t', ...args], { stdio: 'ignore' });

/** Pushes a commit whose release fails its health checks. */
function pushBad(msg) {
  writeFileSync(join(other, 'flags'), '--fail-health');
  git(other, 'add', '-A');
  git(other, 'commit', '-q', '--allow-empty', '-m', msg);
  git(other, 'push', '-q', 'origin', 'main');
}

async function beta() {
  const r = await fetch(`${agent.base}/api/v1/apps`, { headers: { Authorization: `Bearer ${agent.token()}` } });
  return (await r.json())[0].envs.find((e) => e.env === 'beta');
}

before(async () => {
  const port = await freePort();
  agent = await Agent.start(`
[apps.shop]
source = "@DIR@/src"
build = ["sh build.sh"]
artifacts = ["out"]

[apps.shop.env.beta]
health_deadline = "3s"
auto_update = { every = "1s" }
[apps.shop.env.beta.services.web]
command = ["{release}/out/run.sh", "--port", "{port}"]
port = ${port}
health = { http = "/health", interval = "100ms", start_period = "0s" }
`, (dir) => {
    const src = join(dir, 'src');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'run.sh'), '#!/bin/sh\nd=$(dirname "$0")\nexec "$d/app" $(cat "$d/flags") "$@"\n');
    writeFileSync(join(src, 'build.sh'), `set -e\nmkdir -p out\ncp '${FIXTURE}' out/app\ncp run.sh flags out/\nchmod +x out/run.sh\n`);
    // The first release already fails its health gate.
    writeFileSync(join(src, 'flags'), '--fail-health');
    git(src, 'init', '-q', '-b', 'main');
    git(src, 'add', '-A');
    git(src, 'commit', '-q', '-m', 'first');
    const bare = join(dir, 'upstream.git');
    execFileSync('git', ['clone', '-q', '--bare', src, bare], { stdio: 'ignore' });
    git(src, 'remote', 'add', 'origin', bare);
    git(src, 'fetch', '-q', 'origin');
    git(src, 'branch', '-q', '--set-upstream-to', 'origin/main');
    other = join(dir, 'other');
    execFileSync('git', ['clone', '-q', bare, other], { stdio: 'ignore' });
  });
  chrome = await browser();
  page = await (await chrome.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(agent.signInLink());
});

after(async () => {
  await chrome?.close();
  await agent?.stop();
});

test('two failed automatic updates pause them; the Deploys screen says so and resumes in one click', async () => {
  await until('the first automatic update fails', async () => (await beta()).auto_update?.failures === 1, 120000);
  pushBad('still broken');
  await until('the second failure pauses automatic updates', async () => (await beta()).auto_update?.paused, 120000);

  await page.goto(`${agent.base}/#/deploys`);
  const row = page.locator('article[data-app="shop"] [data-env="beta"]');
  await row.locator('[data-auto-update="paused"]').waitFor();
  assert.match(await row.textContent(), /after 2 failed updates in a row/);
  await shot(page, 'deploys-updates-paused');
  await row.getByRole('button', { name: 'Resume automatic updates' }).click();
  await page.getByRole('status').filter({ hasText: 'resumed' }).waitFor();
  await row.locator('[data-auto-update="on"]').waitFor();
  const state = (await beta()).auto_update;
  assert.equal(state.paused, false);
  assert.equal(state.failures, 0);
});
