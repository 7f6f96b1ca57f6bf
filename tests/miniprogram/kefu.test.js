'use strict';
// The real miniprogram/utils/kefu.js and chat page logic, under Node with a `wx` shim backed by a
// real WebSocket and HTTP client, against a real kefu server that this file starts (and restarts).
// Run: node --test tests/miniprogram/   (after npm ci --prefix tests/miniprogram)

const { test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');

const { KefuServer } = require('./harness/server');
const { createWx } = require('./harness/wx');
const { AgentSocket } = require('./harness/agent');
const { sleep, waitFor } = require('./harness/util');

const MP = path.resolve(__dirname, '..', '..', 'miniprogram');
const { createKefu } = require(path.join(MP, 'utils', 'kefu.js'));
const { createChatPage } = require(path.join(MP, 'pages', 'chat', 'logic.js'));
const mpConfig = require(path.join(MP, 'config.js'));

const RUN = crypto.randomBytes(3).toString('hex');
const AGENT = `mp-agent-${RUN}`;
const TEST_TIMEOUT = 60000;

let server;
let agentToken;
const cleanups = [];

before(async () => {
  server = await KefuServer.create();
  await server.start();
  agentToken = await server.createAgent(AGENT);
});

after(async () => {
  if (server) await server.close();
});

afterEach(async () => {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try { await fn(); } catch { /* best effort */ }
  }
});

// A mini-program instance: the real kefu client over the shim. Short reconnect delays for tests.
function makeClient({ code, config = {}, storage } = {}) {
  const { wx, ctl } = createWx({ code: code || `node-test-user-${RUN}-${crypto.randomBytes(3).toString('hex')}` });
  if (storage) for (const [k, v] of storage) ctl.storage.set(k, structuredClone(v));
  const app = { globalData: {} };
  const kefu = createKefu({
    wx,
    getApp: () => app,
    config: {
      ...mpConfig,
      baseUrl: server.baseUrl,
      socketUrl: '',
      reconnectBaseDelay: 100,
      reconnectMaxDelay: 800,
      pongTimeout: 3000,
      ...config,
    },
  });
  const events = { message: [], close: [], synced: [], read: [], pong: [], error: [], login: [], push: [] };
  for (const name of Object.keys(events)) kefu.on(name, (p) => events[name].push(p));
  cleanups.push(() => kefu.stop());
  return { kefu, ctl, app, events };
}

function chatPage(kefu) {
  const view = {};
  const page = createChatPage({ kefu, setData: (d) => Object.assign(view, d) });
  page.onLoad();
  cleanups.push(() => page.onUnload());
  return { page, view };
}

async function agentSocket() {
  const a = await AgentSocket.connect(server.wsUrl, agentToken);
  cleanups.push(() => a.close());
  return a;
}

function details(ctl) {
  return () => `sockets: ${ctl.sockets.map((s) => JSON.stringify(s.closed)).join(', ')}\n` +
    `server log:\n${server.logTail(20)}`;
}

async function connected(kefu, ctl, { sockets, timeout = 10000 } = {}) {
  await waitFor(() => kefu.status === 'open' && (!sockets || ctl.sockets.length >= sockets) &&
    ctl.current().received.some((f) => f.cmd === 'hello'), { timeout, what: 'the mini-program socket to open', details: details(ctl) });
}

async function synced(kefu, events, count, timeout = 10000) {
  await waitFor(() => events.synced.length >= count && kefu.status === 'open',
    { timeout, what: `sync #${count} to finish` });
}

// A launched mini-program connected to the server, past its first sync, with an agent online.
// `page`: 'shown' (chat tab open), 'loaded' (chat page loaded, another tab shown) or none.
async function launched({ page, ...clientOptions } = {}) {
  const agent = await agentSocket();
  const client = makeClient(clientOptions);
  const chat = page ? chatPage(client.kefu) : {};
  await client.kefu.start();
  if (page === 'shown') chat.page.onShow();
  await connected(client.kefu, client.ctl);
  await synced(client.kefu, client.events, 1);
  return { agent, ...client, ...chat, openid: client.kefu.openid };
}

