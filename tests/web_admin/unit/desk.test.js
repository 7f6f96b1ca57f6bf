// The team side of the console client (web_admin/js/client/desk.js) and the string catalog.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Desk, TYPING_SHOWN_MS } from '../../../web_admin/js/client/desk.js';
import { CATALOG, setLang, t, eventText } from '../../../web_admin/js/i18n.js';

function desk() {
  const clock = { ms: 1000, now() { return this.ms; } };
  const d = new Desk({ clock });
  d.me = { id: 1, name: 'alice', admin: false };
  return { d, clock };
}

test('views follow the status frames: mine, unassigned, resolved, all', () => {
  const { d } = desk();
  d.takeRows([{ openid: 'o_a', status: 'open', assignee: null, profile: { name: '王小明' } }]);
  assert.equal(d.inView('o_a', 'unassigned'), true);
  assert.equal(d.inView('o_a', 'mine'), false);
  const r = d.take({ cmd: 'conversation', openid: 'o_a', status: 'assigned', assignee: { id: 1, name: 'alice' }, event: 'claimed' });
  assert.equal(r.assignedToMe, true);
  assert.equal(d.inView('o_a', 'mine'), true);
  assert.equal(d.inView('o_a', 'unassigned'), false);
  assert.equal(d.of('o_a').profile.name, '王小明', 'a status frame keeps the profile');
  d.take({ cmd: 'conversation', openid: 'o_a', status: 'assigned', assignee: { id: 2, name: 'bob' }, event: 'transferred' });
  assert.equal(d.inView('o_a', 'mine'), false);
  assert.equal(d.mayReply('o_a'), false, 'another agent holds it');
  d.take({ cmd: 'conversation', openid: 'o_a', status: 'resolved', assignee: { id: 2, name: 'bob' }, event: 'resolved' });
  assert.equal(d.inView('o_a', 'resolved'), true);
  assert.equal(d.inView('o_a', 'all'), true);
  assert.equal(d.mayReply('o_a'), true);
});

test('presence and the transfer list: online first, never oneself', () => {
  const { d } = desk();
  d.take({ cmd: 'desk', agents: [{ id: 1, name: 'alice', status: 'online' }, { id: 2, name: 'bob', status: 'offline' },
    { id: 3, name: 'carol', status: 'online' }] });
  d.take({ cmd: 'presence', agent: { id: 2, name: 'bob' }, status: 'away' });
  assert.deepEqual(d.transferTargets().map((a) => a.name), ['carol', 'bob']);
  assert.equal(d.myStatus(), 'online');
});

test("the user's typing shows for a while and ends with their message; sending is throttled", () => {
  const { d, clock } = desk();
  assert.equal(d.take({ cmd: 'typing', openid: 'o_a', from: 'user' }).kind, 'typing');
  assert.equal(d.isTyping('o_a'), true);
  clock.ms += TYPING_SHOWN_MS + 1;
  assert.equal(d.isTyping('o_a'), false);
  d.take({ cmd: 'typing', openid: 'o_a', from: 'user' });
  d.messageFrom({ openid: 'o_a', from: 'user' });
  assert.equal(d.isTyping('o_a'), false);
  assert.equal(d.take({ cmd: 'typing', openid: 'o_a', from: 'agent' }), null, "an agent's typing is not shown here");
  assert.equal(d.typingDue('o_a'), true);
  assert.equal(d.typingDue('o_a'), false);
  clock.ms += 2001;
  assert.equal(d.typingDue('o_a'), true);
});

test('canned replies match `/shortcut` (then the text), only while the composer holds just that', () => {
  const { d } = desk();
  d.canned = [{ id: 1, shortcut: 'hi', body: '您好，很高兴为您服务！' }, { id: 2, shortcut: 'refund', body: '退款将在 3 个工作日内到账' }];
  assert.deepEqual(d.cannedFor('/').map((c) => c.id), [1, 2]);
  assert.deepEqual(d.cannedFor('/re').map((c) => c.id), [2]);
  assert.deepEqual(d.cannedFor('/工作日').map((c) => c.id), [2]);
  assert.deepEqual(d.cannedFor('hello /hi'), []);
  assert.deepEqual(d.cannedFor('/hi there'), []);
});

test('the catalog: Chinese by default, English with every key, events in words', () => {
  assert.deepEqual(Object.keys(CATALOG.en).sort(), Object.keys(CATALOG['zh-CN']).sort());
  setLang('zh-CN');
  assert.equal(t('status.assigned', { name: 'alice' }), '接待中：alice');
  assert.equal(eventText({ event: 'transferred', by: { name: 'alice' }, to: { name: 'bob' }, note: 'VIP order' }),
    'alice 转接给 bob：VIP order');
  assert.equal(eventText({ event: 'assigned', by: null, to: { name: 'bob' } }), '已分配给 bob');
  setLang('en');
  assert.equal(eventText({ event: 'resolved', by: { name: 'alice' } }), 'Resolved by alice');
  assert.equal(t('login.wrong'), 'Wrong name or password.');
  setLang('xx');
  assert.equal(t('login.submit'), '登录');
});
