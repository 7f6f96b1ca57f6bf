// The whole client, headless, against FakeKefu (an in-memory kefu) with a fake clock: session,
// catch-up, replies, read marks, and the protocol additions (retry flags, epochs, resync, the close
// codes) that a real server does not send yet.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { FakeClock, FakeKefu, memoryStorage, settle } from '../fakes.js';
import { recordedConsole } from '../recorder.js';

const PASSWORD = 'pw-123456';

/** A kefu with agent alice, and a console for it (not signed in yet). */
function world({ storage, options, kefu: given } = {}) {
  const clock = given?.clock || new FakeClock();
  const kefu = given || new FakeKefu({ clock });
  if (!kefu.agents.has('alice')) kefu.addAgent('alice', PASSWORD);
  const c = recordedConsole({
    WebSocket: kefu.WebSocket, fetch: kefu.fetch, clock, socketUrl: 'ws://kefu.test/ws', storage, options,
  });
  return { clock, kefu, ...c };
}

async function signedIn(opts) {
  const w = world(opts);
  await w.client.signIn('alice', PASSWORD);
  await settle();
  assert.equal(w.state(), 'online');
  return w;
}

const syncs = (kefu) => kefu.sockets.flatMap((ws) => ws.sentOf('sync').map((f) => f.after));
const lastSocket = (kefu) => kefu.sockets.at(-1);

// ------------------------------------------------------------------ session

test('sign-in keeps the token in the tab\'s session storage, never in localStorage; a reload resumes it', async () => {
  const storage = memoryStorage();
  const w = world({ storage });
  w.legacy.setItem('kefu.session', JSON.stringify({ token: 'old-token-from-localStorage' }));
  await assert.rejects(w.client.signIn('alice', 'wrong'), (e) => e.status === 401);
  assert.equal(storage.getItem('kefu.session'), null);
  await w.client.signIn('alice', PASSWORD);
  await settle();
  const saved = JSON.parse(storage.getItem('kefu.session'));
  assert.ok(w.kefu.tokens.has(saved.token));
  assert.equal(saved.agent.name, 'alice');
  assert.equal(w.state(), 'online');

  // The page reloads: a new client on the same session storage.
  const again = world({ storage, kefu: w.kefu });
  again.legacy.setItem('kefu.session', JSON.stringify({ token: 'old-token-from-localStorage' }));
  assert.equal(await again.client.resume(), 'started');
  assert.equal(again.legacy.getItem('kefu.session'), null, 'a token an older console left in localStorage is removed');
  await settle();
  assert.equal(again.state(), 'online');
  assert.equal(again.client.agent.name, 'alice');
  assert.equal(lastSocket(w.kefu).token, saved.token);
});

test('resume: nothing kept → "none"; a revoked token → "ended"; an unreachable server keeps the session', async () => {
  const storage = memoryStorage();
  assert.equal(await world({ storage }).client.resume(), 'none');
  const w = await signedIn({ storage });
  const token = JSON.parse(storage.getItem('kefu.session')).token;

  w.kefu.down = true;
  const offline = world({ storage, kefu: w.kefu });
  assert.equal(await offline.client.resume(), 'started');
  await settle();
  assert.equal(offline.state(), 'offline', 'waiting to try again');
  offline.client.stop();

  w.kefu.down = false;
  w.kefu.tokens.delete(token);
  const revoked = world({ storage, kefu: w.kefu });
  assert.equal(await revoked.client.resume(), 'ended');
  assert.equal(storage.getItem('kefu.session'), null);
});

test('sign-out stops the socket first, then revokes the token on the server', async () => {
  const w = await signedIn();
  const ws = lastSocket(w.kefu);
  const token = ws.token;
  await w.client.signOut();
  assert.deepEqual(ws.closedWith, { code: 1000, reason: 'bye', by: 'client' });
  assert.equal(w.kefu.tokens.has(token), false);
  assert.equal(w.storage.getItem('kefu.session'), null);
  assert.deepEqual(w.events.ended, [], 'signing out is not "the session ended"');
  await w.clock.advance(60_000);
  assert.equal(w.kefu.sockets.length, 1, 'no reconnect');
});

