// Sync paging (`more`), queued resyncs, resuming a cut-off sync, retry after an error frame with
// `"retry": true`, and the persisted cursor (epoch, last id).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Cursor, SyncPager } from '../../../web_admin/js/client/sync.js';
import { FakeClock, memoryStorage } from '../fakes.js';

function pager({ up = true } = {}) {
  const clock = new FakeClock();
  const wire = { up, sent: [] };
  const p = new SyncPager({ clock, random: () => 1, send: (f) => { if (!wire.up) return false; wire.sent.push(f); return true; } });
  const afters = () => wire.sent.map((f) => f.after);
  const page = (after, ids, more) => ({ cmd: 'sync', after, messages: ids.map((id) => ({ id, openid: 'o', msg: '' })), more });
  return { clock, wire, p, afters, page };
}

test('pages while `more`, each after the last id of the page before', () => {
  const { p, wire, afters, page } = pager();
  p.request(10);
  assert.deepEqual(wire.sent, [{ cmd: 'sync', after: 10, limit: 200 }]);
  assert.equal(p.replied(page(10, [11, 12], true)), 'more');
  assert.equal(p.replied(page(12, [13], true)), 'more');
  assert.equal(p.replied(page(13, [], false)), 'done');
  assert.deepEqual(afters(), [10, 12, 13]);
  assert.equal(p.running, false);
  assert.equal(p.replied(page(13, [], false)), 'stale', 'nothing was asked');
});

test('a request while a sync runs waits for it, from the lowest id asked for', () => {
  const { p, afters, page } = pager();
  p.request(50);
  p.request(30);
  p.request(40);
  assert.deepEqual(afters(), [50]);
  assert.equal(p.replied(page(50, [51], false)), 'more');
  assert.deepEqual(afters(), [50, 30]);
  assert.equal(p.replied(page(30, [31, 51], false)), 'done');
});

test('a reply to another request than the one waited for is stale', () => {
  const { p, afters, page } = pager();
  p.request(5);
  assert.equal(p.replied(page(99, [100], true)), 'stale');
  assert.deepEqual(afters(), [5]);
  assert.equal(p.running, true);
});

test('a sync cut off by a dropped socket (or asked while offline) resumes from where it was', () => {
  const { p, wire, afters, page } = pager();
  p.request(10);
  p.replied(page(10, [11, 12], true)); // asked after 12
  p.request(3); // and a resync queued
  p.dropped();
  assert.equal(p.running, false);
  assert.equal(p.takeResume(), 3);
  assert.equal(p.takeResume(), null, 'read once');
  wire.up = false;
  p.request(20);
  assert.equal(p.running, false);
  assert.equal(p.takeResume(), 20);
  assert.deepEqual(afters(), [10, 12]);
});

test('an error frame with retry: true asks the same page again after a growing backoff', async () => {
  const { clock, p, afters, page } = pager();
  p.request(7);
  p.retryLater();
  p.retryLater(); // one retry at a time
  await clock.advance(999);
  assert.deepEqual(afters(), [7]);
  await clock.advance(1);
  assert.deepEqual(afters(), [7, 7]);
  p.retryLater();
  await clock.advance(2000);
  assert.deepEqual(afters(), [7, 7, 7]);
  assert.equal(p.replied(page(7, [8], false)), 'done');
  p.retryLater();
  await clock.advance(60_000);
  assert.equal(afters().length, 3, 'nothing left to retry');
});

test('the cursor keeps (epoch, last id) per agent; a new epoch puts the last id back to 0', () => {
  const storage = memoryStorage();
  const c = new Cursor({ storage });
  c.load(1);
  assert.equal(c.observe(undefined), 'none', 'a server that sends no epoch');
  assert.equal(c.observe('e1'), 'first');
  c.note(40);
  c.note(12);
  c.save();
  assert.deepEqual(JSON.parse(storage.getItem('kefu.cursor')), { scope: '1', epoch: 'e1', lastId: 40 });

  const again = new Cursor({ storage });
  again.load(1);
  assert.equal(again.lastId, 40);
  assert.equal(again.observe('e1'), 'same');
  assert.equal(again.lastId, 40);
  assert.equal(again.observe('e2'), 'reset');
  assert.equal(again.lastId, 0);
  assert.deepEqual(JSON.parse(storage.getItem('kefu.cursor')), { scope: '1', epoch: 'e2', lastId: 0 });

  const other = new Cursor({ storage });
  other.load(2);
  assert.equal(other.lastId, 0, 'another agent in the same tab starts afresh');
  assert.equal(other.observe('e2'), 'first');
  storage.setItem('kefu.cursor', '{not json');
  other.load(2);
  assert.equal(other.lastId, 0);
});
