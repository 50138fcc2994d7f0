// Browser end-to-end test of interkom as SAML service provider of a
// BundID-like identity provider (tests/saml/idp.py: pysaml2 with PyPI's
// xmlsec, signed requests checked, the AKDB extension read, encrypted and
// signed assertions, STORK levels, bPK2). Headless Chromium goes through
// what a citizen sees: the Leistung's page (what it is, who offers it, the
// level it needs, the data it gets, its legal basis), the page that posts
// the AuthnRequest, the IdP's login page, the IdP's page that posts the
// Response back; openid-client is the Leistung's portal (a public client
// with PKCE) and checks the ID token. The same flow in raw HTTP, with more
// checks of the messages: tests/e2e/saml_sources.rs.
//
// Environment as for login.test.mjs (`./run` sets it up); the IdP's Python
// environment target/saml-venv is made by tests/saml/setup (run here when
// it is missing; scripts/test runs it too).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as oidc from 'openid-client';
import { chromium } from 'playwright-core';
import { assertAccessible, startSamlPeer, stopSamlPeer } from './saml-peers.mjs';
import {
  CHROMIUM, ROOT, answerLocally, authRequest, checksFor, databaseFor, freePort, insecure, landOn,
  startServer, stopServer,
} from './harness.mjs';


// Two Leistungen of the demo configuration (policies/leistungen.toml).
const MELDEBESCHEINIGUNG = { id: 'meldebescheinigung-elbtalaue', redirect: 'http://localhost:9012/callback' };
const BEWOHNERPARKEN = { id: 'bewohnerparken-dannenberg', redirect: 'http://localhost:9011/callback' };

/**
 * BundID registered as in tests/e2e/saml_sources.rs (the names of its
 * interface description), its metadata fetched from the IdP at start.
 */
function bundidSource(metadataUrl) {
  return `
# Added by tests/browser/saml-sources.test.mjs: the BundID-like test IdP.
[[saml_sources]]
id = "bundid"
tenant = "lk-luechow-dannenberg"
name = "BundID"
population = "citizen"
metadata_url = "${metadataUrl}"
binding = "post"
force_authn = false
clock_skew = 60
levels = [
  { name = "STORK-QAA-Level-1", loa = "low" },
  { name = "STORK-QAA-Level-3", loa = "substantial" },
  { name = "STORK-QAA-Level-4", loa = "high" },
]
level_attribute = "urn:oid:1.2.40.0.10.2.1.1.261.94"
pseudonym_attribute = "urn:oid:1.3.6.1.4.1.25484.494450.3"
attributes = { given_name = "urn:oid:2.5.4.42", family_name = "urn:oid:2.5.4.4", birthdate = "urn:oid:1.2.40.0.10.2.1.1.55", address = "urn:oid:2.5.4.16", email = "urn:oid:0.9.2342.19200300.100.1.3", organisation = "urn:x-interkom-test:muk:organisation" }
extensions = '<akdb:AuthenticationRequest xmlns:akdb="https://www.akdb.de/request/2018/09" xmlns:classic-ui="https://www.akdb.de/request/2018/09/classic-ui/v1" Version="2" EnableStatusDetail="true"><akdb:RequestedAttributes>{requested_attributes}</akdb:RequestedAttributes><akdb:DisplayInformation><classic-ui:Version><classic-ui:OrganizationDisplayName>{organisation}</classic-ui:OrganizationDisplayName><classic-ui:OnlineServiceId>{online_service_id}</classic-ui:OnlineServiceId><classic-ui:Lang>{lang}</classic-ui:Lang></classic-ui:Version></akdb:DisplayInformation></akdb:AuthenticationRequest>'
requested_attribute = '<akdb:RequestedAttribute Name="{name}" RequiredAttribute="{required}"/>'
`;
}

const startIdp = (metadata, args) => startSamlPeer('idp.py', '--sp-metadata', metadata, args);
const stopIdp = stopSamlPeer;

