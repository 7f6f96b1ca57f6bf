// kefu push SDK: one page socket that binds with a token from your backend, comes back after every
// drop (backoff with jitter, then binds again) and hands each push to your callbacks.
// Served by kefu at /sdk/push.js; docs/push.md has the whole story. No DOM: the WebSocket class,
// the clock and the random source can be handed in (Node runs it headless in tests/web_sdk/).
//
//   import { KefuPush } from 'https://kefu.example.com/sdk/push.js';
//   const push = new KefuPush({ getToken: () => fetch('/push-token').then((r) => r.text()) });
//   push.on('push', (data, meta) => console.log(meta.to, meta.group, data));
//   push.on('group:news', (data) => showNews(data));
//   push.on('state', (state, info) => console.log(state, info));
//   push.start();
//
// States (`push.state`, and the 'state' event with an info object):
//   idle        not started, or stop()ped
//   connecting  opening the socket
//   binding     open; the bind frame is sent, waiting for {"cmd": "bound"}
//   bound       pushes arrive; push.uid and push.groups say for whom
//   offline     dropped; info.retryAt (ms) is when the next attempt starts
//   stopped     kefu refused for good (a token it will never take, 4429); retryNow() tries again

/** Close codes kefu sends (docs/protocol.md §5). */
export const CLOSE = Object.freeze({
  NORMAL: 1000, GOING_AWAY: 1001, RESYNC: 1012, TRY_AGAIN: 1013,
  HEARTBEAT: 4408, BIND_TIMEOUT: 4410, TOO_MANY_ERRORS: 4429, SLOW_CONSUMER: 4503,
});

/** Bind refusals that a new attempt with the same token cannot fix (docs/push.md). */
export const FATAL_BIND_ERRORS = Object.freeze(['bad_token', 'wrong_audience', 'token_binds_off']);

export const DEFAULTS = Object.freeze({
  pingEveryMs: 20_000, // kefu closes a socket silent for 40 s (4408)
  pongTimeoutMs: 10_000, // no answer to a ping for this long: the link is dead
  connectTimeoutMs: 10_000,
  backoffBaseMs: 500,
  backoffMaxMs: 15_000,
});

/** Wait before attempt `attempt` (0 = first retry): base·2^attempt capped at max, drawn from its upper half. */
export function backoffDelay(attempt, { base = 500, max = 15_000, random = Math.random } = {}) {
  const ceiling = Math.min(max, base * 2 ** Math.max(0, attempt));
  return Math.round(ceiling / 2 + random() * ceiling / 2);
}

/** ws(s)://<host of this script>/ws/push, when the page does not say. */
function defaultUrl() {
  const here = new URL(import.meta.url);
  if (here.protocol !== 'http:' && here.protocol !== 'https:') return null;
  return `${here.protocol === 'https:' ? 'wss:' : 'ws:'}//${here.host}/ws/push`;
}

/** A callback's exception, shown as uncaught (the browser's console) without stopping the SDK. */
function report(e) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
  else console.error(e);
}

const realClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h),
};

export class KefuPush {
  /**
   * @param {object} o
   * @param {string} [o.url]         ws(s)://kefu-host/ws/push (default: the host this file came from)
   * @param {string} [o.token]       a bind token (fine for one bind: a reconnect after it expired fails)
   * @param {Function} [o.getToken]  () => token or Promise<token>: asked before every bind (preferred)
   * @param {Function} [o.WebSocket] a WHATWG WebSocket class (default: the global one)
   * @param {object} [o.clock]       { now(), setTimeout(fn, ms), clearTimeout(h) }
   * @param {Function} [o.random]    () => [0, 1), for the jitter
   */
  constructor({ url, token, getToken, WebSocket: WS, clock, random, ...options } = {}) {
    this.url = url || defaultUrl();
    if (!this.url) throw new Error('KefuPush: pass url (ws(s)://kefu-host/ws/push)');
    if (!getToken && !token) throw new Error('KefuPush: pass getToken() or token');
    this.getToken = getToken || (() => token);
    this.refreshable = Boolean(getToken); // a fixed token that expired stays expired
    this.WebSocket = WS || globalThis.WebSocket;
    this.clock = clock || realClock;
    this.random = random || Math.random;
    this.opt = { ...DEFAULTS, ...options };
    this.handlers = new Map();
    this.state = 'idle';
    this.uid = null;
    this.groups = [];
    this.lastError = null; // the last error frame kefu sent
    this.attempt = 0;
    this.ws = null;
    this.running = false;
    this.quickAt = -Infinity;
    this.timers = { retry: null, connect: null, ping: null, pong: null };
  }

