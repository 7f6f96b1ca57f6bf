// The push SDK's state machine (web_sdk/push.js), headless: kefu's side is played by hand on a fake
// WebSocket and the clock moves only when a test says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { CLOSE, KefuPush, backoffDelay } from '../../../web_sdk/push.js';
import { FakeClock, fakeWebSocketClass, settle } from '../../web_admin/fakes.js';

function setup({ token, getToken, random = () => 0.5 } = {}) {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const tokens = [];
  const sdk = new KefuPush({
    url: 'ws://kefu.test/ws/push', WebSocket: WS, clock, random,
    ...(token ? { token } : { getToken: getToken || (() => { tokens.push(`t${tokens.length + 1}`); return tokens.at(-1); }) }),
  });
  const log = { states: [], pushes: [], errors: [] };
  sdk.on('state', (state, info) => log.states.push({ state, ...info }));
  sdk.on('push', (data, meta) => log.pushes.push({ data, meta }));
  sdk.on('error', (f) => log.errors.push(f.code));
  /** Open the newest socket and answer its bind. */
  const bindOk = async (uid = '42', groups = ['news']) => {
    WS.last.accept();
    await settle();
    const bind = WS.last.sentOf('bind').at(-1);
    WS.last.receive({ cmd: 'bound', uid, groups });
    await settle();
    return bind;
  };
  return { clock, WS, sdk, log, tokens, bindOk, states: () => log.states.map((s) => s.state) };
}

test('backoff doubles up to its ceiling, each wait drawn from its upper half', () => {
  const at = (a, r) => backoffDelay(a, { base: 500, max: 15_000, random: () => r });
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((a) => at(a, 1)), [500, 1000, 2000, 4000, 8000, 15_000, 15_000]);
  assert.deepEqual([0, 1, 5].map((a) => at(a, 0)), [250, 500, 7500]);
});

test('connects with v=2, binds with a fresh token, is bound, and dispatches pushes by target', async () => {
  const { WS, sdk, log, tokens, bindOk, states } = setup();
  const news = [];
  const mine = [];
  const all = [];
  sdk.on('group:news', (d) => news.push(d));
  sdk.on('uid', (d) => mine.push(d));
  sdk.on('all', (d) => all.push(d));
  sdk.start();
  assert.equal(WS.last.url, 'ws://kefu.test/ws/push?v=2');
  assert.deepEqual(states(), ['connecting']);
  const bind = await bindOk('42', ['news']);
  assert.deepEqual(bind, { cmd: 'bind', token: 't1' });
  assert.equal(tokens.length, 1);
  assert.deepEqual(states(), ['connecting', 'binding', 'bound']);
  assert.equal(sdk.uid, '42');
  assert.deepEqual(sdk.groups, ['news']);

  WS.last.receive({ cmd: 'push', to: 'uid', data: { order: 7 } });
  WS.last.receive({ cmd: 'push', to: 'group', group: 'news', data: { title: '上新' } });
  WS.last.receive({ cmd: 'push', to: 'group', group: 'other', data: { x: 1 } });
  WS.last.receive({ cmd: 'push', to: 'all', data: { notice: 'maintenance' } });
  WS.last.receive({ cmd: 'pong', ts: 1 });
  WS.last.receive('not json');
  assert.deepEqual(mine, [{ order: 7 }]);
  assert.deepEqual(news, [{ title: '上新' }]);
  assert.deepEqual(all, [{ notice: 'maintenance' }]);
  assert.equal(log.pushes.length, 4);
  assert.deepEqual(log.pushes[1].meta, { to: 'group', group: 'news' });

  WS.last.receive({ cmd: 'joined', group: 'vip', groups: ['news', 'vip'] });
  assert.deepEqual(sdk.groups, ['news', 'vip']);
  WS.last.receive({ cmd: 'left', group: 'news', groups: ['vip'] });
  assert.deepEqual(sdk.groups, ['vip']);
});

test('a callback that throws does not stop the others', async () => {
  const { WS, sdk, bindOk } = setup();
  const got = [];
  sdk.on('push', () => { throw new Error('app bug'); });
  sdk.on('push', (d) => got.push(d));
  const uncaught = [];
  const saved = [globalThis.reportError, console.error];
  globalThis.reportError = undefined;
  console.error = (e) => uncaught.push(e.message);
  sdk.start();
  await bindOk();
  try {
    WS.last.receive({ cmd: 'push', to: 'uid', data: 1 });
  } finally {
    [globalThis.reportError, console.error] = saved;
  }
  assert.deepEqual(got, [1]);
  assert.deepEqual(uncaught, ['app bug']);
});

