// Browser end-to-end test: openid-client, a certified OpenID Connect relying
// party library, drives a real headless Chromium through interkom's login
// form. The Rust end-to-end tests (tests/e2e) speak HTTP directly; this one
// checks what a browser actually does with the pages, cookies and redirects.
//
// Environment: INTERKOM_BIN (the binary), CHROMIUM_PATH (default
// /usr/bin/chromium), INTERKOM_BROWSER_PG (a PostgreSQL server for
// a fresh database; default a fresh SQLite file). `./run` sets them up.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as oidc from 'openid-client';
import { chromium } from 'playwright-core';
import {
  BIN, CHROMIUM, ROOT, answerLocally, authRequest, checksFor, databaseFor, freePort, insecure, landOn,
  nodeEnv, startServer, stopServer,
} from './harness.mjs';

const USER = 'jan.meyer';
const PASSWORD = 'Hitzacker-Demo-2026!';
const PORTAL = {
  id: 'serviceportal',
  secret: 'serviceportal-demo-secret-0123456789abcdef',
  redirect: 'http://localhost:9000/callback',
  postLogout: 'http://localhost:9000/',
};
const RATSINFO = { id: 'ratsinfo-hitzacker', redirect: 'http://localhost:9002/callback' };

/**
 * A new page on which the relying parties' addresses (localhost:9000 and
 * :9002, where nothing listens) answer with a small page of their own, so
 * the browser completes the redirect like a real one would.
 *
 * This uses Chromium's Fetch domain directly: Playwright's page.route does
 * not see the targets of redirects, and letting the connection fail leaves
 * the page on Chromium's error page, which made page.close() hang at times.
 */
async function openPage(ctx) {
  const page = await ctx.newPage();
  await answerLocally(ctx, page, ['http://localhost:900*'],
    '<!doctype html><title>Relying party</title><p>callback reached</p>');
  return page;
}

