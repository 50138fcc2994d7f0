// Browser end-to-end test of forward authentication (issue 20): Debian's
// nginx runs the shipped deploy/forward-auth/nginx.conf (through
// tests/proxies/nginx.conf.tmpl) in front of a small backend that shows the
// headers it receives; headless Chromium logs in through interkom's pages,
// gets into a second application without a password, steps up with TOTP for
// a `hoch` application, is refused another Kommune's application, cannot
// forge identity headers or misuse the return URL, and logs out. interkom's
// own pages on the way are checked by axe-core (WCAG 2.1 A/AA).
//
// The setup and the helpers it shares with forward-caddy.test.mjs are in
// forward-suite.mjs. Environment as for login.test.mjs (`./run` sets it
// up); nginx from Debian's package (scripts/test installs it; NGINX_BIN
// overrides).

import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { answerLocally, landOn } from './harness.mjs';
import {
  JAN, LOA_LOW, LOA_SUBSTANTIAL, assertAccessible, assertJan, echoOn, forgedHeaders, forwardSuite,
  watchStylesheets,
} from './forward-suite.mjs';

/** RFC 6238 TOTP (SHA1, 6 digits, 30 s) of a base32 secret at `at` (ms). */
function totp(secret, at = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30_000)));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

/** A code that stays valid for a few seconds more (waits out a window's end). */
async function freshTotp(secret) {
  const left = 30_000 - (Date.now() % 30_000);
  if (left < 4_000) await new Promise((r) => setTimeout(r, left + 200));
  return totp(secret);
}