const count = (list, pred) => list.filter(pred).length;

test('logs in with wx.login → POST /api/login, stores the token and opens one v2 socket', { timeout: TEST_TIMEOUT }, async () => {
  const code = `node-test-user-${RUN}-login`;
  const { kefu, ctl, app, events } = makeClient({ code });
  const started = kefu.start();
  assert.equal(kefu.start(), started, 'start() is idempotent');
  await started;
  await connected(kefu, ctl);

  assert.equal(ctl.calls.login, 1);
  const login = ctl.calls.requests.filter((r) => r.url.endsWith('/api/login'));
  assert.equal(login.length, 1);
  assert.equal(login[0].method, 'POST');
  assert.deepEqual(login[0].data, { code });
  const session = ctl.storage.get('kefu_session');
  assert.ok(session && session.token, 'token stored with wx.setStorageSync');
  assert.equal(session.openid, kefu.openid);
  assert.ok(session.expiresAt > Date.now());
  assert.equal(events.login.length, 1);

  const me = await server.api('GET', '/api/me', { token: session.token });
  assert.equal(me.status, 200);
  assert.equal(me.body.openid, kefu.openid);
  assert.equal(ctl.current().received.find((f) => f.cmd === 'hello').openid, kefu.openid);

  assert.equal(ctl.sockets.length, 1);
  assert.equal(ctl.current().url, `${server.wsUrl}?token=${encodeURIComponent(session.token)}&v=2`);
  assert.equal(app.globalData.socketTask, ctl.current(), 'SocketTask kept in getApp().globalData');
  assert.ok(ctl.current().sent.some((f) => f.cmd === 'sync'), 'asks for missed messages on connect');
  // The HTTP calls carried the token as a Bearer header.
  const authed = ctl.calls.requests.filter((r) => r.url.includes('/api/me') || r.url.includes('/messages'));
  assert.ok(authed.length >= 2 && authed.every((r) => r.header.Authorization === `Bearer ${session.token}`));

  await sleep(300);
  assert.equal(ctl.sockets.length, 1, 'still one socket');

  // A relaunch with the stored token does not log in again.
  kefu.stop();
  const again = makeClient({ code, storage: ctl.storage });
  await again.kefu.start();
  await connected(again.kefu, again.ctl);
  assert.equal(again.ctl.calls.login, 0);
  assert.equal(again.kefu.openid, kefu.openid);
});

test('sends and receives through the chat page logic', { timeout: TEST_TIMEOUT }, async () => {
  const { agent, kefu, ctl, events, page, view, openid } = await launched({ page: 'shown' });

  page.onInput('   ');
  assert.equal(page.send(), null, 'blank input sends nothing');
  page.onInput('  你好，我想咨询订单 👋  ');
  assert.equal(view.input, '  你好，我想咨询订单 👋  ');
  const cmid = page.send();
  assert.ok(cmid);
  assert.equal(view.input, '', 'input cleared');
  assert.equal(view.items.at(-1).state, 'sending');

  const got = await agent.waitFor((f) => f.cmid === cmid, { what: 'the user message at the agent' });
  assert.equal(got.msg, '你好，我想咨询订单 👋');
  assert.equal(got.openid, openid);
  assert.equal(got.from, 'user');
  await waitFor(() => kefu.getState().outbox.length === 0 && view.items.some((i) => i.id === got.id),
    { what: 'the ack' });
  const mine = view.items.find((i) => i.id === got.id);
  assert.equal(mine.mine, true);
  assert.equal(mine.state, 'sent');
  assert.equal(mine.text, '你好，我想咨询订单 👋');

  await agent.reply(openid, '您好，请问有什么可以帮您？');
  await waitFor(() => view.items.some((i) => !i.mine && i.text === '您好，请问有什么可以帮您？'), { what: 'the reply' });
  const reply = view.items.find((i) => !i.mine);
  assert.equal(reply.sender, AGENT);
  await sleep(200);
  assert.equal(count(events.message, (m) => m.msg === '您好，请问有什么可以帮您？'), 1);
  assert.equal(view.statusText, '');
});

