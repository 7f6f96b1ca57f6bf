// The console: sign-in, session, wiring the socket and the API into the store, and the screen.
import * as api from './api.js';
import { renderConversationList, renderThread, setTitle, displayName } from './render.js';
import { KefuSocket, socketUrl } from './socket.js';
import { Store } from './state.js';

const SESSION_KEY = 'kefu.session';
const SOUND_KEY = 'kefu.sound';
const ACK_TIMEOUT_MS = 10_000;
const HISTORY_PAGE = 30;
const SYNC_PAGE = 200;

const $ = (id) => document.getElementById(id);
const ui = {
  loginView: $('login-view'), loginForm: $('login-form'), loginName: $('login-name'),
  loginPassword: $('login-password'), loginError: $('login-error'), loginNotice: $('login-notice'),
  loginSubmit: $('login-submit'),
  consoleView: $('console-view'), agentName: $('agent-name'), logout: $('logout'), sound: $('sound-toggle'),
  connStatus: $('conn-status'), banner: $('banner'), bannerText: $('banner-text'), bannerRetry: $('banner-retry'),
  list: $('conversation-list'), listEmpty: $('conversation-empty'), listMore: $('conversation-more'),
  totalUnread: $('total-unread'),
  placeholder: $('chat-placeholder'), chat: $('chat'), chatTitle: $('chat-title'), chatSub: $('chat-sub'),
  messages: $('messages'), messageList: $('message-list'), historyStatus: $('history-status'),
  composer: $('composer'), input: $('composer-input'), hint: $('composer-hint'),
};

const store = new Store();
let session = null; // {token, agent, expiresAt}
let expiryTimer = null;
let hadHello = false;
let catchUpTimer = null;

const socket = new KefuSocket(socketUrl(), {
  onHello: handleHello,
  onFrame: handleFrame,
  onStatus: showConnection,
  onUnauthorized: () => endSession('Your session has ended. Please sign in again.'),
});
api.setUnauthorizedHandler(() => endSession('Your session has ended. Please sign in again.'));

// ---------------------------------------------------------------- session

function saveSession(s) {
  session = s;
  localStorage.setItem(SESSION_KEY, JSON.stringify(s));
}

function loadSession() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
    if (s && typeof s.token === 'string' && (!s.expiresAt || s.expiresAt > Date.now())) return s;
  } catch { /* corrupt entry */ }
  localStorage.removeItem(SESSION_KEY);
  return null;
}

function clearSession() {
  session = null;
  localStorage.removeItem(SESSION_KEY);
  api.setToken(null);
  clearTimeout(expiryTimer);
}

function showLogin(notice = '') {
  ui.consoleView.hidden = true;
  ui.loginView.hidden = false;
  ui.loginNotice.textContent = notice;
  ui.loginNotice.hidden = !notice;
  ui.loginError.hidden = true;
  ui.loginPassword.value = '';
  setTitle(0);
  (ui.loginName.value ? ui.loginPassword : ui.loginName).focus();
}

/** The token is gone (401, close 4401, expiry): back to sign-in. */
function endSession(notice) {
  if (!session) return;
  socket.stop();
  clearSession();
  resetConsole();
  showLogin(notice);
}

async function signOut() {
  const token = session?.token;
  socket.stop(); // first, so the server's 4401 close is not taken for an expired session
  clearSession();
  resetConsole();
  showLogin();
  if (token) {
    api.setToken(token);
    try { await api.logout(); } catch { /* revoked or unreachable: the local session is gone anyway */ }
    api.setToken(session?.token ?? null);
  }
}

ui.loginForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = ui.loginName.value.trim();
  const password = ui.loginPassword.value;
  ui.loginError.hidden = true;
  if (!name || !password) {
    showLoginError('Enter your agent name and password.');
    return;
  }
  ui.loginSubmit.disabled = true;
  try {
    const r = await api.agentLogin(name, password);
    saveSession({ token: r.token, agent: r.agent, expiresAt: Date.now() + r.expires_in * 1000 });
    ui.loginNotice.hidden = true;
    startConsole();
  } catch (err) {
    showLoginError(err.status === 401 ? 'Wrong name or password.'
      : err.status === 0 ? 'The server could not be reached. Check your connection and try again.'
        : err.message || 'Sign-in failed, please try again.');
    ui.loginPassword.select();
  } finally {
    ui.loginSubmit.disabled = false;
  }
});

function showLoginError(text) {
  ui.loginError.textContent = text;
  ui.loginError.hidden = false;
}

ui.logout.addEventListener('click', signOut);

// ---------------------------------------------------------------- console lifecycle

