// The dashboard in a real headless Chromium against a real agent supervising the fixture app.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import net from 'node:net';
import { Agent, browser, freePort, shot, until, ROOT } from './harness.mjs';

let agent, chrome, page, ports;

before(async () => {
  ports = [await freePort(), await freePort(), await freePort()];
  agent = await Agent.start(`
[apps.shop.env.production]
autostart = true
databases = { main = "@DIR@/production.db" }

[apps.shop.env.production.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--db", "{db.main}"]
port = ${ports[0]}   # the public port: this comment must survive edits
health = { http = "/health", interval = "200ms" }

[apps.shop.env.production.services.worker]
command = ["@FIXTURE@"]
depends_on = ["web"]

[apps.shop.env.beta]
autostart = true
databases = { main = "@DIR@/beta.db" }

[apps.shop.env.beta.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--db", "{db.main}"]
port = ${ports[1]}
health = { http = "/health", interval = "200ms" }

[apps.shop.env.dev.services.chatty]
command = ["@FIXTURE@", "--lines", "100000", "--exit-after-lines"]
restart = "never"
`);
  chrome = await browser();
  page = await (await chrome.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
});

after(async () => {
  await chrome?.close();
  await agent?.stop();
});

test('a one-time link signs the browser in, and only once', async () => {
  const unsigned = await page.goto(`${agent.base}/`);
  assert.equal(unsigned.status(), 401);
  assert.match(await page.textContent('body'), /homeport dashboard/);
  const csp = unsigned.headers()['content-security-policy'];
  assert.match(csp, /script-src 'self'/);

  // As `homeport dashboard` does it: the browser opens a private local page, which leads it on to
  // the one-time link; the agent's answer stores the session's secret and opens the dashboard.
  const signedIn = page.waitForResponse((r) => new URL(r.url()).pathname === '/login');
  await page.goto(await agent.signInPage());
  assert.equal((await signedIn).status(), 200);
  assert.match((await signedIn).headers()['content-security-policy'], /default-src 'none'/);
  await page.waitForURL(`${agent.base}/`);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  const secret = await page.evaluate(() => localStorage.getItem('homeport.session'));
  assert.match(secret ?? '', /^[0-9a-f]{64}$/, 'the page holds the session secret');
  assert.ok(!(await page.content()).includes(secret), 'the secret is not in the dashboard page');

  // The printed link (for a browser elsewhere) works once too.
  const link = agent.signInLink();
  const other = await chrome.newPage();
  assert.equal((await other.goto(link)).status(), 200);
  const again = await other.goto(link);
  assert.equal(again.status(), 401, 'a used link does not sign in a second browser');
  await other.close();
});

test('services go healthy and show their details', async () => {
  await page.goto(`${agent.base}/#/`);
  for (const key of ['shop/production/web', 'shop/production/worker', 'shop/beta/web']) {
    await page.locator(`tr[data-service="${key}"]`).waitFor();
  }
  await page.locator('tr[data-service="shop/production/web"][data-state="healthy"]').waitFor({ timeout: 20000 });
  await page.locator('tr[data-service="shop/beta/web"][data-state="healthy"]').waitFor({ timeout: 20000 });
  const row = page.locator('tr[data-service="shop/production/web"]');
  // The environment's web service is opened by its name, through the router.
  assert.equal(await row.getByRole('link', { name: 'shop.localhost' }).getAttribute('href'), `http://shop.localhost:${agent.routerPort}/`);
  await shot(page, 'overview');
});

test("the headline is the agent's verdict, the one the tray and `homeport status` show", async () => {
  await page.goto(`${agent.base}/#/`);
  const report = await agent.status();
  assert.deepEqual(report.overall, { level: 'healthy', reason: 'production healthy' });
  const headline = page.getByRole('status');
  await headline.getByText(report.overall.reason, { exact: true }).waitFor();
  assert.match(await headline.textContent(), /^\s*Healthy/);
});

test('stopping production asks first, then the service stops', async () => {
  await page.getByRole('button', { name: 'Stop shop/production/worker' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /production/);
  await shot(page, 'confirm-stop');
  await dialog.getByRole('button', { name: 'Stop production' }).click();
  await page.locator('tr[data-service="shop/production/worker"][data-state="stopped"]').waitFor();
  const status = await agent.status();
  assert.equal(status.services.find((s) => s.key.service === 'worker').state, 'stopped');
});

test('log lines stream in live and can be filtered', async () => {
  await page.goto(`${agent.base}/#/logs?target=shop/beta/web`);
  await page.getByRole('log').getByText('listening on').first().waitFor();
  for (const path of ['/hello-browser', '/other']) {
    const r = await fetch(`http://127.0.0.1:${ports[1]}${path}`);
    assert.equal(r.status, 200);
  }
  await page.getByRole('log').getByText('for /hello-browser').waitFor();
  await page.getByRole('log').getByText('for /other').waitFor();
  await page.getByLabel('Filter').fill('hello-browser');
  await until('only the matching line is shown', async () => {
    const lines = await page.locator('[role=log] .line').allTextContents();
    return lines.length === 1 && lines[0].includes('request 1 for /hello-browser');
  });
  await page.getByLabel('Regex').check();
  await page.getByLabel('Filter').fill('for /(other|hello)');
  await until('the regex matches both', async () => (await page.locator('[role=log] .line').count()) === 2);
  await shot(page, 'logs');
});

test('the log view stays virtual and smooth with 100,000 lines', async () => {
  await page.goto(`${agent.base}/#/logs?target=shop/dev/chatty`);
  await page.getByText('live').first().waitFor();
  await page.getByLabel('Regex').uncheck();
  await page.getByLabel('Filter').fill('');
  const r = await fetch(`${agent.base}/api/v1/start`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${agent.token()}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ target: 'shop/dev/chatty' }),
  });
  assert.equal(r.status, 200);
  await page.getByText('100,000 lines').waitFor({ timeout: 30000 });
  const rendered = await page.locator('[role=log] .line').count();
  assert.ok(rendered < 200, `only the visible rows are in the page, not ${rendered}`);
  await page.locator('[role=log] .line').last().filter({ hasText: 'line 0000099999' }).waitFor();
  // Jump back in time: the view pauses and shows the first lines.
  await page.getByRole('log').evaluate((el) => (el.scrollTop = 0));
  await page.locator('[role=log] .line').filter({ hasText: 'line 0000000000 ' }).waitFor();
  assert.match(await page.getByRole('button', { name: /Resume/ }).textContent(), /Resume/);
  await shot(page, 'logs-100k');
});

