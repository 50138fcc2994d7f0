// Shared by the forward-authentication browser tests (forward.test.mjs
// behind nginx, forward-caddy.test.mjs behind Caddy): one interkom node,
// the echo backend, the reverse proxy from tests/proxies, headless
// Chromium, the applications registered through the admin API, and the
// helpers their steps share.
//
// The applications live on app1.localhost, app2.localhost, … on the
// proxy's one port: Chromium resolves every *.localhost to loopback by
// itself (and treats them as secure contexts, so the `Secure` cookies work
// over http).

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as oidc from 'openid-client';
import { chromium } from 'playwright-core';
import {
  CHROMIUM, ROOT, answerLocally, authRequest, checksFor, databaseFor, freePort, insecure, landOn, startServer, stopServer,
} from './harness.mjs';
import { headersOf, startBackend, startCaddy, startNginx, stopProcess } from './proxies.mjs';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');

export const KREIS = { user: 'kreis.admin', password: 'Kreis-Demo-2026!' };
// A clerk of Hitzacker (sachbearbeitung); the suite's configuration gives
// him a TOTP secret (the demo's has none) for forward.test.mjs's step-up.
export const JAN = {
  user: 'jan.meyer',
  password: 'Hitzacker-Demo-2026!',
  totp: 'JANMEYERHITZACKERDEMOSECRET23456',
  tenant: 'hitzacker-elbe',
};
const CONSOLE_CLIENT = 'interkom-console';
export const LOA_LOW = 'urn:interkom:loa:low';
export const LOA_SUBSTANTIAL = 'urn:interkom:loa:substantial';
const IDENTITY = ['user', 'subject', 'tenant', 'roles', 'acr', 'jwt'].map((h) => `x-interkom-${h}`);

/**
 * Identity headers a client sends itself, in several spellings, and the
 * headers a proxy sends interkom about the original request (pointing at
 * another application). None may reach the application or sway interkom.
 */
export const forgedHeaders = (otherHost) => ({
  'X-Interkom-User': 'admin',
  'X-Interkom-Subject': 'forged-subject',
  'X-Interkom-Tenant': 'lk-luechow-dannenberg',
  'X-Interkom-Roles': 'admin,kommunalaufsicht',
  'X-Interkom-Acr': 'urn:interkom:loa:high',
  'X-Interkom-Jwt': 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.',
  'X_Interkom_User': 'admin',
  'X-Forwarded-Host': otherHost,
  'X-Forwarded-Uri': '/',
  'X-Forwarded-Method': 'GET',
  'X-Original-URI': '/',
});

/**
 * Records the stylesheet responses of a page. interkom's pages under
 * /.interkom/ are served on the application's host: their stylesheet must
 * still be interkom's (not a path of the application, which would go
 * through the check, start a login or reach the application).
 */
export function watchStylesheets(page) {
  const seen = [];
  page.on('response', (r) => {
    if (r.request().resourceType() === 'stylesheet') {
      seen.push({ url: r.url(), status: r.status(), type: r.headers()['content-type'] ?? '' });
    }
  });
  return {
    assertLoaded(what) {
      assert.ok(seen.length > 0, `${what}: no stylesheet`);
      for (const s of seen) {
        assert.ok(s.status === 200 && s.type.startsWith('text/css'),
          `${what}: stylesheet ${s.url} answered ${s.status} ${s.type}`);
      }
      seen.length = 0;
    },
  };
}

/** WCAG 2.1 A/AA violations on the current page (axe-core), none allowed. */
export async function assertAccessible(page, what) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  const v = result.violations.map((x) => `${x.id}: ${x.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  assert.deepEqual(v, [], `${what} has accessibility violations`);
}

/** The backend's echo on the current page (it must be the backend's page). */
export async function echoOn(page) {
  const pre = page.locator('pre#echo');
  assert.equal(await pre.count(), 1, `the application's page, not: ${page.url()}\n${await page.content()}`);
  return JSON.parse(await pre.textContent());
}

/**
 * Asserts the identity headers the backend got: exactly one of each as
 * expected (`true`: any value), none of those expected `undefined` or not
 * named.
 */
