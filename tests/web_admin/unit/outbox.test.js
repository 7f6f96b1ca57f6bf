// The outbox: cmids, pending → acked / failed, the agent's retry, resends on a new socket, and the
// `"retry": true` error frames (resend the same cmid later, with backoff).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Outbox } from '../../../web_admin/js/client/outbox.js';
import { FakeClock } from '../fakes.js';

function setup({ online = true } = {}) {
  const clock = new FakeClock();
  const wire = { up: online, sent: [] };
  const changes = [];
  const box = new Outbox({
    clock, random: () => 1, // the top of each jitter range: waits are exact
    send: (f) => { if (!wire.up) return false; wire.sent.push(f); return true; },
    onChange: (e) => changes.push({ cmid: e.cmid, status: e.status }),
  });
  if (online) box.connected(1);
  const cmids = () => wire.sent.map((f) => f.cmid);
  return { clock, wire, box, changes, cmids };
}

test('a reply goes out at once with its cmid and leaves the outbox when settled', () => {
  const { box, wire } = setup();
  const e = box.add('o_1', 'c1', '你好');
  assert.deepEqual(wire.sent, [{ type: 1, openid: 'o_1', msg: '你好', cmid: 'c1' }]);
  assert.equal(e.status, 'sending');
  assert.equal(box.settle('c1'), e);
  assert.equal(box.get('c1'), null);
  assert.equal(box.settle('c1'), null, 'a second ack (dup) changes nothing');
});

test('typed offline: waits, goes out once on the next socket, and again (same cmid) on the one after', () => {
  const { box, wire, cmids } = setup({ online: false });
  box.add('o_1', 'c1', 'one');
  box.add('o_2', 'c2', 'two');
  assert.equal(wire.sent.length, 0);
  wire.up = true;
  box.connected(1);
  assert.deepEqual(cmids(), ['c1', 'c2']);
  box.flush();
  box.connected(1);
  assert.deepEqual(cmids(), ['c1', 'c2'], 'not twice on the same socket');
  box.settle('c1');
  box.disconnected();
  box.connected(2);
  assert.deepEqual(cmids(), ['c1', 'c2', 'c2'], 'the unacked one again on the new socket');
});

test('no ack within 10 s: failed; the agent retry sends the same cmid with a fresh deadline', async () => {
  const { clock, box, changes, cmids } = setup();
  const e = box.add('o_1', 'c1', 'hello');
  await clock.advance(9_999);
  assert.equal(e.status, 'sending');
  await clock.advance(1);
  assert.equal(e.status, 'failed');
  assert.equal(e.errorCode, 'no_ack');
  assert.deepEqual(changes, [{ cmid: 'c1', status: 'failed' }]);
  assert.ok(box.retry('c1'));
  assert.equal(e.status, 'sending');
  assert.deepEqual(cmids(), ['c1', 'c1']);
  await clock.advance(9_999);
  assert.equal(e.status, 'sending');
  box.settle('c1');
  await clock.advance(60_000);
  assert.equal(changes.length, 1, 'a settled reply never fails');
  assert.equal(box.retry('c1'), false);
});

test('refused with retry: true → the same cmid again after a backoff that grows; then acked', async () => {
  const { clock, box, cmids } = setup();
  const e = box.add('o_1', 'c1', 'x');
  box.refused('c1', { retry: true, code: 'unavailable', message: 'down' });
  assert.equal(e.status, 'sending', 'not failed: the server will take it later');
  await clock.advance(999);
  assert.deepEqual(cmids(), ['c1']);
  await clock.advance(1);
  assert.deepEqual(cmids(), ['c1', 'c1'], 'after 1 s');
  box.refused('c1', { retry: true, code: 'rate_limited' });
  await clock.advance(1_999);
  assert.equal(cmids().length, 2);
  await clock.advance(1);
  assert.deepEqual(cmids(), ['c1', 'c1', 'c1'], 'then after 2 s');
  box.settle('c1');
  assert.equal(box.get('c1'), null);
});

test('refused with retry: true but the deadline passes first: failed, and nothing more is sent', async () => {
  const { clock, box, cmids } = setup();
  const e = box.add('o_1', 'c1', 'x');
  for (let i = 0; i < 3; i++) {
    box.refused('c1', { retry: true, code: 'unavailable' });
    await clock.advance(2 ** i * 1000); // 1 s, 2 s, 4 s
  }
  assert.equal(cmids().length, 4);
  box.refused('c1', { retry: true, code: 'unavailable' }); // next try would be at 15 s
  await clock.advance(60_000);
  assert.equal(e.status, 'failed');
  assert.equal(cmids().length, 4);
});

test('refused without retry (or with retry missing): failed with the server\'s message, never resent alone', async () => {
  const { clock, box, cmids } = setup();
  const a = box.add('o_1', 'a', 'x'.repeat(10));
  const b = box.add('o_1', 'b', 'y');
  box.refused('a', { retry: false, code: 'too_large', message: 'message too large' });
  box.refused('b', { code: 'forbidden' });
  assert.equal(a.status, 'failed');
  assert.equal(a.error, 'message too large');
  assert.equal(b.status, 'failed');
  assert.equal(b.error, 'forbidden');
  await clock.advance(60_000);
  box.connected(2);
  assert.deepEqual(cmids(), ['a', 'b'], 'failed replies wait for the agent');
});

test('a reply waiting out a retryable error holds back later ones of its conversation, not of others', async () => {
  const { clock, box, wire, cmids } = setup();
  box.add('o_1', 'a1', 'first');
  box.refused('a1', { retry: true, code: 'rate_limited' });
  box.add('o_1', 'a2', 'second');
  box.add('o_2', 'b1', 'elsewhere');
  assert.deepEqual(cmids(), ['a1', 'b1']);
  await clock.advance(1000);
  assert.deepEqual(cmids(), ['a1', 'b1', 'a1', 'a2'], 'in the order they were typed');
  assert.deepEqual(wire.sent.slice(2).map((f) => f.msg), ['first', 'second']);
});

test('a new socket sends a reply waiting out a retryable error at once (the reconnect already waited)', () => {
  const { box, cmids } = setup();
  box.add('o_1', 'c1', 'x');
  box.refused('c1', { retry: true, code: 'unavailable' });
  box.disconnected();
  box.connected(2);
  assert.deepEqual(cmids(), ['c1', 'c1']);
});

test('entries per conversation are in typed order; clear forgets all and their timers', async () => {
  const { clock, box } = setup();
  box.add('o_1', 'c1', '1');
  await clock.advance(5);
  box.add('o_2', 'c2', '2');
  await clock.advance(5);
  box.add('o_1', 'c3', '3');
  assert.deepEqual(box.forConversation('o_1').map((e) => e.cmid), ['c1', 'c3']);
  box.clear();
  assert.deepEqual(box.forConversation('o_1'), []);
  assert.deepEqual(clock.pendingDelays(), []);
});