test('heartbeat: pings on the configured interval, gets pongs, and replaces a dead socket', { timeout: TEST_TIMEOUT }, async () => {
  const agent = await agentSocket();
  const { kefu, ctl, events } = makeClient({ config: { heartbeatInterval: 200, pongTimeout: 1000 } });
  await kefu.start();
  await connected(kefu, ctl);
  const first = ctl.current();
  await waitFor(() => count(first.sent, (f) => f.cmd === 'ping') >= 3 && count(first.received, (f) => f.cmd === 'pong') >= 3,
    { timeout: 5000, what: 'three pings and pongs' });
  assert.ok(events.pong.length >= 3);
  assert.equal(ctl.sockets.length, 1, 'a live socket is kept');

  // The network path dies silently: no close, no frames. The client must notice and reconnect.
  const t0 = Date.now();
  first.blackhole = true;
  await connected(kefu, ctl, { sockets: 2, timeout: 10000 });
  const took = Date.now() - t0;
  assert.ok(took >= 900, `not before the pong timeout (${took} ms)`);
  assert.ok(first.closeCalls.length >= 1, 'the dead socket was closed by the client');
  await waitFor(() => count(ctl.current().received, (f) => f.cmd === 'pong') >= 1, { what: 'a pong on the new socket' });

  const cmid = kefu.send('still here after the dead socket');
  await agent.waitFor((f) => f.cmid === cmid, { what: 'a message over the new socket' });
});

test('server restart: offline queue flushed once, missed agent messages synced once', { timeout: TEST_TIMEOUT }, async () => {
  let { agent, kefu, ctl, events } = await launched();
  const openid = kefu.openid;

  const first = kefu.send('before the restart');
  await agent.waitFor((f) => f.cmid === first);
  await waitFor(() => kefu.getState().outbox.length === 0, { what: 'the first ack' });

  await server.stop(); // SIGTERM: sockets close with 1001
  await waitFor(() => kefu.status !== 'open', { what: 'the client to notice the shutdown' });
  assert.equal(ctl.sockets[0].closed.code, 1001, 'going away');
  // Keep the user offline until the agent has written, so those messages can only come by sync.
  ctl.setOffline(true);
  const q1 = kefu.send('typed while offline 1');
  const q2 = kefu.send('typed while offline 2');
  assert.deepEqual(kefu.getState().outbox.map((e) => e.cmid), [q1, q2]);
  assert.equal(ctl.storage.get('kefu_outbox').length, 2, 'the queue is persisted');

  await server.start();
  agent = await agentSocket();
  const away = ['while you were away 1', 'while you were away 2', 'while you were away 3'];
  for (const text of away) {
    const ack = await agent.reply(openid, text);
    assert.equal(ack.delivered, false, 'the user is offline');
  }
  const socketsBefore = ctl.sockets.length;
  ctl.setOffline(false);
  await connected(kefu, ctl, { sockets: socketsBefore + 1, timeout: 10000 });

  await waitFor(() => away.every((t) => kefu.getState().messages.some((m) => m.msg === t)),
    { what: 'the missed agent messages', details: details(ctl) });
  await waitFor(() => agent.userMessages(openid).filter((m) => m.cmid === q1 || m.cmid === q2).length >= 2 &&
    kefu.getState().outbox.length === 0, { what: 'the queued messages to be flushed and acked' });

  // Once more with a dropped connection: the overlapping sync must not duplicate anything.
  const syncs = events.synced.length;
  ctl.current().kill();
  await synced(kefu, events, syncs + 1);
  await sleep(500);

  const state = kefu.getState();
  const ids = state.messages.map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, 'no message twice in the client');
  for (const text of away) {
    assert.equal(count(state.messages, (m) => m.msg === text), 1, text);
    assert.equal(count(events.message, (m) => m.msg === text), 1, `one 'message' event for ${text}`);
  }
  for (const cmid of [q1, q2]) {
    assert.equal(count(agent.userMessages(openid), (m) => m.cmid === cmid), 1, `agent saw ${cmid} once`);
  }
  const history = await server.history(openid, agentToken);
  for (const text of ['before the restart', 'typed while offline 1', 'typed while offline 2', ...away]) {
    assert.equal(count(history, (m) => m.msg === text), 1, `stored once: ${text}`);
  }
  // Queued messages are stored in the order they were typed.
  const order = history.filter((m) => m.cmid === q1 || m.cmid === q2).map((m) => m.cmid);
  assert.deepEqual(order, [q1, q2]);
});