describe('interkom login in headless Chromium, driven by openid-client', { timeout: 120_000 }, () => {
  let dir;
  let server;
  let issuer;
  let browser;
  let context; // the German browser: carries the single sign-on session
  let portal; // openid-client Configuration for the confidential client
  let ratsinfo; // ... and for the public client
  let cliEnv; // the running node's settings, for `interkom client add`
  let defined = 0;
  let passed = 0;

  // The steps run in order: later ones use the first login's tokens and
  // its browser session. Unless all pass, the server's log is printed.
  const step = (name, fn) => {
    defined += 1;
    it(name, { timeout: 30_000 }, async () => {
      await fn();
      passed += 1;
    });
  };

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'interkom-browser-'));
    const port = await freePort();
    issuer = `http://127.0.0.1:${port}`;
    const db = databaseFor(dir, 'login');
    server = await startServer(issuer, port, db, dir);
    cliEnv = nodeEnv(issuer, port, db, dir);

    portal = await oidc.discovery(new URL(issuer), PORTAL.id, PORTAL.secret, undefined, insecure);
    ratsinfo = await oidc.discovery(new URL(issuer), RATSINFO.id, undefined, oidc.None(), insecure);

    // Playwright gives each launch its own throwaway profile (user-data) dir.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });
    context = await newContext('de-DE', 'de-DE,de;q=0.9');
  });

  after(async () => {
    await browser?.close().catch(() => {});
    if (server) await stopServer(server.proc);
    if (passed < defined && server) console.error(`--- interkom log ---\n${server.log.join('')}`);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh browser context (no cookies) speaking the given language. */
  async function newContext(locale, acceptLanguage) {
    const ctx = await browser.newContext({ locale, extraHTTPHeaders: { 'Accept-Language': acceptLanguage } });
    // Below the step timeout, so a stuck page fails with Playwright's message.
    ctx.setDefaultTimeout(10_000);
    return ctx;
  }

  let first; // the serviceportal login: request and tokens

  /** The first step's result; the steps that build on it fail clearly without it. */
  const login = () => {
    assert.ok(first, 'the login step did not succeed');
    return first;
  };

  step('German login form, security headers, password login to the callback', async () => {
    const req = await authRequest(portal, PORTAL.redirect);
    const page = await openPage(context);
    const res = await page.goto(req.url.href);
    assert.equal(res.status(), 200);

    // German by default, and the form must not be framed (clickjacking).
    assert.equal(await page.locator('html').getAttribute('lang'), 'de');
    await page.getByRole('heading', { name: 'Anmelden' }).waitFor();
    const headers = res.headers();
    assert.equal(headers['x-frame-options'], 'DENY');
    assert.match(headers['content-security-policy'] ?? '', /frame-ancestors 'none'/);

    await page.fill('input[name="username"]', USER);
    await page.fill('input[name="password"]', PASSWORD);
    const callback = await landOn(page, PORTAL.redirect, () => page.click('button[type="submit"]'));
    // RFC 9207: the response names its issuer.
    assert.equal(callback.searchParams.get('iss'), issuer);

    // openid-client checks state and iss here, sends the PKCE verifier, and
    // validates the ID token (signature, iss, aud, exp, nonce).
    const tokens = await oidc.authorizationCodeGrant(portal, callback, checksFor(req));
    const claims = tokens.claims();
    assert.ok(claims.sub, 'sub');
    assert.equal(claims.acr, 'urn:interkom:loa:low');
    assert.equal(claims.tenant, 'hitzacker-elbe');
    // The portal is open to everyone in the county by a grant: none of the
    // user's roles concerns it, so the token carries none.
    assert.deepEqual(claims.roles, [], `roles: ${JSON.stringify(claims.roles)}`);
    assert.ok(tokens.refresh_token, 'refresh token');
    first = { req, tokens, claims };
    await page.close();
  });

  step('userinfo, introspection and refresh with the issued tokens', async () => {
    const { tokens, claims } = login();
    // fetchUserInfo insists on the expected subject.
    const info = await oidc.fetchUserInfo(portal, tokens.access_token, claims.sub);
    assert.equal(info.sub, claims.sub);

    const intro = await oidc.tokenIntrospection(portal, tokens.access_token);
    assert.equal(intro.active, true);
    assert.equal(intro.sub, claims.sub);

    // Refresh tokens rotate on every use.
    const refreshed = await oidc.refreshTokenGrant(portal, tokens.refresh_token);
    assert.ok(refreshed.access_token, 'new access token');
    assert.ok(refreshed.refresh_token, 'new refresh token');
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
  });

  step('single sign-on: the public client gets a code without the login form', async () => {
    const req = await authRequest(ratsinfo, RATSINFO.redirect);
    const page = await openPage(context);
    let loginForm = false;
    page.on('response', (r) => {
      const html = r.headers()['content-type']?.startsWith('text/html');
      if (r.url().startsWith(issuer) && r.status() === 200 && html) loginForm = true;
    });
    const callback = await landOn(page, RATSINFO.redirect, () => page.goto(req.url.href));
    assert.equal(loginForm, false, 'the login form was shown despite a session');

    const tokens = await oidc.authorizationCodeGrant(ratsinfo, callback, checksFor(req));
    assert.equal(tokens.claims().sub, login().claims.sub);
    // The role through which the policy lets the clerk at this client.
    assert.deepEqual(tokens.claims().roles, ['sachbearbeitung']);
    await page.close();
  });

  step('a Fachverfahren registered with the defaults: offline_access, consent, refresh, logout', async () => {
    // Registered as a Kommune's IT would (`interkom client add` with no
    // options but the redirect URIs): grants authorization_code and
    // refresh_token, not first-party.
    const add = spawnSync(BIN, [
      'client', 'add', '--id', 'gewerbe-hitzacker', '--tenant', 'hitzacker-elbe',
      '--redirect-uri', 'http://localhost:9003/callback',
      '--post-logout-redirect-uri', 'http://localhost:9003/',
    ], { cwd: ROOT, env: cliEnv, encoding: 'utf8' });
    assert.equal(add.status, 0, add.stderr);
    const secret = add.stdout.match(/^client_secret: (\S+)$/m)?.[1];
    assert.ok(secret, `no secret in: ${add.stdout}`);
    const rp = await oidc.discovery(new URL(issuer), 'gewerbe-hitzacker', secret, undefined, insecure);

    // The usual request of a certified RP library that wants a refresh token.
    const req = await authRequest(rp, 'http://localhost:9003/callback', {
      scope: 'openid profile email offline_access',
    });
    // A browser of its own: its logout must not end the other steps' session.
    const ctx = await newContext('de-DE', 'de-DE,de;q=0.9');
    try {
      const page = await openPage(ctx);
      await page.goto(req.url.href);
      await page.fill('input[name="username"]', USER);
      await page.fill('input[name="password"]', PASSWORD);
      await page.click('button[type="submit"]');
      // A registered client asks first (OIDC Core §11: offline access is one
      // of the things asked for).
      await page.getByRole('heading', { name: 'Zustimmung' }).waitFor();
      const asked = await page.locator('li code').allTextContents();
      assert.deepEqual(asked.sort(), ['email', 'offline_access', 'openid', 'profile'], `asked for: ${asked}`);
      const callback = await landOn(page, 'http://localhost:9003/callback',
        () => page.getByRole('button', { name: 'Zustimmen' }).click());
      const tokens = await oidc.authorizationCodeGrant(rp, callback, checksFor(req));
      assert.equal(tokens.claims().sub, login().claims.sub);
      // Bound to no resource: the roles held in the home tenant.
      assert.deepEqual(tokens.claims().roles, ['sachbearbeitung']);
      assert.ok(tokens.refresh_token, 'offline_access gives a refresh token');
      assert.deepEqual(tokens.scope.split(' ').sort(), ['email', 'offline_access', 'openid', 'profile']);

      const refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token);
      assert.ok(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, 'rotated');
      assert.equal(refreshed.claims().sub, tokens.claims().sub);

      // Logout from a client that is not first-party asks before it ends the
      // session; afterwards the refresh token is dead.
      const logoutUrl = oidc.buildEndSessionUrl(rp, {
        id_token_hint: refreshed.id_token,
        post_logout_redirect_uri: 'http://localhost:9003/',
        state: 'tschuess',
      });
      await page.goto(logoutUrl.href);
      const back = await landOn(page, 'http://localhost:9003/',
        () => page.locator('button[name="confirm"]').click());
      assert.equal(back.href, 'http://localhost:9003/?state=tschuess');
      await assert.rejects(
        oidc.refreshTokenGrant(rp, refreshed.refresh_token),
        (e) => e.error === 'invalid_grant',
      );

      // The session is gone: prompt=none is answered with login_required.
      const again = await authRequest(rp, 'http://localhost:9003/callback', { prompt: 'none' });
      const cb = await landOn(page, 'http://localhost:9003/callback', () => page.goto(again.url.href));
      assert.equal(cb.searchParams.get('error'), 'login_required');
      await page.close();
    } finally {
      await ctx.close();
    }
  });

  step('a wrong password shows the German error and does not redirect', async () => {
    // A fresh context: no session, so the form is shown.
    const ctx = await newContext('de-DE', 'de-DE,de;q=0.9');
    try {
      const req = await authRequest(portal, PORTAL.redirect);
      const page = await openPage(ctx);
      const toRp = [];
      page.on('request', (r) => { if (r.url().startsWith('http://localhost:900')) toRp.push(r.url()); });
      await page.goto(req.url.href);
      await page.fill('input[name="username"]', USER);
      await page.fill('input[name="password"]', 'Falsches-Passwort-1!');
      await page.click('button[type="submit"]');

      await page.getByText('Benutzername oder Passwort ist falsch, oder die Anmeldung ist nach zu vielen Fehlversuchen vorübergehend gesperrt.').waitFor();
      assert.ok(page.url().startsWith(issuer), `still on interkom, not ${page.url()}`);
      assert.deepEqual(toRp, []);
    } finally {
      await ctx.close();
    }
  });

  step('RP-initiated logout ends the session; prompt=none then says login_required', async () => {
    const page = await openPage(context);
    const logoutUrl = oidc.buildEndSessionUrl(portal, {
      id_token_hint: login().tokens.id_token,
      post_logout_redirect_uri: PORTAL.postLogout,
      state: 'bye',
    });
    const back = await landOn(page, PORTAL.postLogout, () => page.goto(logoutUrl.href));
    assert.equal(back.href, 'http://localhost:9000/?state=bye');

    // Without a session, prompt=none must answer with an error, not a form.
    const req = await authRequest(portal, PORTAL.redirect, { prompt: 'none' });
    const callback = await landOn(page, PORTAL.redirect, () => page.goto(req.url.href));
    assert.equal(callback.searchParams.get('error'), 'login_required');
    assert.equal(callback.searchParams.get('state'), req.state);
    // openid-client reports it as the authorization server's error.
    await assert.rejects(
      oidc.authorizationCodeGrant(portal, callback, checksFor(req)),
      (e) => e.error === 'login_required',
    );
    await page.close();
  });

  step('an English browser gets the English form', async () => {
    const ctx = await newContext('en-GB', 'en-GB,en;q=0.9');
    try {
      const req = await authRequest(portal, PORTAL.redirect);
      const page = await openPage(ctx);
      await page.goto(req.url.href);
      assert.equal(await page.locator('html').getAttribute('lang'), 'en');
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    } finally {
      await ctx.close();
    }
  });
});