function assertIdentity(seen, expected) {
  const h = headersOf(seen);
  for (const name of IDENTITY) {
    if (expected[name] === undefined) {
      assert.equal(h[name], undefined, `${name} must be absent, got ${JSON.stringify(h[name])}`);
    } else {
      assert.equal(h[name]?.length, 1, `one ${name}: ${JSON.stringify(h[name])}`);
      if (expected[name] !== true) assert.equal(h[name][0], expected[name], name);
    }
  }
  return h;
}

/**
 * Asserts that the backend got Jan Meyer, and only him, at `acr`: his
 * user name, tenant and roles (a clerk's, no forged `admin`), `subject`
 * (or any, if not given), no JWT (the applications do not ask for one) and
 * no identity header in another spelling. Returns the headers.
 */
export function assertJan(seen, { acr, subject = true }) {
  const h = assertIdentity(seen, {
    'x-interkom-user': JAN.user,
    'x-interkom-subject': subject,
    'x-interkom-tenant': JAN.tenant,
    'x-interkom-roles': true,
    'x-interkom-acr': acr,
    // Not asked for (jwt: false). Caddy 2.6 would send the placeholder's
    // text; the Caddy snippet drops it.
    'x-interkom-jwt': undefined,
  });
  assert.ok(h['x-interkom-subject'][0].length > 0, 'a subject');
  assert.notEqual(h['x-interkom-subject'][0], 'forged-subject');
  const roles = h['x-interkom-roles'][0].split(',').map((r) => r.trim());
  assert.ok(roles.includes('sachbearbeitung') && !roles.includes('admin'), `roles: ${roles}`);
  assert.equal(h.x_interkom_user, undefined, 'the underscore spelling is dropped too');
  return h;
}

const PROXIES = {
  nginx: startNginx,
  caddy: startCaddy,
};

/**
 * Sets up one suite; call it inside `describe`. `proxy`: 'nginx' or
 * 'caddy'; `db`: the database's name (unique per file); `apps`: [id, n,
 * tenant, name, resource] for each application, registered on
 * http://app<n>.localhost:<port> with the path `/`.
 *
 * Returns the suite's state (filled in by its `before`) and helpers;
 * `step` defines a test of the suite: unless all pass, interkom's log and
 * the proxy's are printed at the end.
 */