test('after a drop it reconnects with backoff and jitter, then binds again with a new token', async () => {
  const { clock, WS, sdk, tokens, bindOk, log } = setup({ random: () => 1 });
  sdk.start();
  await bindOk();
  WS.last.serverClose(CLOSE.GOING_AWAY, 'server shutting down');
  assert.equal(sdk.state, 'offline');
  assert.equal(log.states.at(-1).retryAt - clock.now(), 500);
  await clock.advance(499);
  assert.equal(WS.sockets.length, 1, 'not before the backoff');
  await clock.advance(1);
  assert.equal(WS.sockets.length, 2);
  WS.last.serverClose(1006); // the server is still down: the next wait doubles
  assert.equal(log.states.at(-1).retryAt - clock.now(), 1000);
  await clock.advance(1000);
  await bindOk();
  assert.equal(sdk.state, 'bound');
  assert.deepEqual(tokens, ['t1', 't2', 't3'].slice(0, tokens.length));
  assert.equal(WS.last.sentOf('bind').at(-1).token, tokens.at(-1), 'each bind asks for a token');
  WS.last.serverClose(CLOSE.RESYNC);
  assert.equal(log.states.at(-1).retryAt - clock.now(), 500, 'a bound socket starts the backoff over');
});

test('a heartbeat close reconnects at once (once per backoff ceiling); 4429 stops', async () => {
  const { WS, sdk, bindOk } = setup();
  sdk.start();
  await bindOk();
  WS.last.serverClose(CLOSE.HEARTBEAT);
  assert.equal(WS.sockets.length, 2);
  assert.equal(sdk.state, 'connecting');
  await bindOk();
  WS.last.serverClose(CLOSE.TOO_MANY_ERRORS);
  assert.equal(sdk.state, 'stopped');
  sdk.retryNow();
  assert.equal(WS.sockets.length, 3);
});

test('bind refusals: a token kefu will never take stops; an expired one is fetched again', async () => {
  const { clock, WS, sdk, tokens, log } = setup();
  sdk.start();
  WS.last.accept();
  await settle();
  WS.last.receive({ cmd: 'error', code: 'token_expired', message: 'expired', retry: false });
  assert.equal(sdk.state, 'offline');
  await clock.advance(1000);
  WS.last.accept();
  await settle();
  assert.equal(WS.last.sentOf('bind')[0].token, 't2', 'a new token for the next bind');
  WS.last.receive({ cmd: 'error', code: 'wrong_audience', message: 'not for kefu', retry: false });
  assert.equal(sdk.state, 'stopped');
  assert.equal(WS.last.closedWith.by, 'client');
  await clock.advance(60_000);
  assert.equal(WS.sockets.length, 2, 'no retry after a fatal refusal');
  assert.deepEqual(log.errors, ['token_expired', 'wrong_audience']);
  assert.equal(sdk.lastError.code, 'wrong_audience');
  assert.equal(tokens.length, 2);

  const fixed = setup({ token: 'static' });
  fixed.sdk.start();
  fixed.WS.last.accept();
  await settle();
  fixed.WS.last.receive({ cmd: 'error', code: 'token_expired', message: 'expired', retry: false });
  assert.equal(fixed.sdk.state, 'stopped', 'a fixed token that expired stays expired');
});

test('a busy server (retry: true) and a failing getToken are retried later', async () => {
  let calls = 0;
  const { clock, WS, sdk } = setup({ getToken: async () => { calls += 1; if (calls === 1) throw new Error('backend down'); return 'tok'; } });
  sdk.start();
  WS.last.accept();
  await settle();
  assert.equal(sdk.state, 'offline');
  await clock.advance(1000);
  WS.last.accept();
  await settle();
  WS.last.receive({ cmd: 'error', code: 'rate_limited', message: 'slow down', retry: true });
  assert.equal(sdk.state, 'offline');
  await clock.advance(2000);
  WS.last.accept();
  await settle();
  WS.last.receive({ cmd: 'bound', uid: 'u', groups: [] });
  assert.equal(sdk.state, 'bound');
});

test('pings while bound; no answer within the pong timeout means a dead link', async () => {
  const { clock, WS, sdk, bindOk } = setup();
  sdk.start();
  await bindOk();
  await clock.advance(20_000);
  assert.equal(WS.last.sentOf('ping').length, 1);
  WS.last.receive({ cmd: 'pong', ts: 1 });
  await clock.advance(20_000);
  assert.equal(WS.last.sentOf('ping').length, 2);
  await clock.advance(10_000); // silence
  assert.equal(sdk.state, 'offline');
  assert.equal(WS.sockets[0].closedWith.by, 'client');
});

test('a connect that never opens is given up; stop() closes and stays idle', async () => {
  const { clock, WS, sdk } = setup();
  sdk.start();
  await clock.advance(10_000);
  assert.equal(sdk.state, 'offline');
  sdk.stop();
  assert.equal(sdk.state, 'idle');
  await clock.advance(60_000);
  assert.equal(WS.sockets.length, 1);
});

test('the SDK touches no DOM', async () => {
  const src = await import('node:fs').then((fs) => fs.readFileSync(new URL('../../../web_sdk/push.js', import.meta.url), 'utf8'));
  for (const word of ['document', 'window', 'localStorage']) assert.ok(!new RegExp(`\\b${word}\\b`).test(src), word);
});
