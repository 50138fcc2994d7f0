// Shared by the forward-authentication tests: a small backend that shows
// what reached it, and Debian's nginx and Caddy started from the templates
// in tests/proxies (which include the shipped deploy/forward-auth files
// verbatim), as the user running the tests, on loopback.

import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { ROOT } from './harness.mjs';

export const NGINX = process.env.NGINX_BIN ?? (existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx');
export const CADDY = process.env.CADDY_BIN ?? 'caddy';

/**
 * Fills a template of tests/proxies: {{LISTEN_PORT}}, {{DIR}}, {{ROOT}},
 * {{INTERKOM}} and {{BACKEND}} (URLs such as http://127.0.0.1:1234), and
 * {{INTERKOM_ADDR}} / {{BACKEND_ADDR}} (the same without the scheme, for
 * nginx's upstream blocks). Every placeholder must be filled.
 */
export function fillTemplate(name, { port, dir, interkom, backend }) {
  const values = {
    LISTEN_PORT: String(port),
    DIR: dir,
    ROOT,
    INTERKOM: interkom,
    BACKEND: backend,
    INTERKOM_ADDR: new URL(interkom).host,
    BACKEND_ADDR: new URL(backend).host,
  };
  const text = readFileSync(path.join(ROOT, 'tests/proxies', name), 'utf8')
    .replace(/\{\{([A-Z_]+)\}\}/g, (m, key) => {
      if (!(key in values)) throw new Error(`${name}: unknown placeholder ${m}`);
      return values[key];
    });
  return text;
}

/**
 * The application behind the proxy: answers every request with a page
 * showing, as JSON in <pre id="echo">, the method, host, path and every
 * header as received (rawHeaders: duplicates and spelling kept). Keeps
 * them in `requests` for the test.
 */
export async function startBackend() {
  const requests = [];
  const server = http.createServer((req, res) => {
    const headers = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
    const seen = { method: req.method, host: req.headers.host, url: req.url, headers };
    requests.push(seen);
    const json = JSON.stringify(seen, null, 1)
      .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
    const body = `<!doctype html><html lang="de"><head><meta charset="utf-8"><title>Fachanwendung</title></head>`
      + `<body><main><h1>Fachanwendung</h1><pre id="echo">${json}</pre></main></body></html>`;
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** The headers of a request the backend saw, by lower-case name (all values). */
export function headersOf(seen) {
  const out = {};
  for (const [k, v] of seen.headers) (out[k.toLowerCase()] ??= []).push(v);
  return out;
}

/** Resolves once something accepts connections on 127.0.0.1:port. */
async function listening(port, proc, log, what) {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`${what} exited during start:\n${log.join('')}`);
    }
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  throw new Error(`${what} did not listen on ${port} within 15 s:\n${log.join('')}`);
}

function spawnLogged(cmd, args, options) {
  const log = [];
  const proc = spawn(cmd, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.on('data', (d) => log.push(d.toString()));
  proc.stderr.on('data', (d) => log.push(d.toString()));
  return { proc, log };
}

/**
 * nginx from tests/proxies/nginx.conf.tmpl in `dir` (pid, logs and temp
 * files there too), in the foreground; checked with `nginx -t` first.
 */
export async function startNginx(dir, port, interkom, backend) {
  mkdirSync(dir, { recursive: true });
  // Started as root, nginx's workers run as `nobody` and need to enter the
  // directory (and its parents) for their temp files (responses larger
  // than the buffers): give nginx a directory of its own, e.g. a mkdtemp.
  chmodSync(dir, 0o755);
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, fillTemplate('nginx.conf.tmpl', { port, dir, interkom, backend }));
  // -e: the error log before the configuration is read (Debian's build
  // says stderr; elsewhere it would be /var/log/nginx, not writable).
  const base = ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf];
  const t = spawnSync(NGINX, [...base, '-t', '-q'], { encoding: 'utf8' });
  if (t.error) throw new Error(`nginx not found (${t.error.message}); scripts/test installs Debian's package`);
  if (t.status !== 0) throw new Error(`nginx -t:\n${t.stderr}${t.stdout}`);
  const { proc, log } = spawnLogged(NGINX, [...base, '-g', 'daemon off;']);
  await listening(port, proc, log, 'nginx');
  const errorLog = path.join(dir, 'error.log');
  return {
    proc,
    log,
    /** What it wrote: the error log and its own output. */
    report: () => (existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : '') + log.join(''),
  };
}

/**
 * Caddy from tests/proxies/Caddyfile.tmpl in `dir`; its autosave and data
 * stay there (XDG_CONFIG_HOME, XDG_DATA_HOME, HOME).
 */
export async function startCaddy(dir, port, interkom, backend) {
  mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'Caddyfile');
  writeFileSync(conf, fillTemplate('Caddyfile.tmpl', { port, dir, interkom, backend }));
  const env = { ...process.env, XDG_CONFIG_HOME: dir, XDG_DATA_HOME: dir, HOME: dir };
  const args = ['--config', conf, '--adapter', 'caddyfile'];
  const v = spawnSync(CADDY, ['validate', ...args], { encoding: 'utf8', env });
  if (v.error) throw new Error(`caddy not found (${v.error.message}); scripts/test installs Debian's package`);
  if (v.status !== 0) throw new Error(`caddy validate:\n${v.stderr}${v.stdout}`);
  const { proc, log } = spawnLogged(CADDY, ['run', ...args], { env });
  await listening(port, proc, log, 'caddy');
  /** What it wrote (its log goes to stderr). */
  return { proc, log, report: () => log.join('') };
}

/** SIGTERM (nginx: fast shutdown; Caddy: graceful), SIGKILL after 5 s. */
export async function stopProcess(proc) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
  await gone;
  clearTimeout(timer);
}
