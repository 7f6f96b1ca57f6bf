'use strict';
// A small `wx` for Node: the APIs utils/kefu.js uses, backed by a real WebSocket (`ws`) and HTTP
// (global fetch). It records what the mini-program did and can simulate a bad network.
//
//   const { wx, ctl } = createWx({ code: 'node-test-user-1' });
//   ctl.calls.login / .requests / .setTabBarBadge / .removeTabBarBadge — what was called
//   ctl.sockets — every SocketTask made; ctl.current() — the newest one
//   ctl.setOffline(true) — kill open sockets; new sockets and requests fail until setOffline(false)
//   task.blackhole = true — frames are silently lost both ways (a dead network path)
//   task.dropIncoming = (frame) => bool — lose selected server frames (e.g. acks)
//   task.kill() — the connection drops without a close frame (code 1006)
//
// createWx({ socket, http }) swaps the network for fakes (harness/fakekefu.js): `socket(url, ctl)`
// returns a SocketTask, `http(req)` resolves to {statusCode, data} or throws for a network error.

const fs = require('node:fs');
const path = require('node:path');
const WebSocket = require('ws');

function defer(fn) { setImmediate(fn); }

class FakeSocketTask {
  constructor(url, ctl) {
    this.url = url;
    this.ctl = ctl;
    this.sent = [];      // frames the mini-program sent (parsed JSON), including lost ones
    this.received = [];  // frames delivered to the mini-program (parsed JSON)
    this.lost = [];      // server frames that were dropped
    this.blackhole = false;
    this.dropIncoming = null;
    this.closeCalls = [];
    this.closed = null;  // {code, reason} once onClose fired
    this.opened = false;
    this.handlers = { open: [], message: [], error: [], close: [] };
    if (ctl.offline) {
      defer(() => {
        this.fire('error', { errMsg: 'connectSocket:fail network is offline' });
        this.fireClose(1006, 'offline');
      });
      return;
    }
    this.ws = new WebSocket(url);
    this.ws.on('open', () => { this.opened = true; this.fire('open', { header: {}, profile: {} }); });
    this.ws.on('message', (data, isBinary) => {
      if (isBinary) { this.fire('message', { data: new Uint8Array(data).buffer }); return; }
      const text = data.toString('utf8');
      let frame;
      try { frame = JSON.parse(text); } catch { frame = text; }
      if (this.blackhole || (this.dropIncoming && this.dropIncoming(frame))) { this.lost.push(frame); return; }
      this.received.push(frame);
      this.fire('message', { data: text });
    });
    this.ws.on('error', (e) => this.fire('error', { errMsg: `socket error: ${e.message}` }));
    this.ws.on('close', (code, reason) => this.fireClose(code, reason.toString('utf8')));
  }

  fire(kind, res) {
    for (const cb of this.handlers[kind].slice()) cb(res);
  }
  fireClose(code, reason) {
    if (this.closed) return;
    this.closed = { code, reason };
    this.fire('close', { code, reason });
  }

  onOpen(cb) { this.handlers.open.push(cb); }
  onMessage(cb) { this.handlers.message.push(cb); }
  onError(cb) { this.handlers.error.push(cb); }
  onClose(cb) { this.handlers.close.push(cb); }

  send({ data, success, fail, complete } = {}) {
    if (typeof data !== 'string') throw new TypeError('this shim only carries text frames');
    let frame;
    try { frame = JSON.parse(data); } catch { frame = data; }
    const done = (ok, errMsg) => defer(() => {
      const res = { errMsg };
      if (ok && success) success(res);
      if (!ok && fail) fail(res);
      if (complete) complete(res);
    });
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) { done(false, 'sendSocketMessage:fail socket is not open'); return; }
    this.sent.push(frame);
    if (this.blackhole) { done(true, 'sendSocketMessage:ok'); return; }
    this.ws.send(data, (err) => done(!err, err ? `sendSocketMessage:fail ${err.message}` : 'sendSocketMessage:ok'));
  }

  close({ code = 1000, reason = '', success, fail, complete } = {}) {
    this.closeCalls.push({ code, reason });
    if (this.ws) {
      if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
      else if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code, reason);
    }
    defer(() => {
      const res = { errMsg: 'closeSocket:ok' };
      if (success) success(res);
      if (complete) complete(res);
    });
    void fail;
  }

  kill() { if (this.ws) this.ws.terminate(); }

  sentFrames(pred) { return this.sent.filter(pred); }
}

