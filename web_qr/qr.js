// kefu QR login page: GET /qrcode, bind the page's socket to the QR code, wait for the token.
// Protocol: docs/protocol.md §7 (the /ws/qr socket) and docs/qr-login.md (the whole sequence).

const $ = (id) => document.getElementById(id);
const PING_MS = 30000;          // the server closes a socket silent for 40 s (4408)
const MAX_BACKOFF_MS = 15000;

let ws = null;
let qr = null;                  // {ticket, expire_seconds, uid, image, sandbox, expiresAt}
let loggedIn = false;
let attempts = 0;
let countdownTimer = null;

function socketUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws/qr`;
}

function setConn(state, label) {
  const el = $('conn-status');
  el.dataset.state = state;
  el.querySelector('.label').textContent = label;
}

function setQrState(state, text) {
  $('qr-box').dataset.state = state;
  $('qr-state').textContent = text;
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
  setConn('connecting', 'Connecting…');
  const sock = new WebSocket(socketUrl());
  ws = sock;
  sock.onopen = () => {
    attempts = 0;
    setConn('online', 'Connected');
    if (qr && !expired() && !loggedIn) sendBind();
  };
  sock.onmessage = (ev) => {
    let frame;
    try { frame = JSON.parse(ev.data); } catch { return; }
    if (frame && typeof frame === 'object') onFrame(frame);
  };
  sock.onclose = (ev) => {
    if (ws !== sock) return;
    ws = null;
    if (loggedIn) { setConn('offline', 'Done'); return; }
    setConn('offline', `Disconnected (${ev.code}) – retrying`);
    if (qr && !expired()) setQrState('waiting', 'Reconnecting…');
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempts++) * (0.75 + Math.random() / 2);
    setTimeout(connect, delay);
  };
}

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(obj)); return true; }
  return false;
}

setInterval(() => send({ cmd: 'ping' }), PING_MS);

function sendBind() {
  // Exactly what GET /qrcode returned (older pages send the same three fields).
  if (send({ ticket: qr.ticket, expire_seconds: qr.expire_seconds, uid: qr.uid })) {
    setQrState('binding', 'Linking this page to the QR code…');
  }
}

function onFrame(f) {
  if (f.cmd === 'error') {
    if (f.code === 'bad_ticket') {
      markExpired('This QR code is no longer valid – get a new one.');
    } else {
      showError(f.message || f.code);
    }
    return;
  }
  if (f.cmd) return;  // pong and future control frames
  if (qr && f.uid === qr.uid && f.ticket === qr.ticket) {
    if (typeof f.token === 'string') { onToken(f.token); return; }
    setQrState('bound', 'Scan with WeChat to log in');  // the echo: bound
    return;
  }
  addPush(f);
}

function addPush(f) {
  const li = document.createElement('li');
  li.textContent = JSON.stringify(f);
  $('pushes').prepend(li);
  $('pushes-box').hidden = false;
}

// ---- the QR code -------------------------------------------------------------------------------

async function getQr() {
  showError('');
  $('get-qr').disabled = true;
  $('refresh-qr').disabled = true;
  try {
    const r = await fetch('/qrcode', { cache: 'no-store' });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { showError(body.message || `Could not get a QR code (HTTP ${r.status})`); return; }
    qr = { ...body, expiresAt: Date.now() + body.expire_seconds * 1000 };
    $('qr-img').src = body.image || '';
    $('simulate').hidden = !body.sandbox;
    $('start').hidden = true;
    $('qr-box').hidden = false;
    setQrState('waiting', 'Waiting for the socket…');
    tick();
    clearInterval(countdownTimer);
    countdownTimer = setInterval(tick, 1000);
    sendBind();
  } catch (e) {
    showError(`Could not get a QR code: ${e.message}`);
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

function markExpired(message) {
  clearInterval(countdownTimer);
  $('countdown').textContent = '00:00';
  $('simulate').hidden = true;
  setQrState('expired', message || 'QR code expired – get a new one.');
}

async function simulateScan() {
  showError('');
  const r = await fetch('/dev/simulate-scan', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ticket: qr.ticket, uid: qr.uid }),
  });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    showError(body.message || `Simulated scan failed (HTTP ${r.status})`);
  }
}

async function onToken(token) {
  loggedIn = true;
  clearInterval(countdownTimer);
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
connect();
