// Stand-ins for the outside world the console's client is handed: a clock whose time moves only
// when a test says so, a WebSocket class whose server side the test plays, and FakeKefu, a small
// in-memory kefu (HTTP API + chat socket) that answers like the real one (docs/protocol.md) unless
// a test scripts something else. Deterministic: no real timers, sockets or network.

export { memoryStorage } from '../../web_admin/js/client/storage.js';

/** Let pending promise callbacks (and the ones they queue) run. */
export async function settle(rounds = 10) {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

export class FakeClock {
  constructor(start = Date.UTC(2025, 0, 6, 9, 0, 0)) {
    this.t = start;
    this.timers = new Map();
    this.seq = 0;
    // Plain functions, so the clock can be handed over as { now, setTimeout, clearTimeout }.
    this.now = () => this.t;
    this.setTimeout = (fn, ms) => {
      const id = ++this.seq;
      this.timers.set(id, { id, at: this.t + Math.max(0, Number(ms) || 0), fn });
      return id;
    };
    this.clearTimeout = (id) => { this.timers.delete(id); };
  }

  /** Delays of the timers now set, soonest first. */
  pendingDelays() {
    return [...this.timers.values()].map((t) => t.at - this.t).sort((a, b) => a - b);
  }

  /** Move time on by `ms`, firing every timer that falls due, in time order, settling promises between. */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await settle();
      let next = null;
      for (const t of this.timers.values()) if (t.at <= end && (!next || t.at < next.at)) next = t;
      if (!next) break;
      this.t = next.at;
      this.timers.delete(next.id);
      next.fn();
    }
    this.t = end;
    await settle();
  }
}

/** A fresh WebSocket class whose instances the test drives from the server's side. */
export function fakeWebSocketClass({ onConnect } = {}) {
  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    static sockets = [];

    static get last() { return FakeWebSocket.sockets[FakeWebSocket.sockets.length - 1]; }

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      FakeWebSocket.sockets.push(this);
      if (onConnect) queueMicrotask(() => onConnect(this));
    }

    get token() { return new URL(this.url).searchParams.get('token'); }

    send(data) {
      if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
      const frame = JSON.parse(data);
      this.sent.push(frame);
      this.onSend?.(frame);
    }

    close(code = 1000, reason = '') {
      if (this.readyState >= 2) return;
      this.readyState = 3;
      this.closedWith = { code, reason, by: 'client' };
    }

    /** Frames the client sent with this `cmd` (or, for "reply", its messages). */
    sentOf(cmd) {
      return cmd === 'reply' ? this.sent.filter((f) => f.type === 1) : this.sent.filter((f) => f.cmd === cmd);
    }

    // ---- the server's side
    accept() {
      this.readyState = 1;
      this.onopen?.({});
    }

    receive(frame) {
      if (this.readyState !== 1) return;
      this.onmessage?.({ data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
    }

    /** An error event with no close after it (as Node 20's WebSocket does on a refused connection). */
    errorOnly() {
      this.onerror?.({});
    }

    serverClose(code, reason = '') {
      if (this.readyState === 3 && this.closedWith) return;
      this.readyState = 3;
      this.closedWith = { code, reason, by: 'server' };
      this.onclose?.({ code, reason, wasClean: code !== 1006 });
    }
  }
  return FakeWebSocket;
}

function json(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
}

/**
 * An in-memory kefu: agents, tokens, messages with growing ids, read marks, a history epoch; the
 * HTTP API as `fetch` and the chat socket as `WebSocket`. Knobs for the tests:
 *   down            refuse sockets (closed 1006) and HTTP (fetch rejects)
 *   fanout          false: stored messages are not relayed live (a missed fan-out)
 *   autoAck         false: replies are stored but not acked (the test acks or refuses them)
 *   sendsEpoch      false: hello and sync replies carry no epoch (today's server)
 *   onFrame(ws, f)  return true when the test handled a client frame itself
 */
