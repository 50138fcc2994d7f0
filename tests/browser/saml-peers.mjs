// Shared by the SAML browser tests: the SAML peers from another ecosystem
// (tests/saml/sp.py and idp.py, pysaml2 in target/saml-venv) and the
// accessibility check of interkom's pages on the way.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { ROOT, freePort } from './harness.mjs';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');
const PYTHON = path.join(ROOT, 'target/saml-venv/bin/python');

/** WCAG 2.1 A/AA violations on the current page (axe-core), none allowed. */
export async function assertAccessible(page, what) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  const v = result.violations.map((x) => `${x.id}: ${x.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  assert.deepEqual(v, [], `${what} has accessibility violations`);
}

/**
 * Starts tests/saml/`script` on a free port with `flag metadata` (the other
 * side's metadata) and `args`; resolves once it prints `ready`. Its log
 * (stderr) is kept for the report. The venv is made when missing.
 */
export async function startSamlPeer(script, flag, metadata, args) {
  if (!existsSync(PYTHON)) {
    const r = spawnSync(path.join(ROOT, 'tests/saml/setup'), { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, `tests/saml/setup failed:\n${r.stderr}`);
  }
  const port = await freePort();
  const log = [];
  const proc = spawn(PYTHON, [path.join(ROOT, 'tests/saml', script), '--port', String(port),
    flag, metadata, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stderr.on('data', (d) => log.push(d.toString()));
  await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${script} did not start:\n${log.join('')}`)), 30_000);
    proc.stdout.on('data', (d) => {
      out += d;
      if (out.split('\n').some((l) => l.trim() === 'ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${code}):\n${log.join('')}`));
    });
  });
  return { proc, log, url: (p) => `http://127.0.0.1:${port}${p}` };
}

/** SIGTERM (the peer removes its key directory), SIGKILL after 5 s. */
export async function stopSamlPeer(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
  await gone;
  clearTimeout(timer);
}
