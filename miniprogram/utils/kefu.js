// kefu client for WeChat mini-programs: login, one chat socket per app, heartbeat, reconnect with
// backoff, sync of missed messages (and after a server's history reset or a fan-out gap), offline
// queue with client message ids, tab-bar unread badge, read receipts, and backend pushes handed to
// the app. Wire protocol: docs/protocol.md of the kefu server.
//
// Usage (app.js):   const { getKefu } = require('./utils/kefu.js'); getKefu().start({ app: this });
// Usage (a page):   const kefu = getApp().globalData.kefu; kefu.on('change', render); kefu.send('hi');
//                   kefu.onPush(function (obj) { ... });   // any JSON object a backend pushed
// Tests / custom:   createKefu({ wx, config, timers: { setTimeout, clearTimeout }, now, random, getApp })
//
// Plain CommonJS, only `wx.*` and timers: no Node or browser APIs.

// Every setting and its default lives in config.js; createKefu({config}) overrides any of them.
var DEFAULTS = require('../config.js');

// Close codes (docs/protocol.md §5) and what the client does after each.
var CLOSE = {
  GOING_AWAY: 1001,      // server shutting down: reconnect with backoff, then sync
  INTERNAL: 1011,        // server bug: reconnect with backoff, then sync
  RESYNC: 1012,          // fan-out may have had a gap: reconnect with backoff, then sync all that is held
  TRY_AGAIN: 1013,       // a backing store is down: reconnect with backoff, then sync
  UNAUTHORIZED: 4401,    // token expired or revoked: wx.login → /api/login, then reconnect
  HEARTBEAT: 4408,       // the server heard nothing for too long: reconnect at once
  TOO_MANY_ERRORS: 4429, // the server thinks this client is broken: stop, tell the page
  SLOW_CONSUMER: 4503    // this client did not read fast enough: reconnect at once
};
// Closes after which the first reconnect goes out at once (the server is fine, this socket was not).
var RECONNECT_AT_ONCE = {};
RECONNECT_AT_ONCE[CLOSE.HEARTBEAT] = true;
RECONNECT_AT_ONCE[CLOSE.SLOW_CONSUMER] = true;

// A chat Message (docs/protocol.md §4.1) as opposed to a backend push, which is any JSON object
// without `cmd` (§8): a push is handed to the app as it came.
function isChatMessage(f) {
  return typeof f.id === 'number' && typeof f.msg === 'string' && (f.from === 'user' || f.from === 'agent');
}