export class FakeKefu {
  constructor({ clock, epoch = 'e1' } = {}) {
    this.clock = clock;
    this.epoch = epoch;
    this.sendsEpoch = true;
    this.down = false;
    this.fanout = true;
    this.autoAck = true;
    this.onFrame = null;
    this.nextId = 1;
    this.messages = []; // oldest first
    this.marks = new Map(); // openid -> {agent, user}
    this.agents = new Map(); // name -> {id, name, password}
    this.tokens = new Map(); // token -> agent
    this.requests = []; // every HTTP request: {method, path, query, body, auth}
    this.dedupe = new Map(); // `${agent}:${cmid}` -> message
    this.sockets = [];
    this.WebSocket = fakeWebSocketClass({ onConnect: (ws) => this.connect(ws) });
    this.fetch = (url, init = {}) => this.http(url, init);
  }

  addAgent(name, password = 'pw-123456') {
    const a = { id: this.agents.size + 1, name, password };
    this.agents.set(name, a);
    return a;
  }

  issueToken(name) {
    const token = `tok-${name}-${this.tokens.size + 1}`;
    this.tokens.set(token, this.agents.get(name));
    return token;
  }

  mark(openid) {
    if (!this.marks.has(openid)) this.marks.set(openid, { agent: 0, user: 0 });
    return this.marks.get(openid);
  }

  store(m) {
    const msg = { id: this.nextId++, ts: this.clock.now(), ...m };
    this.messages.push(msg);
    return msg;
  }

  /** A user writes in: stored, and relayed to every agent socket (unless fan-out is off). */
  userSays(openid, msg, cmid) {
    const m = this.store({ openid, from: 'user', msg, ...(cmid ? { cmid } : {}) });
    if (this.fanout) for (const ws of this.agentSockets()) ws.receive(m);
    return m;
  }

  agentSockets() {
    return this.sockets.filter((ws) => ws.readyState === 1);
  }

  /** The history is gone and ids start again (a new database): a new epoch. */
  resetHistory(epoch) {
    this.epoch = epoch;
    this.messages = [];
    this.marks.clear();
    this.dedupe.clear();
    this.nextId = 1;
  }

  closeAll(code, reason = '') {
    for (const ws of this.agentSockets()) ws.serverClose(code, reason);
  }

  // ------------------------------------------------------------ the socket

  connect(ws) {
    if (this.down) { ws.serverClose(1006); return; }
    const agent = this.tokens.get(ws.token);
    ws.accept();
    if (!agent) { ws.serverClose(4401, 'invalid token'); return; }
    ws.agent = agent;
    this.sockets.push(ws);
    ws.onSend = (f) => queueMicrotask(() => this.frame(ws, f)); // a server answers later, never inside send()
    ws.receive({
      cmd: 'hello', role: 'agent', agent: { id: agent.id, name: agent.name }, heartbeat: 40,
      max_message_bytes: 65536, ...(this.sendsEpoch ? { epoch: this.epoch } : {}),
    });
  }

  frame(ws, f) {
    if (this.onFrame && this.onFrame(ws, f)) return;
    if (f.cmd === 'ping') ws.receive({ cmd: 'pong', ts: this.clock.now() });
    else if (f.cmd === 'sync') ws.receive(this.syncReply(f.after, f.limit));
    else if (f.cmd === 'read') this.read(ws, f.openid, f.upto);
    else if (f.type === 1) this.agentReply(ws, f);
  }

  syncReply(after, limit = 200) {
    const newer = this.messages.filter((m) => m.id > after);
    const page = newer.slice(0, limit);
    return { cmd: 'sync', after, messages: page, more: newer.length > page.length,
      ...(this.sendsEpoch ? { epoch: this.epoch } : {}) };
  }

  read(ws, openid, upto) {
    const top = this.messages.filter((m) => m.openid === openid).at(-1)?.id ?? 0;
    this.mark(openid).agent = upto ?? top;
  }

