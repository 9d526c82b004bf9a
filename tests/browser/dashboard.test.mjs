// The dashboard in a real headless Chromium against a real agent supervising the fixture app.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import net from 'node:net';
import { Agent, assertFits, browser, freePort, shot, until, FIXTURE, ROOT } from './harness.mjs';

let agent, chrome, page, ports;

before(async () => {
  ports = [await freePort(), await freePort(), await freePort(), await freePort()];
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

[apps.shop.env.dev.services.flaky]
command = ["@FIXTURE@", "--port", "{port}", "--fail-health"]
port = ${ports[2]}
health = { http = "/health/a/rather/long/path/that/makes/the/message/much/wider/than/a/phone/screen/can/show", interval = "200ms", retries = 1, start_period = "0s" }
restart = "never"

# An external server that is not there: its backups fail, and say so.
[apps.shop.env.archive]
databases = { orders = { url = "postgresql://app@127.0.0.1:${ports[3]}/orders" } }

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
    await page.locator(`[data-service="${key}"]`).waitFor();
  }
  await page.locator('[data-service="shop/production/web"][data-state="healthy"]').waitFor({ timeout: 20000 });
  await page.locator('[data-service="shop/beta/web"][data-state="healthy"]').waitFor({ timeout: 20000 });
  const row = page.locator('[data-service="shop/production/web"]');
  // The environment's web service is opened by its name, through the router.
  assert.equal(await row.getByRole('link', { name: 'shop.localhost' }).getAttribute('href'), `http://shop.localhost:${agent.routerPort}/`);
  await shot(page, 'overview');
  // The agent's own log is named, and it is there with the agent's own lines in it.
  const log = join(agent.data, 'logs', 'agent.log');
  await page.locator('.agent-log').getByText(log, { exact: true }).waitFor();
  assert.match(readFileSync(log, 'utf8'), /listening on/);
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
  await page.locator('[data-service="shop/production/worker"][data-state="stopped"]').waitFor();
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
  await p.locator('[data-service="shop/beta/web"]').waitFor();
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

  const outsider = net.createServer().listen(ports[3], '127.0.0.1');
  try {
    await betaPort().fill(String(ports[3]));
    await page.getByText(new RegExp(`port ${ports[3]} is in use by pid ${process.pid}`)).waitFor();
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
  // An environment with nothing listed to back up says so instead of offering a button.
  const dev = page.locator('article[data-env="shop/dev"]');
  assert.match(await dev.locator('[data-nothing-to-back-up]').textContent(), /lists no `databases` or `files`/);
  assert.equal(await dev.getByRole('button', { name: 'Back up now' }).count(), 0);
  await prod.getByRole('button', { name: 'Back up now' }).click();
  await page.getByRole('status').filter({ hasText: 'Backed up shop/production' }).waitFor();
  const row = prod.locator('[data-backup]').first();
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

test('every screen fits from 360 px up: no sideways scrolling, every button whole on screen', async () => {
  // A service whose health message is far wider than a phone: the message gives way, its
  // buttons do not.
  const r = await fetch(`${agent.base}/api/v1/start`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${agent.token()}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ target: 'shop/dev/flaky' }),
  });
  assert.equal(r.status, 200);
  await until('shop/dev/flaky says why it is unhealthy', async () =>
    (await agent.status()).services.find((s) => s.key.service === 'flaky')?.message?.includes('/a/rather/long/path'));
  const context = await chrome.newContext({ viewport: { width: 1280, height: 800 } });
  const p = await context.newPage();
  await p.goto(agent.signInLink());
  try {
    for (const width of [360, 420, 1100, 1280]) {
      await p.setViewportSize({ width, height: 800 });
      for (const [route, ready] of [
        ['#/', '[data-service="shop/dev/flaky"] .msg'],
        ['#/logs?target=shop/production/web', '[role=log]'],
        ['#/events', '.timeline'],
        ['#/deploys', 'article[data-app="shop"]'],
        ['#/backups', 'article[data-env="shop/production"]'],
        ['#/settings', 'form'],
      ]) {
        await p.goto(`${agent.base}/${route}`);
        await p.locator(ready).first().waitFor();
        await assertFits(p, `${route} at ${width} px`);
        if (width === 420) await shot(p, `w420-${route.replace(/^#\/?/, '').split('?')[0] || 'overview'}`);
      }
      // The row of the service with the long message keeps its three buttons in view.
      await p.goto(`${agent.base}/#/`);
      for (const action of ['Start', 'Restart', 'Stop']) {
        await p.getByRole('button', { name: `${action} shop/dev/flaky`, exact: true }).waitFor();
        assert.ok(await p.getByRole('button', { name: `${action} shop/dev/flaky`, exact: true }).isVisible(), `${action} at ${width} px`);
      }
      if (width === 360) await shot(p, 'w360-overview');
    }
    // The whole message is one click away (a touch screen has no hover).
    const msg = p.locator('[data-service="shop/dev/flaky"] .msg');
    await msg.click();
    assert.equal(await msg.getAttribute('aria-expanded'), 'true');
    assert.match(await msg.textContent(), /can\/show/);
  } finally {
    await context.close();
    await fetch(`${agent.base}/api/v1/stop`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${agent.token()}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ target: 'shop/dev/flaky' }),
    });
  }
});

