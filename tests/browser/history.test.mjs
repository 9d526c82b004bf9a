// History in the dashboard: a service page with a week of history (written into state.db by
// homeport-history through the agent's own writer before the agent starts), its charts, range
// picker and marks; sparklines and environment uptime on the Overview. Real agent, real Chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Agent, assertFits, browser, freePort, shot, until, HISTORY } from './harness.mjs';

let agent, chrome, signIn;
const SERVICE = 'shop/production/web';

before(async () => {
  const port = await freePort();
  agent = await Agent.start(
    `
[apps.shop.env.production]
autostart = true

[apps.shop.env.production.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = ${port}
health = { http = "/health", interval = "500ms" }

[apps.shop.env.production.services.worker]
command = ["@FIXTURE@"]
`,
    (dir) => execFileSync(HISTORY, [join(dir, 'data', 'state.db'), '7', SERVICE, 'shop/production/worker']),
    'sample_every = "1s"',
  );
  await until('web is healthy', async () => (await agent.status()).services.some((s) => s.state === 'healthy'));
  chrome = await browser();
  signIn = async (options = {}) => {
    const page = await (await chrome.newContext({ viewport: { width: 1280, height: 900 }, ...options })).newPage();
    const problems = [];
    page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(agent.signInLink());
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    return { page, problems };
  };
});

after(async () => {
  await chrome?.close();
  await agent?.stop();
});

/** The charts of the page once they show `range`: their names, points and marks. */
async function charts(page, range) {
  await page.locator(`.charts[data-range="${range}"]`).waitFor();
  await until(`four charts of ${range} are drawn`, async () => (await page.locator('.charts figure canvas').count()) >= 4);
  return page.locator('.charts figure').evaluateAll((figs) =>
    figs.map((f) => ({ name: f.dataset.chart, points: Number(f.dataset.points), marks: Number(f.dataset.marks), width: f.querySelector('canvas')?.width ?? 0 })),
  );
}