export function forwardSuite({ proxy, db, apps }) {
  let dir;
  let proxyDir; // its own: nginx's workers must enter it (see proxies.mjs)
  let server;
  let proxyRun;
  let defined = 0;
  let passed = 0;

  const s = {
    issuer: undefined,
    proxyPort: undefined,
    backend: undefined,
    browser: undefined,
    /** Jan Meyer's browser: carries the interkom session and the applications' cookies. */
    context: undefined,

    /** http://appN.localhost:PORT */
    origin: (n) => `http://app${n}.localhost:${s.proxyPort}`,
    host: (n) => `app${n}.localhost:${s.proxyPort}`,

    /**
     * The page loads (navigations) the backend received for application n;
     * not the favicon and other subresources, which Chromium fetches on
     * its own time.
     */
    seenBy: (n) => s.backend.requests
      .filter((r) => r.host === s.host(n) && headersOf(r)['sec-fetch-mode']?.[0] === 'navigate'),

    step(name, fn) {
      defined += 1;
      it(name, { timeout: 45_000 }, async () => {
        await fn();
        passed += 1;
      });
    },

    /** A fresh browser (no cookies); CSP bypassed for axe-core. */
    async newContext() {
      const ctx = await s.browser.newContext({
        bypassCSP: true,
        locale: 'de-DE',
        extraHTTPHeaders: { 'Accept-Language': 'de-DE,de;q=0.9' },
      });
      ctx.setDefaultTimeout(15_000);
      return ctx;
    },

    /** A login form of interkom (on the issuer, with a password field) is shown. */
    async assertLoginForm(page, what) {
      await page.waitForSelector('input[name="password"]');
      assert.ok(page.url().startsWith(s.issuer), `${what}: interkom's login page, not ${page.url()}`);
    },

    /**
     * Opens `target` on application n without a session: interkom's form
     * (the application not reached), Jan's password, and back to `target`.
     */
    async loginAt(page, n, target) {
      await page.goto(target);
      await s.assertLoginForm(page, 'first visit');
      assert.equal(s.seenBy(n).length, 0, 'the application saw a request before the login');
      await page.fill('input[name="username"]', JAN.user);
      await page.fill('input[name="password"]', JAN.password);
      await landOn(page, s.origin(n), () => page.press('input[name="password"]', 'Enter'));
      await page.waitForURL(target);
    },

    /**
     * Application n is another Kommune's: its `path` answers interkom's
     * 403 page (German, its stylesheet loaded, accessible), the
     * application never reached.
     */
    async assertDenied(page, n, pathname) {
      const styles = watchStylesheets(page);
      const res = await page.goto(`${s.origin(n)}${pathname}`);
      assert.equal(res.status(), 403, `403, not ${res.status()} at ${page.url()}`);
      assert.equal(await page.locator('pre#echo').count(), 0, 'the application’s page was shown');
      assert.equal(s.seenBy(n).length, 0, 'the application saw a request');
      assert.equal(await page.getAttribute('html', 'lang'), 'de');
      styles.assertLoaded('the denial page');
      await assertAccessible(page, 'the denial page');
    },
  };

  /**
   * The Kreis administrator's access token: the console's public client
   * with PKCE, the login in a browser of its own, the callback on
   * interkom's console path answered by the test (Chromium's Fetch domain)
   * so the code stays unused for openid-client.
   */
  async function adminToken() {
    const config = await oidc.discovery(new URL(s.issuer), CONSOLE_CLIENT, undefined, oidc.None(), insecure);
    const redirect = `${s.issuer}/admin/console/callback`;
    const req = await authRequest(config, redirect, { scope: 'openid profile' });
    const ctx = await s.newContext();
    try {
      const page = await ctx.newPage();
      await answerLocally(ctx, page, [`${redirect}*`], '<!doctype html><title>callback</title>');
      await page.goto(req.url.href);
      await page.fill('input[name="username"]', KREIS.user);
      await page.fill('input[name="password"]', KREIS.password);
      const landed = await landOn(page, redirect, () => page.press('input[name="password"]', 'Enter'));
      const tokens = await oidc.authorizationCodeGrant(config, landed, checksFor(req));
      assert.ok(tokens.access_token, 'an access token for the admin API');
      return tokens.access_token;
    } finally {
      await ctx.close();
    }
  }

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), `interkom-${db}-`));
    // The demo configuration with a TOTP secret for Jan Meyer.
    const toml = path.join(dir, 'interkom.toml');
    copyFileSync(path.join(ROOT, 'config/interkom.toml'), toml);
    const text = readFileSync(toml, 'utf8');
    const withTotp = text.replace('username = "jan.meyer"\n', `username = "jan.meyer"\ntotp_secret = "${JAN.totp}"\n`);
    assert.notEqual(withTotp, text, 'jan.meyer is a demo user of config/interkom.toml');
    writeFileSync(toml, withTotp);

    const port = await freePort();
    s.issuer = `http://127.0.0.1:${port}`;
    server = await startServer(s.issuer, port, databaseFor(dir, db), dir, { INTERKOM_CONFIG: toml });

    s.backend = await startBackend();
    s.proxyPort = await freePort();
    proxyDir = mkdtempSync(path.join(tmpdir(), `interkom-${db}-${proxy}-`));
    proxyRun = await PROXIES[proxy](proxyDir, s.proxyPort, s.issuer, s.backend.url);

    s.browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });

    // The applications, registered by the Kreis administrator through the
    // admin API (a console token, as tests/e2e/common.rs console_token).
    const token = await adminToken();
    for (const [id, n, tenant, name, resource] of apps) {
      const res = await fetch(`${s.issuer}/admin/v1/applications/${id}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id, tenant, name, origins: [s.origin(n)], paths: ['/'], resource }),
      });
      const body = await res.text();
      assert.equal(res.status, 201, `registering ${id}: ${res.status} ${body}`);
    }

    s.context = await s.newContext();
  });

  after(async () => {
    await s.browser?.close().catch(() => {});
    if (proxyRun) await stopProcess(proxyRun.proc);
    if (server) await stopServer(server.proc);
    if (s.backend) await s.backend.close();
    if (passed < defined) {
      if (server) console.error(`--- interkom log ---\n${server.log.join('')}`);
      if (proxyRun) console.error(`--- ${proxy} log ---\n${proxyRun.report()}`);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (proxyDir) rmSync(proxyDir, { recursive: true, force: true });
  });

  return s;
}