test('close 4401 (token revoked elsewhere) and an HTTP 401 both end the session once', async () => {
  const w = await signedIn();
  const token = lastSocket(w.kefu).token;
  w.kefu.tokens.delete(token);
  lastSocket(w.kefu).serverClose(4401, 'logged out');
  assert.deepEqual(w.events.ended, ['revoked']);
  assert.equal(w.storage.getItem('kefu.session'), null);
  await w.clock.advance(60_000);
  assert.equal(w.kefu.sockets.length, 1);

  const h = await signedIn();
  h.kefu.tokens.clear();
  await h.client.loadConversations().catch(() => {});
  assert.deepEqual(h.events.ended, ['revoked']);
  assert.equal(h.state(), 'idle');
});

test('the session ends when its token expires', async () => {
  const w = await signedIn();
  await w.clock.advance(12 * 3600 * 1000 - 1);
  assert.deepEqual(w.events.ended, []);
  await w.clock.advance(1);
  assert.deepEqual(w.events.ended, ['expired']);
  assert.equal(w.state(), 'idle');
});

// ------------------------------------------------------------------ catching up

test('at hello: the conversation list first, then sync after its newest id, paging while `more`', async () => {
  const w = world({ options: { sync: { pageSize: 2 } } });
  for (let i = 1; i <= 3; i++) w.kefu.userSays('o_a', `old ${i}`);
  w.kefu.mark('o_a').agent = 1;
  await w.client.signIn('alice', PASSWORD);
  await settle();
  assert.deepEqual(syncs(w.kefu), [3], 'nothing before the list\'s newest id is replayed');
  assert.equal(w.client.conversation('o_a').unread, 2, 'the server\'s count');

  // Away for a while: five messages are stored, none relayed.
  w.kefu.fanout = false;
  lastSocket(w.kefu).serverClose(1001, 'going away');
  for (let i = 1; i <= 5; i++) w.kefu.userSays(i % 2 ? 'o_a' : 'o_b', `missed ${i}`);
  w.kefu.fanout = true;
  await w.clock.advance(w.events.status.at(-1).retryAt - w.clock.now());
  await settle();
  assert.equal(w.state(), 'online');
  assert.deepEqual(syncs(w.kefu), [3, 3, 5, 7], 'pages of two: after 3, 5, 7');
  assert.equal(w.client.conversation('o_a').unread, 5);
  assert.equal(w.client.conversation('o_b').unread, 2);
  assert.equal(w.client.totalUnread(), 7);
  assert.equal(w.events.alerts, 3, 'one alert per page that brought user messages');
  assert.deepEqual(w.client.sortedConversations().map((c) => c.openid), ['o_a', 'o_b']);
});

test('live frames and the sync after a reconnect overlap: every message is held once and counted once', async () => {
  const w = await signedIn();
  w.kefu.userSays('o_a', 'one');
  w.client.select('o_a');
  await w.client.loadHistory('o_a', { first: true });
  w.kefu.userSays('o_a', 'two');
  lastSocket(w.kefu).serverClose(1006);
  w.kefu.userSays('o_a', 'three');
  await w.clock.advance(1000);
  await settle();
  // Replay the whole history through a sync from 0 as well: nothing doubles.
  lastSocket(w.kefu).receive(w.kefu.syncReply(0));
  lastSocket(w.kefu).receive(w.kefu.messages[0]);
  assert.deepEqual(w.thread('o_a'), ['user:one', 'user:two', 'user:three']);
  assert.equal(w.client.conversation('o_a').unread, 0, 'open and watched: read at once');
  assert.equal(w.kefu.mark('o_a').agent, 3);
});

