// Browser end-to-end test of interkom as SAML 2.0 identity provider (issue
// 19): a service provider from another ecosystem (pysaml2 with PyPI's
// xmlsec, tests/saml/sp.py) is registered from its metadata through the
// admin API, and headless Chromium logs in at it through interkom's pages:
// SP-initiated over HTTP-Redirect (signed query), the password, the page
// that posts the encrypted, signed Response to the SP's ACS; single sign-on
// the second time; and an AuthnRequest over HTTP-POST (signed XML). The SP
// checks what interkom sends as a vendor's SAML stack does and shows what
// it got on /whoami. interkom's own pages on the way are checked by
// axe-core (WCAG 2.1 A/AA).
//
// Environment as for login.test.mjs (`./run` sets it up); the SP's Python
// environment target/saml-venv is made by tests/saml/setup (run here when
// it is missing; scripts/test runs it too).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as oidc from 'openid-client';
import { chromium } from 'playwright-core';
import { assertAccessible, startSamlPeer, stopSamlPeer } from './saml-peers.mjs';
import {
  CHROMIUM, answerLocally, authRequest, checksFor, databaseFor, freePort, insecure, landOn,
  startServer, stopServer,
} from './harness.mjs';


const KREIS = { user: 'kreis.admin', password: 'Kreis-Demo-2026!' };
// A clerk (sachbearbeitung) of Hitzacker, a demo user of config/interkom.toml.
const JAN = { user: 'jan.meyer', password: 'Hitzacker-Demo-2026!', tenant: 'hitzacker-elbe' };
const SP_ID = 'ratsinfo-saml';
const RESOURCE = 'ratsinfo-hitzacker';
const ENCRYPTION = { content: 'aes256-gcm', key_transport: 'rsa-oaep-mgf1p' };
const UID = 'urn:oid:0.9.2342.19200300.100.1.1';

const startSp = (metadata, args) => startSamlPeer('sp.py', '--idp-metadata', metadata, args);
const stopSp = stopSamlPeer;

