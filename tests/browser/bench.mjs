// Benchmark: the dashboard's first render with 50 services, against a static page served by the
// same agent in the same browser (the sign-in page), and the JS bundle's gzipped size.
//   npm run build && cargo build --workspace --bins && node tests/browser/bench.mjs
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Agent, browser, until, ROOT } from './harness.mjs';

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
  await chrome.close();
  await agent.stop();
}
