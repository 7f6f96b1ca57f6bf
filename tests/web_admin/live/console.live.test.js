// The console's client, headless, against a real `kefu serve` that this file starts (and
// restarts): Node's own WebSocket and fetch, the real clock. Users are plain v2 sockets.
// Run: node --experimental-websocket --test tests/web_admin/live/   (Node 20; Node 22+ needs no flag)
// The server comes from the mini-program tests' harness (tests/miniprogram/harness/server.js), with
// the same environment: KEFU_PYTHON, MYSQL_URL / REDIS_URL / KEFU_REDIS_PREFIX, KEFU_DATA_DIR.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';

import { recordedConsole } from '../recorder.js';

const require = createRequire(import.meta.url);
const { KefuServer } = require('../../miniprogram/harness/server.js');
const { waitFor, sleep } = require('../../miniprogram/harness/util.js');

assert.equal(typeof WebSocket, 'function', 'no global WebSocket: run node with --experimental-websocket (Node 20)');

const RUN = crypto.randomBytes(3).toString('hex');
const AGENT = `console-${RUN}`;
const PASSWORD = 'correct-horse-1';
const CLOCK = { now: () => Date.now(), setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h) };
const FAST = { connection: { backoffBaseMs: 100, backoffMaxMs: 1000 } };

let server;
const cleanups = [];

before(async () => {
  server = await KefuServer.create();
  await server.start();
  await server.createAgent(AGENT, PASSWORD);
});

after(async () => {
  if (server) await server.close();
});

afterEach(async () => {
  while (cleanups.length) {
    try { await cleanups.pop()(); } catch { /* best effort */ }
  }
});

/**
 * A WebSocket class for the console with a switch for the network between it and the server:
 * `net.cut()` drops the open sockets, and while `net.down` new ones fail as on a dead network.
 */
function network() {
  const net = { down: false, sockets: [] };
  net.WebSocket = function NetWebSocket(url) {
    const ws = new WebSocket(net.down ? 'ws://127.0.0.1:9/down' : url); // port 9: nothing listens
    net.sockets.push(ws);
    return ws;
  };
  net.cut = () => { for (const ws of net.sockets) if (ws.readyState <= 1) ws.close(4000, 'network cut'); };
  return net;
}

function agentConsole({ net = network(), storage } = {}) {
  const c = recordedConsole({
    WebSocket: net.WebSocket, fetch, clock: CLOCK, socketUrl: server.wsUrl, baseUrl: server.baseUrl,
    storage, options: FAST,
  });
  cleanups.push(() => c.client.stop());
  return { ...c, net };
}

