// The Deploys screen against a real agent and a real git source.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, assertFits, browser, freePort, shot, FIXTURE } from './harness.mjs';

let agent, chrome, page, src;

function git(...args) {
  execFileSync('git', ['-C', src, ...args], { stdio: 'ignore' });
}

before(async () => {
  const port = await freePort();
  agent = await Agent.start(`
[apps.shop]
source = "@DIR@/src"
build = ["sh build.sh"]
artifacts = ["out"]

[apps.shop.env.production]
health_deadline = "10s"
health_stable = "1s"
[apps.shop.env.production.services.web]
command = ["{release}/out/run.sh", "--port", "{port}"]
port = ${port}
health = { http = "/health", interval = "100ms", retries = 20, start_period = "0s" }
restart = { policy = "on-failure", max_failures = 2 }
`, (dir) => {
    src = join(dir, 'src');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'run.sh'), '#!/bin/sh\nd=$(dirname "$0")\nexec "$d/app" $(cat "$d/flags") "$@"\n');
    writeFileSync(join(src, 'build.sh'), `set -e\nmkdir -p out\ncp '${FIXTURE}' out/app\ncp run.sh flags out/\nchmod +x out/run.sh\necho built release\n`);
    writeFileSync(join(src, 'flags'), '');
    git('init', '-q', '-b', 'main');
    git('-c', 'user.email=t@x.invalid', '-c', 'user.name=t', 'add', '-A');
    git('-c', 'user.email=t@x.invalid', '-c', 'user.name=t', 'commit', '-q', '-m', 'first');
  });
  chrome = await browser();
  page = await (await chrome.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(agent.signInLink());
});

after(async () => {
  await chrome?.close();
  await agent?.stop();
});

const deployButton = () => page.locator('article[data-app="shop"] [data-env="production"]').getByRole('button', { name: 'Deploy' });

test('a deploy from the dashboard shows its steps live and lands in the history', async () => {
  await page.goto(`${agent.base}/#/deploys`);
  await deployButton().click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /current release comes back/);
  await dialog.getByRole('button', { name: 'Deploy shop to production' }).click();
  await page.getByRole('status').filter({ hasText: 'is live' }).waitFor({ timeout: 60000 });
  const live = page.getByRole('region', { name: 'Running deploy' });
  for (const step of ['build', 'stage', 'switch', 'health gate']) {
    await live.getByText(step, { exact: false }).first().waitFor();
  }
  assert.match(await live.locator('.output').textContent(), /built release/);
  const row = page.locator('article[data-app="shop"] [data-deploy]').first();
  await row.getByText('succeeded').waitFor();
  await shot(page, 'deploys');
  // The app's version (no tag yet: the short commit) is next to the environment, here and on
  // the overview.
  const head = execFileSync('git', ['-C', src, 'rev-parse', '--short=7', 'HEAD']).toString().trim();
  const production = page.locator('article[data-app="shop"] [data-env="production"]');
  assert.equal(await production.locator('.version').textContent(), head);
  // One release: no rollback is offered, and the environment says why.
  await production.locator('[data-no-rollback]').waitFor();
  assert.equal(await production.getByRole('button', { name: 'Roll back' }).count(), 0);
  await page.goto(`${agent.base}/#/`);
  await page.locator('[data-env="shop/production"] .env-head .version').filter({ hasText: head }).waitFor();
  await page.goto(`${agent.base}/#/deploys`);
  await production.locator('.version').waitFor();
});

test('a bad release fails, says it switched back, and keeps diagnostics', async () => {
  writeFileSync(join(src, 'flags'), '--fail-health');
  git('-c', 'user.email=t@x.invalid', '-c', 'user.name=t', 'commit', '-q', '-am', 'bad');
  await deployButton().click();
  await page.getByRole('dialog').getByRole('button', { name: 'Deploy shop to production' }).click();
  await page.getByRole('status').filter({ hasText: 'switched back' }).waitFor({ timeout: 60000 });
  const row = page.locator('article[data-app="shop"] [data-deploy]').first();
  await row.getByText('failed', { exact: true }).waitFor();
  await row.getByText('steps').click();
  assert.match(await row.locator('pre').last().textContent(), /== shop\/production\/web/);
  const web = (await agent.status()).services[0];
  assert.equal(web.state, 'healthy', 'the previous release serves');
  await shot(page, 'deploys-failed');
});

test('the Deploys screen fits a phone: releases, history and their buttons', async () => {
  for (const width of [360, 420]) {
    await page.setViewportSize({ width, height: 900 });
    await page.goto(`${agent.base}/#/deploys`);
    await page.locator('article[data-app="shop"] [data-deploy]').first().waitFor();
    await assertFits(page, `#/deploys at ${width} px`);
    assert.ok(await deployButton().isVisible());
  }
  await shot(page, 'w420-deploys-history');
  await page.setViewportSize({ width: 1280, height: 900 });
});
