// The chat socket's state machine (docs/protocol.md §3–5): one v2 connection at a time that says
// hello, keeps itself alive with pings and comes back after every close the server means to be
// temporary. No DOM: the WebSocket class, the clock and the random source are handed in.
//
// States, reported through `onStatus(state, info)`:
//   "idle"        not started, or stopped by us (sign-out) or by a 4401
//   "connecting"  an attempt is under way
//   "online"      the server said hello; frames can be sent
//   "offline"     the connection dropped; info.retryAt says when the next attempt starts
//   "stopped"     the server refused us for good (4429); only retryNow() tries again

import { backoffDelay } from './backoff.js';

/** Every close code the server sends (server/kefu/errors.py `Close`). */
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001, // the server is shutting down
  INTERNAL: 1011, // a server bug
  RESYNC: 1012, // the server's fan-out may have had a gap
  TRY_AGAIN: 1013, // a backing store is down at connect time
  UNAUTHORIZED: 4401, // token missing, expired or revoked
  HEARTBEAT: 4408, // the server heard nothing from us for too long
  TOO_MANY_ERRORS: 4429, // we kept sending bad frames
  SLOW_CONSUMER: 4503, // we did not read fast enough
});

/**
 * What to do after a close with `code`:
 *   then: "reconnect" | "sign-in" | "stop"
 *   quick: the socket was at fault, not the server: the first reconnect goes at once
 *   gap: messages may have been missed anywhere, not only after the newest one seen
 * Anything not listed (1006 from a dead network, 1000, 1009 …) reconnects with backoff.
 */
export function closeAction(code) {
  switch (code) {
    case CLOSE.UNAUTHORIZED: return { then: 'sign-in', quick: false, gap: false };
    case CLOSE.TOO_MANY_ERRORS: return { then: 'stop', quick: false, gap: false };
    case CLOSE.HEARTBEAT:
    case CLOSE.SLOW_CONSUMER: return { then: 'reconnect', quick: true, gap: false };
    case CLOSE.RESYNC: return { then: 'reconnect', quick: false, gap: true };
    default: return { then: 'reconnect', quick: false, gap: false };
  }
}

export const DEFAULTS = Object.freeze({
  pingEveryMs: 25_000, // at most; a hello's `heartbeat` (the server's timeout) can make it shorter
  connectTimeoutMs: 10_000,
  backoffBaseMs: 500,
  backoffMaxMs: 15_000,
});

const OPEN = 1; // WebSocket.OPEN
const ERROR_GRACE_MS = 1000;

export class Connection {
  /**
   * @param {object} o
   * @param {string} o.url            ws(s)://host/ws, without a query
   * @param {Function} o.WebSocket    a WHATWG WebSocket class (the browser's, Node's, or a fake)
   * @param {object} o.clock          { now(), setTimeout(fn, ms), clearTimeout(handle) }
   * @param {Function} [o.random]     () => [0, 1), for the jitter
   * @param {object} [o.handlers]     onStatus(state, info), onHello(frame), onFrame(frame),
   *                                  onClose({code, reason, action}) before any reconnect is planned
   */
  constructor({ url, WebSocket, clock, random = Math.random, handlers = {}, options = {} }) {
    this.url = url;
    this.WebSocket = WebSocket;
    this.clock = clock;
    this.random = random;
    this.on = { onStatus() {}, onHello() {}, onFrame() {}, onClose() {}, ...handlers };
    this.opt = { ...DEFAULTS, ...options };
    this.ws = null;
    this.token = null;
    this.state = 'idle';
    this.attempt = 0;
    this.generation = 0; // +1 per hello: "sent on this socket" is tracked by it
    this.quickAt = -Infinity;
    this.lastFrameAt = 0;
    this.pingEveryMs = this.opt.pingEveryMs;
    this.timers = { retry: null, ping: null, connect: null, error: null };
  }

  get online() {
    return this.state === 'online';
  }

  start(token) {
    this.token = token;
    this.attempt = 0;
    this.connect();
  }

  /** Close for good (sign-out, or the session ended): no reconnect. */
  stop() {
    this.token = null;
    this.clearTimers();
    this.drop(CLOSE.NORMAL, 'bye');
    this.setState('idle', {});
  }

  /** Skip the rest of the backoff wait (the banner's button, the browser coming back online). */
  retryNow() {
    if (this.token === null || this.ws) return;
    this.attempt = 0;
    this.connect();
  }