describe('interkom as SAML identity provider of a pysaml2 SP, in headless Chromium', { timeout: 240_000 }, () => {
  let dir;
  let server;
  let issuer;
  let sp;
  let browser;
  let context; // Jan Meyer's browser: carries the interkom session
  let first; // what the SP showed after the first login
  let defined = 0;
  let passed = 0;

  function step(name, fn) {
    defined += 1;
    it(name, { timeout: 60_000 }, async () => {
      await fn();
      passed += 1;
    });
  }

  /** A fresh browser (no cookies); CSP bypassed for axe-core. */
  async function newContext() {
    const ctx = await browser.newContext({
      bypassCSP: true,
      locale: 'de-DE',
      extraHTTPHeaders: { 'Accept-Language': 'de-DE,de;q=0.9' },
    });
    ctx.setDefaultTimeout(15_000);
    return ctx;
  }

  /**
   * The Kreis administrator's access token: the console's public client
   * with PKCE, the login in a browser of its own, the callback answered by
   * the test (as forward-suite.mjs does).
   */
  async function adminToken() {
    const config = await oidc.discovery(new URL(issuer), 'interkom-console', undefined, oidc.None(), insecure);
    const redirect = `${issuer}/admin/console/callback`;
    const req = await authRequest(config, redirect, { scope: 'openid profile' });
    const ctx = await newContext();
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

  /** The SP's /whoami on the current page (the page must be it). */
  async function whoami(page) {
    assert.equal(new URL(page.url()).pathname, '/whoami', `the SP's /whoami, not ${page.url()}`);
    const text = await page.locator('body').innerText();
    try {
      return JSON.parse(text);
    } catch {
      throw new Error(`/whoami is not JSON: ${text.slice(0, 500)}`);
    }
  }

  /** Jan Meyer as the SP received him: attributes, level, crypto. */
  function assertJan(who) {
    assert.equal(who.issuer, `${issuer}/saml`);
    assert.deepEqual(who.attributes[UID], [JAN.user], JSON.stringify(who.attributes));
    assert.deepEqual(who.attributes['urn:interkom:tenant'], [JAN.tenant]);
    const roles = who.attributes['urn:interkom:roles'] ?? [];
    assert.ok(roles.includes('sachbearbeitung') && !roles.includes('admin'), `roles: ${roles}`);
    assert.equal(who.authn_context_class_ref, 'urn:interkom:loa:low');
    assert.equal(who.name_id_format, 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent');
    assert.ok(who.name_id, 'a NameID');
    assert.equal(who.crypto.assertion_encrypted, true, JSON.stringify(who.crypto));
    assert.equal(who.crypto.assertion_signed, true);
    assert.equal(who.crypto.response_signed, true);
    assert.equal(who.crypto.data_encryption_algorithm, 'http://www.w3.org/2009/xmlenc11#aes256-gcm');
    assert.equal(who.crypto.key_transport_algorithm, 'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p');
  }

  /**
   * Records interkom's HTML pages answered 200 on `page` (a login form
   * would be one); the page that posts to the SP is `/saml/return`.
   */
  function interkomPages(page) {
    const seen = [];
    page.on('response', (r) => {
      const html = r.headers()['content-type']?.startsWith('text/html');
      if (r.url().startsWith(issuer) && r.status() === 200 && html) seen.push(new URL(r.url()).pathname);
    });
    return seen;
  }

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'interkom-saml-'));
    const port = await freePort();
    issuer = `http://127.0.0.1:${port}`;
    server = await startServer(issuer, port, databaseFor(dir, 'saml'), dir);
    sp = await startSp(`${issuer}/saml/metadata`, ['--encryption-key']);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });

    // The SP, registered by the Kreis administrator from its metadata.
    const metadata = await (await fetch(sp.url('/metadata'))).text();
    assert.match(metadata, /use="encryption"/, 'sp.py publishes an encryption certificate');
    const token = await adminToken();
    const res = await fetch(`${issuer}/admin/v1/service-providers/${SP_ID}/metadata`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        tenant: JAN.tenant, name: 'Ratsinfo Hitzacker (SAML)', metadata, resource: RESOURCE, encryption: ENCRYPTION,
      }),
    });
    const body = await res.text();
    assert.equal(res.status, 201, `registering the SP: ${res.status} ${body}`);
    const cfg = JSON.parse(body);
    assert.equal(cfg.entity_id, sp.url('/metadata'));
    assert.deepEqual(cfg.acs_urls, [sp.url('/acs')]);
    assert.equal(cfg.require_signed_requests, true, 'sp.py signs its AuthnRequests and says so');

    context = await newContext();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    if (sp) await stopSp(sp.proc);
    if (server) await stopServer(server.proc);
    if (passed < defined) {
      if (server) console.error(`--- interkom log ---\n${server.log.join('')}`);
      if (sp) console.error(`--- sp.py log ---\n${sp.log.join('')}`);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  step('SP-initiated login over Redirect: interkom’s login page, the posting page, the SP gets Jan encrypted', async () => {
    const page = await context.newPage();
    // The posting page's script is held back once, so that the page stays
    // for axe-core and its button (the way without JavaScript) is used.
    await page.route('**/assets/saml-post.js', (r) => r.abort());
    await page.goto(sp.url('/login'));
    await page.waitForSelector('input[name="password"]');
    assert.ok(page.url().startsWith(`${issuer}/`), `interkom's login page, not ${page.url()}`);
    assert.equal(await page.getAttribute('html', 'lang'), 'de');
    await assertAccessible(page, 'the login page');
    await page.fill('input[name="username"]', JAN.user);
    await page.fill('input[name="password"]', JAN.password);
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(`${issuer}/saml/return`)),
      page.press('input[name="password"]', 'Enter'),
    ]);
    const form = page.locator('form#saml-post');
    await form.waitFor();
    assert.equal(await form.getAttribute('action'), sp.url('/acs'), 'posts to the registered ACS');
    assert.equal(await form.getAttribute('method'), 'post');
    assert.equal(await page.locator('form#saml-post input[type=hidden][name=SAMLResponse]').count(), 1);
    assert.ok((await page.locator('h1').innerText()).length > 0);
    await assertAccessible(page, 'the page that posts to the SP');
    await landOn(page, sp.url('/whoami'), () => form.locator('button[type=submit]').click());
    first = await whoami(page);
    assertJan(first);
    await page.close();
  });

  step('a second login at the SP needs no password: the posting page sends itself, the same pairwise NameID', async () => {
    assert.ok(first, 'the first login did not succeed');
    const page = await context.newPage();
    const seen = interkomPages(page);
    await landOn(page, sp.url('/whoami'), () => page.goto(sp.url('/login?next=/whoami'), { waitUntil: 'commit' }));
    const again = await whoami(page);
    assertJan(again);
    assert.equal(again.name_id, first.name_id, 'persistent: the same NameID');
    assert.notEqual(again.assertion_id, first.assertion_id, 'a new assertion');
    assert.deepEqual(seen, ['/saml/return'], 'no login form, only the page that posts');
    await page.close();
  });

  step('an AuthnRequest over HTTP-POST (signed XML): the login page, then the SP gets Jan encrypted', async () => {
    // A browser without a session, so the login form follows the POST.
    const ctx = await newContext();
    try {
      const page = await ctx.newPage();
      const posted = [];
      page.on('request', (r) => {
        if (r.url().startsWith(`${issuer}/saml/sso`)) posted.push(r.method());
      });
      // The SP's page posts at once (waiting for its load would race that).
      await page.goto(sp.url('/login?binding=post'), { waitUntil: 'commit' });
      await page.waitForSelector('input[name="password"]');
      assert.ok(page.url().startsWith(`${issuer}/`), `interkom's login page, not ${page.url()}`);
      assert.deepEqual(posted, ['POST'], 'the SP posted its AuthnRequest');
      await assertAccessible(page, 'the login page after a POSTed AuthnRequest');
      await page.fill('input[name="username"]', JAN.user);
      await page.fill('input[name="password"]', JAN.password);
      await landOn(page, sp.url('/whoami'), () => page.press('input[name="password"]', 'Enter'));
      const who = await whoami(page);
      assertJan(who);
      assert.equal(who.name_id, first?.name_id, 'the same pairwise NameID in another browser');
    } finally {
      await ctx.close();
    }
  });
});
