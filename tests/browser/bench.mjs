// Benchmark: the dashboard's first render with 50 services, against a static page served by the
// same agent in the same browser (the sign-in page), and the JS bundle's gzipped size; then a
// service page's charts of 30 days (written by homeport-history) against the same page's 24 hours;
// then, as root, the first render of another host's screens (a real sshd on loopback, sshd.mjs)
// against this computer's, in the same browser.
//   npm run build && cargo build --workspace --bins && node tests/browser/bench.mjs
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { Agent, browser, until, freePort, ROOT, FIXTURE, HISTORY } from './harness.mjs';
import { SshHost } from './sshd.mjs';

const RUNS = 10;
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];

let body = '';
for (let i = 0; i < 50; i++) body += `[apps.big.env.e${i % 5}.services.s${i}]\ncommand = ["@FIXTURE@"]\nautostart = true\n`;
const agent = await Agent.start(body);
const chrome = await browser();
try {
  await until('50 services run', async () => (await agent.status()).services.filter((s) => s.state === 'running').length === 50);
  const staticMs = [];
  const appMs = [];
  for (let i = 0; i < RUNS; i++) {
    const ctx = await chrome.newContext();
    const page = await ctx.newPage();
    // Baseline: a static page from the same server, to its first paint.
    await page.goto(`${agent.base}/`);
    staticMs.push(await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? performance.timing.domContentLoadedEventEnd - performance.timing.navigationStart));
    // The dashboard: from navigation to the first render of live data.
    await page.goto(agent.signInLink());
    await page.locator('[data-service]').nth(49).waitFor();
    appMs.push(await page.evaluate(() => performance.getEntriesByName('homeport:first-render')[0].startTime));
    await ctx.close();
  }
  const js = readdirSync(join(ROOT, 'ui/dist/assets')).filter((f) => f.endsWith('.js'));
  const gz = js.reduce((n, f) => n + gzipSync(readFileSync(join(ROOT, 'ui/dist/assets', f))).length, 0);
  const s = median(staticMs);
  const a = median(appMs);
  console.log('| benchmark | baseline (same run) | homeport | ratio | goal |');
  console.log('|---|---|---|---|---|');
  console.log(`| dashboard first render, 50 services (median of ${RUNS}) | ${s.toFixed(1)} ms (static page, first paint) | ${a.toFixed(1)} ms | ${(a / s).toFixed(2)}× | ≤ 300 ms |`);
  console.log(`| dashboard JS bundle, gzipped | – | ${(gz / 1024).toFixed(1)} KB | – | ≤ 150 KB |`);
} finally {
  await agent.stop();
}

// A service page over 30 days of history: from the click on a range to its four charts drawn
// (the API's answer, parsing, four uPlot charts), and the CPU chart's own drawing.
const history = await Agent.start(
  '[apps.shop.env.production.services.web]\ncommand = ["@FIXTURE@"]\nautostart = true\n',
  (dir) => execFileSync(HISTORY, [join(dir, 'data', 'state.db'), '30', 'shop/production/web']),
);
try {
  const page = await (await chrome.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(history.signInLink());
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await page.goto(`${history.base}/#/service?target=shop/production/web`);
  await page.locator('.charts[data-range="24h"]').waitFor();
  const show = async (range) => {
    await page.evaluate(() => performance.clearMarks());
    const t0 = await page.evaluate(() => performance.now());
    await page.getByRole('button', { name: range }).click();
    await page.locator(`.charts[data-range="${range}"]`).waitFor();
    await until('four charts drawn', () => page.evaluate(() => performance.getEntriesByType('mark').filter((m) => m.name.startsWith('homeport:chart-drawn:')).length >= 4));
    return page.evaluate((t0) => {
      const marks = performance.getEntriesByType('mark');
      const drawn = marks.filter((m) => m.name.startsWith('homeport:chart-drawn:'));
      const start = marks.find((m) => m.name === 'homeport:chart-start:CPU');
      const cpu = marks.find((m) => m.name === 'homeport:chart-drawn:CPU');
      return { total: Math.max(...drawn.map((m) => m.startTime)) - t0, chart: cpu.startTime - start.startTime, points: Number(document.querySelector('figure[data-chart="CPU"]').dataset.points) };
    }, t0);
  };
  const month = [];
  const day = [];
  // The page opened on 24 h: each run goes to 30 d, then back.
  for (let i = 0; i < RUNS; i++) {
    month.push(await show('30d'));
    day.push(await show('24h'));
  }
  const m = { total: median(month.map((x) => x.total)), chart: median(month.map((x) => x.chart)) };
  const d = { total: median(day.map((x) => x.total)), chart: median(day.map((x) => x.chart)) };
  console.log(`| service page, 30 days of one service: click → four charts drawn (median of ${RUNS}) | 24 h on the same page: ${d.total.toFixed(1)} ms (${day[0].points} points; one chart ${d.chart.toFixed(1)} ms) | ${m.total.toFixed(1)} ms (${month[0].points} points; one chart ${m.chart.toFixed(1)} ms) | ${(m.total / d.total).toFixed(2)}× | ≤ 100 ms |`);
} finally {
  await chrome.close();
  await history.stop();
}

// Another host's dashboard: from navigation to the first render of its live data, through this
// computer's agent and its SSH connection, against this computer's own, 10 services each.
const host = await SshHost.start();
if (host) {
  let local;
  let chrome2;
  try {
    const services = (app, fixture) => {
      let b = `[apps.${app}.env.production]\nautostart = true\n`;
      for (let i = 0; i < 10; i++) b += `services.s${i} = { command = ["${fixture}"] }\n`;
      return b;
    };
    host.writeConfig(`[agent]\nport = 0\nrouter_port = 0\n\n${services('remote', host.shared(FIXTURE))}`);
    process.env.SSH_AUTH_SOCK = host.authSock;
    local = await Agent.start(services('local', '@FIXTURE@'));
    local.cli('host', 'add', 'vps', host.destination(), '--fingerprint', host.fingerprint());
    const auth = { headers: { Authorization: `Bearer ${local.token()}` } };
    await until('vps is connected and runs its 10', async () => {
      const r = await fetch(`${local.base}/api/v1/hosts/vps/api/v1/status`, auth);
      return r.ok && (await r.json()).services.filter((s) => s.pid).length === 10;
    }, 120000);
    await until('10 run here', async () => (await local.status()).services.filter((s) => s.pid).length === 10);
    chrome2 = await browser();
    const render = async (hostName, app) => {
      const ctx = await chrome2.newContext();
      // The switcher's choice, as a tab that chose vps before keeps it.
      if (hostName) await ctx.addInitScript((h) => sessionStorage.setItem('homeport.host', h), hostName);
      const page = await ctx.newPage();
      await page.goto(local.signInLink());
      await page.locator(`[data-service^="${app}/"]`).nth(9).waitFor({ timeout: 60000 });
      const ms = await page.evaluate(() => performance.getEntriesByName('homeport:first-render')[0].startTime);
      await ctx.close();
      return ms;
    };
    const here = [];
    const there = [];
    for (let i = 0; i < RUNS; i++) {
      here.push(await render(null, 'local'));
      there.push(await render('vps', 'remote'));
    }
    const h = median(here);
    const t = median(there);
    console.log(`| dashboard first render of another host (through this agent and SSH), 10 services (median of ${RUNS}) | ${h.toFixed(1)} ms (this computer's, 10 services) | ${t.toFixed(1)} ms | ${(t / h).toFixed(2)}× | reported |`);
  } finally {
    await chrome2?.close();
    await local?.stop();
    await host.stop();
  }
}