describe('forward authentication behind nginx, in headless Chromium', { timeout: 240_000 }, () => {
  const fx = forwardSuite({
    proxy: 'nginx',
    db: 'forward',
    apps: [
      // A normal resource of Jan's Gemeinde ...
      ['fwd-app1', 1, JAN.tenant, 'Intranet Hitzacker', 'ratsinfo-hitzacker'],
      // ... a second application on it, for single sign-on ...
      ['fwd-app2', 2, JAN.tenant, 'Sitzungsdienst Hitzacker', 'ratsinfo-hitzacker'],
      // ... a `hoch` one (integrity: substantial, second factor) ...
      ['fwd-app3', 3, JAN.tenant, 'Haushalt Hitzacker', 'haushalt-hitzacker-elbe'],
      // ... and another Kommune's, which Jan may not use.
      ['fwd-app4', 4, 'gorleben', 'Ratsinfo Gorleben', 'ratsinfo-gorleben'],
    ],
  });
  const { step, origin, host, seenBy } = fx;

  let first; // the app1 login: the headers the backend received

  step('login at app1 through interkom’s login page ends on the application with the identity headers', async () => {
    const page = await fx.context.newPage();
    // No session: interkom's form, and nothing reached the application.
    await fx.loginAt(page, 1, `${origin(1)}/akten/liste?jahr=2026&seite=2`);

    // The whole return URL (query with `&`) came back, through nginx.
    const echo = await echoOn(page);
    assert.equal(echo.url, '/akten/liste?jahr=2026&seite=2');
    const h = assertJan(echo, { acr: LOA_LOW });
    // The application's cookie is host-only (no parent-domain cookie on
    // this host at all), HttpOnly, SameSite=Lax (Secure on https origins;
    // these are http on loopback).
    const cookies = await fx.context.cookies(origin(1));
    for (const c of cookies) assert.equal(c.domain, 'app1.localhost', `${c.name} is host-only`);
    const app = cookies.filter((c) => c.name === 'interkom_app');
    assert.equal(app.length, 1, `cookies on app1: ${JSON.stringify(cookies)}`);
    assert.equal(app[0].httpOnly, true);
    assert.equal(app[0].sameSite, 'Lax');
    first = { subject: h['x-interkom-subject'][0] };
    await page.close();
  });

  const login = () => {
    assert.ok(first, 'the login step did not succeed');
    return first;
  };

  step('single sign-on into app2: no password asked, the same person', async () => {
    login();
    const page = await fx.context.newPage();
    let form = false;
    page.on('response', (r) => {
      const html = r.headers()['content-type']?.startsWith('text/html');
      if (r.url().startsWith(fx.issuer) && r.status() === 200 && html) form = true;
    });
    await page.goto(`${origin(2)}/sitzungen`);
    await page.waitForURL(`${origin(2)}/sitzungen`);
    assert.equal(form, false, 'interkom showed a page despite the session');
    const echo = await echoOn(page);
    assertJan(echo, { acr: LOA_LOW, subject: login().subject });
    // app1's cookie is app1's: app2 got its own through its callback.
    const cookies = (await fx.context.cookies(origin(2))).filter((c) => c.name === 'interkom_app');
    assert.equal(cookies.length, 1);
    assert.equal(cookies[0].domain, 'app2.localhost');
    await page.close();
  });

  step('identity headers a client sends itself never reach the application', async () => {
    login();
    const page = await fx.context.newPage();
    // Every request of this page carries forged headers, including the
    // ones nginx sends interkom about the original request.
    await page.setExtraHTTPHeaders(forgedHeaders(host(3)));
    await page.goto(`${origin(1)}/gefaelscht?probe=1`);
    let echo = await echoOn(page);
    assert.equal(echo.url, '/gefaelscht?probe=1');
    const expected = { acr: LOA_LOW, subject: login().subject };
    assertJan(echo, expected);

    // The same from a script on the application's page (fetch with the
    // application's cookie), on a POST: still the real person.
    const text = await page.evaluate(async () => {
      const r = await fetch('/api/speichern', {
        method: 'POST',
        headers: { 'X-Interkom-User': 'admin', 'X-Interkom-Acr': 'urn:interkom:loa:high', 'Content-Type': 'text/plain' },
        body: 'x',
      });
      return `${r.status}\n${await r.text()}`;
    });
    assert.match(text, /^200\n/, text.slice(0, 300));
    const posted = fx.backend.requests.filter((r) => r.host === host(1) && r.url === '/api/speichern');
    assert.equal(posted.length, 1);
    assert.equal(posted[0].method, 'POST');
    assertJan(posted[0], expected);
    await page.close();
  });

  step('app3 (hoch) asks for the second factor, then lets the clerk in at substantial', async () => {
    login();
    const page = await fx.context.newPage();
    const target = `${origin(3)}/haushaltsplan`;
    await page.goto(target);
    // A step-up: the session's login (password) is short of `hoch`.
    await page.waitForSelector('input[name="code"], input[name="password"]');
    assert.ok(page.url().startsWith(fx.issuer), `interkom asks, not ${page.url()}`);
    assert.equal(seenBy(3).length, 0, 'the application saw a request before the step-up');
    if (await page.locator('input[name="password"]').count()) {
      // Should interkom ask for the password again first.
      if (await page.locator('input[name="username"]').count()) await page.fill('input[name="username"]', JAN.user);
      await page.fill('input[name="password"]', JAN.password);
      await page.press('input[name="password"]', 'Enter');
      await page.waitForSelector('input[name="code"]');
    }
    await page.fill('input[name="code"]', await freshTotp(JAN.totp));
    await landOn(page, origin(3), () => page.press('input[name="code"]', 'Enter'));
    await page.waitForURL(target);
    const echo = await echoOn(page);
    assertJan(echo, { acr: LOA_SUBSTANTIAL, subject: login().subject });
    await page.close();
  });

  step('app4, another Kommune’s application: the denial page, the application never reached', async () => {
    login();
    const page = await fx.context.newPage();
    await fx.assertDenied(page, 4, '/vorlagen');
    await page.close();
  });

  step('open-redirect attempts: an error page, never evil.example', async () => {
    login();
    const page = await fx.context.newPage();
    const styles = watchStylesheets(page);
    const evil = [];
    page.on('request', (r) => {
      if (new URL(r.url()).hostname.endsWith('evil.example')) evil.push(r.url());
    });
    // Should a redirect go there after all, the test answers it (no DNS wait).
    // (Patterns on the start of the URL: the attempts carry evil.example in
    // their query.)
    await answerLocally(fx.context, page,
      ['http://evil.example/*', 'https://evil.example/*', 'http://app1.localhost.evil.example:*'],
      '<!doctype html><title>evil</title><p>evil</p>');

    // With a live session: an accepted return URL would be followed at once.
    const attempts = [
      'https://evil.example/',
      '//evil.example/',
      'https:/evil.example/',
      '/\\evil.example/',
      `http://${host(1)}@evil.example/`,
      `http://app1.localhost.evil.example:${fx.proxyPort}/`,
    ];
    let checked = false;
    for (const rd of attempts) {
      const res = await page.goto(`${origin(1)}/.interkom/start?m=GET&rd=${rd}`);
      const url = new URL(page.url());
      assert.ok(!url.hostname.endsWith('evil.example'), `rd=${rd} led to ${page.url()}`);
      assert.ok(res.status() >= 400, `rd=${rd}: an error page, not ${res.status()} at ${page.url()}`);
      assert.equal(await page.locator('pre#echo').count(), 0, `rd=${rd}: not the application`);
      if (!checked) {
        styles.assertLoaded('the error page for a foreign return URL');
        await assertAccessible(page, 'the error page for a foreign return URL');
        checked = true;
      }
    }
    assert.deepEqual(evil, [], 'requests to evil.example');
    await page.close();
  });

  step('logout at /.interkom/logout ends access to app1 and app2: the next visit asks for the login', async () => {
    login();
    const page = await fx.context.newPage();
    const styles = watchStylesheets(page);
    const res = await page.goto(`${origin(1)}/.interkom/logout`);
    assert.equal(res.status(), 200);
    await page.locator('[role=status]').waitFor();
    assert.equal(await page.locator('pre#echo').count(), 0, 'the logout page is interkom’s');
    styles.assertLoaded('the logout page');
    await assertAccessible(page, 'the logout page');

    for (const n of [1, 2]) {
      const before = seenBy(n).length;
      await page.goto(`${origin(n)}/nach-abmeldung`);
      await fx.assertLoginForm(page, `app${n} after the logout`);
      assert.equal(seenBy(n).length, before, `app${n} was reached after the logout`);
    }
    await page.close();
  });
});