test('a sync cut off by a drop resumes on the next socket from where it stopped, not after newer live ids', async () => {
  const w = world({ options: { sync: { pageSize: 2 } } });
  await w.client.signIn('alice', PASSWORD);
  await settle();
  w.kefu.fanout = false;
  for (let i = 1; i <= 6; i++) w.kefu.userSays('o_a', `m${i}`);
  w.kefu.fanout = true;
  // The server's pages stop coming after the first one; a live message with a high id arrives.
  let answered = 0;
  w.kefu.onFrame = (ws, f) => f.cmd === 'sync' && answered++ >= 1;
  lastSocket(w.kefu).receive({ cmd: 'resync', after: 0 });
  await settle();
  assert.deepEqual(syncs(w.kefu), [0, 0, 2]);
  w.kefu.userSays('o_a', 'live 7');
  lastSocket(w.kefu).serverClose(1006);
  w.kefu.onFrame = null;
  await w.clock.advance(1000);
  await settle();
  assert.deepEqual(syncs(w.kefu), [0, 0, 2, 2, 4, 6], 'resumed after 2 (not after 7)');
  w.client.select('o_a');
  await w.client.loadHistory('o_a', { first: true });
  assert.deepEqual(w.thread('o_a'), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'live 7'].map((t) => `user:${t}`));
});

// ------------------------------------------------------------------ replies

test('a reply: sending at once, then a stored message with its ack\'s id; typed offline it goes on reconnect', async () => {
  const w = await signedIn();
  w.kefu.userSays('o_a', '在吗');
  w.client.select('o_a');
  await w.client.loadHistory('o_a', { first: true });
  w.kefu.autoAck = false;
  const r = w.client.reply('o_a', '\n\n在的  \n');
  assert.equal(r.ok, true);
  assert.deepEqual(w.thread(), ['user:在吗', 'sending:在的']);
  const ws = lastSocket(w.kefu);
  const sent = ws.sentOf('reply')[0];
  assert.match(sent.cmid, /^w1-/);
  await settle();
  assert.equal(w.kefu.messages.at(-1).cmid, sent.cmid, 'stored, not acked yet');
  w.kefu.ack(ws, sent.cmid, w.kefu.messages.at(-1));
  assert.deepEqual(w.thread(), ['user:在吗', 'agent:在的']);
  assert.equal(w.client.conversation('o_a').last.msg, '在的');

  w.kefu.autoAck = true;
  ws.serverClose(1006);
  w.client.reply('o_a', 'typed offline');
  assert.deepEqual(w.thread(), ['user:在吗', 'agent:在的', 'sending:typed offline']);
  await w.clock.advance(1000);
  await settle();
  assert.deepEqual(w.thread(), ['user:在吗', 'agent:在的', 'agent:typed offline']);
  assert.equal(w.kefu.messages.filter((m) => m.msg === 'typed offline').length, 1);

  assert.deepEqual(w.client.reply('o_a', '  \n '), { error: 'empty' });
  assert.deepEqual(w.client.reply('o_a', 'x'.repeat(65537)), { error: 'too_long', bytes: 65537, limit: 65536 });
  assert.equal(w.client.reply('o_a', '好'.repeat(21846)).error, 'too_long', 'bytes, not characters');
});

test('error frame with retry: true → the same cmid again after a backoff, stored once', async () => {
  const w = await signedIn();
  let refusals = 0;
  w.kefu.onFrame = (ws, f) => {
    if (f.type === 1 && refusals < 2) {
      refusals += 1;
      ws.receive({ cmd: 'error', code: 'unavailable', message: 'message not accepted, resend it', retry: true, cmid: f.cmid });
      return true;
    }
    return false;
  };
  w.client.select('o_a');
  w.client.reply('o_a', 'patience');
  const ws = lastSocket(w.kefu);
  await settle();
  assert.deepEqual(w.thread('o_a'), ['sending:patience'], 'not failed');
  await w.clock.advance(500); // random 0.5: waits of 750 ms, then 1.5 s
  assert.equal(ws.sentOf('reply').length, 1);
  await w.clock.advance(250);
  assert.equal(ws.sentOf('reply').length, 2);
  await w.clock.advance(1500);
  const cmids = ws.sentOf('reply').map((f) => f.cmid);
  assert.equal(cmids.length, 3);
  assert.equal(new Set(cmids).size, 1, 'one cmid throughout');
  assert.deepEqual(w.thread('o_a'), ['agent:patience']);
  assert.equal(w.kefu.messages.length, 1);
  assert.deepEqual(w.events.hints, []);
});

