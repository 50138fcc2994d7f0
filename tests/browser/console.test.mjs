// Browser test of the admin console: headless Chromium logs in through the
// gateway, edits the policy with its preview, a second administrator
// approves the proposal, security staff filter and export the audit trail;
// axe-core checks every console page and the login page for WCAG 2.1 AA
// violations (there must be none).
//
// Environment as for login.test.mjs (`./run` sets it up).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { BIN, CHROMIUM, ROOT, databaseFor, freePort, nodeEnv, startServer, stopServer } from './harness.mjs';

// Short-lived access tokens: the console must renew them with its refresh
// token while the administrator works (this file's server only).
process.env.INTERKOM_TOKENS__ACCESS_TOKEN_TTL = '5';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');

const KREIS = { user: 'kreis.admin', password: 'Kreis-Demo-2026!' };
const SECOND = { user: 'zweite.admin', password: 'Zweite-Admin-2026!' };
const ISB = { user: 'ines.brandt', password: 'Sicherheit-Demo-2026!' };
const GEMEINDE = { user: 'hitzacker.admin', password: 'Hitzacker-Admin-2026!' };
const SAMTGEMEINDE = { user: 'elbtalaue.admin', password: 'Elbtalaue-Admin-2026!' };
const LINE = 'p, meldebehoerde, meldedaten-hitzacker-elbe, export, members, deny, true';

// A service provider's SAML metadata as a vendor would hand it over: one
// self-signed certificate (made once with `openssl req -x509 -newkey
// rsa:2048 -days 36500`, its key thrown away) for signing and encryption,
// an ACS for HTTP-POST, a Redirect SLO endpoint.
const SP_CERT = [
  'MIIDLTCCAhWgAwIBAgIULYfltAEIYiFZcdXkiodEI7vREO0wDQYJKoZIhvcNAQELBQAwJTEjMCEG',
  'A1UEAwwacmF0c2luZm8uaGl0emFja2VyLmV4YW1wbGUwIBcNMjYxMjA3MTUzNTQ2WhgPMjEyNjEx',
  'MTMxNTM1NDZaMCUxIzAhBgNVBAMMGnJhdHNpbmZvLmhpdHphY2tlci5leGFtcGxlMIIBIjANBgkq',
  'hkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAgygFm3xhiBZ5etNoL8jRmSdukITfA7HogPeRXW1jT8bg',
  'bm2frUC4/gaiIjEdCsb847y26OulH6XYADnAY/ckuiqx+afbB8uS/qmh7lcl/ZdG4Y+wuzbBXuwN',
  'SWOoMURyOapi/YU1ucX4eivLs7auc7CkJs2Sm6IkikgASvd52Q/yYqM6DMJqgo05rheXTztoMDnB',
  '/mA8X5tHYyN4GWmsTZCEKlLYfxUWqwJCa+3Xg+JnQeiZIhSGRuqU7sjdycX90aNM5qijMe7Yjk1G',
  'rD+SZuT1JCqFgdD929RqPylW6lW0h0w9PgyxSN+bWiL/2W1mlX9lDOnXk6uF0KFGvUdV+QIDAQAB',
  'o1MwUTAdBgNVHQ4EFgQUqh5WrUbJyB9C1CsUTBNGu7/2JWIwHwYDVR0jBBgwFoAUqh5WrUbJyB9C',
  '1CsUTBNGu7/2JWIwDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0BAQsFAAOCAQEAc5x8nWWJl3nR',
  'LgvCeQoKcM10W9efBUJrguuK9WZQm6Q6aUsVQwPFRxDZKYiIXKyeY8uCtmfZah9RRz+YwR+Y21iE',
  'OnKFWXTi1qQnZ8W0MgBNOQ09WWYAjLxwLIvGx9LECzlxle5Jvp045JJNICvLyguHFE+gNRUkixUF',
  'CFd/56ofMHk9P6seegRmk6qjw4Wn27IAoNJX6HuEHig/NtVCoARjPn3D2KGK2OsMLjY7RCbDRcYV',
  'wiaPr6AAawo0qAH/cWLgiLeGZbIbhsNOYNhWPQtDw5MO+Gg9EPBbRbckn0qatDfFbqt/MbAUX6OP',
  '2+uHZr1Vzo1SLeplUb+gNmqP1Q==',
].join('');
const SP_METADATA = `<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://ratsinfo.hitzacker.example/saml/metadata">
  <md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${SP_CERT}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${SP_CERT}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://ratsinfo.hitzacker.example/saml/slo"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://ratsinfo.hitzacker.example/saml/acs" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
`;