function utf8Length(s) {
  var n = 0;
  for (var i = 0; i < s.length; i++) {
    var c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length &&
             s.charCodeAt(i + 1) >= 0xdc00 && s.charCodeAt(i + 1) <= 0xdfff) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

// Exponential backoff with "equal jitter": attempt 1 waits base/2..base, attempt 2 base..2*base, …,
// never more than max. The random half spreads the reconnects of many clients after a restart.
function backoffDelay(attempt, base, max, random) {
  var exp = Math.min(max, base * Math.pow(2, Math.max(0, attempt - 1)));
  return Math.round(exp / 2 + (random || Math.random)() * exp / 2);
}

// https://host/prefix → wss://host/prefix/ws ; http → ws (local development only).
function deriveSocketUrl(baseUrl) {
  return String(baseUrl).replace(/\/+$/, '').replace(/^http(s?):\/\//i, 'ws$1://') + '/ws';
}

function makeError(code, message, status) {
  var e = new Error(message || code);
  e.code = code;
  e.status = status || 0;
  return e;
}

function createKefu(options) {
  options = options || {};
  var wx = options.wx;
  if (!wx) throw new Error('createKefu: options.wx is required');
  var config = {};
  var k;
  for (k in DEFAULTS) config[k] = DEFAULTS[k];
  for (k in options.config || {}) config[k] = options.config[k];
  if (!config.baseUrl) throw new Error('createKefu: config.baseUrl is required');
  var baseUrl = String(config.baseUrl).replace(/\/+$/, '');
  var socketUrl = config.socketUrl || deriveSocketUrl(baseUrl);
  var timers = options.timers || {};
  var now = options.now || function () { return Date.now(); };
  var random = options.random || Math.random;
  var appGetter = options.getApp || (typeof getApp === 'function' ? getApp : null); // eslint-disable-line no-undef

  function later(fn, ms) { return (timers.setTimeout || setTimeout)(fn, Math.max(0, ms)); }
  function cancel(t) { if (t) (timers.clearTimeout || clearTimeout)(t); }
  function log() {
    if (!config.debug) return;
    var args = Array.prototype.slice.call(arguments);
    args.unshift('[kefu]');
    console.log.apply(console, args);
  }

  var S = {
    started: false, stopped: false, background: false, blocked: false, app: options.app || null,
    token: '', openid: '', expiresAt: 0, loginPromise: null, startPromise: null,
    task: null, taskToken: '', gen: 0, open: false, connecting: false, status: 'idle',
    attempt: 0, authFailures: 0,
    reconnectTimer: null, connectTimer: null, pingTimer: null, pongTimer: null, flushTimer: null,
    syncRetryTimer: null,
    waitSince: 0, pingInterval: config.heartbeatInterval, maxMessageBytes: 65536,
    messages: [], byId: {}, floor: 0, historyBefore: null, historyLoaded: false,
    outbox: [], tokens: config.sendBurst, tokensAt: 0, seq: 0,
    syncing: false, syncAfter: 0, syncRetries: 0, resyncAfter: null, wideSync: false,
    // The server's history epoch and the newest message id seen in it (persisted as `cursor`);
    // memEpoch: the epoch the messages held in memory came from ('' = not known to differ).
    epoch: '', lastId: 0, memEpoch: '', cursorDirty: false, quickAt: -Infinity,
    pushes: [],
    unread: 0, countFloor: Infinity, chatVisible: false, readSentUpto: 0, badgeDirty: false,
    agentReadUpto: 0,
    // The team (docs/protocol.md §10): the agent typing now (until when), the agent who answers.
    agentTyping: null, agentTypingUntil: 0, agentTypingTimer: null, agentName: "", agentNameId: 0,
    typingSentAt: -Infinity,
    subscribe: null, subscribeAsked: false, subscribeLoading: false, // GET /api/me/subscribe; asked?
    listeners: {}
  };

  // ---- events ------------------------------------------------------------------------------------

  function on(event, fn) {
    (S.listeners[event] = S.listeners[event] || []).push(fn);
    return function () { off(event, fn); };
  }
  function off(event, fn) {
    var list = S.listeners[event];
    if (!list) return;
    if (!fn) { delete S.listeners[event]; return; }
    var i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  }
  function emit(event, payload) {
    var list = (S.listeners[event] || []).slice();
    for (var i = 0; i < list.length; i++) {
      try { list[i](payload); } catch (e) { log('listener of', event, 'threw', e); }
    }
  }
  function changed() { emit('change', snapshot()); }
  function setStatus(status) {
    if (S.status === status) return;
    S.status = status;
    emit('status', status);
    changed();
  }

  // ---- storage -----------------------------------------------------------------------------------

  function load(key) {
    try { return wx.getStorageSync(config.storagePrefix + key); } catch (e) { return ''; }
  }
  function save(key, value) {
    try { wx.setStorageSync(config.storagePrefix + key, value); } catch (e) { log('storage', e); }
  }
  function forget(key) {
    try { wx.removeStorageSync(config.storagePrefix + key); } catch (e) { log('storage', e); }
  }
  function loadSession() {
    var s = load('session');
    if (s && typeof s === 'object' && s.token) {
      S.token = s.token; S.openid = s.openid || ''; S.expiresAt = s.expiresAt || 0;
    }
  }
  function clearToken(token) {
    if (token && S.token !== token) return; // a newer token is already in place
    S.token = ''; S.expiresAt = 0;
    forget('session');
  }
  function loadCursor() {
    var c = load('cursor');
    if (c && typeof c === 'object') {
      S.epoch = typeof c.epoch === 'string' ? c.epoch : '';
      S.lastId = typeof c.lastId === 'number' && c.lastId > 0 ? c.lastId : 0;
    }
  }
  function saveCursor() {
    S.cursorDirty = false;
    save('cursor', { epoch: S.epoch, lastId: S.lastId });
  }
  // Once per frame or page, not once per message (setStorageSync is synchronous).
  function flushCursor() {
    if (S.cursorDirty) saveCursor();
  }
  function loadOutbox() {
    var saved = load('outbox');
    if (!Array.isArray(saved)) return;
    saved.forEach(function (e) {
      if (!e || !e.cmid || typeof e.msg !== 'string') return;
      if (findOutbox(e.cmid) >= 0) return;
      S.outbox.push({ cmid: e.cmid, msg: e.msg, ts: e.ts || now(), state: e.state === 'failed' ? 'failed' : 'pending',
        error: e.error || '', sentGen: 0, retries: 0, retryAt: 0, image: e.image || null });
    });
  }
  function saveOutbox() {
    save('outbox', S.outbox.map(function (e) {
      return { cmid: e.cmid, msg: e.msg, ts: e.ts, state: e.state, error: e.error, image: e.image || null };
    }));
  }

  // ---- HTTP and login ----------------------------------------------------------------------------

  function rawRequest(method, path, data, token) {
    return new Promise(function (resolve, reject) {
      var header = { 'content-type': 'application/json' };
      if (token) header.Authorization = 'Bearer ' + token;
      var req = { url: baseUrl + path, method: method, header: header, timeout: config.requestTimeout,
        dataType: 'json',
        success: function (res) { resolve(res); },
        fail: function (res) { reject(makeError('network', (res && res.errMsg) || 'request failed')); } };
      if (data !== undefined) req.data = data;
      wx.request(req);
    }).then(function (res) {
      var status = res.statusCode;
      if (status >= 200 && status < 300) return res.data;
      var body = res.data && typeof res.data === 'object' ? res.data : {};
      throw makeError(body.error || 'http_' + status, body.message || 'HTTP ' + status, status);
    });
  }

  function wxLogin() {
    return new Promise(function (resolve, reject) {
      wx.login({
        success: function (res) {
          if (res && res.code) resolve(res.code);
          else reject(makeError('wx_login', 'wx.login returned no code'));
        },
        fail: function (res) { reject(makeError('wx_login', (res && res.errMsg) || 'wx.login failed')); }
      });
    });
  }

  // wx.login → POST /api/login → token (stored). One login at a time.
  function login() {
    if (S.loginPromise) return S.loginPromise;
    var p = wxLogin().then(function (code) {
      return rawRequest('POST', '/api/login', { code: code });
    }).then(function (res) {
      if (!res || !res.token) throw makeError('bad_login', 'no token in the login reply');
      S.token = res.token;
      S.openid = res.openid || S.openid;
      S.expiresAt = now() + (res.expires_in || 0) * 1000;
      save('session', { token: S.token, openid: S.openid, expiresAt: S.expiresAt });
      log('logged in as', S.openid);
      emit('login', { openid: S.openid });
      return S.token;
    });
    S.loginPromise = p;
    function done() { if (S.loginPromise === p) S.loginPromise = null; }
    p.then(done, done);
    return p;
  }

  function ensureLogin() {
    if (S.token && (!S.expiresAt || S.expiresAt - now() > 60000)) return Promise.resolve(S.token);
    return login();
  }

  // An authenticated request; on 401 (token expired or revoked) log in again and retry once.
  function request(method, path, data) {
    return ensureLogin().then(function (token) {
      return rawRequest(method, path, data, token).catch(function (e) {
        if (e.status !== 401) throw e;
        log('HTTP 401: logging in again');
        clearToken(token);
        return login().then(function (fresh) { return rawRequest(method, path, data, fresh); });
      });
    });
  }

  // ---- messages ----------------------------------------------------------------------------------

  function maxKnownId() {
    return S.messages.length ? S.messages[S.messages.length - 1].id : S.floor;
  }

  function findOutbox(cmid) {
    for (var i = 0; i < S.outbox.length; i++) if (S.outbox[i].cmid === cmid) return i;
    return -1;
  }

  // Add one server Message (live, sync, ack or history). Returns true if it was new.
  function addMessage(m, source) {
    if (!m || typeof m.id !== 'number' || typeof m.msg !== 'string') return false;
    if (m.id > S.lastId) { S.lastId = m.id; S.cursorDirty = true; }
    if (S.byId[m.id]) return false;
    if (source !== 'history' && m.id <= S.floor) return false;
    var msg = { id: m.id, ts: m.ts || 0, openid: m.openid || S.openid, from: m.from === 'agent' ? 'agent' : 'user',
      msg: m.msg };
    if (m.agent) msg.agent = m.agent;
    if (m.cmid) msg.cmid = m.cmid;
    if (m.kind && m.kind !== 'text') msg.kind = m.kind; // image, card (docs/protocol.md §11)
    if (m.meta) msg.meta = m.meta;
    if (msg.from === 'agent' && msg.agent && (!S.agentNameId || msg.id >= S.agentNameId)) {
      S.agentName = msg.agent;
      S.agentNameId = msg.id;
      if (source === 'live') stopAgentTyping();
    }
    var i = S.messages.length;
    while (i > 0 && S.messages[i - 1].id > msg.id) i--;
    S.messages.splice(i, 0, msg);
    S.byId[msg.id] = msg;
    if (msg.from === 'user' && msg.cmid) {
      var j = findOutbox(msg.cmid); // our own message, stored: no need to wait for its ack
      if (j >= 0) { S.outbox.splice(j, 1); saveOutbox(); }
    }
    if (source !== 'history') {
      if (msg.from === 'agent') {
        if (S.chatVisible) markReadSoon();
        else if (msg.id > S.countFloor) setUnread(S.unread + 1);
      }
      while (S.messages.length > config.maxMessages) {
        var dropped = S.messages.shift();
        delete S.byId[dropped.id];
        S.floor = Math.max(S.floor, dropped.id);
        if (S.historyLoaded && !S.historyBefore) S.historyBefore = S.messages[0].id; // "load older" reaches it again
      }
      emit('message', msg);
    }
    return true;
  }

  // Where a sync starts: the newest message seen minus `syncOverlap` of server time, so a message
  // whose live frame was overtaken by a newer one (ids come from several processes) is fetched too.
  function syncStart() {
    var after = S.floor;
    if (!S.messages.length) return after;
    var cutoff = S.messages[S.messages.length - 1].ts - config.syncOverlap;
    for (var i = S.messages.length - 1; i >= 0; i--) {
      if (S.messages[i].ts <= cutoff) { after = Math.max(after, S.messages[i].id); break; }
    }
    return after;
  }

  // Where a sync starts when the fan-out may have had a gap of unknown position (close 1012, or a
  // `resync` frame without `after`): before the oldest message held, so the whole window is checked.
  function windowStart() {
    return S.messages.length ? Math.max(0, S.messages[0].id - 1) : S.floor;
  }

  // The server's history epoch, from `hello` and `sync` replies. A different epoch than the one
  // stored means the history was reset: ids start again, so the last id goes back to 0, and what
  // is held from the old epoch (it would hide the new ids) is forgotten. Returns true on a reset.
  function noteEpoch(epoch) {
    if (typeof epoch !== 'string' || !epoch) return false; // a server without epochs
    if (epoch === S.epoch) { S.memEpoch = epoch; return false; }
    var reset = !!S.epoch; // the first epoch ever seen resets nothing
    log('history epoch', S.epoch || '(none)', '→', epoch);
    if (reset && S.memEpoch && S.memEpoch !== epoch) forgetHistory();
    S.epoch = epoch;
    S.memEpoch = epoch;
    if (reset) { S.lastId = 0; S.resyncAfter = null; }
    saveCursor();
    if (reset) emit('reset', { epoch: epoch });
    return reset;
  }

  function forgetHistory() {
    S.messages = []; S.byId = {}; S.floor = 0;
    S.historyBefore = null; S.historyLoaded = true; // the sync from 0 brings everything there is
    S.agentReadUpto = 0; S.readSentUpto = 0;
    S.countFloor = Infinity; // the re-synced messages are not new: the badge is seeded again below
    request('GET', '/api/me').then(function (me) {
      if (typeof me.agent_read_upto === 'number') onAgentRead(me.agent_read_upto);
      setUnread(S.chatVisible ? 0 : me.unread, true);
    }, function (e) { log('GET /api/me failed:', e.message); });
    changed();
  }

  function newCmid() {
    S.seq += 1;
    var rand = Math.floor(random() * 0x7fffffff).toString(36);
    return 'mp-' + now().toString(36) + '-' + S.seq.toString(36) + '-' + rand;
  }

  // Queue a message; it is sent now if connected, else after the next connect. Returns its cmid.
  function send(text) {
    if (typeof text !== 'string' || text.length === 0) return null;
    var entry = { cmid: newCmid(), msg: text, ts: now(), state: 'pending', error: '', sentGen: 0, retries: 0, retryAt: 0 };
    if (utf8Length(text) > S.maxMessageBytes) { entry.state = 'failed'; entry.error = 'too_large'; }
    S.outbox.push(entry);
    saveOutbox();
    changed();
    flushOutbox();
    return entry.cmid;
  }

  // Send a failed message again (same cmid, so it is stored at most once).
  function retry(cmid) {
    var i = findOutbox(cmid);
    if (i < 0) return false;
    var e = S.outbox[i];
    if (e.error === 'too_large') return false;
    e.state = 'pending'; e.error = ''; e.sentGen = 0; e.retries = 0; e.retryAt = 0;
    saveOutbox();
    changed();
    flushOutbox();
    return true;
  }

  function takeSendToken() {
    var t = now();
    S.tokens = Math.min(config.sendBurst, S.tokens + (t - S.tokensAt) / config.sendInterval);
    S.tokensAt = t;
    if (S.tokens >= 1) { S.tokens -= 1; return true; }
    return false;
  }

  // Send every queued message not yet sent on this socket, paced to stay under the server's rate.
  // Entries stay queued until their ack (or their stored copy in a sync) arrives. A message that
  // was refused with "retry": true holds back the ones after it until it is stored, so those not
  // yet sent are stored in typed order (ones already in flight may be stored before it).
  function flushOutbox() {
    if (!S.open || S.flushTimer) return;
    for (var i = 0; i < S.outbox.length; i++) {
      var e = S.outbox[i];
      if (e.state !== 'pending') continue;
      if (e.sentGen === S.gen) { if (e.retries > 0) return; continue; }
      var wait = e.retryAt - now();
      if (wait > 0) { scheduleFlush(wait); return; }
      if (!takeSendToken()) { scheduleFlush(config.sendInterval); return; }
      var frame = e.image ? { type: 2, image: e.image.id, cmid: e.cmid } : { type: 2, msg: e.msg, cmid: e.cmid };
      if (sendFrame(frame)) { e.sentGen = S.gen; e.retryAt = 0; }
      if (e.retries > 0) return;
    }
  }
  function scheduleFlush(ms) {
    if (S.flushTimer) return;
    S.flushTimer = later(function () { S.flushTimer = null; flushOutbox(); }, ms);
  }

  // ---- unread badge and read marks ---------------------------------------------------------------

  function applyBadge() {
    var index = config.chatTabIndex;
    var ok = function () { S.badgeDirty = false; };
    var failed = function () { S.badgeDirty = true; }; // e.g. no tab page on screen: retry on refreshBadge()
    try {
      if (S.unread > 0) {
        wx.setTabBarBadge({ index: index, text: S.unread > 99 ? '99+' : String(S.unread), success: ok, fail: failed });
      } else {
        wx.removeTabBarBadge({ index: index, success: ok, fail: failed });
      }
    } catch (e) { failed(); }
  }

  function setUnread(n, force) {
    n = Math.max(0, n | 0);
    var diff = n !== S.unread;
    S.unread = n;
    if (diff || force || S.badgeDirty) applyBadge();
    if (diff) { emit('unread', n); changed(); }
  }

  function markRead() {
    var upto = maxKnownId();
    if (!S.open || !upto || upto <= S.readSentUpto) return;
    if (sendFrame({ cmd: 'read', upto: upto })) S.readSentUpto = upto;
  }
  var readTimer = null;
  function markReadSoon() {
    if (readTimer) return;
    readTimer = later(function () { readTimer = null; if (S.chatVisible) markRead(); }, 50);
  }

  function onAgentRead(upto) {
    if (typeof upto !== 'number' || upto <= S.agentReadUpto) return;
    S.agentReadUpto = upto;
    emit('read', { by: 'agent', upto: upto });
    changed();
  }

  // ---- socket ------------------------------------------------------------------------------------

  function sendFrame(obj) {
    if (!S.task || !S.open) return false;
    try {
      S.task.send({ data: JSON.stringify(obj), fail: function (res) { log('send failed', res && res.errMsg); } });
      return true;
    } catch (e) {
      log('send threw', e);
      return false;
    }
  }

  function setGlobalTask(task) {
    var app = S.app || (appGetter ? appGetter() : null);
    if (app && app.globalData) app.globalData.socketTask = task;
  }

  function connectNow() {
    cancel(S.reconnectTimer); S.reconnectTimer = null;
    if (S.stopped || S.blocked || S.task || S.connecting) return;
    S.connecting = true;
    setStatus('connecting');
    ensureLogin().then(function (token) {
      S.connecting = false;
      openSocket(token);
    }, function (e) {
      S.connecting = false;
      log('login failed:', e.message);
      emit('error', { code: e.code, message: e.message });
      scheduleReconnect();
    });
  }

  function openSocket(token) {
    if (S.stopped || S.task) return;
    var gen = ++S.gen;
    var task;
    var url = socketUrl + (socketUrl.indexOf('?') >= 0 ? '&' : '?') + 'token=' + encodeURIComponent(token) + '&v=2';
    try {
      task = wx.connectSocket({ url: url, fail: function (res) {
        dropSocket(gen, { code: 0, reason: (res && res.errMsg) || 'connectSocket failed' });
      } });
    } catch (e) {
      task = null;
    }
    if (gen !== S.gen) return; // `fail` already ran
    if (!task) { scheduleReconnect(); return; }
    S.task = task;
    S.taskToken = token;
    setGlobalTask(task);
    S.connectTimer = later(function () {
      if (gen === S.gen && !S.open) dropSocket(gen, { code: 0, reason: 'connect timeout' }, true);
    }, config.connectTimeout);
    task.onOpen(function () { if (gen === S.gen) onOpen(); });
    task.onMessage(function (res) { if (gen === S.gen) onFrame(res && res.data); });
    task.onError(function (res) {
      // onClose normally follows with the real close code (e.g. 4401); give it a moment to.
      later(function () {
        dropSocket(gen, { code: 0, reason: (res && res.errMsg) || 'socket error' }, true);
      }, 300);
    });
    task.onClose(function (res) { if (gen === S.gen) dropSocket(gen, res || {}); });
  }

  function onOpen() {
    cancel(S.connectTimer); S.connectTimer = null;
    S.open = true;
    S.waitSince = 0;
    S.tokens = config.sendBurst; S.tokensAt = now();
    S.readSentUpto = 0;
    // A new socket: messages waiting out a retryable error go now (the reconnect already waited).
    S.outbox.forEach(function (e) { e.retryAt = 0; });
    setStatus('open');
    schedulePing();
    flushOutbox(); // the sync follows the server's hello, which says whether the history was reset
  }

  // The sync after a connect: from the newest message seen less the overlap; the whole window
  // after a 1012 close; from 0 after a history reset; and never past a sync the last socket left
  // unfinished (or a `resync` it could not start).
  function syncAfterHello(fromStart) {
    var after = fromStart ? 0 : (S.wideSync ? windowStart() : syncStart());
    if (S.resyncAfter !== null) after = Math.min(after, S.resyncAfter);
    S.wideSync = false;
    S.resyncAfter = null;
    requestSync(after);
  }

  // Forget the current socket (its late events are ignored from now on); close it if asked.
  function resetSocket(close, reason) {
    var task = S.task;
    S.gen += 1;
    if (S.syncing) S.resyncAfter = S.resyncAfter === null ? S.syncAfter : Math.min(S.resyncAfter, S.syncAfter);
    S.task = null; S.taskToken = ''; S.open = false; S.syncing = false; S.waitSince = 0;
    cancel(S.connectTimer); S.connectTimer = null;
    cancel(S.pingTimer); S.pingTimer = null;
    cancel(S.pongTimer); S.pongTimer = null;
    cancel(S.flushTimer); S.flushTimer = null;
    cancel(S.syncRetryTimer); S.syncRetryTimer = null;
    setGlobalTask(null);
    if (close && task) {
      try { task.close({ code: 1000, reason: reason || 'client closing', fail: function () {} }); } catch (e) { /* gone */ }
    }
  }

  function dropSocket(gen, res, close) {
    if (gen !== S.gen) return;
    var code = res.code || 0;
    var usedToken = S.taskToken;
    log('socket gone:', code, res.reason || '');
    resetSocket(close, res.reason);
    emit('close', { code: code, reason: res.reason || '' });
    if (S.stopped) return;
    if (code === CLOSE.UNAUTHORIZED) {
      // Token expired or revoked (logout): log in again, then reconnect.
      clearToken(usedToken);
      S.authFailures += 1;
      if (S.authFailures === 1) { setStatus('offline'); connectNow(); return; }
    } else if (code === CLOSE.TOO_MANY_ERRORS) {
      // The server thinks this client is broken: stop retrying until the app is shown again.
      S.blocked = true;
      setStatus('blocked');
      emit('error', { code: 'too_many_errors', message: res.reason || 'too many errors', retry: false });
      return;
    } else if (code === CLOSE.RESYNC) {
      S.wideSync = true; // where the gap began is unknown: check everything held
    } else if (RECONNECT_AT_ONCE[code] && !S.background && now() - S.quickAt > config.reconnectMaxDelay) {
      // This socket had a problem, not the server: go again at once (at most once per max delay,
      // so a client that keeps being dropped still backs off).
      S.quickAt = now();
      setStatus('offline');
      connectNow();
      return;
    }
    scheduleReconnect(); // with backoff and jitter: 1001, 1011, 1012, 1013, network errors, …
  }

  function scheduleReconnect() {
    if (S.stopped || S.blocked || S.reconnectTimer || S.task || S.connecting) return;
    setStatus('offline');
    if (S.background) return; // onAppShow() reconnects
    S.attempt += 1;
    var delay = backoffDelay(S.attempt, config.reconnectBaseDelay, config.reconnectMaxDelay, random);
    log('reconnect in', delay, 'ms (attempt', S.attempt + ')');
    emit('reconnecting', { attempt: S.attempt, delay: delay });
    S.reconnectTimer = later(function () { S.reconnectTimer = null; connectNow(); }, delay);
  }

  // Heartbeat: a ping every pingInterval; if nothing at all arrives within pongTimeout of a ping,
  // the socket is dead (e.g. the network vanished without a close): drop it and reconnect.
  function schedulePing() {
    cancel(S.pingTimer);
    S.pingTimer = later(ping, S.pingInterval);
  }
  function ping() {
    cancel(S.pingTimer); // also when called directly (onAppShow)
    S.pingTimer = null;
    if (!S.open) return;
    if (!S.waitSince) S.waitSince = now();
    sendFrame({ cmd: 'ping' });
    if (!S.pongTimer) S.pongTimer = later(checkAlive, config.pongTimeout);
    schedulePing();
  }
  function checkAlive() {
    S.pongTimer = null;
    if (!S.open || !S.waitSince) return;
    var silent = now() - S.waitSince;
    if (silent >= config.pongTimeout) {
      log('no frame for', silent, 'ms after a ping: reconnecting');
      dropSocket(S.gen, { code: 0, reason: 'heartbeat timeout' }, true);
    } else {
      S.pongTimer = later(checkAlive, config.pongTimeout - silent);
    }
  }

  function requestSync(after) {
    S.syncing = true;
    S.syncAfter = after;
    sendFrame({ cmd: 'sync', after: after, limit: config.syncLimit });
  }

  function onFrame(data) {
    S.waitSince = 0;
    if (typeof data !== 'string') return;
    var f;
    try { f = JSON.parse(data); } catch (e) { return; }
    if (!f || typeof f !== 'object' || Array.isArray(f)) return;
    switch (f.cmd) {
      case undefined:
        if (!isChatMessage(f)) onPushFrame(f);
        else { if (addMessage(f, 'live')) changed(); flushCursor(); }
        break;
      case 'hello':
        S.attempt = 0;
        S.authFailures = 0;
        if (f.openid) S.openid = f.openid;
        if (typeof f.max_message_bytes === 'number') S.maxMessageBytes = f.max_message_bytes;
        if (typeof f.heartbeat === 'number' && f.heartbeat > 0) {
          // Ping well within the server's idle timeout.
          S.pingInterval = Math.min(config.heartbeatInterval, Math.max(1000, f.heartbeat * 750));
          schedulePing();
        }
        if (typeof f.agent_read_upto === 'number') onAgentRead(f.agent_read_upto);
        var reset = noteEpoch(f.epoch);
        if (!S.subscribe && !S.subscribeLoading) loadSubscribe(); // for the subscribe request on a tap
        emit('hello', f);
        syncAfterHello(reset);
        break;
      case 'pong':
        emit('pong', f);
        break;
      case 'ack':
        onAck(f);
        break;
      case 'sync':
        onSyncReply(f);
        break;
      case 'read':
        onReadFrame(f);
        break;
      case 'error':
        onErrorFrame(f);
        break;
      case 'resync':
        onResync(f);
        break;
      case 'typing':
        if (f.from === 'agent') onAgentTyping(f);
        break;
      default:
        break; // a protocol frame this client does not know: ignored
    }
  }

  // The agent is typing (a frame at most every couple of seconds while they type): shown for
  // config.typingShownFor after the last one, or until their message arrives.
  function onAgentTyping(f) {
    S.agentTyping = f.agent || S.agentName || '';
    if (f.agent) S.agentName = f.agent;
    S.agentTypingUntil = now() + config.typingShownFor;
    cancel(S.agentTypingTimer);
    S.agentTypingTimer = later(function () { S.agentTypingTimer = null; stopAgentTyping(); changed(); },
      config.typingShownFor);
    emit('typing', { agent: S.agentTyping });
    changed();
  }

  function stopAgentTyping() {
    S.agentTyping = null;
    S.agentTypingUntil = 0;
    cancel(S.agentTypingTimer);
    S.agentTypingTimer = null;
  }

  // The user is typing: tell the agent, at most once per config.typingInterval. Never queued.
  function typing() {
    var t = now();
    if (t - S.typingSentAt < config.typingInterval) return false;
    if (!sendFrame({ cmd: 'typing' })) return false;
    S.typingSentAt = t;
    return true;
  }

  // The nickname from <input type="nickname"> (docs/protocol.md §10.5).
  function setNickname(nickname) {
    return request('POST', '/api/me/profile', { nickname: String(nickname || '').trim() || null });
  }

  // The temporary path from <button open-type="chooseAvatar"> (its bindchooseavatar event's
  // detail.avatarUrl) is only valid on the phone for a while: upload it with wx.uploadFile.
  function uploadAvatar(tempPath) {
    return ensureLogin().then(function (token) {
      return new Promise(function (resolve, reject) {
        wx.uploadFile({
          url: baseUrl + '/api/me/avatar', filePath: tempPath, name: 'file',
          header: { Authorization: 'Bearer ' + token },
          success: function (res) {
            var body = res.data;
            try { body = typeof body === 'string' ? JSON.parse(body) : body; } catch (e) { body = {}; }
            if (res.statusCode >= 200 && res.statusCode < 300) resolve(body);
            else reject(makeError((body && body.error) || 'http_' + res.statusCode, body && body.message, res.statusCode));
          },
          fail: function (res) { reject(makeError('network', (res && res.errMsg) || 'upload failed')); }
        });
      });
    });
  }

  // ---- pictures (docs/protocol.md §11) -----------------------------------------------------------

  // wx.uploadFile the picture at `tempPath` (from wx.chooseMedia) to POST /api/media, then queue it
  // as an image message (sent now, or after the next connect, with its cmid). Resolves to its cmid.
  function sendImage(tempPath) {
    return ensureLogin().then(function (token) {
      return new Promise(function (resolve, reject) {
        wx.uploadFile({
          url: baseUrl + '/api/media', filePath: tempPath, name: 'file',
          header: { Authorization: 'Bearer ' + token },
          success: function (res) {
            var body = res.data;
            try { body = typeof body === 'string' ? JSON.parse(body) : body; } catch (e) { body = {}; }
            if (res.statusCode >= 200 && res.statusCode < 300 && body && body.image) resolve(body);
            else reject(makeError((body && body.error) || 'http_' + res.statusCode, body && body.message, res.statusCode));
          },
          fail: function (res) { reject(makeError('network', (res && res.errMsg) || 'upload failed')); }
        });
      });
    }).then(function (up) {
      keepUrls(up.image.id, up);
      var entry = { cmid: newCmid(), msg: '[图片]', ts: now(), state: 'pending', error: '', sentGen: 0, retries: 0,
        retryAt: 0, image: up.image };
      S.outbox.push(entry);
      saveOutbox();
      changed();
      flushOutbox();
      return entry.cmid;
    });
  }

  // Pick a photo (album or camera, compressed) and send it.
  function chooseImage() {
    return new Promise(function (resolve, reject) {
      wx.chooseMedia({
        count: 1, mediaType: ['image'], sizeType: ['compressed'], sourceType: ['album', 'camera'],
        success: function (res) { resolve(res.tempFiles && res.tempFiles[0] && res.tempFiles[0].tempFilePath); },
        fail: function (res) { reject(makeError('cancelled', (res && res.errMsg) || 'chooseMedia failed')); }
      });
    }).then(function (path) { return path ? sendImage(path) : null; });
  }

  // Signed picture URLs (absolute, for <image src>): kept until shortly before they expire.
  var urls = {};
  var wantedUrls = {};
  var urlTimer = null;
  function keepUrls(id, u) {
    urls[id] = { url: baseUrl + u.url, thumb: baseUrl + u.thumb_url, expiresAt: u.expires_at * 1000 };
  }
  function imageUrls(id) {
    var u = urls[id];
    if (u === null) return null;
    if (!u || u.expiresAt - now() < 30000) {
      wantedUrls[id] = true;
      if (!urlTimer) urlTimer = later(signWanted, 10);
    }
    return u || undefined;
  }
  function signWanted() {
    urlTimer = null;
    var ids = Object.keys(wantedUrls).slice(0, 100);
    if (!ids.length) return;
    ids.forEach(function (id) { delete wantedUrls[id]; });
    request('POST', '/api/media/sign', { ids: ids }).then(function (res) {
      ids.forEach(function (id) {
        var u = res && res.images ? res.images[id] : null;
        if (u) keepUrls(id, u); else urls[id] = null;
      });
      changed();
    }, function (e) { log('signing pictures failed:', e.message); });
  }

  // Tap on a picture: WeChat's viewer, with every picture of the chat to swipe through.
  function previewImage(id) {
    var all = [];
    S.messages.forEach(function (m) {
      var img = m.kind === 'image' && m.meta && m.meta.image;
      var u = img && urls[img.id];
      if (u) all.push(u.url);
    });
    var current = urls[id];
    if (!current) return false;
    wx.previewImage({ current: current.url, urls: all.length ? all : [current.url] });
    return true;
  }

  // ---- the "reply received" subscribe message (docs/wechat-channel.md) --------------------------

  function loadSubscribe() {
    S.subscribeLoading = true;
    return request('GET', '/api/me/subscribe').then(function (res) {
      S.subscribe = res || null;
      S.subscribeLoading = false;
    }, function (e) { S.subscribeLoading = false; log('GET /api/me/subscribe failed:', e.message); });
  }

  // Ask once per launch, from a tap (WeChat shows the dialog only then), for the template kefu
  // uses when an agent replies while the user is away; each "accept" allows one such message.
  function askSubscribe() {
    var sub = S.subscribe;
    if (!sub || !sub.template_id || sub.consents > 0 || S.subscribeAsked || !wx.requestSubscribeMessage) return false;
    S.subscribeAsked = true;
    var id = sub.template_id;
    wx.requestSubscribeMessage({
      tmplIds: [id],
      success: function (res) {
        var result = res && res[id];
        if (result !== 'accept' && result !== 'reject' && result !== 'ban') return;
        request('POST', '/api/me/subscribe', { template_id: id, result: result }).then(function (r) {
          if (r && typeof r.consents === 'number') sub.consents = r.consents;
          emit('subscribe', { result: result, consents: sub.consents });
        }, function (e) { log('recording the subscribe consent failed:', e.message); });
      },
      fail: function (res) { log('requestSubscribeMessage failed:', res && res.errMsg); }
    });
    return true;
  }

  // A backend push (docs/protocol.md §8): any JSON object that is neither a protocol frame nor a
  // chat message. It is not stored by the server; the app gets it as it came.
  function onPushFrame(f) {
    S.pushes.push({ at: now(), data: f });
    while (S.pushes.length > config.maxPushes) S.pushes.shift();
    log('push', f);
    emit('push', f);
    changed();
  }

  // The server's fan-out to this socket may have had a gap: sync from before it (and from before
  // the whole window when it does not say where the gap began).
  function onResync(f) {
    var after = typeof f.after === 'number' && f.after >= 0 ? Math.min(S.lastId, f.after) : windowStart();
    log('resync from', after);
    if (S.syncing || !S.open) { // after the running sync (or the next connect's) is done
      S.resyncAfter = S.resyncAfter === null ? after : Math.min(S.resyncAfter, after);
      return;
    }
    requestSync(after);
  }

  function onAck(f) {
    var i = findOutbox(f.cmid);
    if (i >= 0) {
      var e = S.outbox.splice(i, 1)[0];
      saveOutbox();
      var acked = { id: f.id, ts: f.ts, openid: S.openid, from: 'user', msg: e.msg, cmid: f.cmid };
      if (e.image) { acked.kind = 'image'; acked.meta = { image: e.image }; }
      addMessage(acked, 'ack');
      flushCursor();
      if (e.retries > 0) flushOutbox(); // the ones it held back
    }
    emit('ack', { cmid: f.cmid, id: f.id, ts: f.ts, delivered: !!f.delivered, dup: !!f.dup });
    changed();
  }

  function onSyncReply(f) {
    if (noteEpoch(f.epoch)) { requestSync(0); return; } // history reset: this page is of no use
    var list = Array.isArray(f.messages) ? f.messages : [];
    for (var i = 0; i < list.length; i++) addMessage(list[i], 'sync');
    flushCursor();
    if (!S.syncing || (typeof f.after === 'number' && f.after !== S.syncAfter)) { changed(); return; } // a stale reply
    S.syncRetries = 0;
    cancel(S.syncRetryTimer); S.syncRetryTimer = null;
    if (f.more && list.length) {
      requestSync(list[list.length - 1].id);
    } else if (S.resyncAfter !== null) {
      var after = S.resyncAfter; // a `resync` came while this sync ran
      S.resyncAfter = null;
      requestSync(after);
    } else {
      S.syncing = false;
      if (S.countFloor === Infinity) S.countFloor = maxKnownId(); // the launch seed covered these
      emit('synced', { after: f.after });
      if (S.chatVisible) markRead();
    }
    changed();
  }

  function onReadFrame(f) {
    if (f.by === 'agent') {
      onAgentRead(f.upto);
    } else if (f.by === 'user' && typeof f.upto === 'number') {
      // Read on another device of this user: only newer agent messages stay unread.
      var n = 0;
      S.messages.forEach(function (m) { if (m.from === 'agent' && m.id > f.upto && m.id > S.countFloor) n++; });
      if (n < S.unread) setUnread(n);
    }
  }

  // The server says with `retry` whether the same request may succeed later (its fault: a store was
  // down, or this client went too fast) or never will (the frame itself was refused).
  function onErrorFrame(f) {
    var retry = f.retry === true;
    log('server error', f.code, f.message, retry ? '(will retry)' : '');
    emit('error', { code: f.code, message: f.message, cmid: f.cmid, retry: retry });
    if (f.cmid) {
      var i = findOutbox(f.cmid);
      if (i < 0) return;
      var e = S.outbox[i];
      if (retry) {
        // Resend it (same cmid, so it is stored at most once) after a backoff.
        e.retries += 1;
        e.sentGen = 0;
        e.retryAt = now() + backoffDelay(e.retries, config.resendDelay, config.resendMaxDelay, random);
        scheduleFlush(e.retryAt - now());
        changed();
      } else {
        e.state = 'failed'; e.error = f.code || 'error'; // shown failed: the user may retry by hand
        saveOutbox();
        changed();
        if (e.retries > 0) flushOutbox(); // the ones it held back
      }
    } else if (retry) {
      S.readSentUpto = 0; // maybe our read mark was not saved
      if (S.syncing && !S.syncRetryTimer) {
        S.syncRetries += 1;
        S.syncRetryTimer = later(function () {
          S.syncRetryTimer = null;
          if (S.open && S.syncing) requestSync(S.syncAfter);
        }, backoffDelay(S.syncRetries, config.resendDelay, config.resendMaxDelay, random));
      }
    }
  }

  // ---- launch, history, lifecycle ----------------------------------------------------------------

  // Launch: log in, seed the unread badge (GET /api/me) and the newest history page, then connect.
  function start(opts) {
    if (opts && opts.app) S.app = opts.app;
    if (S.startPromise) return S.startPromise;
    S.started = true;
    S.stopped = false;
    loadSession();
    loadCursor();
    loadOutbox();
    S.startPromise = ensureLogin().then(function () {
      return request('GET', '/api/me').then(function (me) {
        if (typeof me.agent_read_upto === 'number') onAgentRead(me.agent_read_upto);
        setUnread(S.chatVisible ? 0 : me.unread, true);
      }, function (e) { log('GET /api/me failed:', e.message); });
    }).then(function () {
      return loadHistory();
    }).then(function () {
      S.countFloor = maxKnownId();
    }, function (e) {
      log('launch without history:', e.message); // the first sync fills in; it is not counted as unread
    }).then(function () {
      connectNow();
      return snapshot();
    });
    return S.startPromise;
  }

  // One page of history over HTTP: the newest page, or the page before the oldest message held.
  function loadHistory(before) {
    var q = '?limit=' + config.historyLimit + (before ? '&before=' + before : '');
    return ensureLogin().then(function () {
      return request('GET', '/api/conversations/' + encodeURIComponent(S.openid) + '/messages' + q);
    }).then(function (res) {
      var list = (res && res.messages) || [];
      for (var i = 0; i < list.length; i++) addMessage(list[i], 'history');
      flushCursor();
      S.historyBefore = res && res.next_before ? res.next_before : null;
      S.historyLoaded = true;
      changed();
      return list.length;
    });
  }

  function loadOlder() {
    if (!S.historyLoaded || !S.historyBefore) return Promise.resolve(0);
    var oldest = S.messages.length ? S.messages[0].id : S.historyBefore;
    return loadHistory(Math.min(oldest, S.historyBefore));
  }

  // The chat page calls this from onShow (true) and onHide/onUnload (false).
  function setChatVisible(visible) {
    S.chatVisible = !!visible;
    if (S.chatVisible) {
      setUnread(0, true);
      markRead();
    }
  }

  function onAppShow() {
    S.background = false;
    if (!S.started || S.stopped) return;
    if (S.blocked) { S.blocked = false; }
    if (S.open) { ping(); } // verify the socket survived the background
    else if (!S.task && !S.connecting) { S.attempt = 0; connectNow(); }
    if (S.badgeDirty) applyBadge();
  }

  // Connect again now, e.g. from a tap: after a 4429 ("too many errors") the client waits for the user.
  function reconnect() {
    if (!S.started || S.stopped) return;
    S.blocked = false;
    S.attempt = 0;
    if (!S.task && !S.connecting) connectNow();
  }

  function onAppHide() {
    S.background = true;
  }

  function refreshBadge() {
    applyBadge();
  }

  function stop() {
    S.stopped = true;
    cancel(S.reconnectTimer); S.reconnectTimer = null;
    cancel(readTimer); readTimer = null;
    resetSocket(true, 'stopped');
    S.startPromise = null;
    setStatus('stopped');
  }

  function snapshot() {
    return {
      status: S.status,
      openid: S.openid,
      messages: S.messages.slice(),
      outbox: S.outbox.map(function (e) {
        return { cmid: e.cmid, msg: e.msg, ts: e.ts, state: e.state, error: e.error, retries: e.retries,
          image: e.image || null };
      }),
      unread: S.unread,
      agentReadUpto: S.agentReadUpto,
      chatVisible: S.chatVisible,
      hasOlder: !!(S.historyLoaded && S.historyBefore),
      epoch: S.epoch,
      lastId: S.lastId,
      pushes: S.pushes.slice(),
      agentTyping: S.agentTyping,
      agentName: S.agentName,
      subscribe: S.subscribe
    };
  }

  return {
    config: config,
    start: start,
    stop: stop,
    on: on,
    off: off,
    onPush: function (fn) { return on('push', fn); },
    send: send,
    retry: retry,
    typing: typing,
    setNickname: setNickname,
    uploadAvatar: uploadAvatar,
    sendImage: sendImage,
    chooseImage: chooseImage,
    imageUrls: imageUrls,
    previewImage: previewImage,
    askSubscribe: askSubscribe,
    request: request,
    login: login,
    loadOlder: loadOlder,
    setChatVisible: setChatVisible,
    markRead: markRead,
    refreshBadge: refreshBadge,
    onAppShow: onAppShow,
    reconnect: reconnect,
    onAppHide: onAppHide,
    getState: snapshot,
    get socketTask() { return S.task; },
    get status() { return S.status; },
    get openid() { return S.openid; },
    get token() { return S.token; }
  };
}

// The app's one instance, built on first use from the global `wx` and ../config.js.
var instance = null;
function getKefu() {
  if (!instance) {
    if (typeof wx === 'undefined') throw new Error('getKefu: no global wx; use createKefu({ wx, config })'); // eslint-disable-line no-undef
    instance = createKefu({ wx: wx }); // eslint-disable-line no-undef
  }
  return instance;
}

module.exports = {
  createKefu: createKefu,
  getKefu: getKefu,
  backoffDelay: backoffDelay,
  deriveSocketUrl: deriveSocketUrl,
  utf8Length: utf8Length,
  isChatMessage: isChatMessage,
  CLOSE: CLOSE,
  DEFAULTS: DEFAULTS
};