  /** Store an agent's reply (once per cmid) and ack it; returns the stored message. */
  agentReply(ws, f) {
    const key = `${ws.agent.name}:${f.cmid}`;
    let m = this.dedupe.get(key);
    const dup = !!m;
    if (!m) {
      m = this.store({ openid: f.openid, from: 'agent', agent: ws.agent.name, msg: f.msg, cmid: f.cmid });
      this.dedupe.set(key, m);
      if (this.fanout) for (const other of this.agentSockets()) if (other !== ws) other.receive(m);
    }
    if (this.autoAck) this.ack(ws, f.cmid, m, dup);
    return m;
  }

  ack(ws, cmid, m, dup = false) {
    ws.receive({ cmd: 'ack', cmid, id: m.id, ts: m.ts, delivered: false, ...(dup ? { dup: true } : {}) });
  }

  // ------------------------------------------------------------ HTTP

  async http(url, init) {
    await Promise.resolve();
    if (this.down) throw new TypeError('fetch failed');
    const u = new URL(url, 'http://kefu.test');
    const method = init.method || 'GET';
    const body = init.body ? JSON.parse(init.body) : undefined;
    const auth = (init.headers?.Authorization || '').replace(/^Bearer /, '') || null;
    const query = Object.fromEntries(u.searchParams);
    this.requests.push({ method, path: u.pathname, query, body, auth });
    if (method === 'POST' && u.pathname === '/api/agent/login') {
      const a = this.agents.get(body?.name);
      if (!a || a.password !== body?.password) return json(401, { error: 'unauthorized', message: 'wrong name or password' });
      return json(200, { token: this.issueToken(a.name), agent: { id: a.id, name: a.name }, expires_in: 43200 });
    }
    const agent = auth && this.tokens.get(auth);
    if (!agent) return json(401, { error: 'unauthorized', message: 'invalid token' });
    if (u.pathname === '/api/me') return json(200, { role: 'agent', agent: { id: agent.id, name: agent.name } });
    if (u.pathname === '/api/logout') {
      this.tokens.delete(auth);
      for (const ws of this.agentSockets()) if (ws.token === auth) ws.serverClose(4401, 'logged out');
      return json(200, { ok: true });
    }
    if (u.pathname === '/api/conversations') return json(200, this.conversationsPage(query));
    const m = u.pathname.match(/^\/api\/conversations\/([^/]+)\/(messages|read)$/);
    if (m && m[2] === 'messages') return json(200, this.historyPage(decodeURIComponent(m[1]), query));
    if (m && m[2] === 'read') {
      const openid = decodeURIComponent(m[1]);
      const upto = body?.upto ?? this.messages.filter((x) => x.openid === openid).at(-1)?.id ?? 0;
      this.mark(openid).agent = upto;
      return json(200, { openid, by: 'agent', upto });
    }
    return json(404, { error: 'not_found', message: 'unknown route' });
  }

  conversationsPage({ before, limit = '50' }) {
    const last = new Map();
    for (const m of this.messages) last.set(m.openid, m);
    let rows = [...last.values()].sort((a, b) => b.id - a.id);
    if (before) rows = rows.filter((m) => m.id < Number(before));
    const page = rows.slice(0, Number(limit));
    return {
      conversations: page.map((lm) => {
        const marks = this.mark(lm.openid);
        const unread = this.messages.filter((x) => x.openid === lm.openid && x.from === 'user' && x.id > marks.agent).length;
        return { openid: lm.openid, last_message: lm, unread, agent_read_upto: marks.agent, user_read_upto: marks.user };
      }),
      next_before: rows.length > page.length ? page.at(-1).id : null,
    };
  }

  historyPage(openid, { before, limit = '50' }) {
    let msgs = this.messages.filter((m) => m.openid === openid).reverse();
    if (before) msgs = msgs.filter((m) => m.id < Number(before));
    const page = msgs.slice(0, Number(limit));
    return { messages: page, next_before: msgs.length > page.length ? page.at(-1).id : null };
  }
}
