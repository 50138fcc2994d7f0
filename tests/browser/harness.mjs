// Shared by the browser tests: start and stop a real interkom node.

import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as oidc from 'openid-client';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.INTERKOM_BIN ?? path.join(ROOT, 'target/debug/interkom');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The environment of a node (and of the CLI on its database). */
export function nodeEnv(issuer, port, databaseUrl, dir) {
  return {
    ...process.env,
    INTERKOM_CONFIG: path.join(ROOT, 'config/interkom.toml'),
    INTERKOM_DATABASE_URL: databaseUrl,
    INTERKOM_KEY_ENCRYPTION_KEY_FILE: path.join(dir, 'kek'),
    INTERKOM_AUDIT__CHECKPOINT_KEY_FILE: path.join(dir, 'audit-checkpoint.key'),
    INTERKOM_LISTEN: `127.0.0.1:${port}`,
    INTERKOM_ISSUER: issuer,
    INTERKOM_LOG: 'warn',
    // The console's pages are tested here, not the strength of an
    // administrator's login (a second factor by default: tested in
    // tests/e2e/security.rs): accounts the scenarios create have no TOTP.
    INTERKOM_ADMIN__REQUIRED_ACR: 'low',
  };
}

/** A free TCP port: bind port 0, read it, let it go. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts interkom and resolves once /healthz answers 200; `extraEnv`
 * overrides the node's environment (another configuration file, say).
 */
export async function startServer(issuer, port, databaseUrl, dir, extraEnv = {}) {
  const log = [];
  const proc = spawn(BIN, ['serve'], {
    cwd: ROOT,
    env: { ...nodeEnv(issuer, port, databaseUrl, dir), ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Kept for the report if something fails; not echoed on success.
  proc.stdout.on('data', (d) => log.push(d.toString()));
  proc.stderr.on('data', (d) => log.push(d.toString()));
  let exited = null;
  proc.once('exit', (code, signal) => { exited = { code, signal }; });

  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(`interkom exited during start (${JSON.stringify(exited)}):\n${log.join('')}`);
    }
    try {
      const res = await fetch(`${issuer}/healthz`);
      if (res.status === 200) return { proc, log };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error(`interkom did not become healthy within 30 s:\n${log.join('')}`);
}

/** SIGTERM, then SIGKILL if it does not stop within 10 s. */
export async function stopServer(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
  await gone;
  clearTimeout(timer);
}

/**
 * The database of one test file: a fresh SQLite file in `dir`, or with
 * INTERKOM_BROWSER_PG a fresh PostgreSQL database of its own (named after
 * INTERKOM_BROWSER_DB_PREFIX; `./run` drops them all at the end).
 */
export function databaseFor(dir, name) {
  const pg = process.env.INTERKOM_BROWSER_PG;
  if (!pg) return `sqlite://${path.join(dir, 'db.sqlite')}`;
  const db = `${process.env.INTERKOM_BROWSER_DB_PREFIX ?? 'ik_browser'}_${name}`;
  const r = spawnSync('psql', [`${pg}/postgres`, '-qc', `CREATE DATABASE "${db}"`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`creating ${db}: ${r.stderr}`);
  return `${pg}/${db}`;
}

// Test-only: the issuer is plain http on loopback.
export const insecure = { execute: [oidc.allowInsecureRequests] };

/** A fresh authorization request with PKCE (S256), state and nonce. */
export async function authRequest(config, redirectUri, extra = {}) {
  const codeVerifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid profile email',
    code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  return { url, codeVerifier, state, nonce };
}

/** The checks openid-client applies to the callback of `req`. */
export const checksFor = (req) => ({
  pkceCodeVerifier: req.codeVerifier,
  expectedState: req.state,
  expectedNonce: req.nonce,
  idTokenExpected: true,
});

/**
 * Runs `action` (a navigation or a click) and returns the URL the browser
 * ends up on, which must start with `prefix`, a relying party's address.
 */
export async function landOn(page, prefix, action) {
  await Promise.all([page.waitForURL((u) => u.href.startsWith(prefix)), action()]);
  return new URL(page.url());
}

/**
 * Answers the page's requests to URLs matching `urlPatterns` (patterns of
 * Chromium's Fetch domain) with `html`, status 200, so that a redirect to
 * an address where nothing listens completes as a real one would.
 * Chromium's Fetch domain directly: Playwright's page.route does not see
 * the targets of redirects.
 */
export async function answerLocally(ctx, page, urlPatterns, html) {
  const cdp = await ctx.newCDPSession(page);
  const body = Buffer.from(html).toString('base64');
  cdp.on('Fetch.requestPaused', (e) => {
    cdp.send('Fetch.fulfillRequest', {
      requestId: e.requestId,
      responseCode: 200,
      responseHeaders: [{ name: 'Content-Type', value: 'text/html; charset=utf-8' }],
      body,
    }).catch(() => {}); // e.g. a favicon request after the page was closed
  });
  await cdp.send('Fetch.enable', { patterns: urlPatterns.map((urlPattern) => ({ urlPattern })) });
  return cdp;
}