function resetConsole() {
  for (const p of store.pending.values()) clearTimeout(p.timer);
  store.reset();
  hadHello = false;
  clearTimeout(catchUpTimer);
  ui.list.replaceChildren();
  ui.messageList.replaceChildren();
  ui.banner.hidden = true;
  ui.input.value = '';
  showThreadPane();
}

function startConsole() {
  api.setToken(session.token);
  store.agent = session.agent;
  ui.agentName.textContent = session.agent.name;
  ui.loginView.hidden = true;
  ui.consoleView.hidden = false;
  clearTimeout(expiryTimer);
  if (session.expiresAt) {
    // setTimeout overflows past ~24.8 days; agent tokens live hours.
    const left = Math.min(session.expiresAt - Date.now(), 2 ** 31 - 1);
    expiryTimer = setTimeout(() => endSession('Your session has expired. Please sign in again.'), left);
  }
  renderAll();
  loadConversations().catch(() => { /* retried when the socket says hello */ });
  socket.start(session.token);
}

async function boot() {
  applySound();
  const saved = loadSession();
  if (!saved) {
    showLogin();
    return;
  }
  session = saved;
  api.setToken(saved.token);
  try {
    const who = await api.me();
    if (who.role !== 'agent') throw new Error('not an agent token');
    session.agent = who.agent;
    saveSession(session);
  } catch (err) {
    if (err.status === 0) {
      // The server is unreachable right now: keep the session, the socket will keep trying.
    } else {
      clearSession();
      showLogin(err.status === 401 ? 'Your session has ended. Please sign in again.' : '');
      return;
    }
  }
  startConsole();
}

// ---------------------------------------------------------------- conversations

async function loadConversations(before) {
  const r = await api.conversations(before ?? undefined);
  store.mergeConversations(r.conversations);
  if (before === undefined || before === null) {
    if (!store.listLoaded) store.listNextBefore = r.next_before;
    store.listLoaded = true;
  } else {
    store.listNextBefore = r.next_before;
  }
  renderAll();
}

ui.listMore.addEventListener('click', () => {
  if (store.listNextBefore) loadConversations(store.listNextBefore).catch(() => {});
});

// ---------------------------------------------------------------- socket frames

function showConnection(state, info) {
  ui.connStatus.dataset.state = state === 'stopped' ? 'offline' : state;
  ui.connStatus.querySelector('.label').textContent =
    { online: 'Online', connecting: 'Connecting...', offline: 'Offline', stopped: 'Disconnected' }[state];
  clearInterval(showConnection.countdown);
  if (state === 'online' || (state === 'connecting' && !hadHello)) {
    ui.banner.hidden = true;
    return;
  }
  ui.banner.hidden = false;
  if (state === 'connecting') {
    ui.bannerText.textContent = 'Connection lost. Reconnecting...';
    ui.bannerRetry.hidden = true;
  } else if (state === 'stopped') {
    ui.bannerText.textContent = 'The server closed the connection (too many errors).';
    ui.bannerRetry.hidden = false;
  } else {
    const tick = () => {
      const s = Math.max(0, Math.ceil((info.retryAt - Date.now()) / 1000));
      ui.bannerText.textContent = `Connection lost. Reconnecting in ${s}s...`;
    };
    tick();
    showConnection.countdown = setInterval(tick, 500);
    ui.bannerRetry.hidden = false;
  }
}

ui.bannerRetry.addEventListener('click', () => socket.retryNow());
window.addEventListener('online', () => socket.retryNow());

async function handleHello(hello) {
  if (hello.role !== 'agent') return;
  store.maxMessageBytes = hello.max_message_bytes || store.maxMessageBytes;
  const reconnect = hadHello;
  hadHello = true;
  await catchUp(reconnect);
  // Replies still waiting for an ack go again with the same cmid: the server dedupes them.
  for (const p of store.pending.values()) if (p.status === 'sending') transmit(p, false);
  markOpenRead();
}

/**
 * Fetch what was missed: the conversation list first if it never loaded (it sets where `sync` starts;
 * without it a sync from 0 would replay every conversation ever), then `sync` after the newest id seen.
 */
async function catchUp(refreshList) {
  clearTimeout(catchUpTimer);
  if (!store.listLoaded) {
    try {
      await loadConversations();
    } catch {
      catchUpTimer = setTimeout(() => { if (socket.online) catchUp(false); }, 5000);
      return;
    }
  } else if (refreshList) {
    loadConversations().catch(() => {}); // read marks and unread counts moved meanwhile
  }
  socket.send({ cmd: 'sync', after: store.lastSeenId, limit: SYNC_PAGE });
}

