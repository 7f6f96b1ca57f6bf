// kefu QR login page: GET /qrcode, bind the page's socket to the QR code, wait for the token.
// Protocol: docs/protocol.md §7 (the /ws/qr socket) and docs/qr-login.md (the whole sequence).
// The socket is opened only once there is a code to bind (an unbound socket is closed by the
// server's bind deadline, 4410), and closed again when the code expires or the login is done.
// Every string comes from i18n.js: 简体中文 by default, English with ?lang=en or the toggle.
//
// Frames from the server are told apart like this: the bind echo is exactly the object this page
// sent (no `token`); the login push has a `token` for this page's uid; anything else a backend
// pushed goes to the list on the page and to `window` as a `kefu:push` event (`kefu:login` for the
// login), so a site can act on pushes without editing this file:
//   window.addEventListener('kefu:push', (e) => console.log(e.detail));

import { DEFAULT_LANG, lang, setLang, t } from './i18n.js';

const $ = (id) => document.getElementById(id);
const LANG_KEY = 'kefu.lang';
const PING_MS = 30000;          // the server closes a socket silent for 40 s (4408)
const BASE_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 15000;
const MAX_PUSHES_SHOWN = 20;

// Close codes (docs/protocol.md §5). 4429: the server gave up on this page; do not hammer it.
const CLOSE_TOO_MANY_ERRORS = 4429;
// The socket had a problem, not the server: the first reconnect goes at once.
const RECONNECT_AT_ONCE = new Set([4408, 4503]);

let ws = null;
let qr = null;                  // {ticket, expire_seconds, uid, image, sandbox, expiresAt}
let bindSent = null;            // the bind frame as sent on the current socket; null once echoed
let loggedIn = false;
let blocked = false;            // closed with 4429: no reconnect until the user asks for a code
let attempts = 0;               // reconnects since the last open
let bindRetries = 0;            // bind attempts refused with "retry": true
let bindTimer = null;
let reconnectTimer = null;
let quickAt = -Infinity;
let countdownTimer = null;

// Exponential backoff with jitter (a random 75–125 %), so pages reconnect spread out after a restart.
function backoff(n) {
  return Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** n) * (0.75 + Math.random() / 2);
}

function socketUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws/qr`;
}

// ---- language ----------------------------------------------------------------------------------

function chosenLang() {
  const asked = new URLSearchParams(location.search).get('lang');
  if (asked) return asked;
  try { return localStorage.getItem(LANG_KEY) || DEFAULT_LANG; } catch { return DEFAULT_LANG; }
}

let connView = ['idle', 'conn.idle', {}];
let qrView = ['none', 'qr.waiting_socket', {}];

/** Fill every static string, and re-say the current states, in the current language. */
function applyLang() {
  document.documentElement.lang = lang();
  for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll('[data-i18n-title]')) e.title = t(e.dataset.i18nTitle);
  for (const e of document.querySelectorAll('[data-i18n-alt]')) e.alt = t(e.dataset.i18nAlt);
  setConn(...connView);
  setQrState(...qrView);
}

function toggleLang() {
  const next = lang() === 'en' ? 'zh-CN' : 'en';
  try { localStorage.setItem(LANG_KEY, next); } catch { /* this page only */ }
  setLang(next);
  applyLang();
}

function setConn(state, key, vars = {}) {
  connView = [state, key, vars];
  const el = $('conn-status');
  el.dataset.state = state;
  el.querySelector('.label').textContent = t(key, vars);
}

function setQrState(state, key, vars = {}) {
  qrView = [state, key, vars];
  $('qr-box').dataset.state = state;
  $('qr-state').textContent = t(key, vars);
}

function showError(text) {
  const el = $('error');
  el.textContent = text;
  el.hidden = !text;
}

function expired() {
  return !qr || Date.now() >= qr.expiresAt;
}

// ---- the socket --------------------------------------------------------------------------------

function connect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  blocked = false;
  setConn('connecting', 'conn.connecting');
  const sock = new WebSocket(socketUrl());
  ws = sock;
  sock.onopen = () => {
    if (ws !== sock) return;
    attempts = 0;
    setConn('online', 'conn.online');
    if (qr && !expired() && !loggedIn) sendBind();
  };
  sock.onmessage = (ev) => {
    if (ws !== sock) return;
    let frame;
    try { frame = JSON.parse(ev.data); } catch { return; }
    if (frame && typeof frame === 'object' && !Array.isArray(frame)) onFrame(frame);
  };
  sock.onclose = (ev) => {
    if (ws !== sock) return;
    ws = null;
    bindSent = null;
    clearTimeout(bindTimer);
    bindTimer = null;
    if (loggedIn) { setConn('idle', 'conn.done'); return; }
    if (ev.code === CLOSE_TOO_MANY_ERRORS) {
      blocked = true;
      setConn('offline', 'conn.refused', { code: ev.code });
      showError(t('error.too_many'));
      if (qr && !expired()) setQrState('waiting', 'qr.disconnected');
      return;
    }
    if (!qr || expired()) { setConn('idle', 'conn.idle'); return; } // nothing to bind: stay closed
    setQrState('waiting', 'qr.reconnecting');
    let delay = backoff(attempts++);
    if (RECONNECT_AT_ONCE.has(ev.code) && Date.now() - quickAt > MAX_BACKOFF_MS) { quickAt = Date.now(); delay = 0; }
    setConn('offline', 'conn.retrying', { code: ev.code });
    reconnectTimer = setTimeout(connect, delay);
  };
}

// Connected, or on the way: after a 4429 only a user action (a new QR code) reconnects.
function ensureSocket() {
  if (!ws && (blocked || !reconnectTimer)) connect();
}

// Nothing left to bind (the code expired, or the login is done): close, and do not come back.
function closeSocket(state, key) {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  const sock = ws;
  ws = null;
  bindSent = null;
  if (sock) sock.close(1000, 'done');
  setConn(state, key);
}

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(obj)); return true; }
  return false;
}

setInterval(() => send({ cmd: 'ping' }), PING_MS);

function sendBind() {
  clearTimeout(bindTimer);
  bindTimer = null;
  // Exactly what GET /qrcode returned (older pages send the same three fields).
  const frame = { ticket: qr.ticket, expire_seconds: qr.expire_seconds, uid: qr.uid };
  if (send(frame)) {
    bindSent = frame;
    setQrState('binding', 'qr.binding');
  }
}

// The echo: the very object this page sent, key for key (a push that merely carries the same uid
// and ticket is not one).
function isEcho(f) {
  if (!bindSent || 'token' in f) return false;
  const keys = Object.keys(f);
  return keys.length === Object.keys(bindSent).length && keys.every((k) => f[k] === bindSent[k]);
}

// The login: a token for this page's code (older PHP backends push {uid, ticket, token} themselves).
function isLogin(f) {
  return typeof f.token === 'string' && f.token !== '' && !!qr && String(f.uid) === String(qr.uid) &&
    (f.ticket === undefined || f.ticket === qr.ticket);
}

function onFrame(f) {
  if (f.cmd === 'error') { onError(f); return; }
  if (f.cmd) return;  // pong and future control frames
  if (isEcho(f)) {
    bindSent = null;
    bindRetries = 0;
    showError('');
    setQrState('bound', 'qr.bound');
    return;
  }
  if (isLogin(f)) { onToken(f.token, f); return; }
  addPush(f);
}

// Error frames say with `retry` whether the same request may work later (docs/protocol.md §4.4).
// The page's only request is the bind, so a retryable error while binding re-sends it after a backoff.
function onError(f) {
  if (f.code === 'bad_ticket') {
    bindSent = null;
    markExpired('qr.invalid');
    return;
  }
  if (f.retry === true) {
    if (!bindSent || expired() || loggedIn) return; // passing, and about nothing this page waits for
    const delay = backoff(bindRetries++);
    setQrState('binding', 'qr.busy');
    clearTimeout(bindTimer);
    bindTimer = setTimeout(() => { if (qr && !expired() && !loggedIn) sendBind(); }, delay);
    return;
  }
  showError(f.message || f.code);
}

function addPush(f) {
  const li = document.createElement('li');
  li.textContent = JSON.stringify(f);
  const list = $('pushes');
  list.prepend(li);
  while (list.children.length > MAX_PUSHES_SHOWN) list.lastElementChild.remove();
  $('pushes-box').hidden = false;
  window.dispatchEvent(new CustomEvent('kefu:push', { detail: f }));
}

// ---- the QR code -------------------------------------------------------------------------------

async function getQr() {
  showError('');
  $('get-qr').disabled = true;
  $('refresh-qr').disabled = true;
  try {
    const r = await fetch('/qrcode', { cache: 'no-store' });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { showError(body.message || t('error.qrcode_http', { status: r.status })); return; }
    qr = { ...body, expiresAt: Date.now() + body.expire_seconds * 1000 };
    $('qr-img').src = body.image || '';
    $('simulate').hidden = !body.sandbox;
    $('start').hidden = true;
    $('qr-box').hidden = false;
    setQrState('waiting', 'qr.waiting_socket');
    tick();
    clearInterval(countdownTimer);
    countdownTimer = setInterval(tick, 1000);
    bindRetries = 0;
    ensureSocket();
    sendBind(); // or, if the socket is not open yet, as soon as it is
  } catch (e) {
    showError(t('error.qrcode', { message: e.message }));
  } finally {
    $('get-qr').disabled = false;
    $('refresh-qr').disabled = false;
  }
}

function tick() {
  if (!qr) return;
  const left = Math.max(0, Math.ceil((qr.expiresAt - Date.now()) / 1000));
  $('countdown').textContent =
    `${String(Math.floor(left / 60)).padStart(2, '0')}:${String(left % 60).padStart(2, '0')}`;
  if (left === 0) markExpired();
}

function markExpired(key) {
  clearInterval(countdownTimer);
  clearTimeout(bindTimer);
  bindTimer = null;
  $('countdown').textContent = '00:00';
  $('simulate').hidden = true;
  setQrState('expired', key || 'qr.expired');
  closeSocket('idle', 'conn.idle');
}

async function simulateScan() {
  showError('');
  const r = await fetch('/dev/simulate-scan', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ticket: qr.ticket, uid: qr.uid }),
  });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    showError(body.message || t('error.simulate_http', { status: r.status }));
  }
}

async function onToken(token, frame) {
  loggedIn = true;
  clearTimeout(bindTimer);
  window.dispatchEvent(new CustomEvent('kefu:login', { detail: frame }));
  clearInterval(countdownTimer);
  closeSocket('idle', 'conn.done');
  $('qr-box').hidden = true;
  $('result').hidden = false;
  $('token').value = token;
  try {
    const r = await fetch('/api/me', { headers: { Authorization: `Bearer ${token}` } });
    const me = await r.json();
    $('whoami').textContent = r.ok ? me.openid : (me.message || `HTTP ${r.status}`);
  } catch (e) {
    $('whoami').textContent = `? (${e.message})`;
  }
}

$('get-qr').addEventListener('click', getQr);
$('refresh-qr').addEventListener('click', getQr);
$('simulate').addEventListener('click', () => simulateScan().catch((e) => showError(e.message)));
$('lang-toggle').addEventListener('click', toggleLang);
setLang(chosenLang());
applyLang();
// No socket yet: it opens with the first QR code (getQr), so an idle page holds nothing open.