test('sync pages while the server says "more"', { timeout: TEST_TIMEOUT }, async () => {
  const { agent, kefu, ctl, events } = await launched({ config: { syncLimit: 2 } });
  const openid = kefu.openid;

  ctl.setOffline(true); // the connection drops; reconnects fail until back online
  await waitFor(() => kefu.status === 'offline', { what: 'offline' });
  const texts = ['page 1', 'page 2', 'page 3', 'page 4', 'page 5'];
  for (const t of texts) await agent.reply(openid, t);
  const before = ctl.sockets.length;
  ctl.setOffline(false);
  await connected(kefu, ctl, { sockets: before + 1 });
  await waitFor(() => texts.every((t) => kefu.getState().messages.some((m) => m.msg === t)), { what: 'all five messages' });
  const syncs = ctl.current().sent.filter((f) => f.cmd === 'sync');
  assert.ok(syncs.length >= 3, `paged: ${JSON.stringify(syncs)}`);
  assert.ok(syncs.every((f) => f.limit === 2));
  for (let i = 1; i < syncs.length; i++) assert.ok(syncs[i].after > syncs[i - 1].after, 'each page starts after the last');
  for (const t of texts) assert.equal(count(events.message, (m) => m.msg === t), 1, t);
});

test('app lifecycle: no retries in the background, at once on show; 4429 stops retrying until shown', { timeout: TEST_TIMEOUT }, async () => {
  const { kefu, ctl } = makeClient({ config: { reconnectBaseDelay: 200, reconnectMaxDelay: 400 } });
  await kefu.start();
  await connected(kefu, ctl);

  kefu.onAppHide();
  ctl.current().kill(); // WeChat kills sockets of a backgrounded app
  await waitFor(() => kefu.status === 'offline', { what: 'offline' });
  await sleep(1000);
  assert.equal(ctl.sockets.length, 1, 'no reconnect attempts while in the background');
  kefu.onAppShow();
  await connected(kefu, ctl, { sockets: 2, timeout: 3000 });

  // A client the server closes with 4429 ("too many errors") must not hammer it.
  for (let i = 0; i < 15; i++) ctl.current().send({ data: 'not json' });
  await waitFor(() => ctl.sockets[1].closed, { what: 'the server to close the socket' });
  assert.equal(ctl.sockets[1].closed.code, 4429);
  await waitFor(() => kefu.status === 'blocked', { what: 'blocked' });
  await sleep(1000);
  assert.equal(ctl.sockets.length, 2, 'no reconnect after 4429');
  kefu.onAppShow();
  await connected(kefu, ctl, { sockets: 3, timeout: 3000 });
});

