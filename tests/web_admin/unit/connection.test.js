// The socket state machine: hello, heartbeat, reconnect with backoff and jitter, and what every
// close code leads to. The server's side is played by hand on a fake WebSocket.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { backoffDelay } from '../../../web_admin/js/client/backoff.js';
import { CLOSE, Connection, closeAction } from '../../../web_admin/js/client/connection.js';
import { FakeClock, fakeWebSocketClass, settle } from '../fakes.js';

const HELLO = { cmd: 'hello', role: 'agent', agent: { id: 1, name: 'alice' }, heartbeat: 40, max_message_bytes: 65536 };

function setup({ random = () => 0.5 } = {}) {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const log = { status: [], hellos: [], frames: [], closes: [] };
  const conn = new Connection({
    url: 'ws://kefu.test/ws', WebSocket: WS, clock, random,
    handlers: {
      onStatus: (state, info) => log.status.push({ state, ...info }),
      onHello: (f) => log.hellos.push(f),
      onFrame: (f) => log.frames.push(f),
      onClose: (c) => log.closes.push(c),
    },
  });
  const up = async () => {
    const ws = WS.last;
    ws.accept();
    ws.receive(HELLO);
    await settle();
    return ws;
  };
  return { clock, WS, conn, log, up, states: () => log.status.map((s) => s.state) };
}

test('backoff doubles per attempt up to the ceiling, each wait jittered within its upper half', () => {
  const at = (attempt, r) => backoffDelay(attempt, { base: 500, max: 15_000, random: () => r });
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((a) => at(a, 1)), [500, 1000, 2000, 4000, 8000, 15_000, 15_000]);
  assert.deepEqual([0, 1, 2, 5].map((a) => at(a, 0)), [250, 500, 1000, 7500]);
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(3)));
  assert.ok(spread.size > 10, 'Math.random jitter spreads the waits');
  for (const d of spread) assert.ok(d >= 2000 && d <= 4000);
});

test('connects with the token and v=2, is online at hello, and passes other frames on', async () => {
  const { WS, conn, log, up, states } = setup();
  conn.start('tok en/1');
  assert.equal(WS.sockets.length, 1);
  assert.equal(WS.last.url, 'ws://kefu.test/ws?token=tok%20en%2F1&v=2');
  assert.deepEqual(states(), ['connecting']);
  assert.equal(conn.send({ cmd: 'ping' }), false, 'nothing is sent before hello');
  await up();
  assert.deepEqual(states(), ['connecting', 'online']);
  assert.equal(log.hellos.length, 1);
  assert.equal(conn.generation, 1);
  WS.last.receive({ cmd: 'pong', ts: 1 });
  WS.last.receive('not json');
  WS.last.receive('[1,2]');
  assert.deepEqual(log.frames, [{ cmd: 'pong', ts: 1 }]);
  assert.equal(conn.send({ cmd: 'sync', after: 0 }), true);
  assert.deepEqual(WS.last.sent, [{ cmd: 'sync', after: 0 }]);
});

test('pings at half the server heartbeat (at most every 25 s) and drops a link that went silent', async () => {
  const { clock, WS, conn, up } = setup();
  conn.start('t');
  const ws = await up(); // heartbeat 40 s → ping every 20 s
  await clock.advance(19_999);
  assert.equal(ws.sentOf('ping').length, 0);
  await clock.advance(1);
  assert.equal(ws.sentOf('ping').length, 1);
  ws.receive({ cmd: 'pong' });
  await clock.advance(20_000);
  assert.equal(ws.sentOf('ping').length, 2);
  // No answer at all since that pong (t = 20 s): the ping at 80 s finds 60 s of silence, more than
  // two ping periods and 10 s, and gives the socket up.
  await clock.advance(39_999);
  assert.equal(ws.sentOf('ping').length, 3);
  assert.equal(ws.closedWith, null);
  await clock.advance(1);
  assert.equal(ws.closedWith?.by, 'client');
  assert.equal(conn.state, 'offline');
  assert.equal(WS.sockets.length, 1);

  const { clock: c2, WS: WS2, conn: conn2 } = setup();
  conn2.start('t');
  WS2.last.accept();
  WS2.last.receive({ ...HELLO, heartbeat: undefined });
  await c2.advance(25_000);
  assert.equal(WS2.last.sentOf('ping').length, 1, 'without a heartbeat in hello: every 25 s');
});

test('a connection attempt that gets no hello within 10 s is retried with backoff', async () => {
  const { clock, WS, conn, log } = setup();
  conn.start('t');
  WS.last.accept(); // open, but the server never says hello
  await clock.advance(10_000);
  assert.equal(conn.state, 'offline');
  assert.equal(WS.sockets[0].closedWith.by, 'client');
  assert.equal(log.status.at(-1).retryAt - clock.now(), backoffDelay(0, { random: () => 0.5 }));
});

