'use strict';
// A scripted kefu for the protocol a real server does not speak yet: error frames with `retry`,
// history epochs in `hello` and `sync`, `resync` frames, and every close code. It answers the
// mini-program's HTTP calls and sockets in-process (through harness/wx.js's `socket` and `http`
// hooks), keeps one user's conversation, and lets a test refuse frames, inject frames, close a
// socket with any code, and reset the history (a new epoch, ids from 1 again).
//
//   const fk = new FakeKefu({ epoch: 'e1' });
//   const { wx, ctl } = fk.wx('code');           // ctl as in harness/wx.js; ctl.sockets are ScriptedSocketTasks
//   fk.intercept = (task, frame) => true;         // take over a client frame (return true = handled)
//   fk.agentSays('hi', { live: false });          // stored but not fanned out: a gap (ts: settable)
//   fk.current().deliver({ cmd: 'resync' });      // any server frame
//   fk.current().serverClose(1012, 'resync');     // any close code
//   fk.resetHistory('e2');                        // the database was wiped: new epoch

const { createWx } = require('./wx');

const defer = (fn) => setImmediate(fn);

class ScriptedSocketTask {
  constructor(url, server) {
    this.url = url;
    this.server = server;
    this.sent = [];       // frames the client sent (parsed)
    this.received = [];   // frames delivered to the client
    this.closeCalls = []; // close() calls by the client
    this.closed = null;   // {code, reason} once onClose fired
    this.opened = false;
    this.handlers = { open: [], message: [], error: [], close: [] };
  }

  fire(kind, res) { for (const cb of this.handlers[kind].slice()) cb(res); }
  onOpen(cb) { this.handlers.open.push(cb); }
  onMessage(cb) { this.handlers.message.push(cb); }
  onError(cb) { this.handlers.error.push(cb); }
  onClose(cb) { this.handlers.close.push(cb); }

  send({ data, success, fail } = {}) {
    if (!this.opened || this.closed) { defer(() => fail && fail({ errMsg: 'sendSocketMessage:fail socket is not open' })); return; }
    const frame = JSON.parse(data);
    this.sent.push(frame);
    defer(() => {
      if (success) success({ errMsg: 'sendSocketMessage:ok' });
      if (!this.closed) this.server.onClientFrame(this, frame);
    });
  }

  close({ code = 1000, reason = '' } = {}) {
    this.closeCalls.push({ code, reason });
    defer(() => this.fireClose(code, reason));
  }

  // ---- the server's side ----
  open() {
    this.opened = true;
    this.fire('open', { header: {}, profile: {} });
  }
  deliver(frame) {
    if (!this.opened || this.closed) return;
    this.received.push(frame);
    this.fire('message', { data: JSON.stringify(frame) });
  }
  serverClose(code, reason = '') { defer(() => this.fireClose(code, reason)); }
  fireClose(code, reason) {
    if (this.closed) return;
    this.closed = { code, reason };
    this.fire('close', { code, reason });
  }
  sentFrames(pred) { return this.sent.filter(pred); }
}

class FakeKefu {
  constructor({ epoch = 'epoch-1', openid = 'o_fake_user', heartbeat = 40 } = {}) {
    this.epoch = epoch;        // null: a server that sends no epoch (as today's)
    this.openid = openid;
    this.heartbeat = heartbeat;
    this.messages = [];        // the conversation, oldest first
    this.nextId = 1;
    this.cmids = new Map();    // cmid → stored message (dedupe)
    this.tokens = new Set();
    this.seq = 0;
    this.sockets = [];
    this.intercept = null;     // (task, frame) => true when the test handled the frame
    this.onConnect = null;     // (task) => true when the test handled the connect (e.g. close 1013)
    this.baseUrl = 'http://fake.kefu.test';
  }

  wx(code = 'fake-code') {
    return createWx({ code, socket: (url) => this.connect(url), http: (req) => this.http(req) });
  }