test('an unacked message is resent with the same cmid after reconnect and stored once', { timeout: TEST_TIMEOUT }, async () => {
  const { agent, kefu, ctl, events } = await launched();
  const openid = kefu.openid;

  const sock = ctl.current();
  sock.dropIncoming = (f) => f && f.cmd === 'ack'; // the server stores it, but the ack is lost
  const cmid = kefu.send('the ack of this one is lost');
  await agent.waitFor((f) => f.cmid === cmid);
  await sleep(300);
  assert.equal(kefu.getState().outbox.length, 1, 'kept queued until acked');
  assert.equal(count(sock.lost, (f) => f.cmd === 'ack'), 1);

  sock.kill();
  await connected(kefu, ctl, { sockets: 2 });
  const resent = ctl.current().sent.filter((f) => f.type === 2 && f.cmid === cmid);
  assert.equal(resent.length, 1, 'resent once on the new socket, same cmid');
  assert.equal(resent[0].msg, 'the ack of this one is lost');
  await waitFor(() => kefu.getState().outbox.length === 0, { what: 'the outbox to drain' });
  const dupAck = await waitFor(() => ctl.current().received.find((f) => f.cmd === 'ack' && f.cmid === cmid),
    { what: 'the duplicate ack' });
  assert.equal(dupAck.dup, true, 'the server recognised the resend');
  await sleep(500);

  assert.equal(count(agent.userMessages(openid), (m) => m.cmid === cmid), 1, 'the agent saw it once');
  assert.equal(count(kefu.getState().messages, (m) => m.cmid === cmid), 1, 'shown once');
  const history = await server.history(openid, agentToken);
  assert.equal(count(history, (m) => m.cmid === cmid), 1, 'stored once');
});

test('messages typed offline survive an app restart and are sent once', { timeout: TEST_TIMEOUT }, async () => {
  const agent = await agentSocket();
  const code = `node-test-user-${RUN}-persist`;
  const A = makeClient({ code });
  A.ctl.setOffline(true);
  const c1 = A.kefu.send('queued before login 1');
  await A.kefu.start(); // login fails: no network
  const c2 = A.kefu.send('queued before login 2');
  await sleep(300);
  assert.equal(A.kefu.status, 'offline');
  assert.equal(A.ctl.storage.get('kefu_outbox').length, 2);
  A.kefu.stop();

  const B = makeClient({ code, storage: A.ctl.storage });
  await B.kefu.start();
  await connected(B.kefu, B.ctl);
  const openid = B.kefu.openid;
  await waitFor(() => B.kefu.getState().outbox.length === 0, { what: 'the restored queue to be acked' });
  await sleep(500);
  assert.equal(count(agent.userMessages(openid), (m) => m.cmid === c1), 1);
  assert.equal(count(agent.userMessages(openid), (m) => m.cmid === c2), 1);
  assert.deepEqual(B.ctl.storage.get('kefu_outbox'), []);
  const history = await server.history(openid, agentToken);
  assert.deepEqual(history.map((m) => m.msg), ['queued before login 1', 'queued before login 2']);
});

