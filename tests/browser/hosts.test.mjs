// Another host in the dashboard: a real sshd on loopback with a throwaway user (sshd.mjs), the
// host's own agent enrolled with `homeport host add`, and this computer's agent relaying to it.
// The host switcher shows the host's services, stops and starts them, streams their logs, and says
// since when the host is unreachable when sshd goes away, and recovers when it is back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, FIXTURE, browser, freePort, shot, until } from './harness.mjs';
import { SshHost } from './sshd.mjs';

let host, agent, chrome, page;

/** This computer's agent's view of its hosts. */
async function hostInfo(name) {
  const r = await fetch(`${agent.base}/api/v1/hosts`, { headers: { Authorization: `Bearer ${agent.token()}` } });
  return (await r.json()).find((h) => h.name === name);
}

/** The host's status, asked through this computer's agent. */
async function remoteStatus() {
  const r = await fetch(`${agent.base}/api/v1/hosts/vps/api/v1/status`, { headers: { Authorization: `Bearer ${agent.token()}` } });
  return r.ok ? r.json() : null;
}

before(async () => {
  host = await SshHost.start();
  if (!host) return;
  const port = await freePort();
  host.writeConfig(`[agent]\nport = 0\nrouter_port = 0\n\n[apps.shop.env.production]\nautostart = true\n`
    + `services.web = { command = ["${host.shared(FIXTURE)}", "--port", "{port}", "--lines", "2"], port = ${port}, health = "/health" }\n`);
  // The agent's ssh authenticates with the test's key, as a desktop session's agent would.
  process.env.SSH_AUTH_SOCK = host.authSock;
  agent = await Agent.start(`[apps.local.env.dev]\nservices.api = { command = ["@FIXTURE@"] }\n`);
  agent.cli('host', 'add', 'vps', host.destination(), '--fingerprint', host.fingerprint());
  await until('this agent is connected to vps and its web runs', async () =>
    (await hostInfo('vps'))?.state === 'connected' && (await remoteStatus())?.services.some((s) => s.pid), 120000);
  chrome = await browser();
  page = await (await chrome.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(agent.signInLink());
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
});

after(async () => {
  await chrome?.close();
  await agent?.stop();
  await host?.stop();
});

test("choosing the host shows its services, and its production's stop and start go to its agent", async (t) => {
  if (!host) return t.skip('needs root');
  const web = page.locator('[data-service="shop/production/web"]');
  assert.equal(await web.count(), 0, 'this computer has no shop');
  await page.getByRole('combobox', { name: 'Host' }).selectOption('vps');
  await page.locator('.page[data-host="vps"]').waitFor();
  await web.waitFor();
  assert.equal(await page.locator('[data-service="local/dev/api"]').count(), 0, "this computer's services are not vps's");
  await shot(page, 'hosts-overview-vps');

  await page.getByRole('button', { name: 'Stop shop/production/web' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Stop production' }).click();
  await page.locator('[data-service="shop/production/web"][data-state="stopped"]').waitFor({ timeout: 60000 });
  const stopped = await remoteStatus();
  assert.equal(stopped.services.find((s) => s.key.service === 'web').state, 'stopped', "vps's agent stopped it");

  await page.getByRole('button', { name: 'Start shop/production/web', exact: true }).click();
  await until("vps's web runs again", async () =>
    (await remoteStatus())?.services.find((s) => s.key.service === 'web').pid, 60000);
  await page.locator('[data-service="shop/production/web"][data-state="healthy"], [data-service="shop/production/web"][data-state="running"]').first().waitFor({ timeout: 60000 });
});

test("the host's logs stream through this computer's agent", async (t) => {
  if (!host) return t.skip('needs root');
  await page.goto(`${agent.base}/#/logs?target=shop/production/web`);
  await page.locator('.page[data-host="vps"]').waitFor();
  await page.getByRole('log').getByText('listening on').first().waitFor({ timeout: 60000 });
});

test('an unreachable host is said so, since when, and the page recovers when it is back', async (t) => {
  if (!host) return t.skip('needs root');
  await page.goto(`${agent.base}/#/`);
  await page.locator('[data-service="shop/production/web"]').waitFor();
  await host.stopSshd();
  const banner = page.locator('[data-banner="host"]');
  await banner.waitFor({ timeout: 90000 });
  assert.match(await banner.textContent(), /vps is unreachable\s+since/);
  await shot(page, 'hosts-unreachable');

  await host.startSshd();
  await until('connected to vps again', async () => (await hostInfo('vps'))?.state === 'connected', 120000);
  await banner.waitFor({ state: 'detached', timeout: 60000 });
  await page.locator('[data-service="shop/production/web"]').waitFor({ timeout: 60000 });
});