  /** Send a frame if the socket is up; returns whether it was handed to the socket. */
  send(frame) {
    if (!this.ws || !this.online || this.ws.readyState !== OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  connect() {
    this.clearTimers();
    this.drop();
    this.setState('connecting', {});
    const ws = new this.WebSocket(`${this.url}?token=${encodeURIComponent(this.token)}&v=2`);
    this.ws = ws;
    this.timers.connect = this.clock.setTimeout(
      () => this.lost(ws, 0, 'connect timeout'), this.opt.connectTimeoutMs);
    ws.onmessage = (ev) => this.received(ws, ev.data);
    ws.onclose = (ev) => this.lost(ws, ev.code, ev.reason);
    // Browsers follow every error with a close event; some WebSocket implementations (Node 20's)
    // leave a failed attempt hanging without one. Give the close event a moment, then go on without it.
    ws.onerror = () => {
      this.clock.clearTimeout(this.timers.error);
      this.timers.error = this.clock.setTimeout(() => this.lost(ws, 1006, 'error'), ERROR_GRACE_MS);
    };
  }

  received(ws, data) {
    if (ws !== this.ws) return;
    this.lastFrameAt = this.clock.now();
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    if (!frame || typeof frame !== 'object' || Array.isArray(frame)) return;
    if (frame.cmd === 'hello') {
      this.clock.clearTimeout(this.timers.connect);
      this.attempt = 0;
      this.generation += 1;
      // Ping at least twice per server timeout, so one lost pong does not cost the socket.
      const serverMs = typeof frame.heartbeat === 'number' && frame.heartbeat > 0 ? frame.heartbeat * 1000 : Infinity;
      this.pingEveryMs = Math.max(1000, Math.min(this.opt.pingEveryMs, serverMs / 2));
      this.setState('online', {});
      this.schedulePing(ws);
      this.on.onHello(frame);
      return;
    }
    this.on.onFrame(frame);
  }

  /** No frame at all (not even a pong) for two ping periods and a bit: the link is dead. */
  get silenceLimitMs() {
    return 2 * this.pingEveryMs + 10_000;
  }

  schedulePing(ws) {
    this.clock.clearTimeout(this.timers.ping);
    this.timers.ping = this.clock.setTimeout(() => {
      if (ws !== this.ws) return;
      if (this.clock.now() - this.lastFrameAt > this.silenceLimitMs) {
        this.lost(ws, 0, 'silent');
        return;
      }
      this.send({ cmd: 'ping' });
      this.schedulePing(ws);
    }, this.pingEveryMs);
  }

  lost(ws, code, reason = '') {
    if (ws !== this.ws) return; // an old socket closing late
    this.clearTimers();
    this.drop();
    if (this.token === null) return; // stopped meanwhile
    const action = closeAction(code);
    this.on.onClose({ code, reason, action });
    if (this.token === null) return; // the handler stopped us
    if (action.then === 'sign-in') {
      this.token = null;
      this.setState('idle', { code, reason, unauthorized: true });
      return;
    }
    if (action.then === 'stop') {
      this.setState('stopped', { code, reason });
      return;
    }
    const now = this.clock.now();
    if (action.quick && now - this.quickAt > this.opt.backoffMaxMs) {
      // This socket had the problem, not the server: go again at once, but only once per backoff
      // ceiling, so a console that keeps being dropped still backs off.
      this.quickAt = now;
      this.connect();
      return;
    }
    const delay = backoffDelay(this.attempt++, {
      base: this.opt.backoffBaseMs, max: this.opt.backoffMaxMs, random: this.random });
    this.setState('offline', { code, reason, retryAt: now + delay });
    this.timers.retry = this.clock.setTimeout(() => this.connect(), delay);
  }

  drop(code = CLOSE.NORMAL, reason = '') {
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onmessage = ws.onclose = ws.onerror = null;
    if (ws.readyState === 0 || ws.readyState === OPEN) {
      try { ws.close(code, reason); } catch { /* already closing */ }
    }
  }

  setState(state, info) {
    this.state = state;
    this.on.onStatus(state, info);
  }

  clearTimers() {
    for (const [name, handle] of Object.entries(this.timers)) {
      this.clock.clearTimeout(handle);
      this.timers[name] = null;
    }
  }
}