test('a lost agent shows a banner over greyed-out numbers, and a restarted one the sign-in page', async () => {
  const port = await freePort();
  const solo = await Agent.start(`
[apps.solo.env.production]
autostart = true
[apps.solo.env.production.services.web]
command = ["@FIXTURE@"]
`, undefined, `port = ${port}`);
  const context = await chrome.newContext({ viewport: { width: 420, height: 800 } });
  const p = await context.newPage();
  try {
    await p.goto(solo.signInLink());
    await p.locator('[data-service="solo/production/web"][data-state="running"]').waitFor();
    assert.equal(await p.locator('[data-banner]').count(), 0, 'no banner while connected');

    await solo.stop();
    const banner = p.getByRole('alert').filter({ hasText: 'Not connected to the agent' });
    await banner.waitFor();
    // At the top of the page, above what it warns about, and the numbers are visibly the past.
    const box = await banner.boundingBox();
    const first = await p.locator('[data-service="solo/production/web"]').boundingBox();
    assert.ok(box.y < first.y, 'the banner is above the services');
    assert.match(await banner.textContent(), /homeport agent/);
    assert.equal(await p.locator('.page.stale').count(), 1);
    assert.equal(await p.locator('.page').evaluate((el) => getComputedStyle(el).opacity), '0.5');
    assert.doesNotMatch(await p.getByRole('status').textContent(), /Healthy/, 'no verdict from the past');
    await shot(p, 'w420-disconnected');
    await p.setViewportSize({ width: 1280, height: 800 });
    await shot(p, 'disconnected');

    // A new agent does not know this browser: the page says how to sign in, instead of numbers.
    await solo.run();
    await p.getByRole('heading', { name: 'Sign in to Homeport' }).waitFor();
    assert.match(await p.locator('main').textContent(), /homeport dashboard/);
    assert.match(await p.locator('main').textContent(), /Open dashboard in browser/);
    assert.equal(await p.locator('[data-service]').count(), 0, 'no stale numbers under the sign-in page');
    await shot(p, 'signed-out');
  } finally {
    await context.close();
    await solo.stop();
  }
});

test('a saved config edit shows up by itself, and a broken one is a banner until it is fixed', async () => {
  const solo = await Agent.start(`
[apps.solo.env.production]
autostart = true
[apps.solo.env.production.services.web]
command = ["@FIXTURE@"]
`);
  const context = await chrome.newContext({ viewport: { width: 420, height: 800 } });
  const p = await context.newPage();
  // As vim saves: a new file renamed over the old one.
  const save = (text) => {
    writeFileSync(`${solo.config}.swp`, text);
    renameSync(`${solo.config}.swp`, solo.config);
  };
  try {
    await p.goto(solo.signInLink());
    await p.locator('[data-service="solo/production/web"][data-state="running"]').waitFor();
    const good = readFileSync(solo.config, 'utf8');

    const broken = `${good}\n[apps.solo.env.production.services.worker]\ncommand = ["${FIXTURE}"]\nautostart = "yes"\n`;
    save(broken);
    const line = broken.split('\n').findIndex((l) => l.startsWith('autostart = "yes"')) + 1;
    const banner = p.getByRole('alert').filter({ hasText: 'was not applied' });
    await banner.waitFor();
    const text = await banner.textContent();
    assert.match(text, new RegExp(`homeport\\.toml:${line}:`), text);
    assert.match(text, /keeps running the config it had/);
    assert.equal(await p.locator('[data-service="solo/production/worker"]').count(), 0, 'nothing changed');
    await assertFits(p, 'the page with the config banner');
    await shot(p, 'w420-config-rejected');

    // Fixed: the new service appears without a reload of the page, and the banner goes.
    save(broken.replace('autostart = "yes"', 'autostart = true'));
    await p.locator('[data-service="solo/production/worker"][data-state="running"]').waitFor();
    await until('the banner goes', async () => (await p.locator('[data-banner="config-rejected"]').count()) === 0);
    await p.getByRole('link', { name: 'Events' }).click();
    await p.getByText(/config applied as the file was saved: 1 added \(solo\/production\/worker\)/).waitFor();
    await p.getByText(/config file refused as the file was saved: .*homeport\.toml:\d+:\d+/).waitFor();
  } finally {
    await context.close();
    await solo.stop();
  }
});