// An identity service's SAML metadata (a Kommune's own citizen account
// service), signed with the same throwaway certificate.
const IDP_METADATA = `<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://konto.hitzacker.example/idp">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${SP_CERT}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://konto.hitzacker.example/idp/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
`;

/** Runs the CLI against the node's database. */
function cli(env, args, stdin) {
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${args.join(' ')}: ${out}`))));
    p.stdin.end(stdin ?? '');
  });
}

/** WCAG 2.1 A/AA violations on the current page (axe-core). */
async function violations(page) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  return result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

async function assertAccessible(page, what) {
  const v = await violations(page);
  assert.deepEqual(v, [], `${what} has accessibility violations`);
}

describe('admin console', () => {
  let browser;
  let server;
  let dir;
  let issuer;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'interkom-console-'));
    const port = await freePort();
    issuer = `http://127.0.0.1:${port}`;
    const db = databaseFor(dir, 'console');
    const env = nodeEnv(issuer, port, db, dir);
    await cli(env, ['migrate']);
    // A second Kreis administrator (an operator's act on the command line).
    await cli(env, ['user', 'add', '--tenant', 'lk-luechow-dannenberg', '--username', SECOND.user,
      '--password-stdin', '--role', 'admin', '--role', 'kommunalaufsicht'], `${SECOND.password}\n`)
      .catch((e) => { if (!String(e).includes('taken')) throw e; });
    for (const [who, tenant, roles] of [
      [GEMEINDE, 'hitzacker-elbe', ['admin', 'sachbearbeitung']],
      [SAMTGEMEINDE, 'sg-elbtalaue', ['admin', 'meldebehoerde']],
    ]) {
      await cli(env, ['user', 'add', '--tenant', tenant, '--username', who.user, '--password-stdin',
        ...roles.flatMap((r) => ['--role', r])], `${who.password}\n`);
    }
    server = await startServer(issuer, port, db, dir);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await stopServer(server.proc);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh browser (axe is injected, so the page's CSP is bypassed). */
  async function loggedIn(who, check = false) {
    const context = await browser.newContext({ bypassCSP: true });
    const page = await context.newPage();
    await page.goto(`${issuer}/admin/console/`);
    // Not logged in: the gateway's login page.
    await page.waitForSelector('input[name=username]');
    if (check) await assertAccessible(page, 'the login page');
    await page.fill('input[name=username]', who.user);
    await page.fill('input[name=password]', who.password);
    await Promise.all([
      page.waitForURL((u) => u.pathname.startsWith('/admin/console/') && !u.pathname.includes('callback')),
      page.press('input[name=password]', 'Enter'),
    ]);
    return { context, page };
  }

  it('logs in through the gateway; every page is accessible and keyboard-usable', async () => {
    const { context, page } = await loggedIn(KREIS, true);
    assert.equal(await page.locator('h1').innerText(), 'Übersicht');
    assert.equal(await page.getAttribute('html', 'lang'), 'de');
    // The first Tab reaches the skip link.
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.className), 'skip');
    for (const p of ['', 'users', 'policy', 'proposals', 'grants', 'resources', 'clients', 'upstreams', 'directories', 'applications', 'service-providers', 'leistungen', 'saml-sources', 'audit']) {
      const res = await page.goto(`${issuer}/admin/console/${p}`);
      assert.equal(res.status() < 500, true, p);
      assert.equal(res.headers()['content-security-policy']?.includes("frame-ancestors 'none'"), true);
      await assertAccessible(page, `/admin/console/${p}`);
    }
    // Past the access token's lifetime the session goes on (refresh).
    await new Promise((r) => setTimeout(r, 6000));
    const later = await page.goto(`${issuer}/admin/console/users`);
    assert.equal(later.status(), 200);
    assert.equal(await page.locator('h1').innerText(), 'Benutzer');
    // English on request.
    await page.goto(`${issuer}/admin/console/users?lang=en`);
    assert.equal(await page.locator('h1').innerText(), 'Users');
    assert.equal(await page.getAttribute('html', 'lang'), 'en');
    await assertAccessible(page, 'the English users page');
    await context.close();
  });

  it('edits the policy with a preview; a second administrator approves', async () => {
    const { context, page } = await loggedIn(KREIS);
    await page.goto(`${issuer}/admin/console/policy`);
    await page.fill('#add', LINE);
    await page.fill('#comment', 'Exportsperre Meldedaten');
    await page.click('button[value=preview]');
    await page.waitForSelector('#preview');
    const preview = await page.locator('#preview').innerText();
    assert.match(preview, /meldedaten-hitzacker-elbe/);
    assert.match(preview, /sehr hoch/);
    await assertAccessible(page, 'the policy preview');
    await page.click('button[value=apply]');
    await page.waitForSelector('[role=status]');
    assert.match(await page.locator('[role=status]').innerText(), /wartet auf Freigabe/);
    // Not live yet; the proposer cannot approve it.
    let lines = await page.locator('table').last().innerText();
    assert.doesNotMatch(lines, /meldedaten-hitzacker-elbe, export/);
    await page.goto(`${issuer}/admin/console/proposals`);
    await page.click('button[value=approve]');
    await page.waitForSelector('[role=alert]');
    await context.close();

    const second = await loggedIn(SECOND);
    await second.page.goto(`${issuer}/admin/console/proposals`);
    await assertAccessible(second.page, 'the proposals page');
    await second.page.click('button[value=approve]');
    await second.page.waitForSelector('[role=status]');
    await second.page.goto(`${issuer}/admin/console/policy`);
    lines = await second.page.locator('table').last().innerText();
    assert.match(lines, /meldedaten-hitzacker-elbe, export, members, deny/);
    await second.context.close();
  });

  it('lets security staff filter, page and export the audit trail', async () => {
    const { context, page } = await loggedIn(ISB);
    await page.goto(`${issuer}/admin/console/audit`);
    await page.selectOption('#f-action', 'admin_change');
    await page.click('.filters button');
    await page.waitForURL(/action=admin_change/);
    const rows = page.locator('tbody tr');
    assert.ok((await rows.count()) >= 2, 'the proposal and its approval');
    for (const cell of await page.locator('tbody tr td:nth-child(3)').allInnerTexts()) {
      assert.equal(cell, 'admin_change');
    }
    await assertAccessible(page, 'the filtered audit page');
    const href = await page.getAttribute('a[href*="format=csv"]', 'href');
    const csv = await context.request.get(new URL(href, issuer).href);
    assert.equal(csv.status(), 200);
    assert.match(csv.headers()['content-type'], /text\/csv/);
    const body = await csv.text();
    assert.match(body, /admin_change/);
    assert.doesNotMatch(body, /token_issued/);
    // The overview shows the chain's verification status.
    await page.goto(`${issuer}/admin/console/`);
    assert.match(await page.locator('main').innerText(), /unverändert/);
    await context.close();
  });

  it("lets a Gemeinde's administrator work in their Gemeinde and nowhere else", async () => {
    const { context, page } = await loggedIn(GEMEINDE);
    const tenants = await page.locator('main table tbody tr').allInnerTexts();
    assert.equal(tenants.length, 1);
    assert.match(tenants[0], /hitzacker-elbe/);
    // A new clerk with a role, shown their initial password once.
    await page.goto(`${issuer}/admin/console/users`);
    await page.fill('#new-username', 'neu.hitzacker');
    await page.fill('#new-role', 'sachbearbeitung');
    await page.click('form[aria-labelledby=create-h] button[type=submit]');
    await page.waitForSelector('[role=status] code');
    assert.match(await page.locator('main').innerText(), /neu\.hitzacker/);
    assert.equal(await page.locator('#new-tenant option').count(), 1, 'only their own tenant');
    await assertAccessible(page, 'the users page with a new password');
    // Password reset of that clerk.
    await page.click('button[aria-label$=": neu.hitzacker"][value=reset]');
    await page.waitForSelector('[role=status] code');
    // A resource of their own, normal protection: applied at once.
    await page.goto(`${issuer}/admin/console/resources`);
    await page.fill('#r-id', 'hundesteuer-hitzacker');
    await page.fill('#r-kind', 'steuern');
    await page.click('form[aria-labelledby=new-h] button[type=submit]');
    await page.waitForSelector('[role=status]');
    const ids = await page.locator('main table tbody tr td:first-child').allInnerTexts();
    assert.ok(ids.includes('hundesteuer-hitzacker'));
    assert.ok(!ids.includes('gewerbe-elbtalaue'), 'the Samtgemeinde\'s resources are not theirs');
    await assertAccessible(page, 'the resources page');
    // A line on the Samtgemeinde's resource: refused, with the reason.
    await page.goto(`${issuer}/admin/console/policy`);
    await page.fill('#add', 'p, sachbearbeitung, gewerbe-elbtalaue, read, own, allow, true');
    await page.click('button[value=apply]');
    await page.waitForSelector('[role=alert]');
    assert.match(await page.locator('[role=alert]').innerText(), /outside|sachbearbeitung|may not/);
    await context.close();
  });

  it("lets a Samtgemeinde's administrator grant, but not approve their own sehr_hoch grant", async () => {
    const { context, page } = await loggedIn(SAMTGEMEINDE);
    await page.goto(`${issuer}/admin/console/grants`);
    await page.fill('#g-grantee', 'user:jan.meyer');
    await page.selectOption('#g-resource', 'meldedaten-hitzacker-elbe');
    await page.fill('#g-actions', 'read');
    await page.fill('#g-purpose', 'Vertretung im Bürgerbüro');
    await page.fill('#g-expires', '2099-12-31');
    await page.click('form[aria-labelledby=grant-h] button[type=submit]');
    await page.waitForSelector('button[value=approve]');
    assert.match(await page.locator('main table').innerText(), /jan\.meyer/);
    await assertAccessible(page, 'the grants page');
    await page.click('button[value=approve]');
    await page.waitForSelector('[role=alert]');
    assert.match(await page.locator('[role=alert]').innerText(), /grantor/);
    await context.close();
  });

  /** Fills the upstream form of the console's upstreams page. */
  async function fillUpstream(page, u) {
    await page.fill('#u-id', u.id);
    await page.selectOption('#u-tenant', u.tenant);
    await page.fill('#u-name', u.name);
    await page.fill('#u-issuer', u.issuer);
    await page.fill('#u-client-id', u.clientId);
    if (u.secret) await page.fill('#u-secret', u.secret);
    await page.fill('#u-domains', u.domains ?? '');
    await page.fill('#u-acr', u.acr);
    await page.fill('#u-roles', u.roles ?? '');
    await page.fill('#u-groups', u.groups ?? '');
    await page.setChecked('#u-link', Boolean(u.link));
  }

  const SAVE = 'form[aria-labelledby=save-h] button[type=submit]';
  const MD_SAVE = 'form[aria-labelledby=md-h] button[type=submit]';
  const EDIT_SAVE = 'form[aria-labelledby=edit-h] button[type=submit]';

  it('lets the Kreis administrator add, list and delete an upstream identity provider', async () => {
    const { context, page } = await loggedIn(KREIS);
    await page.goto(`${issuer}/admin/console/upstreams`);
    assert.equal(await page.locator('h1').innerText(), 'Anmeldedienste');
    assert.equal(await page.getAttribute('nav a[aria-current=page]', 'href'), '/admin/console/upstreams');
    await fillUpstream(page, {
      id: 'idp-hitzacker',
      tenant: 'hitzacker-elbe',
      name: 'Stadt Hitzacker (Elbe)',
      issuer: 'https://login.hitzacker.example',
      clientId: 'interkom',
      secret: 'upstream-secret-0123456789abcdef',
      domains: 'hitzacker.example',
      acr: 'urn:hitzacker:eid = high\nurn:hitzacker:password = low',
      roles: 'it-aufsicht = kommunalaufsicht',
      groups: 'groups',
      link: true,
    });
    await page.click(SAVE);
    await page.locator('[role=status]', { hasText: 'wirksam' }).waitFor();
    const row = page.locator('main table tbody tr', { hasText: 'idp-hitzacker' });
    assert.equal(await row.count(), 1);
    const listed = await row.innerText();
    assert.match(listed, /https:\/\/login\.hitzacker\.example/);
    assert.match(listed, /hitzacker-elbe/);
    assert.match(listed, /urn:hitzacker:eid\s*→?\s*:?\s*hoch/);
    assert.match(listed, /urn:hitzacker:password\s*→?\s*:?\s*niedrig/);
    assert.match(listed, /it-aufsicht\s*→?\s*:?\s*kommunalaufsicht/);
    await assertAccessible(page, 'the upstreams page');
    // Edit fills the form with what is stored (never the secret).
    await page.click('a[aria-label="Bearbeiten: Stadt Hitzacker (Elbe)"]');
    await page.waitForURL(/edit=idp-hitzacker/);
    assert.equal(await page.inputValue('#u-issuer'), 'https://login.hitzacker.example');
    assert.match(await page.inputValue('#u-acr'), /urn:hitzacker:eid = high/);
    assert.equal(await page.inputValue('#u-groups'), 'groups');
    assert.equal(await page.isChecked('#u-link'), true);
    assert.equal(await page.inputValue('#u-secret'), '');
    // Delete.
    await page.click('button[aria-label="Löschen: Stadt Hitzacker (Elbe)"]');
    await page.locator('[role=status]', { hasText: 'gelöscht' }).waitFor();
    assert.equal(await page.locator('main table tbody tr', { hasText: 'idp-hitzacker' }).count(), 0);
    // A mapping to `admin` waits for a second administrator.
    await fillUpstream(page, {
      id: 'idp-hitzacker',
      tenant: 'hitzacker-elbe',
      name: 'Stadt Hitzacker (Elbe)',
      issuer: 'https://login.hitzacker.example',
      clientId: 'interkom',
      acr: 'urn:hitzacker:password = low',
      roles: 'it-admins = admin',
      groups: 'groups',
    });
    await page.click(SAVE);
    await page.locator('[role=status]', { hasText: 'wartet auf Freigabe' }).waitFor();
    assert.equal(await page.locator('main table tbody tr', { hasText: 'idp-hitzacker' }).count(), 0);
    await context.close();
  });

  it('lets the Kreis administrator register a protected application and lists it', async () => {
    const { context, page } = await loggedIn(KREIS);
    await page.goto(`${issuer}/admin/console/applications`);
    assert.equal(await page.locator('h1').innerText(), 'Anwendungen');
    assert.equal(await page.getAttribute('nav a[aria-current=page]', 'href'), '/admin/console/applications');
    // The API's defaults are in the form.
    assert.equal(await page.inputValue('#a-paths'), '/');
    assert.equal(await page.isChecked('#a-h-acr'), true);
    await page.fill('#a-id', 'intranet-hitzacker');
    await page.selectOption('#a-tenant', 'hitzacker-elbe');
    await page.fill('#a-name', 'Intranet Hitzacker');
    await page.fill('#a-origins', 'https://intranet.hitzacker.example');
    await page.fill('#a-paths', '/\n/akten');
    await page.selectOption('#a-resource', 'ratsinfo-hitzacker');
    await page.fill('#a-actions', 'GET = read\nHEAD = read\n* = write');
    await page.setChecked('#a-h-subject', false);
    await page.setChecked('#a-jwt', true);
    await page.click(SAVE);
    await page.locator('[role=status]', { hasText: 'wirksam' }).waitFor();
    const row = page.locator('main table tbody tr', { hasText: 'intranet-hitzacker' });
    assert.equal(await row.count(), 1);
    const listed = await row.innerText();
    assert.match(listed, /Intranet Hitzacker/);
    assert.match(listed, /hitzacker-elbe/);
    assert.match(listed, /https:\/\/intranet\.hitzacker\.example/);
    assert.match(listed, /\/akten/);
    assert.match(listed, /ratsinfo-hitzacker/);
    assert.doesNotMatch(listed, /X-Interkom-Subject/);
    assert.match(listed, /X-Interkom-Roles/);
    assert.match(listed, /\bja\b/);
    await assertAccessible(page, 'the applications page');
    // Edit fills the form with what is stored.
    await page.click('a[aria-label="Bearbeiten: Intranet Hitzacker"]');
    await page.waitForURL(/edit=intranet-hitzacker/);
    assert.equal(await page.inputValue('#a-origins'), 'https://intranet.hitzacker.example');
    assert.equal(await page.isChecked('#a-h-subject'), false);
    assert.equal(await page.isChecked('#a-jwt'), true);
    // An API refusal is shown and the form keeps what was sent.
    await page.fill('#a-origins', 'http://intranet.hitzacker.example');
    await page.click(SAVE);
    await page.waitForSelector('[role=alert]');
    assert.match(await page.locator('[role=alert]').innerText(), /https only/);
    assert.equal(await page.inputValue('#a-origins'), 'http://intranet.hitzacker.example');
    await assertAccessible(page, 'the applications page with a refusal');
    await context.close();
  });

  it('lets the Kreis administrator register a SAML service provider from its metadata and change it', async () => {
    const { context, page } = await loggedIn(KREIS);
    await page.goto(`${issuer}/admin/console/service-providers`);
    assert.equal(await page.locator('h1').innerText(), 'SAML-Anwendungen');
    assert.equal(await page.getAttribute('nav a[aria-current=page]', 'href'), '/admin/console/service-providers');
    // Neither metadata nor its URL: the console says so, nothing is sent.
    await page.selectOption('#m-tenant', 'hitzacker-elbe');
    await page.fill('#m-id', 'ratsinfo-saml');
    await page.fill('#m-name', 'Ratsinfo (SAML)');
    await page.click(MD_SAVE);
    await page.waitForSelector('[role=alert]');
    assert.match(await page.locator('[role=alert]').innerText(), /Entweder die Metadaten/);
    assert.equal(await page.inputValue('#m-id'), 'ratsinfo-saml');
    // From the metadata text, for Hitzacker's Ratsinfo, encrypted.
    await page.selectOption('#m-resource', 'ratsinfo-hitzacker');
    await page.fill('#m-metadata', SP_METADATA);
    await page.setChecked('#m-encrypt', true);
    await page.click(MD_SAVE);
    await page.locator('[role=status]', { hasText: 'wirksam' }).waitFor();
    const row = page.locator('main table tbody tr', { hasText: 'ratsinfo-saml' });
    assert.equal(await row.count(), 1);
    const listed = await row.innerText();
    assert.match(listed, /Ratsinfo \(SAML\)/);
    assert.match(listed, /hitzacker-elbe/);
    assert.match(listed, /https:\/\/ratsinfo\.hitzacker\.example\/saml\/metadata/);
    assert.match(listed, /https:\/\/ratsinfo\.hitzacker\.example\/saml\/acs/);
    assert.match(listed, /ratsinfo-hitzacker/);
    assert.match(listed, /aes256-gcm, rsa-oaep-mgf1p/);
    assert.match(listed, /persistent/);
    await assertAccessible(page, 'the service providers page');
    // By hand: the form shows what is stored; a change keeps what it does
    // not show (entity id, certificates, SLO).
    await page.click('a[aria-label="Bearbeiten: Ratsinfo (SAML)"]');
    await page.waitForURL(/edit=ratsinfo-saml/);
    assert.equal(await page.inputValue('#e-acs'), 'https://ratsinfo.hitzacker.example/saml/acs');
    assert.equal(await page.inputValue('#e-encryption'), 'aes256-gcm+rsa-oaep-mgf1p');
    assert.equal(await page.inputValue('#e-nameid'), 'persistent');
    assert.equal(await page.isChecked('#e-require_signed_requests'), true, 'AuthnRequestsSigned of the metadata');
    assert.equal(await page.isChecked('#e-a-mail'), true);
    await assertAccessible(page, 'the service providers page with the form by hand');
    await page.fill('#e-name', 'Ratsinfo Hitzacker (SAML)');
    await page.fill('#e-acs', 'https://ratsinfo.hitzacker.example/saml/acs\nhttps://ratsinfo.hitzacker.example/saml/acs2');
    await page.selectOption('#e-encryption', 'aes256-cbc+rsa-oaep-mgf1p');
    await page.selectOption('#e-nameid', 'transient');
    await page.setChecked('#e-a-mail', false);
    await page.click(EDIT_SAVE);
    await page.locator('[role=status]', { hasText: 'wirksam' }).waitFor();
    const changed = await row.innerText();
    assert.match(changed, /Ratsinfo Hitzacker \(SAML\)/);
    assert.match(changed, /saml\/acs2/);
    assert.match(changed, /aes256-cbc, rsa-oaep-mgf1p/);
    assert.match(changed, /transient/);
    assert.match(changed, /https:\/\/ratsinfo\.hitzacker\.example\/saml\/metadata/);
    // Without a resource its logins would be decided on less: a proposal.
    await page.click('a[aria-label="Bearbeiten: Ratsinfo Hitzacker (SAML)"]');
    await page.waitForURL(/edit=ratsinfo-saml/);
    assert.equal(await page.isChecked('#e-a-mail'), false);
    await page.selectOption('#e-resource', '');
    await page.click(EDIT_SAVE);
    await page.locator('[role=status]', { hasText: 'wartet auf Freigabe' }).waitFor();
    assert.match(await row.innerText(), /ratsinfo-hitzacker/);
    // Delete.
    await page.click('button[aria-label="Löschen: Ratsinfo Hitzacker (SAML)"]');
    await page.locator('[role=status]', { hasText: 'gelöscht' }).waitFor();
    assert.equal(await page.locator('main table tbody tr', { hasText: 'ratsinfo-saml' }).count(), 0);
    await context.close();
  });

  it("refuses a Gemeinde's administrator trust above low in an upstream", async () => {
    const { context, page } = await loggedIn(GEMEINDE);
    await page.goto(`${issuer}/admin/console/upstreams`);
    assert.equal(await page.locator('#u-tenant option').count(), 1, 'only their own tenant');
    const upstream = {
      id: 'idp-hitzacker-rathaus',
      tenant: 'hitzacker-elbe',
      name: 'Rathaus Hitzacker',
      issuer: 'https://login.hitzacker.example',
      clientId: 'interkom',
      acr: 'urn:hitzacker:eid = high',
    };
    await fillUpstream(page, upstream);
    await page.click(SAVE);
    await page.waitForSelector('[role=alert]');
    assert.match(await page.locator('[role=alert]').innerText(), /above `low` is for an administrator of its Kreis/);
    // The form keeps what was sent; nothing was stored.
    assert.equal(await page.inputValue('#u-acr'), 'urn:hitzacker:eid = high');
    assert.equal(await page.locator('main table tbody tr', { hasText: upstream.id }).count(), 0);
    await assertAccessible(page, 'the upstreams page with a refusal');
    // At `low` it is their own business.
    await page.fill('#u-acr', 'urn:hitzacker:eid = low');
    await page.click(SAVE);
    await page.locator('[role=status]', { hasText: 'wirksam' }).waitFor();
    assert.equal(await page.locator('main table tbody tr', { hasText: upstream.id }).count(), 1);
    await page.click(`button[aria-label="Löschen: ${upstream.name}"]`);
    await page.locator('[role=status]', { hasText: 'gelöscht' }).waitFor();
    assert.equal(await page.locator('main table tbody tr', { hasText: upstream.id }).count(), 0);
    await context.close();
  });

  it('resets a second factor from the users page, saying when there was none', async () => {
    // jan.meyer is a clerk (sachbearbeitung) of Hitzacker: their Gemeinde's
    // administrator holds that role and may act on the account.
    const { context, page } = await loggedIn(GEMEINDE);
    await page.goto(`${issuer}/admin/console/users`);
    await page.click('button[aria-label$=": jan.meyer"][value=second_factor_reset]');
    await page.waitForSelector('[role=status]');
    assert.match(await page.locator('[role=status]').innerText(), /jan\.meyer: Kein zweiter Faktor eingerichtet – nichts zu entfernen\./);
    await assertAccessible(page, 'the users page after a second-factor reset');
    await context.close();
  });

  it('refuses forms without the CSRF token', async () => {
    const { context, page } = await loggedIn(KREIS);
    // A logout without the token is refused and the session stays.
    const out = await context.request.post(`${issuer}/admin/console/logout`, { form: {} });
    assert.equal(out.status(), 403);
    // A callback that is not the answer to this browser's login shows
    // nothing of it.
    const cb = await page.goto(`${issuer}/admin/console/callback?state=forged&error=access_denied&error_description=Evil%20text`);
    assert.equal(cb.status(), 400);
    assert.doesNotMatch(await page.locator('main').innerText(), /Evil text/);
    const res = await context.request.post(`${issuer}/admin/console/users`, {
      form: { op: 'create', tenant: 'gorleben', username: 'csrf.test' },
    });
    assert.equal(res.status(), 403);
    await page.goto(`${issuer}/admin/console/users`);
    assert.doesNotMatch(await page.locator('main').innerText(), /csrf\.test/);
    await context.close();
  });
  it('shows the Leistungen with what a change would do before it is made', async () => {
    const { context, page } = await loggedIn(KREIS);
    await page.goto(`${issuer}/admin/console/leistungen`);
    assert.equal(await page.locator('h1').innerText(), 'Leistungen');
    const rows = page.locator('main table').first().locator('tbody tr');
    assert.equal(await rows.count(), 4, 'the demo county\'s four');
    const parken = rows.filter({ hasText: 'Bewohnerparkausweis' });
    assert.match(await parken.innerText(), /substanziell/);
    await page.click('a[aria-label^="Bearbeiten: Bewohnerparkausweis"]');
    await page.waitForURL(/edit=bewohnerparken-dannenberg/);
    assert.equal(await page.inputValue('#e-loa'), 'substantial');
    // The what-if of a lower level and one more datum: nothing is stored.
    await page.selectOption('#e-loa', 'low');
    await page.setChecked('#e-c-email', true);
    await page.click('button[value=preview]');
    await page.locator('.what-if').waitFor();
    const whatIf = await page.locator('.what-if').innerText();
    assert.match(whatIf, /zweite Administratorin/);
    assert.match(whatIf, /Vertrauensniveau\s+substanziell\s+niedrig/);
    assert.match(whatIf, /E-Mail-Adresse – kommt hinzu/);
    assert.equal(await page.inputValue('#e-loa'), 'low', 'the form as sent');
    assert.equal(await page.isChecked('#e-c-email'), true);
    await assertAccessible(page, 'the Leistungen page with a what-if');
    await page.goto(`${issuer}/admin/console/leistungen`);
    assert.match(await rows.filter({ hasText: 'Bewohnerparkausweis' }).innerText(), /substanziell/, 'a preview changes nothing');
    // Saved, it waits for a second administrator.
    await page.click('a[aria-label^="Bearbeiten: Bewohnerparkausweis"]');
    await page.selectOption('#e-loa', 'low');
    await page.click('button[value=save]');
    await page.locator('[role=status]', { hasText: 'wartet auf Freigabe' }).waitFor();
    assert.match(await rows.filter({ hasText: 'Bewohnerparkausweis' }).innerText(), /substanziell/);
    // Raising a level is in effect at once.
    await page.click('a[aria-label^="Bearbeiten: Hundesteuer"]');
    await page.selectOption('#e-loa', 'substantial');
    await page.click('button[value=save]');
    await page.locator('[role=status]', { hasText: 'wirksam' }).waitFor();
    assert.match(await rows.filter({ hasText: 'Hundesteuer' }).innerText(), /substanziell/);
    await context.close();
    // A Gemeinde's administrator sees the Gemeinde's own only.
    const gem = await loggedIn(GEMEINDE);
    await gem.page.goto(`${issuer}/admin/console/leistungen`);
    const own = gem.page.locator('main table').first().locator('tbody tr');
    assert.equal(await own.count(), 1);
    assert.match(await own.innerText(), /Hundesteuer/);
    await assertAccessible(gem.page, 'the Leistungen page of a Gemeinde');
    await gem.context.close();
  });
  it("lets a Gemeinde's administrator register its own identity service; more trust waits for a second", async () => {
    const { context, page } = await loggedIn(GEMEINDE);
    await page.goto(`${issuer}/admin/console/saml-sources`);
    assert.equal(await page.locator('h1').innerText(), 'Anmeldedienste (SAML)');
    await page.selectOption('#s-tenant', 'hitzacker-elbe');
    // For businesses: no Leistung of Hitzacker serves them, so nothing
    // accepts it yet and it is registered at once.
    await page.selectOption('#s-population', 'business');
    await page.fill('#s-id', 'firmenkonto-hitzacker');
    await page.fill('#s-name', 'Firmenkonto Hitzacker');
    await page.fill('#s-metadata', IDP_METADATA);
    await page.fill('#s-levels', 'STORK-QAA-Level-1 = low\nSTORK-QAA-Level-3');
    await page.fill('#s-pseudonym', 'urn:oid:1.3.6.1.4.1.25484.494450.3');
    await page.fill('#s-attributes', 'given_name = urn:oid:2.5.4.42');
    await page.click('button[value=save]');
    await page.waitForSelector('[role=alert]');
    assert.match(await page.locator('[role=alert]').innerText(), /STORK-QAA-Level-3/);
    assert.equal(await page.inputValue('#s-name'), 'Firmenkonto Hitzacker', 'the form as sent');
    await page.fill('#s-metadata', IDP_METADATA);
    await page.fill('#s-levels', 'STORK-QAA-Level-1 = low\nSTORK-QAA-Level-3 = substantial');
    await page.click('button[value=save]');
    await page.locator('[role=status]', { hasText: 'wirksam' }).waitFor();
    const row = page.locator('main table tbody tr', { hasText: 'firmenkonto-hitzacker' });
    const listed = await row.innerText();
    assert.match(listed, /https:\/\/konto\.hitzacker\.example\/idp/);
    assert.match(listed, /STORK-QAA-Level-3 → substanziell/);
    await assertAccessible(page, 'the identity services page');
    // A level name standing for more: a second administrator approves.
    await page.click('a[aria-label="Bearbeiten: Firmenkonto Hitzacker"]');
    await page.waitForURL(/edit=firmenkonto-hitzacker/);
    assert.equal(await page.inputValue('#s-attributes'), 'given_name = urn:oid:2.5.4.42');
    await page.fill('#s-levels', 'STORK-QAA-Level-1 = high');
    await page.click('button[value=save]');
    await page.locator('[role=status]', { hasText: 'wartet auf Freigabe' }).waitFor();
    assert.match(await row.innerText(), /STORK-QAA-Level-1 → niedrig/);
    // A new description is in effect at once; the metadata is kept.
    await page.click('a[aria-label="Bearbeiten: Firmenkonto Hitzacker"]');
    await page.fill('#s-description', 'Servicekonto der Stadt');
    await page.click('button[value=save]');
    await page.locator('[role=status]', { hasText: 'wirksam' }).waitFor();
    assert.match(await row.innerText(), /https:\/\/konto\.hitzacker\.example\/idp/);
    await context.close();
  });
});