for (const code of [CLOSE.GOING_AWAY, CLOSE.INTERNAL, CLOSE.RESYNC, CLOSE.TRY_AGAIN, 1006, CLOSE.NORMAL]) {
  test(`close ${code}: offline, then a new socket after a backoff that grows until a hello`, async () => {
    const { clock, WS, conn, log, up } = setup();
    conn.start('t');
    await up();
    WS.last.serverClose(code, 'x');
    assert.equal(conn.state, 'offline');
    assert.equal(log.closes.at(-1).code, code);
    assert.equal(log.closes.at(-1).action.gap, code === CLOSE.RESYNC, '1012 says fan-out may have gaps');
    const waits = [];
    for (let attempt = 0; attempt < 4; attempt++) {
      const wait = log.status.at(-1).retryAt - clock.now();
      waits.push(wait);
      await clock.advance(wait - 1);
      assert.equal(WS.sockets.length, attempt + 1, 'not before the wait is over');
      await clock.advance(1);
      assert.equal(WS.sockets.length, attempt + 2);
      assert.equal(conn.state, 'connecting');
      WS.last.serverClose(1006); // the server is still away
    }
    assert.deepEqual(waits, [375, 750, 1500, 3000]);
    await clock.advance(log.status.at(-1).retryAt - clock.now());
    await up();
    assert.equal(conn.state, 'online');
    WS.last.serverClose(code);
    assert.equal(log.status.at(-1).retryAt - clock.now(), 375, 'a hello resets the backoff');
  });
}

test('an error event that no close event follows still counts as a drop, after a grace second', async () => {
  const { clock, WS, conn } = setup();
  conn.start('t');
  WS.last.errorOnly();
  await clock.advance(999);
  assert.equal(conn.state, 'connecting');
  await clock.advance(1);
  assert.equal(conn.state, 'offline');
  await clock.advance(375);
  assert.equal(WS.sockets.length, 2);
  WS.last.errorOnly();
  WS.last.serverClose(1006); // the usual case: the close comes right after
  assert.equal(conn.state, 'offline');
  await clock.advance(2000);
  assert.equal(WS.sockets.length, 3, 'one drop, one reconnect');
});

test('4401: no reconnect; the state goes idle, marked unauthorized', async () => {
  const { clock, WS, conn, log, up } = setup();
  conn.start('t');
  await up();
  WS.last.serverClose(CLOSE.UNAUTHORIZED, 'logged out');
  assert.deepEqual(log.closes.at(-1).action.then, 'sign-in');
  assert.equal(conn.state, 'idle');
  assert.equal(log.status.at(-1).unauthorized, true);
  await clock.advance(60_000);
  assert.equal(WS.sockets.length, 1);
  conn.retryNow();
  assert.equal(WS.sockets.length, 1, 'the dead token is not tried again');
});

test('4429: stopped until the agent asks to reconnect', async () => {
  const { clock, WS, conn, up, states } = setup();
  conn.start('t');
  await up();
  WS.last.serverClose(CLOSE.TOO_MANY_ERRORS, 'too many errors');
  assert.equal(conn.state, 'stopped');
  await clock.advance(120_000);
  assert.equal(WS.sockets.length, 1, 'no automatic reconnect');
  conn.retryNow();
  assert.equal(WS.sockets.length, 2);
  await up();
  assert.deepEqual(states(), ['connecting', 'online', 'stopped', 'connecting', 'online']);
});

for (const code of [CLOSE.HEARTBEAT, CLOSE.SLOW_CONSUMER]) {
  test(`close ${code}: reconnects at once, but backs off when it happens again soon`, async () => {
    const { clock, WS, conn, log, up } = setup();
    conn.start('t');
    await up();
    WS.last.serverClose(code);
    assert.equal(WS.sockets.length, 2, 'a new socket right away');
    assert.equal(conn.state, 'connecting');
    await up();
    WS.last.serverClose(code);
    assert.equal(conn.state, 'offline', 'twice within 15 s: the backoff applies');
    assert.equal(WS.sockets.length, 2);
    await clock.advance(log.status.at(-1).retryAt - clock.now());
    await up();
    await clock.advance(15_001);
    WS.last.serverClose(code);
    assert.equal(conn.state, 'connecting', 'later on, at once again');
  });
}

test('retryNow skips the wait; stop closes with 1000 and never reconnects; late events of old sockets are ignored', async () => {
  const { clock, WS, conn, log, up } = setup();
  conn.start('t');
  await up();
  const first = WS.last;
  first.serverClose(1006);
  assert.equal(conn.state, 'offline');
  conn.retryNow();
  assert.equal(WS.sockets.length, 2);
  conn.retryNow();
  assert.equal(WS.sockets.length, 2, 'not while an attempt is under way');
  first.receive({ cmd: 'pong' });
  first.serverClose(1006);
  assert.equal(log.frames.length, 0);
  assert.equal(conn.state, 'connecting');
  await up();
  conn.stop();
  assert.deepEqual(WS.last.closedWith, { code: 1000, reason: 'bye', by: 'client' });
  assert.equal(conn.state, 'idle');
  await clock.advance(60_000);
  assert.equal(WS.sockets.length, 2);
  assert.equal(clock.pendingDelays().length, 0, 'no timer left behind');
});

test('the close table', () => {
  const then = (code) => closeAction(code).then;
  assert.equal(then(4401), 'sign-in');
  assert.equal(then(4429), 'stop');
  for (const code of [1000, 1001, 1006, 1009, 1011, 1012, 1013, 4408, 4503, 4999]) assert.equal(then(code), 'reconnect');
  assert.deepEqual([4408, 4503].map((c) => closeAction(c).quick), [true, true]);
  assert.deepEqual([1001, 1011, 1012, 1013].map((c) => closeAction(c).quick), [false, false, false, false]);
});