test('tab-bar badge: String counts while the chat page is hidden, removed when it is shown', { timeout: TEST_TIMEOUT }, async () => {
  // The chat page is loaded, not shown: the user is on the home tab.
  const code = `node-test-user-${RUN}-badge`;
  const { agent, kefu, ctl, page } = await launched({ page: 'loaded', code });
  const openid = kefu.openid;
  const tab = mpConfig.chatTabIndex;
  const sets = () => ctl.calls.setTabBarBadge.map((c) => c.text);

  await agent.reply(openid, 'badge 1');
  await agent.reply(openid, 'badge 2');
  await waitFor(() => ctl.badge === '2', { what: 'badge "2"' });
  assert.deepEqual(sets(), ['1', '2']);
  assert.ok(ctl.calls.setTabBarBadge.every((c) => c.index === tab && typeof c.text === 'string'));
  assert.equal(kefu.getState().unread, 2);
  assert.equal((await server.api('GET', '/api/me', { token: kefu.token })).body.unread, 2);

  const removes = ctl.calls.removeTabBarBadge.length;
  page.onShow();
  assert.equal(ctl.calls.removeTabBarBadge.length, removes + 1);
  assert.equal(ctl.calls.removeTabBarBadge.at(-1).index, tab);
  assert.equal(ctl.badge, null);
  assert.ok(ctl.current().sent.some((f) => f.cmd === 'read'), 'read mark sent');
  await waitFor(async () => (await server.api('GET', '/api/me', { token: kefu.token })).body.unread === 0,
    { what: 'the server unread count to reach 0' });

  // While the chat page is on screen, replies are read at once and never badge.
  await agent.reply(openid, 'seen right away');
  await waitFor(async () => kefu.getState().messages.some((m) => m.msg === 'seen right away') &&
    (await server.api('GET', '/api/me', { token: kefu.token })).body.unread === 0, { what: 'the reply to be read' });
  await sleep(200);
  assert.deepEqual(sets(), ['1', '2']);

  page.onHide();
  await agent.reply(openid, 'badge again');
  await waitFor(() => ctl.badge === '1', { what: 'badge "1" after hiding the chat page' });
  kefu.stop();

  // Two more while the app is closed: the next launch seeds the badge from GET /api/me.
  await agent.reply(openid, 'while closed 1');
  await agent.reply(openid, 'while closed 2');
  const B = makeClient({ code });
  await B.kefu.start();
  assert.equal(B.ctl.calls.setTabBarBadge[0].text, '3', 'seeded from /api/me unread');
  await connected(B.kefu, B.ctl);
  await synced(B.kefu, B.events, 1);
  await sleep(300);
  assert.deepEqual(B.ctl.calls.setTabBarBadge.map((c) => c.text), ['3'], 'history and sync are not counted twice');
  assert.equal(B.ctl.badge, '3');
  assert.deepEqual(B.ctl.badgeErrors, []);
  assert.deepEqual(ctl.badgeErrors, []);
});

test('token revoked: socket closed with 4401 → wx.login again → reconnect', { timeout: TEST_TIMEOUT }, async () => {
  const agent = await agentSocket();
  const code = `node-test-user-${RUN}-expiry`;
  const { kefu, ctl } = makeClient({ code });
  await kefu.start();
  await connected(kefu, ctl);
  const oldToken = kefu.token;

  const r = await server.api('POST', '/api/logout', { token: oldToken });
  assert.equal(r.status, 200);
  await connected(kefu, ctl, { sockets: 2 });
  assert.equal(ctl.sockets[0].closed.code, 4401);
  assert.equal(ctl.calls.login, 2, 'logged in again');
  assert.notEqual(kefu.token, oldToken);
  assert.equal(ctl.storage.get('kefu_session').token, kefu.token);
  assert.ok(ctl.current().url.includes(`token=${encodeURIComponent(kefu.token)}`));
  const cmid = kefu.send('after logging in again');
  await agent.waitFor((f) => f.cmid === cmid);

  // HTTP 401 too: a launch with the revoked token stored logs in again and carries on.
  const B = makeClient({ code, storage: new Map([['kefu_session', { token: oldToken, openid: kefu.openid, expiresAt: Date.now() + 3600e3 }]]) });
  await B.kefu.start();
  await connected(B.kefu, B.ctl);
  const calls = B.ctl.calls.requests.map((q) => `${q.method} ${new URL(q.url).pathname} ${q.status}`);
  assert.deepEqual(calls.slice(0, 3), ['GET /api/me 401', 'POST /api/login 200', 'GET /api/me 200']);
  assert.equal(B.ctl.calls.login, 1);
  assert.ok(B.ctl.sockets.every((s) => !s.url.includes(encodeURIComponent(oldToken))), 'the revoked token is not used for the socket');
});

