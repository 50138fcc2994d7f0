// Browser test of passkeys: headless Chromium with its virtual WebAuthn
// authenticator (CDP) enrols a passkey for a local account at
// /account/passkey, then a login that asks for `substantial`
// (`acr_values`) is completed with it on the second-factor page, after a
// failed attempt. The ID token must say so (acr, amr: `hwk` for a
// device-bound passkey, `swk` for a synced one, enrolled in English);
// axe-core checks the pages, whose Content-Security-Policy stays in force.
//
// WebAuthn needs a domain name: this file's server has the issuer
// http://localhost:<port>, and the browser opens it on `localhost`.
//
// Environment as for login.test.mjs (`./run` sets it up).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as oidc from 'openid-client';
import { chromium } from 'playwright-core';
import {
  CHROMIUM, answerLocally, authRequest, checksFor, databaseFor, freePort, insecure, landOn, startServer,
  stopServer,
} from './harness.mjs';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const USER = 'anna.schulz';
const PASSWORD = 'Elbtalaue-Demo-2026!';
const PORTAL = {
  id: 'serviceportal',
  secret: 'serviceportal-demo-secret-0123456789abcdef',
  redirect: 'http://localhost:9000/callback',
};
const SUBSTANTIAL = 'urn:interkom:loa:substantial';

/**
 * WCAG 2.1 A/AA violations on the current page (axe-core). axe is evaluated
 * through DevTools rather than added as a script tag, so the page's
 * Content-Security-Policy need not be bypassed.
 */
