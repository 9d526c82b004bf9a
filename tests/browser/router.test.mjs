// The router in a real Chromium: a page by name over HTTP, HTTPS by name with the local CA
// trusted in the browser's own NSS database (and refused again after `trust uninstall`), and
// the router's own pages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, browser, freePort, shot, until } from './harness.mjs';

let agent, httpsPort;

before(async () => {
  const port = await freePort();
  httpsPort = await freePort();
  agent = await Agent.start(`
[apps.shop.env.production]
autostart = true
hostnames = ["shop.test"]
[apps.shop.env.production.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--say", "prod", "--keep-alive"]
port = ${port}
health = { http = "/health", interval = "100ms" }

[apps.shop.env.beta.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--say", "beta"]
port = ${await freePort()}
`, undefined, `https_port = ${httpsPort}`);
  await until('shop/production/web is healthy', async () => {
    const s = await agent.status();
    return s.services.find((x) => x.key.app === 'shop' && x.key.env === 'production' && x.key.service === 'web')?.state === 'healthy';
  });
});

after(async () => {
  await agent?.stop();
});

test('names load over HTTP, and a stopped environment gets a page that says how to start it', async () => {
  const chrome = await browser();
  try {
    const page = await chrome.newPage();
    const ok = await page.goto(`http://shop.localhost:${agent.routerPort}/`);
    assert.equal(ok.status(), 200);
    assert.match(await page.textContent('body'), /hello from prod/);
    const stopped = await page.goto(`http://beta.shop.localhost:${agent.routerPort}/`);
    assert.equal(stopped.status(), 503);
    assert.equal(await page.title(), 'shop/beta is stopped');
    assert.match(await page.textContent('body'), /homeport start shop\/beta/);
    await shot(page, 'router-stopped');
    const unknown = await page.goto(`http://nope.localhost:${agent.routerPort}/`);
    assert.equal(unknown.status(), 404);
    assert.match(await page.textContent('body'), /beta\.shop\.localhost/);
    await shot(page, 'router-unknown-name');
  } finally {
    await chrome.close();
  }
});

test('HTTPS by name without a warning once the CA is trusted, refused after trust uninstall', async () => {
  // Chromium reads ~/.pki/nssdb of the HOME it runs with: the agent's test folder.
  const env = { ...process.env, HOME: agent.dir };
  const url = `https://shop.localhost:${httpsPort}/`;

  const before = agent.cli('trust', 'status');
  assert.match(before, /NSS database ~\/\.pki\/nssdb \(Chromium\): (not trusted|skipped: no such database)/);
  const installed = agent.cli('trust', 'install', '--nss');
  assert.match(installed, /NSS database ~\/\.pki\/nssdb \(Chromium\): trusted/);

  let chrome = await browser(env);
  try {
    const page = await chrome.newPage();
    const r = await page.goto(url);
    assert.equal(r.status(), 200);
    assert.match(await page.textContent('body'), /hello from prod/);
    const tls = await r.securityDetails();
    assert.match(tls.issuer, /Homeport local CA/);
    assert.equal(tls.subjectName, 'shop.localhost');
    await shot(page, 'router-https');
  } finally {
    await chrome.close();
  }

  const removed = agent.cli('trust', 'uninstall', '--nss');
  assert.match(removed, /NSS database ~\/\.pki\/nssdb \(Chromium\): not trusted/);
  chrome = await browser(env);
  try {
    const page = await chrome.newPage();
    await assert.rejects(page.goto(url), /ERR_CERT_AUTHORITY_INVALID/);
  } finally {
    await chrome.close();
  }
});