function handleFrame(f) {
  if (f.cmd === undefined && typeof f.msg === 'string') {
    onMessage(f);
  } else if (f.cmd === 'sync') {
    let bumped = false;
    for (const m of f.messages || []) {
      bumped = (store.ingest(m) && !(m.openid === store.openId && isWatching())) || bumped;
    }
    if (f.more && f.messages?.length) {
      socket.send({ cmd: 'sync', after: f.messages[f.messages.length - 1].id, limit: SYNC_PAGE });
    }
    afterNewMessages(bumped);
  } else if (f.cmd === 'ack') {
    if (store.acked(f)) renderAll({ stick: true });
  } else if (f.cmd === 'read') {
    store.applyRead(f.openid, f.by, f.upto);
    renderAll();
  } else if (f.cmd === 'error') {
    onError(f);
  }
}

function onMessage(m) {
  afterNewMessages(store.ingest(m) && !(m.openid === store.openId && isWatching()));
}

/** `alert`: a user message arrived that the agent is not looking at. */
function afterNewMessages(alert) {
  if (alert && soundOn) beep();
  if (store.openId && isWatching()) markOpenRead();
  renderAll();
}

function onError(f) {
  const p = f.cmid && store.pending.get(f.cmid);
  if (p) {
    clearTimeout(p.timer);
    p.status = 'failed';
    p.error = f.message || f.code;
    renderAll();
    return;
  }
  showHint(f.message || f.code, true);
}

// ---------------------------------------------------------------- open conversation

function isWatching() {
  return document.visibilityState === 'visible';
}

async function openConversation(openid) {
  if (store.openId !== openid) {
    store.openId = openid;
    ui.messageList.replaceChildren();
    showThreadPane();
    const t = store.thread(openid);
    renderAll({ stick: true });
    if (t.nextBefore === undefined) await loadHistory(openid, true);
  }
  markOpenRead();
  renderAll();
  ui.input.focus();
}

function showThreadPane() {
  const c = store.openId && store.conversation(store.openId);
  ui.placeholder.hidden = !!c;
  ui.chat.hidden = !c;
  if (!c) return;
  ui.chatTitle.textContent = displayName(c);
  ui.chatSub.textContent = c.nickname ? c.openid : 'WeChat mini-program user';
}

async function loadHistory(openid, first = false) {
  const t = store.thread(openid);
  if (t.loading || t.nextBefore === null) return;
  t.loading = true;
  t.error = null;
  renderHistoryStatus();
  const box = ui.messages;
  try {
    const r = await api.messages(openid, first ? undefined : t.nextBefore, HISTORY_PAGE);
    for (const m of r.messages) store.ingest(m, { count: false });
    t.nextBefore = r.next_before;
  } catch (err) {
    t.error = err.status === 0 ? 'Could not load history.' : err.message;
  } finally {
    t.loading = false;
  }
  if (store.openId !== openid) return;
  if (first) {
    renderAll({ stick: true });
  } else {
    const oldHeight = box.scrollHeight;
    const oldTop = box.scrollTop;
    renderNow();
    box.scrollTop = oldTop + (box.scrollHeight - oldHeight); // older messages went above: keep the place
  }
  // A short first page may not fill the pane: keep loading until it scrolls or history ends.
  if (!t.error && t.nextBefore && box.scrollHeight <= box.clientHeight + 10) loadHistory(openid);
}

function renderHistoryStatus() {
  const t = store.openId && store.threads.get(store.openId);
  const s = ui.historyStatus;
  s.replaceChildren();
  if (!t) return;
  if (t.loading) s.textContent = 'Loading earlier messages...';
  else if (t.error) {
    s.textContent = `${t.error} `;
    const b = document.createElement('button');
    b.className = 'link';
    b.type = 'button';
    b.textContent = 'Try again';
    b.addEventListener('click', () => loadHistory(store.openId, t.nextBefore === undefined));
    s.append(b);
  } else if (t.nextBefore === null) s.textContent = 'Beginning of the conversation';
}

ui.messages.addEventListener('scroll', () => {
  if (store.openId && ui.messages.scrollTop < 120) {
    const t = store.threads.get(store.openId);
    if (t && t.nextBefore) loadHistory(store.openId);
  }
});

/** Mark the open conversation read up to its newest message, when there is something unread. */
function markOpenRead() {
  const openid = store.openId;
  if (!openid || !isWatching()) return;
  const c = store.conversation(openid);
  const upto = c.last?.id || 0;
  if (c.unread === 0 && (c.last?.from !== 'user' || c.agentReadUpto >= upto)) return;
  store.applyRead(openid, 'agent', upto);
  c.unread = 0;
  const frame = upto ? { cmd: 'read', openid, upto } : { cmd: 'read', openid };
  if (!socket.send(frame)) api.markRead(openid, upto || undefined).catch(() => {});
  renderAll();
}