test('error frame without retry (or retry: false) → failed; the agent\'s retry sends the same cmid', async () => {
  const w = await signedIn();
  let refuse = true;
  w.kefu.onFrame = (ws, f) => {
    if (f.type === 1 && refuse) {
      ws.receive({ cmd: 'error', code: 'forbidden', message: 'not allowed', cmid: f.cmid, ...(f.msg === 'b' ? { retry: false } : {}) });
      return true;
    }
    return false;
  };
  w.client.select('o_a');
  w.client.reply('o_a', 'a');
  w.client.reply('o_a', 'b');
  await settle();
  assert.deepEqual(w.thread('o_a'), ['failed:a', 'failed:b']);
  const [a] = w.client.threadItems('o_a').pend;
  assert.equal(a.error, 'not allowed');
  await w.clock.advance(60_000);
  assert.equal(lastSocket(w.kefu).sentOf('reply').length, 2, 'not resent by itself');
  refuse = false;
  w.client.retry(a.cmid);
  await settle();
  assert.deepEqual(w.thread('o_a'), ['agent:a', 'failed:b']);
  assert.equal(lastSocket(w.kefu).sentOf('reply').at(-1).cmid, a.cmid);
  assert.equal(w.kefu.messages.length, 1);
});

test('no ack within 10 s: failed; retry after the server is back stores it once', async () => {
  const w = await signedIn();
  w.kefu.down = true;
  w.kefu.closeAll(1006);
  w.client.select('o_a');
  w.client.reply('o_a', 'lost?');
  await w.clock.advance(10_000);
  assert.deepEqual(w.thread('o_a'), ['failed:lost?']);
  w.kefu.down = false;
  w.client.retryNow();
  await settle();
  assert.deepEqual(w.thread('o_a'), ['failed:lost?'], 'a failed reply waits for the agent');
  w.client.retry(w.client.threadItems('o_a').pend[0].cmid);
  await settle();
  assert.deepEqual(w.thread('o_a'), ['agent:lost?']);
});

test('an error frame with retry: true and no cmid while syncing asks the same page again later', async () => {
  const w = world();
  w.kefu.userSays('o_a', 'x');
  let failures = 1;
  w.kefu.onFrame = (ws, f) => {
    if (f.cmd === 'sync' && failures-- > 0) {
      ws.receive({ cmd: 'error', code: 'unavailable', message: 'history is unavailable, retry later', retry: true });
      return true;
    }
    return false;
  };
  await w.client.signIn('alice', PASSWORD);
  await settle();
  assert.deepEqual(syncs(w.kefu), [1]);
  await w.clock.advance(1000);
  assert.deepEqual(syncs(w.kefu), [1, 1]);
  assert.deepEqual(w.events.hints, [], 'handled: nothing to tell the agent');
  lastSocket(w.kefu).receive({ cmd: 'error', code: 'bad_frame', message: 'bad frame', retry: false });
  assert.deepEqual(w.events.hints, ['bad frame']);
});

// ------------------------------------------------------------------ epochs

