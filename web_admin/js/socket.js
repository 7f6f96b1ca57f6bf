// The chat socket (docs/protocol.md §3–5): a v2 connection that keeps itself alive and reconnects.
//
// Status changes are reported through `onStatus(state, info)`:
//   "connecting"  a connection attempt is under way
//   "online"      the server said hello; frames can be sent
//   "offline"     the connection dropped; info.retryAt says when the next attempt starts
//   "stopped"     the server refused us for good (4429); only retryNow() tries again
// Close code 4401 (token missing, expired or revoked) calls `onUnauthorized(reason)` instead.

const PING_EVERY_MS = 25_000;
const SILENCE_LIMIT_MS = 60_000; // no frame at all (not even a pong) for this long: the link is dead
const CONNECT_TIMEOUT_MS = 10_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15_000;

export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_TOO_MANY_ERRORS = 4429;

export function socketUrl(loc = window.location) {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}

/** Exponential backoff with jitter: half fixed, half random, so many consoles don't reconnect in step. */
export function backoffDelay(attempt) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + Math.random() * ceiling / 2);
}

export class KefuSocket {
  constructor(url, { onHello, onFrame, onStatus, onUnauthorized } = {}) {
    this.url = url;
    this.onHello = onHello || (() => {});
    this.onFrame = onFrame || (() => {});
    this.onStatus = onStatus || (() => {});
    this.onUnauthorized = onUnauthorized || (() => {});
    this.ws = null;
    this.token = null;
    this.online = false;
    this.stopped = true;
    this.attempt = 0;
    this.timers = { retry: null, ping: null, connect: null };
    this.lastFrameAt = 0;
  }

  start(token) {
    this.token = token;
    this.stopped = false;
    this.attempt = 0;
    this.connect();
  }

  /** Close for good (sign-out): no reconnect. */
  stop() {
    this.stopped = true;
    this.token = null;
    this.clearTimers();
    this.drop(1000, 'bye');
  }

  /** Skip the rest of the backoff wait (the banner's button, or the browser coming back online). */
  retryNow() {
    if (this.token === null || this.ws) return;
    this.stopped = false;
    this.attempt = 0;
    this.connect();
  }

  /** Send a frame if the socket is up; returns whether it was handed to the socket. */
  send(frame) {
    if (!this.ws || !this.online || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  connect() {
    this.clearTimers();
    this.drop();
    this.online = false;
    this.onStatus('connecting', {});
    const ws = new WebSocket(`${this.url}?token=${encodeURIComponent(this.token)}&v=2`);
    this.ws = ws;
    this.timers.connect = setTimeout(() => this.lost(ws, 0), CONNECT_TIMEOUT_MS);

    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now();
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (!frame || typeof frame !== 'object') return;
      if (frame.cmd === 'hello') {
        clearTimeout(this.timers.connect);
        this.online = true;
        this.attempt = 0;
        this.startPing(ws);
        this.onStatus('online', {});
        this.onHello(frame);
        return;
      }
      this.onFrame(frame);
    };
    ws.onclose = (ev) => this.lost(ws, ev.code, ev.reason);
    ws.onerror = () => { /* a close event always follows */ };
  }

  startPing(ws) {
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => {
      if (ws !== this.ws) return;
      if (Date.now() - this.lastFrameAt > SILENCE_LIMIT_MS) {
        this.lost(ws, 0);
        return;
      }
      this.send({ cmd: 'ping' });
    }, PING_EVERY_MS);
  }

  lost(ws, code, reason = '') {
    if (ws !== this.ws) return; // an old socket closing late
    this.clearTimers();
    this.drop();
    this.online = false;
    if (this.stopped) return;
    if (code === CLOSE_UNAUTHORIZED) {
      this.stopped = true;
      this.onUnauthorized(reason);
      return;
    }
    if (code === CLOSE_TOO_MANY_ERRORS) {
      this.stopped = true;
      this.onStatus('stopped', { code, reason });
      return;
    }
    const delay = backoffDelay(this.attempt++);
    this.onStatus('offline', { code, reason, retryAt: Date.now() + delay });
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  drop(code = 1000, reason = '') {
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onmessage = ws.onclose = ws.onerror = null;
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
      try { ws.close(code, reason); } catch { /* already closing */ }
    }
  }

  clearTimers() {
    clearTimeout(this.timers.retry);
    clearTimeout(this.timers.connect);
    clearInterval(this.timers.ping);
  }
}