test('a service page draws a week of history, changes range and marks what happened', async () => {
  const { page, problems } = await signIn();
  await page.locator(`[data-service="${SERVICE}"] a.name`).click();
  await page.waitForURL(/#\/service\?target=/);
  await page.getByRole('heading', { name: SERVICE }).waitFor();

  // 24 hours by default: a point a minute.
  let drawn = await charts(page, '24h');
  assert.deepEqual(drawn.map((c) => c.name), ['CPU', 'Memory', 'Health check latency', 'Uptime']);
  for (const c of drawn) {
    assert.ok(c.points >= 1400 && c.points <= 1441, `${c.name}: ${c.points} points in 24 h`);
    assert.ok(c.width > 200, `${c.name} is drawn (${c.width} px)`);
  }
  assert.equal(await page.locator('.charts').getAttribute('data-resolution'), '1m');

  // A week: ten-minute points, every day's restart, deploy and backup marked, and the outage
  // three days ago both in the uptime and as a health flip.
  await page.getByRole('button', { name: '7d' }).click();
  drawn = await charts(page, '7d');
  assert.equal(await page.locator('.charts').getAttribute('data-resolution'), '10m');
  for (const c of drawn) {
    assert.ok(c.points >= 1000 && c.points <= 1009, `${c.name}: ${c.points} points in 7 d`);
    assert.ok(c.marks >= 7 * 3, `${c.name}: ${c.marks} marks`);
  }
  const kinds = new Set(await page.locator('[data-mark]').evaluateAll((ls) => ls.map((l) => l.dataset.mark)));
  for (const k of ['restart', 'deploy', 'backup']) assert.ok(kinds.has(k), `a ${k} mark among ${[...kinds]}`);
  const summary = await page.locator('.marks summary').textContent();
  assert.match(summary, /\d+ marks on the charts/);
  await page.locator('.marks summary').click();
  await page.locator('[data-mark="restart"]').first().waitFor();
  assert.match(await page.locator('[data-mark="restart"]').first().textContent(), /exit code 137; restarted/);
  const uptime = Number(await page.locator('[data-uptime]').getAttribute('data-uptime'));
  // 20 minutes down in 7 days: 99.80 %.
  assert.ok(uptime > 99.5 && uptime < 99.95, `uptime over 7 days is ${uptime}`);
  await shot(page, 'history-service-7d');

  // A month: an hour a point. The history began a week ago: the chart spans the month, its
  // line only the week.
  await page.getByRole('button', { name: '30d' }).click();
  drawn = await charts(page, '30d');
  assert.equal(await page.locator('.charts').getAttribute('data-resolution'), '1h');
  for (const c of drawn) assert.ok(c.points >= 168 && c.points <= 200, `${c.name}: ${c.points} points in 30 d`);
  const report = await page.evaluate(async () => {
    const r = await fetch('api/v1/metrics?target=shop/production/web&range=30d', {
      headers: { 'X-Homeport-Session': localStorage.getItem('homeport.session') },
    });
    return r.json();
  });
  assert.ok(report.to - report.from >= 30 * 86400 - 3600, `the range is a month: ${report.from}–${report.to}`);
  assert.ok(report.services[0].points.t[0] >= report.to - 7 * 86400 - 7200, 'nothing before the history began');
  await shot(page, 'history-service-30d');

  // The last hour: the agent's own samples, live.
  await page.getByRole('button', { name: '1h' }).click();
  await charts(page, '1h');
  assert.equal(await page.locator('.charts').getAttribute('data-resolution'), 'raw');
  assert.equal(await page.getByRole('button', { name: '1h' }).getAttribute('aria-pressed'), 'true');

  // The rest of the page: details as `homeport show` prints them, recent events, recent logs.
  await page.getByRole('region', { name: 'Details' }).getByText('Restart', { exact: true }).waitFor();
  assert.match(await page.getByRole('region', { name: 'Details' }).textContent(), /homeport-fixture/);
  await page.getByRole('region', { name: 'Recent events' }).locator('li').first().waitFor();
  await until('recent log lines show', async () => (await page.locator('.logs-box .line').count()) > 0);
  assert.deepEqual(problems, [], 'no errors in the console (a CSP refusal would be one)');
});

test('the Overview has sparklines and environment uptime', async () => {
  const { page, problems } = await signIn();
  await page.locator(`[data-spark="CPU of ${SERVICE}, last hour"] path`).waitFor();
  await page.locator(`[data-spark="Memory of ${SERVICE}, last hour"] path`).waitFor();
  const u = page.locator('[data-env="shop/production"] [data-env-uptime]');
  await u.waitFor();
  assert.equal(await u.locator('.slot').count(), 24, 'an hour a mark over 24 hours');
  assert.match(await u.textContent(), /%/);
  await shot(page, 'history-overview');
  assert.deepEqual(problems, []);
});

test('dark, and at the tray window width, the charts still fit', async () => {
  const { page } = await signIn({ colorScheme: 'dark', viewport: { width: 400, height: 800 } });
  await page.goto(`${agent.base}/#/service?target=${SERVICE}`);
  await charts(page, '24h');
  await page.getByRole('button', { name: '7d' }).click();
  const drawn = await charts(page, '7d');
  for (const c of drawn) assert.ok(c.width > 150, `${c.name} is ${c.width} px wide at 400 px`);
  // The palette is the dark one: the page's background is dark.
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(21, 24, 30)');
  await assertFits(page, 'service page at 400 px');
  await shot(page, 'history-service-dark-narrow');
});

test('a service page for something that is not a service says what to do', async () => {
  const { page } = await signIn();
  await page.goto(`${agent.base}/#/service?target=shop/production`);
  await page.getByText('is not a service').waitFor();
  assert.match(await page.locator('main').textContent(), /APP\/ENV\/SERVICE/);
});
