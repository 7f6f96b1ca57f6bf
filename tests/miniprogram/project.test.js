'use strict';
// Server-free checks: the mini-program project is complete and consistent, its code uses only
// mini-program APIs, and the pure helpers behave.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const MP = path.resolve(__dirname, '..', '..', 'miniprogram');
const kefuLib = require(path.join(MP, 'utils', 'kefu.js'));
const config = require(path.join(MP, 'config.js'));
const { buildItems, viewData } = require(path.join(MP, 'pages', 'chat', 'logic.js'));
const { homeData } = require(path.join(MP, 'pages', 'index', 'logic.js'));

const readJson = (f) => JSON.parse(fs.readFileSync(path.join(MP, f), 'utf8'));

function jsFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return jsFiles(p);
    return e.name.endsWith('.js') ? [p] : [];
  });
}

test('app.json: every page has its four files, and the chat tab is config.chatTabIndex', () => {
  const app = readJson('app.json');
  for (const page of app.pages) {
    for (const ext of ['js', 'wxml', 'wxss', 'json']) {
      assert.ok(fs.existsSync(path.join(MP, `${page}.${ext}`)), `${page}.${ext}`);
    }
  }
  const tabs = app.tabBar.list.map((t) => t.pagePath);
  assert.ok(tabs.includes('pages/index/index'));
  assert.equal(tabs.indexOf('pages/chat/chat'), config.chatTabIndex);
  assert.ok(tabs.every((p) => app.pages.includes(p)));
  assert.ok(fs.existsSync(path.join(MP, app.sitemapLocation)));
  readJson('sitemap.json');
  const project = readJson('project.config.json');
  assert.equal(project.compileType, 'miniprogram');
  for (const f of ['app.js', 'app.wxss', 'config.js', 'README.md', 'utils/kefu.js']) {
    assert.ok(fs.existsSync(path.join(MP, f)), f);
  }
});

test('mini-program code is plain CommonJS with no Node-only APIs', () => {
  for (const file of jsFiles(MP)) {
    const src = fs.readFileSync(file, 'utf8').replace(/^\s*\/\/.*$/gm, ''); // drop comment lines
    const rel = path.relative(MP, file);
    for (const m of src.matchAll(/require\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      assert.ok(m[1].startsWith('.'), `${rel} requires ${m[1]}: only relative mini-program modules exist`);
      assert.ok(fs.existsSync(path.resolve(path.dirname(file), m[1])), `${rel}: ${m[1]} exists`);
    }
    assert.doesNotMatch(src, /\b(process|Buffer|__dirname|globalThis|window|document|localStorage|fetch)\b/, rel);
    assert.doesNotMatch(src, /^\s*(import|export)\s/m, `${rel}: CommonJS only`);
  }
});

test('config: wss in production, one place for the server address', () => {
  assert.match(config.baseUrl, /^https:\/\//);
  assert.equal(kefuLib.deriveSocketUrl('https://kefu.example.com/'), 'wss://kefu.example.com/ws');
  assert.equal(kefuLib.deriveSocketUrl('https://kefu.example.com/chat'), 'wss://kefu.example.com/chat/ws');
  assert.equal(kefuLib.deriveSocketUrl('http://127.0.0.1:8000'), 'ws://127.0.0.1:8000/ws');
  assert.equal(config.heartbeatInterval, 30000);
  assert.throws(() => kefuLib.createKefu({ config }), /wx is required/);
  assert.throws(() => kefuLib.getKefu(), /no global wx/);
});

test('backoff grows exponentially, is capped, and is jittered', () => {
  const d = (attempt, r) => kefuLib.backoffDelay(attempt, 1000, 30000, () => r);
  assert.equal(d(1, 0), 500);
  assert.equal(d(1, 1), 1000);
  assert.equal(d(2, 1), 2000);
  assert.equal(d(3, 1), 4000);
  assert.equal(d(10, 1), 30000);
  assert.equal(d(10, 0), 15000);
  for (let a = 1; a < 12; a++) {
    const x = kefuLib.backoffDelay(a, 1000, 30000, Math.random);
    const cap = Math.min(30000, 1000 * 2 ** (a - 1));
    assert.ok(x >= cap / 2 && x <= cap, `attempt ${a}: ${x}`);
  }
});

test('utf8Length matches the UTF-8 byte count', () => {
  for (const s of ['', 'abc', 'é', '你好', '👋', 'a👋b你', '\ud83d']) {
    assert.equal(kefuLib.utf8Length(s), Buffer.byteLength(s, 'utf8'), JSON.stringify(s));
  }
});

test('chat view: order, states and labels', () => {
  const state = {
    status: 'offline', hasOlder: true, agentReadUpto: 11,
    messages: [
      { id: 10, ts: 0, from: 'agent', agent: 'alice', msg: 'hi' },
      { id: 11, ts: 0, from: 'user', msg: 'read one', cmid: 'a' },
      { id: 12, ts: 0, from: 'user', msg: 'unread one', cmid: 'b' },
    ],
    outbox: [{ cmid: 'c', msg: 'queued', ts: 0, state: 'pending' }, { cmid: 'd', msg: 'bad', ts: 0, state: 'failed', error: 'too_large' }],
  };
  const items = buildItems(state);
  assert.deepEqual(items.map((i) => [i.text, i.mine, i.state]), [
    ['hi', false, ''], ['read one', true, 'read'], ['unread one', true, 'sent'], ['queued', true, 'sending'], ['bad', true, 'failed'],
  ]);
  assert.equal(items[0].sender, 'alice');
  const v = viewData(state);
  assert.match(v.statusText, /重连/);
  assert.equal(v.scrollInto, 'item-cd');
  const h = homeData({ ...state, openid: 'o1', unread: 3 }, config);
  assert.equal(h.unreadText, '3');
  assert.equal(h.queued, 1);
  assert.deepEqual(h.pushes, []);
});

test('chat view: why a message failed, and one waiting to be resent', () => {
  const labels = buildItems({
    messages: [], agentReadUpto: 0,
    outbox: [
      { cmid: 'a', msg: 'x', ts: 0, state: 'pending', retries: 2 },
      { cmid: 'b', msg: 'x', ts: 0, state: 'failed', error: 'too_large' },
      { cmid: 'c', msg: 'x', ts: 0, state: 'failed', error: 'forbidden' },
      { cmid: 'd', msg: 'x', ts: 0, state: 'failed', error: 'bad_frame' },
    ],
  }).map((i) => [i.state, i.stateText]);
  assert.deepEqual(labels, [
    ['retrying', '发送中（稍后重试）'], ['failed', '消息太长，无法发送'], ['failed', '无权发送此消息，点击重试'],
    ['failed', '发送失败，点击重试'],
  ]);
});

test('isChatMessage: a server Message, not any object with an id', () => {
  assert.equal(kefuLib.isChatMessage({ id: 1, msg: 'hi', from: 'agent', ts: 1 }), true);
  assert.equal(kefuLib.isChatMessage({ id: 1, msg: 'hi', from: 'user' }), true);
  assert.equal(kefuLib.isChatMessage({ id: 1, msg: 'your order shipped' }), false);
  assert.equal(kefuLib.isChatMessage({ openid: 'o', msg: 'hi' }), false);
  assert.equal(kefuLib.isChatMessage({ id: '1', msg: 'hi', from: 'agent' }), false);
});
