'use strict';
// Pictures and the subscribe request in the sample mini-program, under Node against a real kefu:
// wx.chooseMedia + wx.uploadFile send a photo as an image message the agent gets; an agent's
// picture shows with a signed thumbnail and opens in wx.previewImage on tap; the "reply received"
// subscribe message is asked for once, from a tap, and the consent reaches kefu.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');

const { KefuServer } = require('./harness/server');
const { createWx } = require('./harness/wx');
const { AgentSocket } = require('./harness/agent');
const { waitFor } = require('./harness/util');

const MP = path.resolve(__dirname, '..', '..', 'miniprogram');
const { createKefu } = require(path.join(MP, 'utils', 'kefu.js'));
const { createChatPage } = require(path.join(MP, 'pages', 'chat', 'logic.js'));
const mpConfig = require(path.join(MP, 'config.js'));

const RUN = crypto.randomBytes(3).toString('hex');
const TEMPLATE = 'TPL_reply_received_node';
let server;
let agentToken;
let tmp;

// A real PNG (solid colour), so kefu's image library has something genuine to decode.
function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}
function png(w, h, [r, g, b]) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: w }, () => [r, g, b]).flat())]);
  const raw = Buffer.concat(Array.from({ length: h }, () => row));
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

before(async () => {
  server = await KefuServer.create();
  server.env.KEFU_SUBSCRIBE_TEMPLATE_ID = TEMPLATE;
  await server.start();
  agentToken = await server.createAgent(`mp-media-agent-${RUN}`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kefu-mp-media-'));
});

after(async () => {
  if (server) await server.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('a photo from wx.chooseMedia reaches the agent; the agent\'s picture opens in wx.previewImage', { timeout: 60000 }, async (t) => {
  const { wx, ctl } = createWx({ code: `mp-media-${RUN}` });
  const kefu = createKefu({ wx, getApp: () => ({ globalData: {} }),
    config: { ...mpConfig, baseUrl: server.baseUrl, socketUrl: '', reconnectBaseDelay: 100 } });
  const view = {};
  const page = createChatPage({ kefu, setData: (d) => Object.assign(view, d) });
  page.onLoad();
  page.onShow();
  const agent = await AgentSocket.connect(server.wsUrl, agentToken);
  t.after(async () => { page.onUnload(); kefu.stop(); await agent.close(); });
  await kefu.start();
  await waitFor(() => kefu.status === 'open', { what: 'the socket to open' });

  // The user taps the picture button: wx.chooseMedia, then wx.uploadFile, then an image message.
  const photo = path.join(tmp, 'wx-tmp-photo.png');
  fs.writeFileSync(photo, png(400, 300, [240, 120, 20]));
  ctl.nextMedia.push(photo);
  const cmid = await page.chooseImage();
  assert.ok(cmid);
  assert.deepEqual(ctl.calls.chooseMedia[0].mediaType, ['image']);
  const upload = ctl.calls.uploadFile[0];
  assert.equal(upload.name, 'file');
  assert.match(upload.header.Authorization, /^Bearer /);
  const got = await agent.waitFor((f) => f.kind === 'image' && f.from === 'user', { what: 'the user\'s picture' });
  assert.equal(got.msg, '[图片]');
  assert.equal(got.meta.image.width, 400);
  await waitFor(() => kefu.getState().outbox.length === 0, { what: 'the ack' });
  const mine = view.items.find((i) => i.isImage && i.mine);
  assert.ok(mine, 'the picture is in the chat');
  await waitFor(() => view.items.find((i) => i.isImage && i.mine).thumb, { what: 'a signed thumbnail' });

  // The agent answers with a picture: shown with a signed thumbnail, full size on tap.
  const up = await fetch(`${server.baseUrl}/api/media?openid=${encodeURIComponent(kefu.openid)}`, {
    method: 'POST', body: png(64, 48, [20, 90, 200]),
    headers: { Authorization: `Bearer ${agentToken}`, 'Content-Type': 'image/png' } });
  assert.equal(up.status, 201);
  const imageId = (await up.json()).image.id;
  agent.send({ type: 1, openid: kefu.openid, image: imageId, cmid: `agent-pic-${RUN}` });
  await waitFor(() => view.items.find((i) => i.imageId === imageId && i.thumb), { what: 'the agent\'s picture' });
  const item = view.items.find((i) => i.imageId === imageId);
  assert.equal(item.mine, false);
  const thumb = await fetch(item.thumb);
  assert.equal(thumb.status, 200);
  assert.equal(thumb.headers.get('content-type'), 'image/jpeg');
  assert.equal(page.preview(imageId), true);
  const shown = ctl.calls.previewImage[0];
  assert.match(shown.current, new RegExp(`/media/${imageId}/full\\?e=\\d+&s=`));
  assert.equal(shown.urls.length, 2, 'both pictures of the chat can be swiped through');
  assert.equal((await fetch(shown.current)).status, 200);
});

test('the subscribe message is asked for once, from a tap, and the consent reaches kefu', { timeout: 60000 }, async (t) => {
  const { wx, ctl } = createWx({ code: `mp-sub-${RUN}` });
  const kefu = createKefu({ wx, getApp: () => ({ globalData: {} }),
    config: { ...mpConfig, baseUrl: server.baseUrl, socketUrl: '' } });
  const page = createChatPage({ kefu, setData: () => {} });
  page.onLoad();
  t.after(() => { page.onUnload(); kefu.stop(); });
  await kefu.start();
  await waitFor(() => kefu.getState().subscribe, { what: 'the subscribe template (after hello)' });
  page.onInput('你好');
  page.send();
  page.onInput('还在吗');
  page.send();
  assert.deepEqual(ctl.calls.requestSubscribeMessage, [{ tmplIds: [TEMPLATE] }]);
  const consent = await waitFor(async () => {
    const r = await server.api('GET', '/api/me/subscribe', { token: kefu.token });
    return r.body.consents === 1 && r.body;
  }, { what: 'the consent to be recorded' });
  assert.equal(consent.template_id, TEMPLATE);
  assert.equal(consent.page, 'pages/chat/chat');
});