async function violations(page) {
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  // axe really looked (a page it could not read would pass nothing).
  assert.ok(result.passes.length > 0, 'axe-core ran no checks');
  return result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

async function assertAccessible(page, what) {
  assert.deepEqual(await violations(page), [], `${what} has accessibility violations`);
}

describe('passkeys in headless Chromium with a virtual authenticator', { timeout: 120_000 }, () => {
  let dir;
  let server;
  let issuer;
  let browser;
  let context;
  let page; // one page throughout: the virtual authenticator belongs to it
  let cdp;
  let authenticatorId;
  let portal;
  const consoleErrors = [];
  let defined = 0;
  let passed = 0;

  // The steps run in order, each building on the one before. Unless all
  // pass, the server's log and the page's console errors are printed.
  const step = (name, fn) => {
    defined += 1;
    it(name, { timeout: 30_000 }, async () => {
      await fn();
      passed += 1;
    });
  };

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'interkom-passkey-'));
    const port = await freePort();
    // A domain name, not 127.0.0.1: browsers refuse WebAuthn on addresses,
    // and interkom offers no passkeys for an issuer that is one.
    issuer = `http://localhost:${port}`;
    const db = databaseFor(dir, 'passkey');
    server = await startServer(issuer, port, db, dir);
    portal = await oidc.discovery(new URL(issuer), PORTAL.id, PORTAL.secret, undefined, insecure);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });
    // The pages' Content-Security-Policy stays in force (webauthn.js must
    // work under it; axe comes in through DevTools, see violations()). The
    // language by header only: a context's `locale` would fix it for every
    // page, and the last step switches to English.
    context = await browser.newContext({ extraHTTPHeaders: { 'Accept-Language': 'de-DE,de;q=0.9' } });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
    page.on('console', (m) => {
      // interkom serves no favicon; the browser's own request for it is no
      // error of the pages.
      const where = m.location().url;
      if (m.type() === 'error' && !where.endsWith('/favicon.ico')) consoleErrors.push(`${m.text()} (${where})`);
    });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));

    // The relying party's callback (where nothing listens) answers with a
    // small page of its own, as in login.test.mjs.
    cdp = await answerLocally(context, page, ['http://localhost:9000/*'],
      '<!doctype html><title>Relying party</title><p>callback reached</p>');

    // A platform authenticator with user verification (a fingerprint or
    // device PIN), presence confirmed automatically.
    await cdp.send('WebAuthn.enable');
    ({ authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    }));
  });

  after(async () => {
    await browser?.close().catch(() => {});
    if (server) await stopServer(server.proc);
    if (passed < defined) {
      if (consoleErrors.length) console.error(`--- browser console errors ---\n${consoleErrors.join('\n')}`);
      if (server) console.error(`--- interkom log ---\n${server.log.join('')}`);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The virtual authenticator's credentials. */
  const credentials = async () =>
    (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;

  let first; // the password-only login's claims

  step('password login through the form (low, no second factor)', async () => {
    const req = await authRequest(portal, PORTAL.redirect);
    const res = await page.goto(req.url.href);
    assert.equal(res.status(), 200);
    await page.getByRole('heading', { name: 'Anmelden' }).waitFor();
    await page.fill('input[name="username"]', USER);
    await page.fill('input[name="password"]', PASSWORD);
    const callback = await landOn(page, PORTAL.redirect, () => page.press('input[name="password"]', 'Enter'));
    assert.equal(callback.searchParams.get('iss'), issuer);
    const tokens = await oidc.authorizationCodeGrant(portal, callback, checksFor(req));
    const claims = tokens.claims();
    assert.equal(claims.acr, 'urn:interkom:loa:low');
    assert.ok(!claims.amr?.includes('mfa'), `amr: ${JSON.stringify(claims.amr)}`);
    first = claims;
  });

  step('enrols a passkey at /account/passkey', async () => {
    assert.ok(first, 'the login step did not succeed');
    const res = await page.goto(`${issuer}/account/passkey`);
    assert.equal(res.status(), 200);
    // Enforced here (not bypassed): webauthn.js must work under it.
    const csp = res.headers()['content-security-policy'] ?? '';
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(res.headers()['cache-control'], 'no-store');
    assert.equal(await page.locator('html').getAttribute('lang'), 'de');
    await page.getByRole('heading', { name: 'Passkey einrichten' }).waitFor();
    assert.equal(await page.locator('#passkey-count').innerText(), '0');
    await assertAccessible(page, 'the passkey page');

    // Only the status is checked here: Playwright cannot read the body of
    // a fetch() response the page never reads (webauthn.js only looks at
    // `ok`), so the level is checked in the token below.
    const finish = page.waitForResponse((r) => r.url() === `${issuer}/account/passkey/finish`);
    await page.click('#passkey-register');
    assert.equal((await finish).status(), 201);

    await page.locator('#passkey-status', { hasText: 'Der Passkey ist eingerichtet.' }).waitFor();
    assert.equal(await page.locator('#passkey-count').innerText(), '1');
    await assertAccessible(page, 'the passkey page after enrolment');

    // One credential, for the relying party named by the issuer's host.
    // (webauthn-rs asks for no discoverable credential: as a second factor
    // the login names the account's credentials in allowCredentials.)
    const creds = await credentials();
    assert.equal(creds.length, 1);
    assert.equal(creds[0].rpId, 'localhost');

    // The page again: with a passkey on the account, adding another takes
    // one (a phished password adds none), so the password-only session is
    // refused now. (Chromium logs the 401 load; expected.)
    const seen = consoleErrors.length;
    const again = await page.goto(`${issuer}/account/passkey`);
    assert.equal(again.status(), 401);
    for (const e of consoleErrors.splice(seen)) {
      assert.match(e, /status of 401 .*\/account\/passkey\)$/);
    }
  });

  /**
   * Opens the authorization request (prompt=login), enters the password on
   * the form that asks for it again, and returns on the second-factor page.
   */
  async function toSecondFactor(req, heading) {
    await page.goto(req.url.href);
    await page.getByRole('heading', { name: heading }).waitFor();
    if (!(await page.inputValue('input[name="username"]'))) {
      await page.fill('input[name="username"]', USER);
    }
    await page.fill('input[name="password"]', PASSWORD);
    await Promise.all([
      page.waitForSelector('#passkey-login'),
      page.press('input[name="password"]', 'Enter'),
    ]);
    assert.ok(page.url().startsWith(issuer), `still on interkom, not ${page.url()}`);
  }

  /** The ID token's claims for the code in `callback`; checks acr and amr. */
  async function substantialClaims(callback, req, method) {
    assert.equal(callback.searchParams.get('iss'), issuer);
    assert.ok(callback.searchParams.get('code'), `no code: ${callback.href}`);
    const tokens = await oidc.authorizationCodeGrant(portal, callback, checksFor(req));
    const claims = tokens.claims();
    assert.equal(claims.sub, first.sub);
    assert.equal(claims.acr, SUBSTANTIAL);
    const amr = JSON.stringify(claims.amr);
    assert.ok(Array.isArray(claims.amr), `amr: ${amr}`);
    assert.ok(claims.amr.includes('pwd'), `amr: ${amr}`);
    assert.ok(claims.amr.includes('mfa'), `amr: ${amr}`);
    assert.ok(claims.amr.includes(method), `amr: ${amr}, expected ${method}`);
    // prompt=login: a fresh authentication.
    assert.ok(claims.auth_time >= first.auth_time, 'auth_time');
    return claims;
  }

  step('acr_values=substantial: password, a refused passkey, then the passkey; the token says so', async () => {
    const before = (await credentials())[0];
    // The virtual authenticator's credentials are not backup-eligible: a
    // device-bound passkey, `hwk` (counted as substantial by default).
    assert.equal(before.backupEligibility, false);

    const req = await authRequest(portal, PORTAL.redirect, { acr_values: SUBSTANTIAL, prompt: 'login' });
    // prompt=login: the password again first.
    await toSecondFactor(req, 'Anmelden');
    assert.equal(await page.locator('html').getAttribute('lang'), 'de');
    await page.getByRole('heading', { name: 'Zweiter Faktor' }).waitFor();
    // Only a passkey is set up: no form for a code.
    assert.equal(await page.locator('#otp-form').count(), 0);
    await assertAccessible(page, 'the second-factor page');
    const button = page.getByRole('button', { name: 'Mit Passkey bestätigen' });

    // Without user verification (fingerprint, PIN) the ceremony fails; the
    // page says the passkey was not accepted, and the login can go on.
    await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: false });
    const seen = consoleErrors.length;
    const [posted] = await Promise.all([
      page.waitForRequest((r) => r.url() === `${issuer}/login/passkey` && r.method() === 'POST'),
      button.click(),
    ]);
    // The browser refused (interkom requires user verification), so
    // webauthn.js posted the form without a credential.
    assert.equal(new URLSearchParams(posted.postData()).get('credential'), '');
    await page.locator('[role=alert]', { hasText: 'Der Passkey wurde nicht angenommen.' }).waitFor();
    // The refusal is a 401 page, which Chromium logs as a failed load; the
    // only console error expected in this test.
    for (const e of consoleErrors.splice(seen)) {
      assert.match(e, /status of 401 .*\/login\/passkey\)$/);
    }
    await assertAccessible(page, 'the second-factor page with the refusal');

    await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: true });
    const callback = await landOn(page, PORTAL.redirect, () => button.click());
    await substantialClaims(callback, req, 'hwk');

    // The authenticator signed once more.
    const afterUse = (await credentials())[0];
    assert.ok(afterUse.signCount > before.signCount, `signCount ${before.signCount} → ${afterUse.signCount}`);
  });

  step('English: a synced passkey (backup-eligible) is enrolled and gives swk', async () => {
    // Another device whose credentials are synced (backup eligible and
    // backed up); the first one is gone.
    await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId });
    ({ authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
        defaultBackupEligibility: true,
        defaultBackupState: true,
      },
    }));
    await page.setExtraHTTPHeaders({ 'Accept-Language': 'en-GB,en;q=0.9' });

    await page.goto(`${issuer}/account/passkey`);
    assert.equal(await page.locator('html').getAttribute('lang'), 'en');
    await page.getByRole('heading', { name: 'Set up a passkey' }).waitFor();
    assert.equal(await page.locator('#passkey-count').innerText(), '1');
    const finish = page.waitForResponse((r) => r.url() === `${issuer}/account/passkey/finish`);
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    assert.equal((await finish).status(), 201);
    await page.locator('#passkey-status', { hasText: 'The passkey is set up.' }).waitFor();
    assert.equal(await page.locator('#passkey-count').innerText(), '2');
    await assertAccessible(page, 'the English passkey page after enrolment');
    const [cred] = await credentials();
    assert.equal(cred.backupEligibility, true);

    const req = await authRequest(portal, PORTAL.redirect, { acr_values: SUBSTANTIAL, prompt: 'login', ui_locales: 'en' });
    await toSecondFactor(req, 'Sign in');
    assert.equal(await page.locator('html').getAttribute('lang'), 'en');
    await page.getByRole('heading', { name: 'Second factor' }).waitFor();
    await assertAccessible(page, 'the English second-factor page');
    const button = page.getByRole('button', { name: 'Confirm with a passkey' });
    const callback = await landOn(page, PORTAL.redirect, () => button.click());
    const claims = await substantialClaims(callback, req, 'swk');
    assert.ok(!claims.amr.includes('hwk'), `amr: ${JSON.stringify(claims.amr)}`);
  });

  step('the pages saw no script errors', async () => {
    assert.deepEqual(consoleErrors, []);
  });
});