/** A mini-program user on a plain v2 socket. */
async function user(code = `console-user-${RUN}-${crypto.randomBytes(3).toString('hex')}`) {
  const r = await server.api('POST', '/api/login', { body: { code } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const ws = new WebSocket(`${server.wsUrl}?token=${encodeURIComponent(r.body.token)}&v=2`);
  const u = { openid: r.body.openid, token: r.body.token, ws, frames: [], seq: 0 };
  ws.onmessage = (ev) => u.frames.push(JSON.parse(ev.data));
  await waitFor(() => u.frames.find((f) => f.cmd === 'hello'), { what: 'the user hello' });
  u.say = async (msg) => {
    const cmid = `u-${RUN}-${++u.seq}`;
    ws.send(JSON.stringify({ type: 2, msg, cmid }));
    return waitFor(() => u.frames.find((f) => f.cmd === 'ack' && f.cmid === cmid), { what: `the ack of ${msg}` });
  };
  u.waitFor = (pred, what) => waitFor(() => u.frames.find(pred), { what, timeout: 10_000 });
  cleanups.push(() => ws.close());
  return u;
}

async function online(c, what = 'the console online') {
  await waitFor(() => c.client.online, { what, timeout: 20_000 });
}

test('sign in, a user writes, the agent reads and replies: unread, alert, read receipt, ack', async () => {
  const c = agentConsole();
  await assert.rejects(c.client.signIn(AGENT, 'wrong-password'), (e) => e.status === 401);
  await c.client.signIn(AGENT, PASSWORD);
  await online(c);
  assert.equal(c.client.agent.name, AGENT);
  assert.ok(JSON.parse(c.storage.getItem('kefu.session')).token);

  const u = await user();
  await u.say('你好，我的订单还没到 📦');
  await waitFor(() => c.client.conversation(u.openid).unread === 1, { what: 'the unread badge' });
  assert.equal(c.events.alerts, 1);
  assert.equal(c.client.sortedConversations()[0].openid, u.openid);

  c.client.select(u.openid);
  await c.client.loadHistory(u.openid, { first: true });
  c.client.markOpenRead();
  const receipt = await u.waitFor((f) => f.cmd === 'read', 'the read receipt');
  assert.equal(receipt.by, 'agent');
  assert.equal(receipt.upto, c.client.conversation(u.openid).last.id);
  assert.equal(c.client.totalUnread(), 0);

  assert.equal(c.client.reply(u.openid, '您好！包裹明天送达 🚚').ok, true);
  assert.deepEqual(c.thread(), ['user:你好，我的订单还没到 📦', 'sending:您好！包裹明天送达 🚚']);
  const got = await u.waitFor((f) => f.from === 'agent', 'the reply at the user');
  assert.equal(got.msg, '您好！包裹明天送达 🚚');
  assert.equal(got.agent, AGENT);
  await waitFor(() => c.client.threadItems(u.openid).pend.length === 0, { what: 'the ack' });
  assert.deepEqual(c.thread(), ['user:你好，我的订单还没到 📦', 'agent:您好！包裹明天送达 🚚']);
  assert.equal(c.client.threadItems(u.openid).msgs.at(-1).id, got.id, 'the ack\'s id is the stored one');

  u.ws.send(JSON.stringify({ cmd: 'read' }));
  await waitFor(() => c.client.conversation(u.openid).userReadUpto >= got.id, { what: 'the user\'s read mark' });
});

test('the network drops: missed messages come by sync, a reply typed meanwhile goes out once', async () => {
  const c = agentConsole();
  await c.client.signIn(AGENT, PASSWORD);
  await online(c);
  const u = await user();
  await u.say('before the cut');
  await waitFor(() => c.client.conversation(u.openid).last?.msg === 'before the cut', { what: 'the first message' });
  c.client.select(u.openid);
  await c.client.loadHistory(u.openid, { first: true });

  c.net.down = true;
  c.net.cut();
  await waitFor(() => c.state() === 'offline', { what: 'the console offline' });
  await u.say('while you were away 1');
  await u.say('while you were away 2');
  assert.equal(c.client.reply(u.openid, '稍等，我帮您查一下').ok, true);
  await sleep(1500); // attempts fail on the dead network and back off
  assert.equal(c.client.online, false);
  assert.deepEqual(c.thread().at(-1), 'sending:稍等，我帮您查一下');

  c.net.down = false;
  await online(c, 'the console back');
  await waitFor(() => c.thread().length === 4 && c.thread().at(-1).startsWith('agent:'), {
    what: 'everything once', details: () => JSON.stringify([c.thread(), c.client.threadItems(u.openid).pend.map((p) => [p.errorCode, p.error])]) });
  assert.deepEqual(c.thread(), [
    'user:before the cut', 'user:while you were away 1', 'user:while you were away 2', 'agent:稍等，我帮您查一下']);
  const history = await server.history(u.openid, JSON.parse(c.storage.getItem('kefu.session')).token);
  assert.equal(history.filter((m) => m.msg === '稍等，我帮您查一下').length, 1, 'stored once');
  await u.waitFor((f) => f.msg === '稍等，我帮您查一下', 'the reply at the user');
  assert.equal(c.events.resets, 0, 'the same history: no reset');
});

test('the server restarts (close 1001): the console reconnects with backoff and catches up', async () => {
  const c = agentConsole();
  await c.client.signIn(AGENT, PASSWORD);
  await online(c);
  const u = await user();
  await u.say('before restart');
  await waitFor(() => c.client.conversation(u.openid).unread === 1, { what: 'the first message' });

  await server.stop(); // SIGTERM: the server drains and closes its sockets
  await waitFor(() => c.events.status.some((s) => s.state === 'offline'), { what: 'the console offline' });
  const closes = c.events.status.filter((s) => s.state === 'offline').map((s) => s.code);
  assert.ok([1001, 1006].includes(closes[0]), `closed with ${closes[0]}`);
  await server.start();
  await online(c, 'the console back after the restart');
  const again = await user(); // a second user writes right after the restart
  await again.say('right after the restart');
  await waitFor(() => c.client.conversation(again.openid).unread === 1, { what: 'the new conversation' });
  assert.equal(c.client.conversation(u.openid).unread, 1, 'counted once across the reconnect');
  assert.equal(c.client.totalUnread(), 2 + [...c.client.conversations.values()]
    .filter((x) => x.openid !== u.openid && x.openid !== again.openid).reduce((n, x) => n + x.unread, 0));
});

test('a reply the server refuses (too large) fails, and is not resent by itself', async () => {
  const c = agentConsole();
  await c.client.signIn(AGENT, PASSWORD);
  await online(c);
  const u = await user();
  await u.say('send me a big one');
  await waitFor(() => c.client.conversation(u.openid).last, { what: 'the message' });
  c.client.select(u.openid);
  await c.client.loadHistory(u.openid, { first: true });
  c.client.maxMessageBytes = 1 << 20; // pretend the composer did not know the limit
  assert.equal(c.client.reply(u.openid, 'x'.repeat(70_000)).ok, true);
  await waitFor(() => c.client.threadItems(u.openid).pend[0]?.status === 'failed', { what: 'the refusal' });
  const [failed] = c.client.threadItems(u.openid).pend;
  assert.equal(failed.errorCode, 'too_large');
  await sleep(1500);
  assert.equal(c.client.threadItems(u.openid).pend[0].status, 'failed');
  assert.equal(u.frames.filter((f) => f.from === 'agent').length, 0);
});

test('the token is revoked elsewhere: close 4401 ends the session and forgets it', async () => {
  const c = agentConsole();
  await c.client.signIn(AGENT, PASSWORD);
  await online(c);
  const token = JSON.parse(c.storage.getItem('kefu.session')).token;
  const r = await server.api('POST', '/api/logout', { token });
  assert.equal(r.status, 200);
  await waitFor(() => c.events.ended.length === 1, { what: 'the session to end' });
  assert.deepEqual(c.events.ended, ['revoked']);
  assert.equal(c.storage.getItem('kefu.session'), null);
  assert.equal(c.state(), 'idle');
  const resumed = agentConsole({ storage: c.storage });
  assert.equal(await resumed.client.resume(), 'none');
});
