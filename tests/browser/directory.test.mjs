// Browser end-to-end test of a Kommune's directory as identity source: a
// real OpenLDAP slapd (tests/ldap/slapd-run, with TLS from a CA made for
// it), interkom configured with it, headless Chromium on the login page and
// in the console, openid-client as the relying party. The pages are checked
// by axe-core for WCAG 2.1 A/AA violations.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as oidc from 'openid-client';
import { chromium } from 'playwright-core';
import {
  CHROMIUM, ROOT, answerLocally, authRequest, checksFor, databaseFor, freePort, insecure, landOn,
  startServer, stopServer,
} from './harness.mjs';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');
const PORTAL = {
  id: 'serviceportal',
  secret: 'serviceportal-demo-secret-0123456789abcdef',
  redirect: 'http://localhost:9000/callback',
};
const KREIS = { user: 'kreis.admin', password: 'Kreis-Demo-2026!' };

async function assertAccessible(page, what) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  const v = result.violations.map((x) => `${x.id}: ${x.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  assert.deepEqual(v, [], `${what} has accessibility violations`);
}

/** Starts the tests' slapd on free ports; resolves once it is ready. */
async function startSlapd(dir) {
  const ldaps = await freePort();
  const ldap = await freePort();
  const proc = spawn(path.join(ROOT, 'tests/ldap/slapd-run'), [dir, String(ldaps), String(ldap)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = [];
  proc.stderr.on('data', (d) => log.push(d.toString()));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`slapd did not start:\n${log.join('')}`)), 30_000);
    proc.stdout.on('data', (d) => {
      if (d.toString().split('\n').some((l) => l.trim() === 'ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => reject(new Error(`slapd-run exited ${code}:\n${log.join('')}`)));
  });
  return { proc, ldaps };
}

describe('a Kommune’s directory in headless Chromium', { timeout: 120_000 }, () => {
  let dir;
  let slapd;
  let server;
  let issuer;
  let browser;
  let config;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'interkom-directory-'));
    slapd = await startSlapd(path.join(dir, 'slapd'));
    // The demo configuration with this directory added.
    const toml = path.join(dir, 'interkom.toml');
    copyFileSync(path.join(ROOT, 'config/interkom.toml'), toml);
    const ca = readFileSync(path.join(dir, 'slapd/ca.pem'), 'utf8');
    appendFileSync(toml, `
[[directories]]
id = "ad-hitzacker"
tenant = "hitzacker-elbe"
name = "Stadt Hitzacker (Verzeichnis)"
kind = "openldap"
servers = ["ldaps://127.0.0.1:${slapd.ldaps}"]
ca_pem = """
${ca}"""
base_dn = "dc=hitzacker,dc=example"
group_base_dn = "ou=groups,dc=hitzacker,dc=example"
bind_dn = "cn=interkom,ou=dienste,dc=hitzacker,dc=example"
bind_password = "dienst-geheim-2026"
domains = ["hitzacker.example"]
roles = { "cn=rathaus,ou=groups,dc=hitzacker,dc=example" = "sachbearbeitung" }
`);
    const port = await freePort();
    issuer = `http://127.0.0.1:${port}`;
    server = await startServer(issuer, port, databaseFor(dir, 'directory'), dir, { INTERKOM_CONFIG: toml });
    config = await oidc.discovery(new URL(issuer), PORTAL.id, PORTAL.secret, undefined, insecure);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await stopServer(server.proc);
    if (slapd) slapd.proc.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('staff choose their Kommune’s directory, log in with the Windows password, and the RP gets them', async () => {
    const context = await browser.newContext({ bypassCSP: true });
    const page = await context.newPage();
    // The relying party's address answers with a page of its own (through
    // Chromium's Fetch domain: page.route does not see redirect targets).
    await answerLocally(context, page, ['http://localhost:900*'], '<!doctype html><title>Relying party</title>');
    const req = await authRequest(config, PORTAL.redirect);
    await page.goto(req.url.href);
    await page.click('button:has-text("Stadt Hitzacker (Verzeichnis)")');
    await page.waitForSelector('input[name=directory][value=ad-hitzacker]', { state: 'attached' });
    assert.match(await page.locator('main h2').last().innerText(), /Stadt Hitzacker \(Verzeichnis\)/);
    await assertAccessible(page, 'the directory’s password form');
    // A wrong password: the form again, the message announced.
    await page.fill('input[name=username]', 'm.mueller');
    await page.fill('input[name=password]', 'falsch');
    await page.press('input[name=password]', 'Enter');
    await page.waitForSelector('[role=alert]');
    await assertAccessible(page, 'the directory’s form with an error');
    await page.fill('input[name=password]', 'Sommer-2026!');
    const landed = await landOn(page, PORTAL.redirect, () => page.press('input[name=password]', 'Enter'));
    const tokens = await oidc.authorizationCodeGrant(config, landed, checksFor(req));
    const claims = tokens.claims();
    assert.equal(claims.preferred_username, 'm.mueller@ad-hitzacker');
    assert.equal(claims.name, 'Maria Müller');
    assert.equal(claims.acr, 'urn:interkom:loa:low');
    assert.equal(claims.tenant, 'hitzacker-elbe');
    await context.close();
  });

  it('the console lists the directory and tests the connection, then names the failure when it is down', async () => {
    const context = await browser.newContext({ bypassCSP: true });
    const page = await context.newPage();
    await page.goto(`${issuer}/admin/console/directories`);
    await page.waitForSelector('input[name=username]');
    await page.fill('input[name=username]', KREIS.user);
    await page.fill('input[name=password]', KREIS.password);
    await Promise.all([
      page.waitForURL((u) => u.pathname.startsWith('/admin/console/') && !u.pathname.includes('callback')),
      page.press('input[name=password]', 'Enter'),
    ]);
    await page.goto(`${issuer}/admin/console/directories`);
    assert.equal(await page.locator('h1').innerText(), 'Verzeichnisse');
    const row = page.locator('main table tbody tr', { hasText: 'ad-hitzacker' });
    assert.equal(await row.count(), 1);
    await assertAccessible(page, 'the directories page');
    await row.locator('input[name=username]').fill('m.mueller');
    await row.locator('button[value=test]').click();
    await page.locator('[role=status]', { hasText: 'Verbindung in Ordnung' }).waitFor();
    const found = await page.locator('main section dl').innerText();
    assert.match(found, /uid=m\.mueller,ou=people,dc=hitzacker,dc=example/);
    assert.match(found, /cn=rathaus,ou=groups,dc=hitzacker,dc=example/);
    assert.match(found, /sachbearbeitung/);
    await assertAccessible(page, 'the directories page with a test result');
    // The directory goes down: the test says so, in words.
    slapd.proc.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    await page.locator('main table tbody tr', { hasText: 'ad-hitzacker' }).locator('button[value=test]').click();
    await page.locator('[role=alert]', { hasText: 'Kein Server des Verzeichnisses ist erreichbar' }).waitFor();
    await assertAccessible(page, 'the directories page with a failed test');
    await context.close();
  });
});