test('a new epoch in hello: the history was reset; everything is reloaded and synced from 0, once each', async () => {
  const storage = memoryStorage();
  const w = await signedIn({ storage });
  w.kefu.userSays('o_a', 'before the reset');
  w.client.select('o_a');
  await w.client.loadHistory('o_a', { first: true });
  assert.deepEqual(JSON.parse(storage.getItem('kefu.cursor')), { scope: '1', epoch: 'e1', lastId: 1 });

  lastSocket(w.kefu).serverClose(1012);
  w.kefu.resetHistory('e2');
  w.kefu.fanout = false;
  w.kefu.userSays('o_a', 'after one');
  w.kefu.userSays('o_b', 'after two');
  w.kefu.fanout = true;
  await w.clock.advance(1000);
  await settle();
  assert.equal(w.events.resets, 1);
  assert.equal(syncs(w.kefu).at(-1), 0, 'from the start');
  assert.deepEqual(w.thread('o_a'), ['user:after one'], 'the old epoch\'s messages are gone, the new ones there once');
  assert.equal(w.client.openId, 'o_a', 'the open conversation stays open');
  assert.equal(w.client.conversation('o_b').unread, 1);
  assert.equal(w.client.totalUnread(), 1);
  assert.deepEqual(JSON.parse(storage.getItem('kefu.cursor')), { scope: '1', epoch: 'e2', lastId: 2 });
});

test('the epoch survives a reload: a reset while the tab was closed syncs from 0', async () => {
  const storage = memoryStorage();
  const w = await signedIn({ storage });
  w.kefu.userSays('o_a', 'x');
  w.kefu.userSays('o_a', 'y');
  await settle();
  w.client.conn.stop();

  w.kefu.resetHistory('e9');
  w.kefu.userSays('o_c', 'new world');
  const again = world({ storage, kefu: w.kefu });
  assert.equal(await again.client.resume(), 'started');
  await settle();
  assert.equal(again.events.resets, 1);
  assert.equal(syncs(w.kefu).at(-1), 0);
  assert.deepEqual([...again.client.conversations.keys()], ['o_c']);
});

test('the same epoch again, or none at all, changes nothing', async () => {
  const w = await signedIn();
  w.kefu.userSays('o_a', 'x');
  lastSocket(w.kefu).serverClose(1006);
  await w.clock.advance(1000);
  await settle();
  assert.equal(w.events.resets, 0);
  assert.equal(syncs(w.kefu).at(-1), 1);
  w.kefu.sendsEpoch = false;
  lastSocket(w.kefu).serverClose(1006);
  await w.clock.advance(1000);
  await settle();
  assert.equal(w.events.resets, 0);
  assert.equal(syncs(w.kefu).at(-1), 1);
});

test('a new epoch in a sync reply: that page is dropped and the sync starts over from 0', async () => {
  const w = world({ options: { sync: { pageSize: 1 } } });
  await w.client.signIn('alice', PASSWORD);
  await settle();
  w.kefu.fanout = false;
  w.kefu.userSays('o_a', 'old 1');
  w.kefu.userSays('o_a', 'old 2');
  w.kefu.fanout = true;
  let first = true;
  w.kefu.onFrame = (ws, f) => {
    if (f.cmd !== 'sync' || !first) return false;
    first = false;
    ws.receive(w.kefu.syncReply(f.after, f.limit)); // page 1 of the old history
    w.kefu.resetHistory('e2');
    w.kefu.fanout = false;
    w.kefu.userSays('o_b', 'new 1');
    w.kefu.fanout = true;
    return false; // page 2 comes from the new history, with the new epoch
  };
  lastSocket(w.kefu).receive({ cmd: 'resync', after: 0 });
  await settle();
  assert.equal(w.events.resets, 1);
  assert.deepEqual(syncs(w.kefu).slice(-2), [1, 0]);
  assert.deepEqual([...w.client.conversations.keys()], ['o_b']);
  w.client.select('o_b');
  await w.client.loadHistory('o_b', { first: true });
  assert.deepEqual(w.thread('o_b'), ['user:new 1']);
});

// ------------------------------------------------------------------ resync

