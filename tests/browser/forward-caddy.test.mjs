// Browser end-to-end test of forward authentication behind Caddy (issue
// 20): Debian's Caddy 2.6 runs the shipped deploy/forward-auth/Caddyfile
// snippet (through tests/proxies/Caddyfile.tmpl) in front of the echo
// backend. Headless Chromium, sending forged identity headers all along,
// logs in through interkom's login page and reaches the application as
// the real person; another Kommune's application answers interkom's 403
// page and is never reached. The full set of scenarios runs behind nginx
// in forward.test.mjs; this file checks that the Caddy snippet carries the
// same flow (forward_auth's check, the 302 to /.interkom/start, the
// callback, the headers copied and forged ones dropped).
//
// Setup and helpers: forward-suite.mjs. Environment as for login.test.mjs
// (`./run` sets it up); Caddy from Debian's package (scripts/test installs
// it; CADDY_BIN overrides).

import { describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  JAN, LOA_LOW, assertJan, echoOn, forgedHeaders, forwardSuite,
} from './forward-suite.mjs';

describe('forward authentication behind Caddy, in headless Chromium', { timeout: 180_000 }, () => {
  const fx = forwardSuite({
    proxy: 'caddy',
    db: 'forward_caddy',
    apps: [
      // A resource of Jan's Gemeinde ...
      ['caddy-app1', 1, JAN.tenant, 'Intranet Hitzacker', 'ratsinfo-hitzacker'],
      // ... and another Kommune's, which Jan may not use.
      ['caddy-app2', 2, 'gorleben', 'Ratsinfo Gorleben', 'ratsinfo-gorleben'],
    ],
  });
  const { step, origin, host } = fx;
  let loggedIn = false;

  step('login at app1 through interkom’s login page: the identity headers, no forged ones', async () => {
    const page = await fx.context.newPage();
    // Every request of the flow, the landing on the application included,
    // carries forged identity headers (and X-Forwarded-* naming app2), one
    // of them a name interkom never sends: the snippet removes every
    // X-Interkom-* a client sends (nginx's only overwrites the six).
    await page.setExtraHTTPHeaders({ ...forgedHeaders(host(2)), 'X-Interkom-Email': 'admin@example.org' });
    const visited = [];
    page.on('request', (r) => { if (r.isNavigationRequest()) visited.push(r.url()); });
    await fx.loginAt(page, 1, `${origin(1)}/akten/liste?jahr=2026&seite=2`);
    // forward_auth passed interkom's 302 on to the browser: the login
    // started on the application's host, at /.interkom/start (Caddy's
    // `handle /.interkom/*` to interkom's /forward-auth/start).
    assert.ok(visited.some((u) => u.startsWith(`${origin(1)}/.interkom/start?`)),
      `no /.interkom/start on app1 among ${JSON.stringify(visited)}`);

    // The whole return URL (query with `&`) came back, through Caddy.
    const echo = await echoOn(page);
    assert.equal(echo.url, '/akten/liste?jahr=2026&seite=2');
    const h = assertJan(echo, { acr: LOA_LOW });
    assert.equal(h['x-interkom-email'], undefined, 'a forged X-Interkom-Email reached the application');
    const cookies = (await fx.context.cookies(origin(1))).filter((c) => c.name === 'interkom_app');
    assert.equal(cookies.length, 1, 'the application’s cookie, set through Caddy');
    assert.equal(cookies[0].domain, 'app1.localhost');
    loggedIn = true;
    await page.close();
  });

  step('app2, another Kommune’s application: the denial page, the application never reached', async () => {
    assert.ok(loggedIn, 'the login step did not succeed');
    const page = await fx.context.newPage();
    await fx.assertDenied(page, 2, '/vorlagen');
    await page.close();
  });
});
