// The console page: wires the headless client (client/console.js) to the DOM. Everything about
// the protocol, the session, the outbox and the timeline is in the client; this file renders what it
// holds and turns the agent's clicks and keys into calls on it.
import { ConsoleClient } from './client/console.js';
import { renderConversationList, renderThread, setTitle, displayName } from './render.js';

const SOUND_KEY = 'kefu.sound';

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

const NOTICE = {
  revoked: 'Your session has ended. Please sign in again.',
  expired: 'Your session has expired. Please sign in again.',
};

/** sessionStorage, or null (memory) where the browser refuses it. */
function tabStorage() {
  try {
    const s = window.sessionStorage;
    s.setItem('kefu.probe', '1');
    s.removeItem('kefu.probe');
    return s;
  } catch {
    return null;
  }
}

function legacyStorage() {
  try { return [window.localStorage]; } catch { return []; }
}

const client = new ConsoleClient({
  WebSocket: window.WebSocket,
  fetch: (...args) => window.fetch(...args),
  storage: tabStorage(),
  legacyStorage: legacyStorage(), // older consoles kept the token there: it is removed
  clock: {
    now: () => Date.now(),
    setTimeout: (fn, ms) => window.setTimeout(fn, ms),
    clearTimeout: (h) => window.clearTimeout(h),
  },
  random: Math.random,
  socketUrl: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
  isWatching,
});

client.on('change', (opts) => renderAll(opts));
client.on('status', showConnection);
client.on('alert', () => { if (soundOn) beep(); });
client.on('hint', (text) => showHint(text, true));
client.on('session-ended', (reason) => {
  resetConsole();
  showLogin(NOTICE[reason] || NOTICE.revoked);
});

// ---------------------------------------------------------------- sign-in and session

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

function showConsole() {
  ui.agentName.textContent = client.agent?.name ?? '';
  ui.loginView.hidden = true;
  ui.consoleView.hidden = false;
  renderAll();
}

async function signOut() {
  const done = client.signOut(); // stops the socket and forgets the session at once
  resetConsole();
  showLogin();
  await done;
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
    await client.signIn(name, password);
    ui.loginNotice.hidden = true;
    showConsole();
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

function resetConsole() {
  ui.list.replaceChildren();
  ui.messageList.replaceChildren();
  ui.banner.hidden = true;
  clearInterval(countdown);
  ui.input.value = '';
  showThreadPane();
}

async function boot() {
  applySound();
  const outcome = await client.resume();
  if (outcome === 'started') showConsole();
  else showLogin(outcome === 'ended' ? NOTICE.revoked : '');
}

ui.listMore.addEventListener('click', () => {
  if (client.listNextBefore) client.loadConversations(client.listNextBefore).catch(() => {});
});

// ---------------------------------------------------------------- connection banner

let countdown = null;

function showConnection(state, info) {
  if (state === 'idle') { // signed out or the session ended: the sign-in screen takes over
    clearInterval(countdown);
    return;
  }
  ui.connStatus.dataset.state = state === 'stopped' ? 'offline' : state;
  ui.connStatus.querySelector('.label').textContent =
    { online: 'Online', connecting: 'Connecting...', offline: 'Offline', stopped: 'Disconnected' }[state];
  clearInterval(countdown);
  if (state === 'online' || (state === 'connecting' && !info.everOnline)) {
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
    countdown = setInterval(tick, 500);
    ui.bannerRetry.hidden = false;
  }
}

ui.bannerRetry.addEventListener('click', () => client.retryNow());
window.addEventListener('online', () => client.retryNow());

// ---------------------------------------------------------------- open conversation

function isWatching() {
  return document.visibilityState === 'visible';
}

async function openConversation(openid) {
  if (client.openId !== openid) {
    client.select(openid);
    ui.messageList.replaceChildren();
    showThreadPane();
    renderAll({ stick: true });
    if (client.thread(openid).nextBefore === undefined) await loadHistory(openid, true);
  }
  client.markOpenRead();
  renderAll();
  ui.input.focus();
}

function showThreadPane() {
  const c = client.openId && client.conversations.get(client.openId);
  ui.placeholder.hidden = !!c;
  ui.chat.hidden = !c;
  if (!c) return;
  ui.chatTitle.textContent = displayName(c);
  ui.chatSub.textContent = c.nickname ? c.openid : 'WeChat mini-program user';
}

async function loadHistory(openid, first = false) {
  const box = ui.messages;
  if (!await client.loadHistory(openid, { first })) return;
  if (client.openId !== openid) return;
  if (first) {
    renderAll({ stick: true });
  } else {
    const oldHeight = box.scrollHeight;
    const oldTop = box.scrollTop;
    renderNow();
    box.scrollTop = oldTop + (box.scrollHeight - oldHeight); // older messages went above: keep the place
  }
  // A short first page may not fill the pane: keep loading until it scrolls or history ends.
  const t = client.thread(openid);
  if (!t.error && t.nextBefore && box.scrollHeight <= box.clientHeight + 10) loadHistory(openid);
}

function renderHistoryStatus() {
  const t = client.openId && client.threads.get(client.openId);
  const s = ui.historyStatus;
  s.replaceChildren();
  if (!t) return;
  if (t.loading) s.textContent = 'Loading earlier messages...';
  else if (t.error) {
    s.textContent = `${t.error.status === 0 ? 'Could not load history.' : t.error.message} `;
    const b = document.createElement('button');
    b.className = 'link';
    b.type = 'button';
    b.textContent = 'Try again';
    b.addEventListener('click', () => loadHistory(client.openId, t.nextBefore === undefined));
    s.append(b);
  } else if (t.nextBefore === null) s.textContent = 'Beginning of the conversation';
}

ui.messages.addEventListener('scroll', () => {
  if (client.openId && ui.messages.scrollTop < 120) {
    const t = client.threads.get(client.openId);
    if (t && t.nextBefore) loadHistory(client.openId);
  }
});

document.addEventListener('visibilitychange', () => {
  if (isWatching()) client.markOpenRead();
});

// ---------------------------------------------------------------- composer

function sendReply() {
  const r = client.reply(client.openId, ui.input.value);
  if (r.error === 'too_long') {
    showHint(`Message too long (${r.bytes} bytes, the limit is ${r.limit}).`, true);
    return;
  }
  if (!r.ok) return;
  ui.input.value = '';
  showHint('');
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
  if (ui.consoleView.hidden) return; // the sign-in screen: nothing of the console to draw
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
  renderConversationList(ui.list, client, { onOpen: openConversation });
  const total = client.totalUnread();
  setTitle(total);
  ui.totalUnread.hidden = total === 0;
  ui.totalUnread.textContent = String(total);
  ui.listEmpty.hidden = client.conversations.size > 0 || !client.listLoaded;
  ui.listMore.hidden = !client.listNextBefore;
  showThreadPane();
  if (client.openId) {
    const box = ui.messages;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    renderThread(ui.messageList, client, client.openId, { onRetry: (cmid) => client.retry(cmid) });
    renderHistoryStatus();
    if (stick || atBottom) box.scrollTop = box.scrollHeight;
  }
}

boot();