test('resync with `after`: sync after min(last id, after), paging while `more`; missed messages appear once', async () => {
  const w = world({ options: { sync: { pageSize: 2 } } });
  await w.client.signIn('alice', PASSWORD);
  await settle();
  w.client.select('o_a');
  await w.client.loadHistory('o_a', { first: true });
  w.kefu.userSays('o_a', 'seen 1');
  w.kefu.fanout = false;
  w.kefu.userSays('o_a', 'missed 2');
  w.kefu.userSays('o_a', 'missed 3');
  w.kefu.fanout = true;
  w.kefu.userSays('o_a', 'seen 4');
  assert.deepEqual(w.thread('o_a'), ['user:seen 1', 'user:seen 4']);
  lastSocket(w.kefu).receive({ cmd: 'resync', after: 1 });
  await settle();
  assert.deepEqual(syncs(w.kefu), [0, 1, 3], 'after 1, then the next page');
  assert.deepEqual(w.thread('o_a'), ['user:seen 1', 'user:missed 2', 'user:missed 3', 'user:seen 4']);
  lastSocket(w.kefu).receive({ cmd: 'resync', after: 99 });
  await settle();
  assert.equal(syncs(w.kefu).at(-1), 4, 'never after more than the last id seen');
});

test('a resync while a sync runs is sent after it; one without `after` reloads the list and the open thread', async () => {
  const w = await signedIn();
  w.client.select('o_a');
  await w.client.loadHistory('o_a', { first: true });
  w.kefu.fanout = false;
  w.kefu.userSays('o_a', 'missed');
  w.kefu.userSays('o_z', 'missed elsewhere');
  w.kefu.fanout = true;
  const held = [];
  w.kefu.onFrame = (ws, f) => { if (f.cmd === 'sync') { held.push(f); return true; } return false; };
  lastSocket(w.kefu).receive({ cmd: 'resync', after: 0 });
  lastSocket(w.kefu).receive({ cmd: 'resync', after: 0 });
  await settle();
  assert.equal(held.length, 1, 'one sync at a time');
  w.kefu.onFrame = null;
  lastSocket(w.kefu).receive(w.kefu.syncReply(held[0].after));
  await settle();
  assert.equal(syncs(w.kefu).length, 3, 'the queued one went after the reply');

  const before = w.kefu.requests.length;
  w.kefu.fanout = false;
  w.kefu.userSays('o_a', 'missed again');
  w.kefu.fanout = true;
  lastSocket(w.kefu).receive({ cmd: 'resync' });
  await settle();
  const paths = w.kefu.requests.slice(before).map((r) => r.path);
  assert.deepEqual(paths.sort(), ['/api/conversations', '/api/conversations/o_a/messages']);
  assert.deepEqual(w.thread('o_a'), ['user:missed', 'user:missed again']);
  assert.equal(w.client.conversation('o_z').last.msg, 'missed elsewhere');
});

test('close 1012: reconnect with backoff, then look for gaps everywhere (list and open thread reloaded)', async () => {
  const w = await signedIn();
  w.client.select('o_a');
  await w.client.loadHistory('o_a', { first: true });
  w.kefu.fanout = false;
  w.kefu.userSays('o_a', 'gap');
  w.kefu.fanout = true;
  w.kefu.userSays('o_a', 'after gap'); // seen live: the last id is past the gap
  assert.deepEqual(w.thread('o_a'), ['user:after gap']);
  lastSocket(w.kefu).serverClose(1012, 'resync');
  assert.equal(w.state(), 'offline');
  const before = w.kefu.requests.length;
  await w.clock.advance(w.events.status.at(-1).retryAt - w.clock.now());
  await settle();
  assert.equal(w.state(), 'online');
  assert.ok(w.kefu.requests.slice(before).some((r) => r.path === '/api/conversations/o_a/messages'));
  assert.deepEqual(w.thread('o_a'), ['user:gap', 'user:after gap']);
});