  /**
   * Listen: 'push' (data, meta) every push; 'uid' / 'all' (data, meta) pushes to this uid / to
   * everyone; 'group:<name>' (data, meta) pushes to that group; 'state' (state, info); 'bound'
   * ({uid, groups}); 'error' (frame). Returns a function that stops listening.
   */
  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(fn);
    return () => this.handlers.get(event)?.delete(fn);
  }

  emit(event, ...args) {
    for (const fn of [...(this.handlers.get(event) || [])]) {
      try { fn(...args); } catch (e) { report(e); } // one bad callback stops no other
    }
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    this.connect();
  }

  stop() {
    this.running = false;
    this.clearTimers();
    this.drop(CLOSE.NORMAL, 'bye');
    this.uid = null;
    this.groups = [];
    this.setState('idle', {});
  }

  /** Try again now: after 'stopped', or to skip the rest of a backoff wait. */
  retryNow() {
    this.running = true;
    if (this.state === 'bound' || this.state === 'binding' || this.state === 'connecting') return;
    this.attempt = 0;
    this.connect();
  }

  // ---- the socket ----------------------------------------------------------------------------

  connect() {
    this.clearTimers();
    this.drop();
    this.setState('connecting', { attempt: this.attempt });
    const ws = new this.WebSocket(`${this.url}?v=2`);
    this.ws = ws;
    this.timers.connect = this.clock.setTimeout(() => this.lost(ws, 0, 'connect timeout'), this.opt.connectTimeoutMs);
    ws.onopen = () => { if (ws === this.ws) this.bind(ws); };
    ws.onmessage = (ev) => this.received(ws, ev.data);
    ws.onclose = (ev) => this.lost(ws, ev.code, ev.reason);
    ws.onerror = () => {}; // a close event follows
  }

  async bind(ws) {
    this.setState('binding', {});
    let token;
    try {
      token = await this.getToken();
    } catch (e) {
      this.lost(ws, 0, `getToken failed: ${e && e.message ? e.message : e}`);
      return;
    }
    if (ws !== this.ws) return;
    if (typeof token !== 'string' || !token) {
      this.lost(ws, 0, 'getToken gave no token');
      return;
    }
    this.send(ws, { cmd: 'bind', token });
  }

  send(ws, frame) {
    if (ws !== this.ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  received(ws, data) {
    if (ws !== this.ws) return;
    this.clock.clearTimeout(this.timers.pong);
    this.timers.pong = null;
    let f;
    try { f = JSON.parse(data); } catch { return; }
    if (!f || typeof f !== 'object' || Array.isArray(f)) return;
    switch (f.cmd) {
      case 'push': {
        const meta = f.to === 'group' ? { to: f.to, group: f.group } : { to: f.to };
        this.emit('push', f.data, meta);
        this.emit(f.to === 'group' ? `group:${f.group}` : f.to, f.data, meta);
        return;
      }
      case 'bound':
        this.clock.clearTimeout(this.timers.connect);
        this.attempt = 0;
        this.uid = f.uid;
        this.groups = Array.isArray(f.groups) ? f.groups : [];
        this.lastError = null;
        this.setState('bound', { uid: this.uid, groups: this.groups });
        this.emit('bound', { uid: this.uid, groups: this.groups });
        this.schedulePing(ws);
        return;
      case 'joined':
      case 'left':
        this.groups = Array.isArray(f.groups) ? f.groups : this.groups;
        this.emit('state', this.state, { uid: this.uid, groups: this.groups, [f.cmd]: f.group });
        return;
      case 'error':
        this.refused(ws, f);
        return;
      default: // pong and frames of later versions
    }
  }

  /** An error frame. While binding it answers the bind: retry, fetch a new token, or stop. */
  refused(ws, f) {
    this.lastError = f;
    this.emit('error', f);
    if (this.state !== 'binding') return;
    if (FATAL_BIND_ERRORS.includes(f.code) || (f.code === 'token_expired' && !this.refreshable)) {
      this.fail(ws, f);
      return;
    }
    // token_expired (getToken is asked again), rate_limited, unavailable …: a new attempt, later.
    this.lost(ws, 0, f.code);
  }

  fail(ws, f) {
    this.running = false;
    this.clearTimers();
    this.drop(CLOSE.NORMAL, 'refused');
    this.setState('stopped', { code: f.code, reason: f.message });
  }

  schedulePing(ws) {
    this.clock.clearTimeout(this.timers.ping);
    this.timers.ping = this.clock.setTimeout(() => {
      if (ws !== this.ws) return;
      this.send(ws, { cmd: 'ping' });
      this.clock.clearTimeout(this.timers.pong);
      this.timers.pong = this.clock.setTimeout(() => this.lost(ws, 0, 'no pong'), this.opt.pongTimeoutMs);
      this.schedulePing(ws);
    }, this.opt.pingEveryMs);
  }

  lost(ws, code, reason = '') {
    if (ws !== this.ws) return; // an old socket closing late
    this.clearTimers();
    this.drop();
    if (!this.running) return;
    if (code === CLOSE.TOO_MANY_ERRORS) {
      this.running = false;
      this.setState('stopped', { code, reason });
      return;
    }
    const now = this.clock.now();
    if ((code === CLOSE.HEARTBEAT || code === CLOSE.SLOW_CONSUMER) && now - this.quickAt > this.opt.backoffMaxMs) {
      this.quickAt = now; // this socket had the problem, not the server: once at once
      this.connect();
      return;
    }
    const delay = backoffDelay(this.attempt++, { base: this.opt.backoffBaseMs, max: this.opt.backoffMaxMs, random: this.random });
    this.setState('offline', { code, reason, retryAt: now + delay });
    this.timers.retry = this.clock.setTimeout(() => this.connect(), delay);
  }

  drop(code, reason) {
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try { if (ws.readyState <= 1) ws.close(code || CLOSE.NORMAL, reason || ''); } catch { /* already gone */ }
  }

  clearTimers() {
    for (const k of Object.keys(this.timers)) {
      this.clock.clearTimeout(this.timers[k]);
      this.timers[k] = null;
    }
  }

  setState(state, info) {
    this.state = state;
    this.emit('state', state, info);
  }
}

if (typeof globalThis !== 'undefined' && !globalThis.KefuPush) globalThis.KefuPush = KefuPush;