document.addEventListener('visibilitychange', () => {
  if (isWatching()) markOpenRead();
});

// ---------------------------------------------------------------- composer

function newCmid() {
  const rnd = crypto.getRandomValues(new Uint32Array(2));
  return `w${store.agent?.id ?? 0}-${Date.now().toString(36)}-${rnd[0].toString(36)}${rnd[1].toString(36)}`;
}

function transmit(p, restartTimer = true) {
  p.status = 'sending';
  p.error = null;
  if (restartTimer || !p.timer) {
    clearTimeout(p.timer);
    p.timer = setTimeout(() => {
      if (store.pending.get(p.cmid) === p && p.status === 'sending') {
        p.status = 'failed';
        p.error = 'No confirmation from the server.';
        renderAll();
      }
    }, ACK_TIMEOUT_MS);
  }
  // Offline: it stays "sending" and goes out when the socket is back (or fails at the timeout).
  socket.send({ type: 1, openid: p.openid, msg: p.msg, cmid: p.cmid });
}

function retry(cmid) {
  const p = store.pending.get(cmid);
  if (!p) return;
  transmit(p); // the SAME cmid, so a copy the server did store is not stored twice
  renderAll({ stick: true });
}

function sendReply() {
  const openid = store.openId;
  const text = ui.input.value.replace(/^\s*\n+|\s+$/g, '');
  if (!openid || !text.trim()) return;
  const bytes = new TextEncoder().encode(text).length;
  if (bytes > store.maxMessageBytes) {
    showHint(`Message too long (${bytes} bytes, the limit is ${store.maxMessageBytes}).`, true);
    return;
  }
  ui.input.value = '';
  showHint('');
  transmit(store.addPending(openid, newCmid(), text));
  renderAll({ stick: true });
}

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  sendReply();
});

ui.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault(); // Enter sends; Shift+Enter falls through and adds a line
    sendReply();
  }
});

const DEFAULT_HINT = 'Enter to send · Shift+Enter for a new line';
let hintTimer = null;
function showHint(text, error = false) {
  ui.hint.textContent = text || DEFAULT_HINT;
  ui.hint.classList.toggle('error', error);
  clearTimeout(hintTimer);
  if (text) hintTimer = setTimeout(() => showHint(''), 6000);
}
showHint('');

// ---------------------------------------------------------------- sound

let soundOn = false;
let audio = null;

function applySound() {
  soundOn = localStorage.getItem(SOUND_KEY) === 'on';
  ui.sound.setAttribute('aria-pressed', String(soundOn));
  ui.sound.textContent = soundOn ? 'Sound on' : 'Sound off';
}

ui.sound.addEventListener('click', () => {
  localStorage.setItem(SOUND_KEY, soundOn ? 'off' : 'on');
  applySound();
  if (soundOn) beep(); // a click is the user gesture that lets the AudioContext start
});

let lastBeep = 0;
function beep() {
  const now = Date.now();
  if (now - lastBeep < 1000) return;
  lastBeep = now;
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    if (audio.state === 'suspended') audio.resume();
    const t = audio.currentTime;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = 'sine';
    osc.frequency.setValueAtTime(880, t);
    osc.frequency.setValueAtTime(1175, t + 0.09);
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.2, t + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.25);
    osc.connect(gain).connect(audio.destination);
    osc.start(t);
    osc.stop(t + 0.26);
  } catch { /* no audio device: stay silent */ }
}

// ---------------------------------------------------------------- rendering

let frame = 0;
let stickPending = false;

/** Re-render on the next animation frame (a burst of frames costs one render). */
function renderAll({ stick = false } = {}) {
  stickPending = stickPending || stick;
  // Hidden tabs get no animation frames: draw now so the title and the list stay current.
  if (document.visibilityState !== 'visible') {
    renderNow();
    return;
  }
  if (!frame) frame = requestAnimationFrame(renderNow);
}

function renderNow() {
  cancelAnimationFrame(frame);
  frame = 0;
  const stick = stickPending;
  stickPending = false;
  draw(stick);
}

function draw(stick) {
  renderConversationList(ui.list, store, { onOpen: openConversation });
  const total = store.totalUnread();
  setTitle(total);
  ui.totalUnread.hidden = total === 0;
  ui.totalUnread.textContent = String(total);
  ui.listEmpty.hidden = store.conversations.size > 0 || !store.listLoaded;
  ui.listMore.hidden = !store.listNextBefore;
  showThreadPane();
  if (store.openId) {
    const box = ui.messages;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    renderThread(ui.messageList, store, store.openId, { onRetry: retry });
    renderHistoryStatus();
    if (stick || atBottom) box.scrollTop = box.scrollHeight;
  }
}

boot();