function createWx({ code = 'node-test-user', rewrite = (u) => u, socket = null, http = null } = {}) {
  const storage = new Map();
  const ctl = {
    code,
    offline: false,
    storage,
    sockets: [],
    calls: { login: 0, requests: [], setTabBarBadge: [], removeTabBarBadge: [], switchTab: [], showToast: [],
      chooseMedia: [], uploadFile: [], previewImage: [], requestSubscribeMessage: [] },
    nextMedia: [],   // temp file paths wx.chooseMedia hands out next (a test puts files there)
    subscribeAnswer: 'accept', // what the user taps in the subscribe dialog
    badge: null,     // the text on the chat tab, or null
    badgeErrors: [], // calls that broke the API contract
    current() { return this.sockets[this.sockets.length - 1] || null; },
    setOffline(v) {
      this.offline = v;
      if (v) for (const s of this.sockets) s.kill();
    },
    sent(pred = () => true) { return this.sockets.flatMap((s) => s.sent.filter(pred)); },
    received(pred = () => true) { return this.sockets.flatMap((s) => s.received.filter(pred)); },
  };

  const finish = (opts, ok, res) => defer(() => {
    if (ok && opts.success) opts.success(res);
    if (!ok && opts.fail) opts.fail(res);
    if (opts.complete) opts.complete(res);
  });

  const wx = {
    login(opts = {}) {
      ctl.calls.login += 1;
      if (ctl.offline) finish(opts, false, { errMsg: 'login:fail network is offline' });
      else finish(opts, true, { code: ctl.code, errMsg: 'login:ok' });
    },

    request(opts) {
      const method = (opts.method || 'GET').toUpperCase();
      let url = rewrite(opts.url);
      const rec = { method, url, data: opts.data, header: { ...(opts.header || {}) }, status: null };
      ctl.calls.requests.push(rec);
      if (ctl.offline) { finish(opts, false, { errMsg: 'request:fail network is offline' }); return { abort() {} }; }
      if (http) {
        Promise.resolve().then(() => http({ method, url, data: opts.data, header: rec.header })).then(
          (res) => { rec.status = res.statusCode; finish(opts, true, { ...res, errMsg: 'request:ok' }); },
          (e) => finish(opts, false, { errMsg: `request:fail ${e.message}` }));
        return { abort() {} };
      }
      let body;
      if (opts.data !== undefined && opts.data !== null) {
        if (method === 'GET') {
          const q = new URLSearchParams(opts.data).toString();
          if (q) url += (url.includes('?') ? '&' : '?') + q;
        } else {
          body = typeof opts.data === 'string' ? opts.data : JSON.stringify(opts.data);
        }
      }
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), opts.timeout || 60000);
      fetch(url, { method, headers: opts.header || {}, body, signal: controller.signal })
        .then(async (r) => {
          const text = await r.text();
          let data = text;
          if (opts.dataType !== 'text') { try { data = JSON.parse(text); } catch { /* keep text */ } }
          rec.status = r.status;
          return { statusCode: r.status, data, header: Object.fromEntries(r.headers), errMsg: 'request:ok' };
        })
        .then((res) => finish(opts, true, res), (e) => finish(opts, false, { errMsg: `request:fail ${e.message}` }))
        .finally(() => clearTimeout(timer));
      return { abort() { controller.abort(); } };
    },

    connectSocket(opts) {
      const task = socket ? socket(rewrite(opts.url), ctl) : new FakeSocketTask(rewrite(opts.url), ctl);
      ctl.sockets.push(task);
      finish(opts, true, { errMsg: 'connectSocket:ok' });
      return task;
    },

    getStorageSync(key) {
      return storage.has(key) ? structuredClone(storage.get(key)) : '';
    },
    setStorageSync(key, value) {
      if (typeof key !== 'string' || !key) throw new TypeError('setStorageSync: key must be a non-empty string');
      storage.set(key, structuredClone(value));
    },
    removeStorageSync(key) { storage.delete(key); },

    setTabBarBadge(opts) {
      ctl.calls.setTabBarBadge.push({ index: opts.index, text: opts.text });
      if (typeof opts.text !== 'string' || !Number.isInteger(opts.index) || opts.index < 0) {
        ctl.badgeErrors.push(opts);
        finish(opts, false, { errMsg: 'setTabBarBadge:fail parameter error: text should be String, index a tab' });
        return;
      }
      ctl.badge = opts.text;
      finish(opts, true, { errMsg: 'setTabBarBadge:ok' });
    },
    removeTabBarBadge(opts) {
      ctl.calls.removeTabBarBadge.push({ index: opts.index });
      if (!Number.isInteger(opts.index) || opts.index < 0) {
        ctl.badgeErrors.push(opts);
        finish(opts, false, { errMsg: 'removeTabBarBadge:fail parameter error' });
        return;
      }
      ctl.badge = null;
      finish(opts, true, { errMsg: 'removeTabBarBadge:ok' });
    },
    // wx.chooseMedia: the next file the test prepared, as a temporary path (like WeChat's tmp files).
    chooseMedia(opts = {}) {
      ctl.calls.chooseMedia.push({ count: opts.count, mediaType: opts.mediaType, sizeType: opts.sizeType });
      const file = ctl.nextMedia.shift();
      if (!file) { finish(opts, false, { errMsg: 'chooseMedia:fail cancel' }); return; }
      const size = fs.statSync(file).size;
      finish(opts, true, { type: 'image', errMsg: 'chooseMedia:ok', tempFiles: [{ tempFilePath: file, size, fileType: 'image' }] });
    },

    // wx.uploadFile: a real multipart POST of the file at filePath (field `name`), like WeChat's.
    uploadFile(opts) {
      const rec = { url: rewrite(opts.url), name: opts.name, filePath: opts.filePath, header: { ...(opts.header || {}) }, status: null };
      ctl.calls.uploadFile.push(rec);
      if (ctl.offline) { finish(opts, false, { errMsg: 'uploadFile:fail network is offline' }); return { abort() {} }; }
      const form = new FormData();
      for (const [k, v] of Object.entries(opts.formData || {})) form.append(k, String(v));
      form.append(opts.name, new Blob([fs.readFileSync(opts.filePath)]), path.basename(opts.filePath));
      fetch(rec.url, { method: 'POST', headers: opts.header || {}, body: form })
        .then(async (r) => { rec.status = r.status; return { statusCode: r.status, data: await r.text(), errMsg: 'uploadFile:ok' }; })
        .then((res) => finish(opts, true, res), (e) => finish(opts, false, { errMsg: `uploadFile:fail ${e.message}` }));
      return { abort() {} };
    },

    previewImage(opts) {
      ctl.calls.previewImage.push({ current: opts.current, urls: opts.urls });
      const ok = Array.isArray(opts.urls) && opts.urls.length > 0;
      finish(opts, ok, { errMsg: ok ? 'previewImage:ok' : 'previewImage:fail urls' });
    },

    // The dialog's answer is ctl.subscribeAnswer for every template asked for.
    requestSubscribeMessage(opts) {
      ctl.calls.requestSubscribeMessage.push({ tmplIds: opts.tmplIds });
      const res = { errMsg: 'requestSubscribeMessage:ok' };
      for (const id of opts.tmplIds || []) res[id] = ctl.subscribeAnswer;
      finish(opts, true, res);
    },

    showToast(opts) {
      ctl.calls.showToast.push({ title: opts.title, icon: opts.icon, duration: opts.duration });
      finish(opts, typeof opts.title === 'string', { errMsg: typeof opts.title === 'string' ? 'showToast:ok' : 'showToast:fail title' });
    },
    switchTab(opts) {
      ctl.calls.switchTab.push(opts.url);
      finish(opts, true, { errMsg: 'switchTab:ok' });
    },
  };
  return { wx, ctl };
}

module.exports = { createWx, FakeSocketTask };