  current() { return this.sockets[this.sockets.length - 1] || null; }
  open() { return this.sockets.filter((s) => s.opened && !s.closed); }

  store(m) {
    const msg = { id: this.nextId++, ts: Date.now(), openid: this.openid, ...m };
    this.messages.push(msg);
    return msg;
  }

  // An agent message; `live: false` stores it without fanning it out (the gap a resync repairs).
  agentSays(text, { live = true, ts = Date.now() } = {}) {
    const m = this.store({ from: 'agent', agent: 'alice', msg: text, ts });
    if (live) for (const s of this.open()) s.deliver(m);
    return m;
  }

  resetHistory(epoch) {
    this.epoch = epoch;
    this.messages = [];
    this.nextId = 1;
    this.cmids.clear();
  }

  async http({ method, url, header }) {
    const u = new URL(url);
    const json = (statusCode, data) => ({ statusCode, data, header: {} });
    if (method === 'POST' && u.pathname === '/api/login') {
      const token = `tok-${++this.seq}`;
      this.tokens.add(token);
      return json(200, { token, openid: this.openid, expires_in: 3600 });
    }
    const auth = (header.Authorization || '').replace(/^Bearer /, '');
    if (!this.tokens.has(auth)) return json(401, { error: 'unauthorized', message: 'invalid token', retry: false });
    if (method === 'GET' && u.pathname === '/api/me') {
      return json(200, { role: 'user', openid: this.openid, unread: 0, agent_read_upto: 0, user_read_upto: 0 });
    }
    if (method === 'GET' && u.pathname === `/api/conversations/${this.openid}/messages`) {
      const limit = Number(u.searchParams.get('limit') || 50);
      const before = Number(u.searchParams.get('before') || Infinity);
      const older = this.messages.filter((m) => m.id < before).reverse();
      const page = older.slice(0, limit);
      return json(200, { messages: page, next_before: older.length > limit ? page[page.length - 1].id : null });
    }
    return json(404, { error: 'not_found', message: 'no such route', retry: false });
  }

  connect(url) {
    const task = new ScriptedSocketTask(url, this);
    this.sockets.push(task);
    defer(() => {
      if (this.onConnect && this.onConnect(task)) return;
      task.open();
      const token = new URL(url).searchParams.get('token');
      if (!this.tokens.has(token)) { task.serverClose(4401, 'invalid token'); return; }
      const hello = { cmd: 'hello', role: 'user', openid: this.openid, heartbeat: this.heartbeat, max_message_bytes: 65536 };
      if (this.epoch !== null) hello.epoch = this.epoch;
      task.deliver(hello);
    });
    return task;
  }

  syncReply(after, limit = 200) {
    const newer = this.messages.filter((m) => m.id > after);
    const reply = { cmd: 'sync', after, messages: newer.slice(0, limit), more: newer.length > limit };
    if (this.epoch !== null) reply.epoch = this.epoch;
    return reply;
  }

  onClientFrame(task, f) {
    if (this.intercept && this.intercept(task, f)) return;
    if (f.cmd === 'ping') { task.deliver({ cmd: 'pong', ts: Date.now() }); return; }
    if (f.cmd === 'sync') { task.deliver(this.syncReply(f.after, f.limit)); return; }
    if (f.cmd === 'read') return;
    if (f.type === 2) {
      const dup = this.cmids.get(f.cmid);
      const m = dup || this.store({ from: 'user', msg: f.msg, cmid: f.cmid });
      this.cmids.set(f.cmid, m);
      const ack = { cmd: 'ack', cmid: f.cmid, id: m.id, ts: m.ts, delivered: true };
      if (dup) ack.dup = true;
      task.deliver(ack);
      return;
    }
    task.deliver({ cmd: 'error', code: 'unknown_cmd', message: 'unknown cmd', retry: false });
  }
}

module.exports = { FakeKefu, ScriptedSocketTask };