test('log lines are coloured by the level they say, not by their stream, and health checks can be hidden', async () => {
  // A server that logs its requests to stderr (as python3 -m http.server does), a JSON logger,
  // and the agent's own health checks in the access log.
  const script = [
    `echo '127.0.0.1 - - [03/Dec/2026 10:00:00] "GET /index.html HTTP/1.1" 200 -' >&2`,
    `echo '127.0.0.1 - - [03/Dec/2026 10:00:01] "GET /health HTTP/1.1" 200 -' >&2`,
    `echo '127.0.0.1 "GET /status HTTP/1.1" 200 "Homeport-Health/1"' >&2`,
    `echo 'ERROR cannot reach the database'`,
    // Braces are doubled: a command's single braces are placeholders.
    `echo '{{"level":"warn","msg":"slow query"}}'`,
    `echo 'served 0 errors today'`,
    'sleep 600',
  ].join('; ');
  const solo = await Agent.start(`
[apps.lv.env.production.services.talk]
shell = true
command = ${JSON.stringify(script)}
autostart = true
`);
  const context = await chrome.newContext({ viewport: { width: 1280, height: 800 } });
  const p = await context.newPage();
  try {
    await p.goto(solo.signInLink());
    await p.locator('[data-service="lv/production/talk"][data-state="running"]').waitFor();
    await p.goto(`${solo.base}/#/logs?target=all`);
    const line = (text) => p.locator('.line', { hasText: text });
    await line('served 0 errors today').waitFor();
    assert.equal(await line('GET /index.html').getAttribute('data-level'), null, 'a request on stderr is not an error');
    assert.equal(await line('ERROR cannot reach').getAttribute('data-level'), 'error');
    assert.equal(await line('slow query').getAttribute('data-level'), 'warn');
    assert.equal(await line('served 0 errors').getAttribute('data-level'), null, '"errors" in a sentence is no level');
    // Whose line it is, app included.
    assert.equal(await line('ERROR cannot reach').locator('.svc').textContent(), 'lv/production/talk');
    // The agent's probes are hidden until asked for.
    assert.equal(await line('GET /health').count(), 0);
    assert.equal(await line('Homeport-Health').count(), 0);
    await p.getByLabel('Hide health checks').uncheck();
    await line('GET /health').waitFor();
    await line('Homeport-Health').waitFor();
    await p.getByLabel('Level').selectOption('error');
    await until('only errors are listed', async () => (await p.locator('.line').count()) === 1);
    await p.getByLabel('Level').selectOption('warn');
    await until('errors and warnings are listed', async () => (await p.locator('.line').count()) === 2);
    await p.getByLabel('Level').selectOption('all');
    await shot(p, 'logs-levels');
  } finally {
    await context.close();
    await solo.stop();
  }
});

test('a spent sign-in link and a browser without a session get pages, not raw errors', async () => {
  const context = await chrome.newContext({ viewport: { width: 420, height: 800 } });
  const p = await context.newPage();
  try {
    const link = agent.signInLink();
    assert.equal((await p.goto(link)).status(), 200);
    await p.locator('[data-service]').first().waitFor();
    const spent = await (await chrome.newContext()).newPage();
    const again = await spent.goto(link);
    assert.equal(again.status(), 401);
    assert.match(again.headers()['content-type'], /text\/html/);
    await spent.getByRole('heading', { name: 'This sign-in link no longer works' }).waitFor();
    assert.match(await spent.textContent('body'), /homeport dashboard/);
    // Styled by its stylesheet (the policy allows no inline style): a card, not bare text.
    assert.equal(await spent.locator('main').evaluate((el) => getComputedStyle(el).borderRadius), '10px');
    await spent.setViewportSize({ width: 420, height: 700 });
    await assertFits(spent, 'the spent-link page');
    await shot(spent, 'w420-link-spent');

    const none = await spent.goto(`${agent.base}/`);
    assert.equal(none.status(), 401);
    await spent.getByRole('heading', { name: 'Sign in to Homeport' }).waitFor();
    assert.equal(await spent.locator('main').evaluate((el) => getComputedStyle(el).borderRadius), '10px');
    await shot(spent, 'w420-signed-out-page');
    await spent.context().close();
  } finally {
    await context.close();
  }
});

test('a failed backup is shown on the Backups page, with why', async () => {
  await page.goto(`${agent.base}/#/backups`);
  const archive = page.locator('article[data-env="shop/archive"]');
  await archive.getByRole('button', { name: 'Back up now' }).click();
  await page.getByRole('status').filter({ hasText: 'cannot reach PostgreSQL orders' }).waitFor();
  const failed = archive.locator('[data-failed-backup]');
  await failed.waitFor();
  assert.match(await failed.textContent(), /The last backup failed.*manual.*cannot reach PostgreSQL orders at 127\.0\.0\.1/s);
  // Still there for whoever opens the page later.
  await page.reload();
  await page.locator('article[data-env="shop/archive"] [data-failed-backup]').waitFor();
  await shot(page, 'backups-failed');
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
    await p.locator('[data-service]').nth(49).waitFor();
    assert.equal(await p.locator('[data-service]').count(), 50);
    assert.equal(await p.locator('article.env').count(), 5);
    // The time this takes is measured by tests/browser/bench.mjs, not asserted here.
    await shot(p, 'overview-50');
  } finally {
    await big.stop();
  }
});
