// The timeline (live frames, sync replies and history pages merged by id, in order) and the read
// marks / unread counts kept on top of it.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ReadMarks } from '../../../web_admin/js/client/readmarks.js';
import { Timeline } from '../../../web_admin/js/client/timeline.js';

const user = (id, openid = 'o_1', msg = `u${id}`) => ({ id, ts: 1000 + id, openid, from: 'user', msg });
const agent = (id, openid = 'o_1', name = 'alice') => ({ id, ts: 1000 + id, openid, from: 'agent', agent: name, msg: `a${id}` });
const row = (last, extra = {}) => ({ openid: last.openid, last_message: last, unread: 0, agent_read_upto: 0, user_read_upto: 0, ...extra });

function setup() {
  const tl = new Timeline();
  const marks = new ReadMarks(tl);
  const take = (m, opts) => { tl.add(m); return marks.take(m, opts); };
  return { tl, marks, take };
}

test('the same message from live, sync and history is held once, and threads read oldest first', () => {
  const { tl, take } = setup();
  tl.thread('o_1');
  take(user(5));
  take(user(3)); // an older one arriving late (a sync after a reconnect)
  take(user(5)); // the live copy again
  take(agent(4));
  for (const m of [user(5), agent(4), user(3), user(1)]) take(m, { count: false }); // a history page, newest first
  assert.deepEqual(tl.messages('o_1').map((m) => m.id), [1, 3, 4, 5]);
  assert.equal(tl.conversation('o_1').last.id, 5);
});

test('a conversation without a loaded thread keeps only its last message; not-messages are refused', () => {
  const { tl } = setup();
  assert.ok(tl.add(user(7, 'o_2')));
  assert.equal(tl.add({ id: 8, openid: 'o_2' }), null, 'no msg');
  assert.equal(tl.add({ msg: 'x', openid: 'o_2' }), null, 'no id');
  assert.equal(tl.add(null), null);
  assert.deepEqual(tl.messages('o_2'), []);
  assert.equal(tl.conversation('o_2').last.id, 7);
});

test('conversations sort by latest activity; list rows bring names and last messages', () => {
  const { tl, marks, take } = setup();
  const rows = [row(user(9, 'o_b'), { nickname: '小明' }), row(user(4, 'o_a'))];
  marks.mergeRows(rows);
  tl.mergeRows(rows);
  assert.deepEqual(tl.sortedConversations().map((c) => c.openid), ['o_b', 'o_a']);
  take(user(12, 'o_a'));
  assert.deepEqual(tl.sortedConversations().map((c) => c.openid), ['o_a', 'o_b']);
  assert.equal(tl.conversation('o_b').nickname, '小明');
  tl.forgetThreads();
  assert.equal(tl.threads.size, 0);
});

test('unread: the server\'s count, then each new user message once, however many ways it arrives', () => {
  const { tl, marks, take } = setup();
  const rows = [row(user(10), { unread: 2, agent_read_upto: 7 })];
  marks.mergeRows(rows);
  tl.mergeRows(rows);
  assert.equal(tl.conversation('o_1').unread, 2);
  assert.equal(take(user(9)), false, 'covered by the server\'s count');
  assert.equal(take(user(11)), true);
  assert.equal(take(user(11)), false, 'the same id again (sync after live)');
  assert.equal(take(agent(12)), false, 'agent messages are never unread');
  assert.equal(take(user(13), { count: false }), false, 'history pages do not count');
  assert.equal(take(user(13)), false, 'nor later copies of what a history page brought');
  assert.equal(marks.total(), 3);
});

test('a list page replaces our count unless we already hold something newer', () => {
  const { tl, marks, take } = setup();
  take(user(20));
  assert.equal(tl.conversation('o_1').unread, 1);
  const stale = [row(user(15), { unread: 5 })]; // an answer from before message 20
  marks.mergeRows(stale);
  tl.mergeRows(stale);
  assert.equal(tl.conversation('o_1').unread, 1);
  assert.equal(tl.conversation('o_1').last.id, 20);
  const fresh = [row(user(20), { unread: 4 })];
  marks.mergeRows(fresh);
  tl.mergeRows(fresh);
  assert.equal(tl.conversation('o_1').unread, 4);
});

test('read marks: the agents\' mark clears or lowers the count, the user\'s drives "read" on replies', () => {
  const { tl, marks, take } = setup();
  tl.thread('o_1');
  for (const id of [1, 2, 3, 4]) take(user(id));
  assert.equal(tl.conversation('o_1').unread, 4);
  marks.apply('o_1', 'agent', 2); // another agent read up to 2
  assert.equal(tl.conversation('o_1').unread, 2);
  assert.equal(take(user(2)), false, 'behind the mark');
  marks.apply('o_1', 'agent', 4);
  assert.equal(tl.conversation('o_1').unread, 0);
  marks.apply('o_1', 'agent', 1);
  assert.equal(tl.conversation('o_1').agentReadUpto, 4, 'marks never move back');
  marks.apply('o_1', 'user', 3);
  assert.equal(tl.conversation('o_1').userReadUpto, 3);
});

test('markRead: only when something is unread, up to the newest message', () => {
  const { tl, marks, take } = setup();
  take(user(5));
  assert.deepEqual(marks.markRead('o_1'), { openid: 'o_1', upto: 5 });
  assert.equal(tl.conversation('o_1').unread, 0);
  assert.equal(marks.markRead('o_1'), null, 'nothing new');
  take(agent(6));
  assert.equal(marks.markRead('o_1'), null, 'our own reply needs no mark');
  assert.deepEqual(marks.markRead('o_empty'), null);
});
