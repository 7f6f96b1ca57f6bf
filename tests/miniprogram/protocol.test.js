'use strict';
// The real miniprogram/utils/kefu.js and page logic against a scripted server (harness/fakekefu.js)
// for the protocol a real kefu does not speak yet: error frames with `retry`, history epochs,
// `resync` frames and every close code; and backend pushes handed to the app.
// Run: node --test tests/miniprogram/

const { test, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const { FakeKefu } = require('./harness/fakekefu');
const { sleep, waitFor } = require('./harness/util');

const MP = path.resolve(__dirname, '..', '..', 'miniprogram');
const { createKefu, backoffDelay } = require(path.join(MP, 'utils', 'kefu.js'));
const { createChatPage } = require(path.join(MP, 'pages', 'chat', 'logic.js'));
const { homeData, pushToast } = require(path.join(MP, 'pages', 'index', 'logic.js'));
const mpConfig = require(path.join(MP, 'config.js'));

const TEST_TIMEOUT = 20000;
const BASE = 40;      // reconnectBaseDelay and resendDelay in these tests
const MAX = 400;      // reconnectMaxDelay and resendMaxDelay
const cleanups = [];

afterEach(async () => {
  while (cleanups.length) {
    try { await cleanups.pop()(); } catch { /* best effort */ }
  }
});

// A mini-program on the scripted server. `random` fixes the jitter so delays can be checked.
function client(fk, { config = {}, storage, random = () => 0.5 } = {}) {
  const { wx, ctl } = fk.wx();
  if (storage) for (const [k, v] of storage) ctl.storage.set(k, structuredClone(v));
  const app = { globalData: {} };
  const kefu = createKefu({
    wx, random, getApp: () => app,
    config: { ...mpConfig, baseUrl: fk.baseUrl, socketUrl: '', reconnectBaseDelay: BASE, reconnectMaxDelay: MAX,
      resendDelay: BASE, resendMaxDelay: MAX, ...config },
  });
  const events = {};
  for (const name of ['message', 'close', 'synced', 'error', 'reconnecting', 'reset', 'push', 'status']) {
    events[name] = [];
    kefu.on(name, (p) => events[name].push(p));
  }
  cleanups.push(() => kefu.stop());
  return { kefu, ctl, events };
}

function chatPage(kefu) {
  const view = {};
  const page = createChatPage({ kefu, setData: (d) => Object.assign(view, d) });
  page.onLoad();
  page.onShow();
  cleanups.push(() => page.onUnload());
  return { page, view };
}

// Open, past the hello, with the sync the hello triggers answered.
async function ready(fk, kefu, { sockets = 1 } = {}) {
  await waitFor(() => kefu.status === 'open' && fk.sockets.length >= sockets && fk.current().received.some((f) => f.cmd === 'hello') &&
    fk.current().received.some((f) => f.cmd === 'sync'), { timeout: 5000, what: `socket #${sockets} open and synced` });
}

const syncs = (task) => task.sent.filter((f) => f.cmd === 'sync');
const texts = (kefu) => kefu.getState().messages.map((m) => m.msg);

// ---- error frames: the `retry` flag -------------------------------------------------------------

test('"retry": true → the same cmid again after a growing backoff; later messages wait their turn', { timeout: TEST_TIMEOUT }, async () => {
  const fk = new FakeKefu();
  const tries = [];
  fk.intercept = (task, f) => {
    if (f.type !== 2 || f.msg !== 'A') return false;
    tries.push({ cmid: f.cmid, at: Date.now() });
    if (tries.length > 2) return false; // the third try is stored
    task.deliver({ cmd: 'error', code: 'unavailable', message: 'store down', retry: true, cmid: f.cmid });
    return true;
  };
  const { kefu, events } = client(fk, { random: () => 1 }); // no jitter: 40 ms, then 80 ms
  const { view } = chatPage(kefu);
  await kefu.start();
  await ready(fk, kefu);

  const a = kefu.send('A');
  await waitFor(() => events.error.length === 1, { what: 'the first refusal' });
  assert.deepEqual(events.error[0], { code: 'unavailable', message: 'store down', cmid: a, retry: true });
  assert.equal(kefu.getState().outbox[0].state, 'pending', 'a retryable refusal is not a failure');
  assert.equal(view.items.at(-1).state, 'retrying');
  assert.equal(view.items.at(-1).stateText, '发送中（稍后重试）');
  const b = kefu.send('B'); // typed while A waits: must not overtake it

  await waitFor(() => kefu.getState().outbox.length === 0, { what: 'both messages acked' });
  assert.deepEqual(tries.map((t) => t.cmid), [a, a, a], 'resent with the same cmid');
  assert.ok(tries[1].at - tries[0].at >= BASE - 2, `first backoff ${tries[1].at - tries[0].at} ms`);
  assert.ok(tries[2].at - tries[1].at >= 2 * BASE - 2, `second backoff ${tries[2].at - tries[1].at} ms`);
  assert.deepEqual(fk.messages.map((m) => m.cmid), [a, b], 'stored once each, in typed order');
  assert.deepEqual(texts(kefu), ['A', 'B']);
  assert.ok(view.items.every((i) => i.state === 'sent'));
});

test('"retry": false → the message is failed and shown so; a tap resends it; the flag decides, not the code', { timeout: TEST_TIMEOUT }, async () => {
  const fk = new FakeKefu();
  const refuse = new Map([
    ['refused', { code: 'rate_limited', retry: false }],        // a code once "known retryable": the flag wins
    ['old server', { code: 'unavailable' }],                     // no flag at all: not retryable
    ['new code', { code: 'brand_new_code', retry: true, once: true }], // unknown code, retryable: resent
  ]);
  const seen = [];
  fk.intercept = (task, f) => {
    if (f.type !== 2) return false;
    seen.push(f.msg);
    const r = refuse.get(f.msg);
    if (!r) return false;
    if (r.once) refuse.delete(f.msg);
    task.deliver({ cmd: 'error', code: r.code, message: 'no', cmid: f.cmid, ...(r.retry === undefined ? {} : { retry: r.retry }) });
    return true;
  };
  const { kefu, ctl } = client(fk);
  const { page, view } = chatPage(kefu);
  await kefu.start();
  await ready(fk, kefu);

  const c1 = kefu.send('refused');
  const c2 = kefu.send('old server');
  const c3 = kefu.send('new code');
  await waitFor(() => fk.messages.some((m) => m.cmid === c3), { what: 'the retryable one stored' });
  await sleep(4 * BASE);
  const byCmid = (c) => view.items.find((i) => i.cmid === c);
  assert.equal(byCmid(c1).state, 'failed');
  assert.equal(byCmid(c1).stateText, '发送失败，点击重试');
  assert.equal(byCmid(c1).error, 'rate_limited');
  assert.equal(byCmid(c2).state, 'failed');
  assert.deepEqual(seen.filter((m) => m !== 'new code'), ['refused', 'old server'], 'failed ones are not resent by themselves');
  assert.equal(seen.filter((m) => m === 'new code').length, 2);
  assert.deepEqual(ctl.storage.get('kefu_outbox').map((e) => e.state), ['failed', 'failed'], 'failed state persisted');

  refuse.clear();
  assert.equal(page.retry(c1), true, 'the user taps the failed message');
  await waitFor(() => fk.messages.some((m) => m.cmid === c1) && !kefu.getState().outbox.some((e) => e.cmid === c1),
    { what: 'the retried message stored' });
  assert.equal(view.items.find((i) => i.text === 'refused').state, 'sent');
  assert.equal(byCmid(c2).state, 'failed', 'the other failed message stays failed');
});

test('a sync refused with "retry": true is asked again with backoff', { timeout: TEST_TIMEOUT }, async () => {
  const fk = new FakeKefu();
  fk.agentSays('waiting for you');
  const at = [];
  fk.intercept = (task, f) => {
    if (f.cmd !== 'sync') return false;
    at.push(Date.now());
    if (at.length > 2) return false;
    task.deliver({ cmd: 'error', code: 'history_busy', message: 'history is unavailable', retry: true });
    return true;
  };
  const { kefu, events } = client(fk, { random: () => 1 });
  await kefu.start();
  await waitFor(() => events.synced.length === 1, { what: 'the sync to succeed' });
  const sent = syncs(fk.current());
  assert.equal(sent.length, 3);
  assert.ok(sent.every((f) => f.after === sent[0].after), 'the same request again');
  assert.ok(at[1] - at[0] >= BASE - 2 && at[2] - at[1] >= 2 * BASE - 2, `backoff: ${at[1] - at[0]}, ${at[2] - at[1]} ms`);
  assert.ok(texts(kefu).includes('waiting for you'));
});

// ---- history epochs ----------------------------------------------------------------------------

test('epoch: stored with the last id; a new epoch means history was reset → last id 0, sync from the start', { timeout: TEST_TIMEOUT }, async () => {
  const fk = new FakeKefu({ epoch: 'e1' });
  fk.nextId = 1000;
  const old = Date.now() - 60000; // older than the sync overlap: a reconnect would sync after them
  for (const t of ['old 1', 'old 2', 'old 3']) fk.agentSays(t, { ts: old });
  fk.agentSays('old 4'); // recent: a plain reconnect syncs after 'old 3'
  const { kefu, ctl, events } = client(fk);
  await kefu.start();
  await ready(fk, kefu);
  assert.deepEqual(ctl.storage.get('kefu_cursor'), { epoch: 'e1', lastId: 1003 });
  assert.deepEqual(texts(kefu), ['old 1', 'old 2', 'old 3', 'old 4']);

  // The server goes away; its database is wiped; ids start again from 1.
  fk.current().serverClose(1001, 'going away');
  await waitFor(() => kefu.status !== 'open', { what: 'the close' });
  fk.resetHistory('e2');
  fk.agentSays('new 1', { live: false });
  fk.agentSays('new 2', { live: false });
  await ready(fk, kefu, { sockets: 2 });

  assert.equal(syncs(fk.current())[0].after, 0, 'synced from the start');
  await waitFor(() => texts(kefu).join() === 'new 1,new 2', { what: 'only the new history', details: () => texts(kefu).join() });
  assert.deepEqual(events.reset, [{ epoch: 'e2' }]);
  assert.deepEqual(ctl.storage.get('kefu_cursor'), { epoch: 'e2', lastId: 2 });
  assert.equal(kefu.getState().epoch, 'e2');
  fk.agentSays('new 3');
  await waitFor(() => texts(kefu).includes('new 3'), { what: 'live messages of the new epoch' });

  // A relaunch with the cursor of an older epoch stored: from the start, nothing shown twice.
  kefu.stop();
  const B = client(fk, { storage: new Map([['kefu_cursor', { epoch: 'e0', lastId: 5000 }]]) });
  await B.kefu.start();
  await ready(fk, B.kefu);
  assert.equal(syncs(fk.current())[0].after, 0);
  await waitFor(() => B.events.synced.length === 1, { what: 'the relaunch sync' });
  assert.deepEqual(texts(B.kefu), ['new 1', 'new 2', 'new 3']);
  assert.deepEqual(B.ctl.storage.get('kefu_cursor'), { epoch: 'e2', lastId: 3 });
  assert.equal(B.events.message.length, 0, 'the history page was already shown: no message events again');

  // The same epoch stored: no reset.
  B.kefu.stop();
  const C = client(fk, { storage: B.ctl.storage });
  await C.kefu.start();
  await ready(fk, C.kefu);
  assert.equal(C.events.reset.length, 0);
});

test('epoch: a sync reply of another epoch starts over from 0; a server without epochs resets nothing', { timeout: TEST_TIMEOUT }, async () => {
  const fk = new FakeKefu({ epoch: 'e1' });
  fk.agentSays('one');
  const { kefu, ctl, events } = client(fk);
  await kefu.start();
  await ready(fk, kefu);

  fk.resetHistory('e2');
  fk.agentSays('after the reset', { live: false });
  fk.current().deliver({ cmd: 'resync' }); // the client asks; the reply carries e2
  await waitFor(() => texts(kefu).join() === 'after the reset', { what: 'the reset seen in a sync reply' });
  const afters = syncs(fk.current()).map((f) => f.after);
  assert.equal(afters.at(-1), 0);
  assert.equal(events.reset.length, 1);
  assert.deepEqual(ctl.storage.get('kefu_cursor'), { epoch: 'e2', lastId: 1 });

  const legacy = new FakeKefu({ epoch: null });
  legacy.agentSays('hello');
  const L = client(legacy);
  await L.kefu.start();
  await ready(legacy, L.kefu);
  assert.deepEqual(L.ctl.storage.get('kefu_cursor'), { epoch: '', lastId: 1 });
  assert.equal(L.events.reset.length, 0);
});

// ---- resync ------------------------------------------------------------------------------------

test('resync: sync after min(last id, after), paging while "more"; without after, the whole window', { timeout: TEST_TIMEOUT }, async () => {
  const fk = new FakeKefu();
  const { kefu, events } = client(fk, { config: { syncLimit: 2 } });
  await kefu.start();
  await ready(fk, kefu);
  const seen = fk.agentSays('seen live');
  await waitFor(() => texts(kefu).includes('seen live'), { what: 'the live message' });
  const gap = ['gap 1', 'gap 2', 'gap 3', 'gap 4', 'gap 5'].map((t) => fk.agentSays(t, { live: false }));
  const task = fk.current();
  const before = syncs(task).length;

  task.deliver({ cmd: 'resync', after: gap[2].id }); // the server thinks the gap began later than we know
  await waitFor(() => gap.every((m) => texts(kefu).includes(m.msg)), { what: 'the gap filled' });
  await waitFor(() => events.synced.length >= 2, { what: 'the resync done' });
  assert.deepEqual(syncs(task).slice(before).map((f) => f.after), [seen.id, gap[1].id, gap[3].id],
    'from min(last id, after), then page by page');
  for (const m of gap) assert.equal(events.message.filter((e) => e.id === m.id).length, 1, m.msg);

  const n = syncs(task).length;
  task.deliver({ cmd: 'resync', after: 1 });
  await waitFor(() => syncs(task).length > n, { what: 'the second resync' });
  assert.equal(syncs(task)[n].after, 1, 'the server\'s after when it is older');

  await sleep(50);
  const m = syncs(task).length;
  task.deliver({ cmd: 'resync' });
  await waitFor(() => syncs(task).length > m, { what: 'a resync without after' });
  assert.equal(syncs(task)[m].after, seen.id - 1, 'from before the oldest message held');
});

test('resync while a sync runs: it follows that sync; a sync cut off by a close is finished on the next socket', { timeout: TEST_TIMEOUT }, async () => {
  const fk = new FakeKefu();
  const old = Date.now() - 60000;
  const a = fk.agentSays('a', { ts: old });
  const b = fk.agentSays('b'); // recent: a plain reconnect syncs after a
  const { kefu, events } = client(fk);
  await kefu.start();
  await ready(fk, kefu);
  const task = fk.current();

  let held = null;
  fk.intercept = (t, f) => { if (f.cmd === 'sync' && !held) { held = f; return true; } return false; };
  task.deliver({ cmd: 'resync', after: b.id });
  await waitFor(() => held, { what: 'the first resync sent' });
  task.deliver({ cmd: 'resync', after: a.id - 1 });
  await sleep(30);
  assert.equal(syncs(task).length, 2, 'the second waits for the running sync');
  fk.intercept = null;
  task.deliver(fk.syncReply(held.after));
  await waitFor(() => syncs(task).length === 3, { what: 'the queued resync' });
  assert.equal(syncs(task)[2].after, a.id - 1);
  await waitFor(() => events.synced.length === 2, { what: 'the queued resync answered' });

  // A sync whose reply never comes because the socket closes: the next socket syncs from there.
  let swallowed = 0;
  fk.intercept = (t, f) => f.cmd === 'sync' && ++swallowed > 0;
  task.deliver({ cmd: 'resync', after: 0 });
  await waitFor(() => swallowed === 1, { what: 'the unanswered sync' });
  fk.intercept = null;
  task.serverClose(4408, 'heartbeat timeout');
  await ready(fk, kefu, { sockets: 2 });
  assert.equal(syncs(fk.current())[0].after, 0, 'not from the newest message seen');
});

// ---- close codes -------------------------------------------------------------------------------

for (const code of [1001, 1011, 1012, 1013]) {
  test(`close ${code}: reconnect after a jittered backoff, then sync`, { timeout: TEST_TIMEOUT }, async () => {
    const fk = new FakeKefu();
    const old = Date.now() - 60000;
    const first = fk.agentSays('first', { ts: old });
    const second = fk.agentSays('second', { ts: old });
    fk.agentSays('third'); // recent: a plain reconnect syncs after 'second' (the overlap)
    const { kefu, events } = client(fk, { random: () => 0.25 });
    await kefu.start();
    await ready(fk, kefu);
    const t0 = Date.now();
    fk.current().serverClose(code, 'bye');
    await ready(fk, kefu, { sockets: 2 });
    const waited = Date.now() - t0;
    const delay = backoffDelay(1, BASE, MAX, () => 0.25);
    assert.deepEqual(events.reconnecting, [{ attempt: 1, delay }]);
    assert.ok(delay > BASE / 2 && delay < BASE, `jittered: ${delay}`);
    assert.ok(waited >= delay - 2, `waited ${waited} ms`);
    assert.deepEqual(events.close.map((c) => c.code), [code]);
    // 1012: the fan-out may have had a gap anywhere, so everything held is checked again.
    assert.equal(syncs(fk.current())[0].after, code === 1012 ? first.id - 1 : second.id);
  });
}

test('close 1013 at every connect: the backoff doubles, capped, until the server takes the socket', { timeout: TEST_TIMEOUT }, async () => {
  const fk = new FakeKefu();
  let refusals = 4;
  fk.onConnect = (task) => {
    if (refusals === 0) return false;
    refusals -= 1;
    task.open();
    task.serverClose(1013, 'try again later');
    return true;
  };
  const { kefu, events } = client(fk, { random: () => 1, config: { reconnectMaxDelay: 200 } });
  await kefu.start();
  await ready(fk, kefu, { sockets: 5 });
  assert.deepEqual(events.reconnecting.map((r) => r.delay), [40, 80, 160, 200]);
  fk.current().serverClose(1013);
  await ready(fk, kefu, { sockets: 6 });
  assert.equal(events.reconnecting.at(-1).attempt, 1, 'a hello resets the backoff');
});

for (const code of [4408, 4503]) {
  test(`close ${code}: reconnect at once, then sync; again soon after → backoff`, { timeout: TEST_TIMEOUT }, async () => {
    const fk = new FakeKefu();
    const { kefu, events } = client(fk, { config: { reconnectBaseDelay: 300, reconnectMaxDelay: 1000 } });
    await kefu.start();
    await ready(fk, kefu);
    const t0 = Date.now();
    fk.current().serverClose(code);
    await ready(fk, kefu, { sockets: 2 });
    assert.ok(Date.now() - t0 < 150, `at once (${Date.now() - t0} ms)`);
    assert.deepEqual(events.reconnecting, []);
    assert.equal(syncs(fk.current()).length, 1, 'synced');

    fk.current().serverClose(code);
    await ready(fk, kefu, { sockets: 3 });
    assert.equal(events.reconnecting.length, 1, 'the second drop within the max delay backs off');
  });
}

test('close 4401: wx.login → /api/login again, then reconnect with the new token', { timeout: TEST_TIMEOUT }, async () => {
  const fk = new FakeKefu();
  const { kefu, ctl } = client(fk);
  await kefu.start();
  await ready(fk, kefu);
  const oldToken = kefu.token;
  fk.tokens.delete(oldToken);
  fk.current().serverClose(4401, 'token expired');
  await ready(fk, kefu, { sockets: 2 });
  assert.equal(ctl.calls.login, 2);
  assert.equal(ctl.calls.requests.filter((r) => r.url.endsWith('/api/login')).length, 2);
  assert.notEqual(kefu.token, oldToken);
  assert.equal(new URL(fk.current().url).searchParams.get('token'), kefu.token);
});

test('close 4429: no reconnect, the pages say so; a tap reconnects', { timeout: TEST_TIMEOUT }, async () => {
  const fk = new FakeKefu();
  const { kefu, events } = client(fk);
  const { page, view } = chatPage(kefu);
  await kefu.start();
  await ready(fk, kefu);
  fk.current().serverClose(4429, 'too many errors');
  await waitFor(() => kefu.status === 'blocked', { what: 'blocked' });
  await sleep(3 * MAX);
  assert.equal(fk.sockets.length, 1, 'no reconnect');
  assert.deepEqual(events.reconnecting, []);
  assert.equal(view.status, 'blocked');
  assert.equal(view.statusText, '连接被服务器拒绝，点击重新连接');
  assert.match(homeData(kefu.getState(), kefu.config).statusText, /拒绝/);
  assert.ok(events.error.some((e) => e.code === 'too_many_errors'));
  page.reconnect();
  await ready(fk, kefu, { sockets: 2 });
});

// ---- pushes ------------------------------------------------------------------------------------

test('pushes: objects that are neither protocol frames nor chat messages reach onPush as they came', { timeout: TEST_TIMEOUT }, async () => {
  const fk = new FakeKefu();
  const { kefu, events } = client(fk, { config: { maxPushes: 3 } });
  const got = [];
  const off = kefu.onPush((p) => got.push(p));
  await kefu.start();
  await ready(fk, kefu);
  const task = fk.current();

  const shipped = { openid: fk.openid, msg: 'your order shipped', order: 42 };
  const coupon = { openid: fk.openid, id: 7, type: 'coupon' }; // an `id`, but no chat message
  task.deliver(shipped);
  task.deliver(coupon);
  task.deliver({ cmd: 'something_new', id: 8 }); // a protocol frame this client does not know
  fk.agentSays('a chat message');
  await waitFor(() => texts(kefu).includes('a chat message'), { what: 'the chat message' });
  assert.deepEqual(got, [shipped, coupon]);
  assert.deepEqual(events.push, [shipped, coupon]);
  assert.deepEqual(kefu.getState().pushes.map((p) => p.data), [shipped, coupon]);
  assert.deepEqual(texts(kefu), ['a chat message'], 'pushes are not chat messages');

  const home = homeData(kefu.getState(), kefu.config);
  assert.deepEqual(home.pushes.map((p) => p.text), [JSON.stringify(coupon), 'your order shipped'], 'newest first');
  assert.deepEqual(pushToast(shipped), { title: 'your order shipped', icon: 'none', duration: 3000 });
  assert.equal(pushToast({ msg: 'x'.repeat(100) }).title.length, 40);

  off();
  for (let i = 0; i < 3; i++) task.deliver({ n: i });
  await waitFor(() => events.push.length === 5, { what: 'three more pushes' });
  assert.equal(got.length, 2, 'unsubscribed');
  assert.deepEqual(kefu.getState().pushes.map((p) => p.data), [{ n: 0 }, { n: 1 }, { n: 2 }], 'bounded by maxPushes');
});