test('read receipts: user messages up to the agent read mark show "read"', { timeout: TEST_TIMEOUT }, async () => {
  const { agent, kefu, ctl, events, page, view, openid } = await launched({ page: 'shown' });

  page.onInput('first question');
  const c1 = page.send();
  page.onInput('second question');
  const c2 = page.send();
  const a1 = await waitFor(() => ctl.current().received.find((f) => f.cmd === 'ack' && f.cmid === c1), { what: 'ack 1' });
  await waitFor(() => ctl.current().received.find((f) => f.cmd === 'ack' && f.cmid === c2), { what: 'ack 2' });
  await waitFor(() => view.items.filter((i) => i.mine && i.state === 'sent').length === 2, { what: 'two sent messages' });

  agent.send({ cmd: 'read', openid, upto: a1.id });
  await waitFor(() => events.read.length === 1, { what: 'the read frame' });
  assert.deepEqual(events.read[0], { by: 'agent', upto: a1.id });
  const byCmid = (c) => view.items.find((i) => i.cmid === c);
  assert.equal(byCmid(c1).state, 'read');
  assert.equal(byCmid(c1).stateText, '已读');
  assert.equal(byCmid(c2).state, 'sent');

  // Over HTTP, without upto: everything up to the newest message.
  const r = await server.api('POST', `/api/conversations/${openid}/read`, { token: agentToken, body: {} });
  assert.equal(r.status, 200);
  await waitFor(() => byCmid(c2).state === 'read', { what: 'the second message to show read' });
  assert.ok(view.items.filter((i) => i.mine).every((i) => i.state === 'read'));
});

test('a backend push to the user (POST /api/push by openid) reaches kefu.onPush as it was sent, not as a chat message', { timeout: TEST_TIMEOUT }, async () => {
  const { agent, kefu, ctl, events, view, openid } = await launched({ page: 'shown' });
  const got = [];
  kefu.onPush((p) => got.push(p));

  const shipped = { openid, msg: '您的订单已发货', order: { id: 42, items: ['茶'] } };
  const r = await server.push(shipped);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.delivered, true);
  await waitFor(() => got.length === 1, { what: 'the push at the mini-program', details: details(ctl) });
  assert.deepEqual(got[0], shipped);
  assert.deepEqual(kefu.getState().pushes.map((p) => p.data), [shipped]);

  // A push that happens to carry an `id` is still a push; a chat message is still a message.
  const coupon = { openid, id: 7, kind: 'coupon' };
  assert.equal((await server.push(coupon)).body.delivered, true);
  await agent.reply(openid, 'a real reply');
  await waitFor(() => view.items.some((i) => i.text === 'a real reply') && got.length === 2, { what: 'the reply and the coupon' });
  assert.deepEqual(got[1], coupon);
  assert.deepEqual(events.push, [shipped, coupon]);
  assert.ok(!view.items.some((i) => i.text === shipped.msg), 'a push is not shown as a chat message');
  assert.deepEqual(kefu.getState().messages.map((m) => m.msg), ['a real reply']);
  const history = await server.history(openid, agentToken);
  assert.deepEqual(history.map((m) => m.msg), ['a real reply'], 'pushes are not stored');
});

