'use strict';
// A real `python -m kefu serve` for the tests: spawned on 127.0.0.1 with a free port and its own
// data dir, stopped with SIGTERM and started again on the same port and data.
//
// Environment: KEFU_PYTHON (default <repo>/.venv/bin/python); MYSQL_URL, REDIS_URL and
// KEFU_REDIS_PREFIX are passed through (the Redis + MySQL backend; `kefu migrate` runs first);
// KEFU_DATA_DIR, if set, is where the per-run data dir is created; KEFU_MINIPROGRAM_LOG_DIR, if
// set, receives the server log (else it stays in the data dir). KEEP_KEFU_DATA=1 keeps the data dir.

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { sleep, withTimeout } = require('./util');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const PYTHON = process.env.KEFU_PYTHON || path.join(ROOT, '.venv', 'bin', 'python');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

class KefuServer {
  static async create() {
    const s = new KefuServer();
    s.port = await freePort();
    const parent = process.env.KEFU_DATA_DIR || os.tmpdir();
    fs.mkdirSync(parent, { recursive: true });
    s.dataDir = fs.mkdtempSync(path.join(parent, 'kefu-mp-'));
    const logDir = process.env.KEFU_MINIPROGRAM_LOG_DIR || s.dataDir;
    fs.mkdirSync(logDir, { recursive: true });
    s.logPath = path.join(logDir, 'kefu-server.log');
    s.env = {
      ...process.env,
      KEFU_HOST: '127.0.0.1',
      KEFU_PORT: String(s.port),
      KEFU_DATA_DIR: s.dataDir,
      KEFU_API_KEY: crypto.randomBytes(12).toString('hex'), // POST /api/push, as a backend would
      KEFU_PUSH_PORT: '0', // the TCP push port is not used here: no port to collide on
      PYTHONUNBUFFERED: '1',
    };
    return s;
  }

  constructor() {
    this.proc = null;
    this.migrated = false;
    this.starts = 0;
  }

  get backend() { return this.env.MYSQL_URL ? 'redis_mysql' : 'embedded'; }
  get baseUrl() { return `http://127.0.0.1:${this.port}`; }
  get wsUrl() { return `ws://127.0.0.1:${this.port}/ws`; }

  // `python -m kefu <args>` with the server's environment; rejects on a non-zero exit.
  cli(args, timeout = 60000) {
    return new Promise((resolve, reject) => {
      const child = spawn(PYTHON, ['-m', 'kefu', ...args], { cwd: ROOT, env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { out += d; });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
      child.on('error', (e) => { clearTimeout(timer); reject(e); });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve(out);
        else reject(new Error(`kefu ${args.join(' ')} exited with ${code ?? signal}:\n${out}`));
      });
    });
  }

  async start(timeout = 30000) {
    if (this.proc) throw new Error('server already running');
    if (this.env.MYSQL_URL && !this.migrated) {
      await this.cli(['migrate']);
      this.migrated = true;
    }
    this.starts += 1;
    fs.appendFileSync(this.logPath, `\n===== kefu serve #${this.starts} (${this.backend}) on port ${this.port} =====\n`);
    const log = fs.openSync(this.logPath, 'a');
    const proc = spawn(PYTHON, ['-m', 'kefu', 'serve'], { cwd: ROOT, env: this.env, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.proc = proc;
    let exited = null;
    proc.on('exit', (code, signal) => { exited = code ?? signal; });
    proc.exitPromise = new Promise((resolve) => proc.on('exit', resolve));
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
      if (exited !== null) {
        this.proc = null;
        throw new Error(`kefu serve exited with ${exited}:\n${this.logTail()}`);
      }
      try {
        const r = await fetch(this.baseUrl + '/healthz', { signal: AbortSignal.timeout(1000) });
        if (r.status === 200) return;
      } catch { /* not up yet */ }
      await sleep(100);
    }
    await this.stop();
    throw new Error(`kefu serve did not answer /healthz within ${timeout} ms:\n${this.logTail()}`);
  }

  // SIGTERM (the server drains and closes sockets with 1001); SIGKILL if it hangs.
  async stop(timeout = 20000) {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    try {
      await withTimeout(proc.exitPromise, timeout, 'kefu serve to exit after SIGTERM');
    } catch {
      proc.kill('SIGKILL');
      await withTimeout(proc.exitPromise, 5000, 'kefu serve to exit after SIGKILL');
    }
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  async close() {
    await this.stop();
    if (!process.env.KEEP_KEFU_DATA) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }

  logTail(n = 40) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-n).join('\n');
    } catch {
      return '';
    }
  }

  // JSON over HTTP: { status, body }.
  async api(method, urlPath, { token, body, headers: extra = {} } = {}) {
    const headers = { ...extra };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(this.baseUrl + urlPath, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10000),
    });
    const text = await r.text();
    let parsed = text;
    try { parsed = JSON.parse(text); } catch { /* keep text */ }
    return { status: r.status, body: parsed };
  }

  // A backend push (POST /api/push with the API key): { status, body }.
  push(obj) {
    return this.api('POST', '/api/push', { body: obj, headers: { 'X-Api-Key': this.env.KEFU_API_KEY } });
  }

  async createAgent(name, password = 'correct-horse-1') {
    await this.cli(['create-agent', name, '--password', password]);
    return this.agentToken(name, password);
  }

  async agentToken(name, password = 'correct-horse-1') {
    const r = await this.api('POST', '/api/agent/login', { body: { name, password } });
    if (r.status !== 200) throw new Error(`agent login failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.token;
  }

  // Every message of a conversation, oldest first, as the agent sees it over HTTP.
  async history(openid, token) {
    const all = [];
    let before = null;
    for (let page = 0; page < 50; page++) {
      const q = `?limit=200${before ? `&before=${before}` : ''}`;
      const r = await this.api('GET', `/api/conversations/${encodeURIComponent(openid)}/messages${q}`, { token });
      if (r.status !== 200) throw new Error(`history failed: ${r.status} ${JSON.stringify(r.body)}`);
      all.push(...r.body.messages);
      if (!r.body.next_before) break;
      before = r.body.next_before;
    }
    return all.reverse();
  }
}

module.exports = { KefuServer, freePort, ROOT, PYTHON };