test('close 4429: stopped, no reconnect until retryNow; 4408 and 4503 reconnect at once', async () => {
  const w = await signedIn();
  lastSocket(w.kefu).serverClose(4429, 'too many errors');
  assert.equal(w.state(), 'stopped');
  assert.equal(w.events.status.at(-1).state, 'stopped');
  await w.clock.advance(300_000);
  assert.equal(w.kefu.sockets.length, 1);
  w.client.retryNow();
  await settle();
  assert.equal(w.state(), 'online');
  for (const code of [4408, 4503]) {
    await w.clock.advance(20_000);
    const n = w.kefu.sockets.length;
    lastSocket(w.kefu).serverClose(code);
    await settle();
    assert.equal(w.kefu.sockets.length, n + 1);
    assert.equal(w.state(), 'online');
  }
});

// ------------------------------------------------------------------ read marks

test('opening a conversation marks it read over the socket, or over HTTP when the socket is down', async () => {
  const w = await signedIn();
  w.kefu.userSays('o_a', 'one');
  w.kefu.userSays('o_b', 'two');
  assert.equal(w.client.totalUnread(), 2);
  assert.equal(w.events.alerts, 2);
  w.client.select('o_a');
  await w.client.loadHistory('o_a', { first: true });
  w.client.markOpenRead();
  assert.deepEqual(lastSocket(w.kefu).sentOf('read'), [{ cmd: 'read', openid: 'o_a', upto: 1 }]);
  assert.equal(w.client.totalUnread(), 1);

  w.kefu.down = true;
  w.kefu.closeAll(1006);
  w.kefu.down = false;
  w.client.select('o_b');
  w.client.markOpenRead();
  await settle();
  assert.deepEqual(w.kefu.requests.at(-1), { method: 'POST', path: '/api/conversations/o_b/read', query: {}, body: { upto: 2 }, auth: lastSocket(w.kefu).token });
  assert.equal(w.client.totalUnread(), 0);
});

test('not watching (a hidden tab): messages count and alert even in the open conversation; read when shown', async () => {
  const w = await signedIn();
  w.client.select('o_a');
  await w.client.loadHistory('o_a', { first: true });
  w.view.watching = false;
  w.kefu.userSays('o_a', 'hello?');
  assert.equal(w.client.conversation('o_a').unread, 1);
  assert.equal(w.events.alerts, 1);
  assert.deepEqual(lastSocket(w.kefu).sentOf('read'), []);
  w.view.watching = true;
  w.client.markOpenRead();
  assert.deepEqual(lastSocket(w.kefu).sentOf('read'), [{ cmd: 'read', openid: 'o_a', upto: 1 }]);
  w.kefu.userSays('o_a', 'still there');
  assert.equal(w.events.alerts, 1, 'watched: no alert, marked read at once');
  assert.equal(lastSocket(w.kefu).sentOf('read').length, 2);
  lastSocket(w.kefu).receive({ cmd: 'read', openid: 'o_a', by: 'user', upto: 2 });
  assert.equal(w.client.conversation('o_a').userReadUpto, 2);
});

test('history pages: newest first, older on demand, until the beginning; they never count as unread', async () => {
  const w = await signedIn();
  w.kefu.fanout = false;
  for (let i = 1; i <= 70; i++) w.kefu.userSays('o_a', `m${i}`);
  w.kefu.fanout = true;
  w.client.select('o_a');
  assert.equal(await w.client.loadHistory('o_a', { first: true }), true);
  assert.equal(w.thread('o_a').length, 30);
  assert.equal(w.thread('o_a')[0], 'user:m41');
  await w.client.loadHistory('o_a');
  await w.client.loadHistory('o_a');
  assert.equal(w.client.thread('o_a').nextBefore, null);
  assert.equal(await w.client.loadHistory('o_a'), false, 'the beginning is reached');
  assert.deepEqual(w.thread('o_a'), Array.from({ length: 70 }, (_, i) => `user:m${i + 1}`));
  w.kefu.down = true;
  w.client.select('o_b');
  await w.client.loadHistory('o_b', { first: true });
  assert.deepEqual(w.client.thread('o_b').error, { status: 0, message: 'The server could not be reached.' });
});