test('app.js and the pages wire the default instance into App() and Page()', { timeout: TEST_TIMEOUT }, async () => {
  // DevTools would load these files with the real config.js; point its example host at the server.
  const origin = new URL(mpConfig.baseUrl).host;
  const { wx, ctl } = createWx({
    code: `node-test-user-${RUN}-app`,
    rewrite: (u) => u.replace(`https://${origin}`, server.baseUrl).replace(`wss://${origin}`, `ws://127.0.0.1:${server.port}`),
  });
  const defs = {};
  let appInstance = null;
  Object.assign(globalThis, {
    wx,
    App: (def) => { defs.app = def; },
    Page: (def) => { defs.page = def; },
    getApp: () => appInstance,
  });
  const files = ['app.js', 'utils/kefu.js', 'config.js', 'pages/chat/chat.js', 'pages/chat/logic.js',
    'pages/index/index.js', 'pages/index/logic.js'].map((f) => path.join(MP, f));
  cleanups.push(() => {
    for (const f of files) delete require.cache[f];
    for (const k of ['wx', 'App', 'Page', 'getApp']) delete globalThis[k];
  });
  for (const f of files) delete require.cache[f];

  require(path.join(MP, 'app.js'));
  appInstance = defs.app;
  appInstance.onLaunch.call(appInstance);
  appInstance.onShow.call(appInstance);
  const kefu = appInstance.globalData.kefu;
  cleanups.push(() => kefu.stop());
  assert.equal(kefu, require(path.join(MP, 'utils', 'kefu.js')).getKefu(), 'the default instance');
  await connected(kefu, ctl);
  assert.equal(appInstance.globalData.socketTask, ctl.current());

  const instantiate = (file) => {
    require(path.join(MP, file));
    const page = Object.create(defs.page);
    page.data = structuredClone(defs.page.data);
    page.setData = function (d) { Object.assign(this.data, d); };
    return page;
  };
  const home = instantiate('pages/index/index.js');
  home.onLoad();
  home.onShow();
  assert.equal(home.data.openid, kefu.openid);
  assert.equal(home.data.statusText, '已连接');
  home.openChat();
  assert.deepEqual(ctl.calls.switchTab, ['/pages/chat/chat']);

  // A backend push: a toast (wherever the user is) and the home page's list.
  assert.equal((await server.push({ openid: kefu.openid, msg: '优惠券已到账' })).body.delivered, true);
  await waitFor(() => ctl.calls.showToast.length === 1, { what: 'the push toast' });
  assert.deepEqual(ctl.calls.showToast[0], { title: '优惠券已到账', icon: 'none', duration: 3000 });
  assert.deepEqual(home.data.pushes.map((p) => p.text), ['优惠券已到账']);

  const chat = instantiate('pages/chat/chat.js');
  chat.onLoad();
  chat.onShow();
  chat.onInput({ detail: { value: 'hello from chat.js' } });
  chat.onSend();
  const agent = await agentSocket();
  await waitFor(() => chat.data.items.some((i) => i.text === 'hello from chat.js' && i.state === 'sent'), { what: 'the sent message on the page' });
  await agent.reply(kefu.openid, 'hello back to chat.js');
  await waitFor(() => chat.data.items.some((i) => i.text === 'hello back to chat.js'), { what: 'the reply on the page' });
  chat.onHide();
  chat.onUnload();
  home.onUnload();
  appInstance.onHide.call(appInstance);
});

test("the chat page shows the agent's typing and name; the user's typing reaches the agent, throttled", { timeout: TEST_TIMEOUT }, async () => {
  const { agent, kefu, ctl, page, view, openid } = await launched({ page: 'shown', config: { typingShownFor: 1500 } });
  agent.send({ cmd: 'desk' }); // a team console: it gets typing frames
  await agent.waitFor((f) => f.cmd === 'desk', { what: 'the desk roster' });

  agent.send({ cmd: 'typing', openid });
  await waitFor(() => view.typingText === `${AGENT}正在输入…`, { what: 'the typing line' });
  assert.equal(kefu.getState().agentTyping, AGENT);
  await waitFor(() => view.typingText === '', { timeout: 4000, what: 'the typing line to fade' });

  await sleep(700); // the server relays one typing frame per conversation every 2 s
  agent.send({ cmd: 'typing', openid });
  await waitFor(() => view.typingText !== '', { what: 'typing again' });
  await agent.reply(openid, '您好，请问有什么可以帮您？');
  await waitFor(() => view.items.some((i) => i.text === '您好，请问有什么可以帮您？'), { what: 'the reply' });
  assert.equal(view.typingText, '', 'a message from the agent ends their typing at once');
  assert.equal(view.servingText, `客服 ${AGENT} 为您服务`);
  assert.equal(view.items.find((i) => i.text === '您好，请问有什么可以帮您？').sender, AGENT);

  // Typing in the composer tells the agent, at most once per typingInterval.
  page.onInput('你');
  page.onInput('你好');
  page.onInput('你好呀');
  const typed = ctl.current().sentFrames((f) => f.cmd === 'typing');
  assert.equal(typed.length, 1);
  const got = await agent.waitFor((f) => f.cmd === 'typing' && f.from === 'user', { what: "the user's typing" });
  assert.equal(got.openid, openid);
});