test('dark mode is readable', async () => {
  const dark = await chrome.newContext({ colorScheme: 'dark', viewport: { width: 1280, height: 800 } });
  const p = await dark.newPage();
  await p.goto(agent.signInLink());
  await p.locator('tr[data-service="shop/beta/web"]').waitFor();
  const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(21, 24, 30)');
  await shot(p, 'overview-dark');
  await dark.close();
});

test('the events timeline shows what happened', async () => {
  await page.goto(`${agent.base}/#/events`);
  await page.getByText('shop/production/worker').first().waitFor();
  assert.match(await page.locator('.timeline').textContent(), /stopped/);
  await shot(page, 'events');
});

const betaPort = () => page.locator('[id="apps.shop.env.beta.services.web.port"]');

test('a port clash in settings names the other service, or the process that holds it', async () => {
  await page.goto(`${agent.base}/#/settings`);
  await betaPort().fill(String(ports[0]));
  await page.getByText(`also used by shop/production/web`).first().waitFor();
  await shot(page, 'settings-clash');

  const outsider = net.createServer().listen(ports[2], '127.0.0.1');
  try {
    await betaPort().fill(String(ports[2]));
    await page.getByText(new RegExp(`port ${ports[2]} is in use by pid ${process.pid}`)).waitFor();
    assert.ok(await page.getByRole('button', { name: 'Save…' }).isDisabled());
  } finally {
    outsider.close();
  }
});

test('a valid change shows a diff, is saved with comments kept, and is applied', async () => {
  const port = await freePort();
  await betaPort().fill(String(port));
  const diff = page.locator('.diff pre');
  await diff.waitFor();
  assert.match(await diff.textContent(), new RegExp(`\\+port = ${port}`));
  await page.getByRole('button', { name: 'Save…' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /restarts 1 service: shop\/beta\/web/);
  await dialog.getByRole('button', { name: 'Save and restart' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
  const text = readFileSync(agent.config, 'utf8');
  assert.match(text, new RegExp(`port = ${port}\\n`));
  assert.match(text, /# the public port: this comment must survive edits/);
  await until('beta/web runs on the new port', async () => {
    const s = (await agent.status()).services.find((x) => x.key.env === 'beta');
    return s.port === port && s.state === 'healthy';
  });
  const r = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(r.status, 200);
  await shot(page, 'settings-saved');
});

test('backups are taken, listed and restored from the dashboard', async () => {
  await page.goto(`${agent.base}/#/backups`);
  const prod = page.locator('article[data-env="shop/production"]');
  await prod.getByText('No backups yet.').waitFor();
  await prod.getByRole('button', { name: 'Back up now' }).click();
  await page.getByRole('status').filter({ hasText: 'Backed up shop/production' }).waitFor();
  const row = prod.locator('tr[data-backup]').first();
  await row.getByText('✓ verified').waitFor();
  assert.match(await row.textContent(), /manual/);
  await row.getByRole('button', { name: /^Verify/ }).click();
  await page.getByRole('status').filter({ hasText: 'is intact' }).waitFor();
  await shot(page, 'backups');

  await row.getByRole('button', { name: /^Restore/ }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /safety copy/);
  await dialog.getByRole('button', { name: 'Restore shop/production' }).click();
  await page.getByRole('status').filter({ hasText: 'Restored' }).waitFor({ timeout: 60000 });
  const web = (await agent.status()).services.find((s) => s.key.env === 'production' && s.key.service === 'web');
  assert.equal(web.state, 'healthy');
});

test('the bundle is small and 50 services all render', async () => {
  const js = readdirSync(join(ROOT, 'ui/dist/assets')).filter((f) => f.endsWith('.js'));
  const gz = js.reduce((n, f) => n + gzipSync(readFileSync(join(ROOT, 'ui/dist/assets', f))).length, 0);
  assert.ok(gz <= 150 * 1024, `JS bundle is ${gz} bytes gzipped`);

  let body = '';
  for (let i = 0; i < 50; i++) body += `[apps.big.env.e${i % 5}.services.s${i}]\ncommand = ["@FIXTURE@"]\nautostart = true\n`;
  const big = await Agent.start(body);
  try {
    await until('50 services run', async () => (await big.status()).services.filter((s) => s.state === 'running').length === 50);
    const p = await (await chrome.newContext()).newPage();
    await p.goto(big.signInLink());
    await p.locator('tr[data-service]').nth(49).waitFor();
    assert.equal(await p.locator('tr[data-service]').count(), 50);
    assert.equal(await p.locator('article.env').count(), 5);
    // The time this takes is measured by tests/browser/bench.mjs, not asserted here.
    await shot(p, 'overview-50');
  } finally {
    await big.stop();
  }
});