describe('citizens through a BundID-like SAML identity source, in headless Chromium', { timeout: 240_000 }, () => {
  let dir;
  let server;
  let issuer;
  let idp;
  let browser;
  let defined = 0;
  let passed = 0;

  function step(name, fn) {
    defined += 1;
    it(name, { timeout: 60_000 }, async () => {
      await fn();
      passed += 1;
    });
  }

  /**
   * A fresh browser (no cookies), CSP bypassed for axe-core, with the
   * portals' callbacks (localhost:9011/9012, where nothing listens)
   * answered by the test so the redirect completes as a real one would.
   */
  async function newPage() {
    const ctx = await browser.newContext({
      bypassCSP: true,
      locale: 'de-DE',
      extraHTTPHeaders: { 'Accept-Language': 'de-DE,de;q=0.9' },
    });
    ctx.setDefaultTimeout(15_000);
    const page = await ctx.newPage();
    await answerLocally(ctx, page, ['http://localhost:901*'], '<!doctype html><title>Leistung</title><p>callback reached</p>');
    return { ctx, page };
  }

  /** The Leistung's portal as relying party: public client, PKCE. */
  const portal = (client) => oidc.discovery(new URL(issuer), client.id, undefined, oidc.None(), insecure);

  /** The text of each element matching `selector`, trimmed. */
  const texts = async (page, selector) => (await page.locator(selector).allInnerTexts()).map((t) => t.trim());

  /**
   * Chooses BundID on the Leistung's page: interkom's page posts the signed
   * AuthnRequest (by itself, with its script), and the IdP's login page
   * follows.
   */
  async function chooseBundid(page) {
    await page.click('#source-bundid');
    await page.locator('#login').waitFor();
    assert.ok(page.url().startsWith(idp.url('/sso')), `the IdP's login page, not ${page.url()}`);
  }

  /**
   * The AuthnRequests `page` posts to the IdP, as XML (interkom's posting
   * page sends them base64-encoded, without DEFLATE).
   */
  function authnRequests(page) {
    const seen = [];
    page.on('request', (r) => {
      if (r.method() !== 'POST' || !r.url().startsWith(idp.url('/sso'))) return;
      const request = new URLSearchParams(r.postData() ?? '').get('SAMLRequest');
      if (request) seen.push(Buffer.from(request, 'base64').toString('utf8'));
    });
    return seen;
  }

  /** Logs in at the IdP's page as `user` at `level` (1, 3 or 4). */
  async function idpLogin(page, user, level) {
    await page.check(`#user-${user}`);
    await page.check(`#level-${level}`);
    await page.click('#login');
  }

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'interkom-saml-sources-'));
    const port = await freePort();
    issuer = `http://127.0.0.1:${port}`;
    // --allow-lower-level: the IdP may answer below the level asked, so
    // that interkom's own check of the level is what the test sees.
    idp = await startIdp(`${issuer}/saml/sp/metadata`, ['--allow-lower-level']);

    // The demo configuration with BundID appended ([[saml_sources]] is a
    // top-level array of tables, so the end of the file is a fine place).
    const config = path.join(dir, 'interkom.toml');
    writeFileSync(config, readFileSync(path.join(ROOT, 'config/interkom.toml'), 'utf8')
      + bundidSource(idp.url('/metadata')));
    server = await startServer(issuer, port, databaseFor(dir, 'saml_sources'), dir, {
      INTERKOM_CONFIG: config,
      // The IdP's metadata is on plain http on loopback (test only).
      INTERKOM_BROKERING__ALLOW_LOOPBACK: 'true',
    });

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    if (server) await stopServer(server.proc);
    if (idp) await stopIdp(idp.proc);
    if (passed < defined) {
      if (server) console.error(`--- interkom log ---\n${server.log.join('')}`);
      if (idp) console.error(`--- idp.py log ---\n${idp.log.join('')}`);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  step('Meldebescheinigung (hoch): the Leistung’s page, BundID at level 4, the ID token has exactly its data', async () => {
    const rp = await portal(MELDEBESCHEINIGUNG);
    const req = await authRequest(rp, MELDEBESCHEINIGUNG.redirect);
    const { ctx, page } = await newPage();
    try {
      await page.goto(req.url.href);
      await page.locator('#leistung-name').waitFor();
      assert.equal(await page.getAttribute('html', 'lang'), 'de');
      // What the person is told before choosing a source.
      assert.equal((await page.innerText('#leistung-name')).trim(), 'Meldebescheinigung');
      assert.equal((await page.innerText('#leistung-kommune')).trim(), 'Samtgemeinde Elbtalaue');
      assert.equal((await page.innerText('#leistung-niveau')).trim(), 'hoch');
      // (Listed in the order of the claims' keys, so compared as a set.)
      assert.deepEqual((await texts(page, '#leistung-daten li')).sort(),
        ['Anschrift', 'Familienname', 'Geburtsdatum', 'Vorname']);
      assert.match(await page.innerText('#leistung-rechtsgrundlage'), /§ 18 Abs\. 1 Bundesmeldegesetz/);
      // BundID only (the Leistung accepts no other source); not there at
      // all if interkom could not fetch the IdP's metadata at start.
      assert.deepEqual(await page.locator('button[name="source"]').evaluateAll((bs) => bs.map((b) => b.value)),
        ['bundid'], 'the sources offered');
      await assertAccessible(page, 'the Leistung’s page');

      await chooseBundid(page);
      // The AKDB extension reached the IdP: the Leistung and its data.
      assert.equal((await page.innerText('#online-service-id')).trim(), MELDEBESCHEINIGUNG.id);
      assert.equal((await page.innerText('#requested-level')).trim(), 'STORK-QAA-Level-4');
      assert.match(await page.innerText('#requested-attributes'), /urn:oid:1\.2\.40\.0\.10\.2\.1\.1\.55/);

      // The IdP's page posts the Response to interkom's ACS; interkom
      // redirects to the portal with a code.
      const callback = await landOn(page, MELDEBESCHEINIGUNG.redirect, () => idpLogin(page, 'erika', 4));
      const tokens = await oidc.authorizationCodeGrant(rp, callback, checksFor(req));
      const id = tokens.claims();
      assert.equal(id.acr, 'urn:interkom:loa:high');
      assert.equal(id.given_name, 'Erika');
      assert.equal(id.family_name, 'Mustermann');
      assert.ok(id.birthdate && id.address, `birthdate and address: ${JSON.stringify(id)}`);
      // Data minimisation: nothing the Leistung is not registered for,
      // although the portal asked for `profile email`.
      for (const absent of ['email', 'tenant', 'roles', 'preferred_username', 'name']) {
        assert.equal(id[absent], undefined, `${absent} leaked: ${JSON.stringify(id)}`);
      }
    } finally {
      await ctx.close();
    }
  });

  step('Bewohnerparkausweis (substanziell): level 1 answered is shown, the retry at level 3 gets the code', async () => {
    const rp = await portal(BEWOHNERPARKEN);
    const req = await authRequest(rp, BEWOHNERPARKEN.redirect);
    const { ctx, page } = await newPage();
    const requests = authnRequests(page);
    try {
      await page.goto(req.url.href);
      assert.equal((await page.innerText('#leistung-name')).trim(), 'Bewohnerparkausweis');
      assert.equal((await page.innerText('#leistung-niveau')).trim(), 'substanziell');
      await chooseBundid(page);
      assert.equal((await page.innerText('#requested-level')).trim(), 'STORK-QAA-Level-3');
      assert.equal(requests.length, 1, 'one AuthnRequest posted');
      assert.doesNotMatch(requests[0], /ForceAuthn/, 'the first request does not force a new login');

      // The IdP (wrongly) answers at level 1: interkom goes by the
      // assertion, not by what it asked, and says why on the Leistung's page.
      await idpLogin(page, 'max', 1);
      const hinweis = page.locator('#leistung-hinweis');
      await hinweis.waitFor();
      assert.ok(page.url().startsWith(`${issuer}/`), `interkom's page, not ${page.url()}`);
      const text = await hinweis.innerText();
      assert.ok(text.includes('„niedrig“') && text.includes('„substanziell“'), `the notice: ${text}`);
      assert.equal((await page.innerText('#leistung-name')).trim(), 'Bewohnerparkausweis');
      await assertAccessible(page, 'the Leistung’s page after a level too low');

      // Again (ForceAuthn this time: the IdP shows its login page anew).
      await chooseBundid(page);
      assert.equal(requests.length, 2, 'a second AuthnRequest posted');
      assert.match(requests[1], /ForceAuthn="true"/, 'the retry forces a new login');
      const callback = await landOn(page, BEWOHNERPARKEN.redirect, () => idpLogin(page, 'max', 3));
      const tokens = await oidc.authorizationCodeGrant(rp, callback, checksFor(req));
      const id = tokens.claims();
      assert.equal(id.acr, 'urn:interkom:loa:substantial');
      assert.equal(id.given_name, 'Max Jürgen');
      assert.equal(id.birthdate, undefined, 'not a claim of this Leistung');
    } finally {
      await ctx.close();
    }
  });
});
