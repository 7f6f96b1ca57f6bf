// The console page: wires the headless client (client/console.js) to the DOM. Everything about
// the protocol, the session, the outbox and the timeline is in the client; this file renders what it
// holds and turns the agent's clicks and keys into calls on it.
import { ConsoleClient } from './client/console.js';
import { CATALOG, DEFAULT_LANG, setLang, lang, t } from './i18n.js';
import { renderConversationList, renderThread, setTitle, displayName, fillAvatar, el, shortTime } from './render.js';
import { mountAdmin } from './admin.js';

const SOUND_KEY = 'kefu.sound';
const LANG_KEY = 'kefu.lang';

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
  views: $('views'), team: $('team'), presence: $('presence'), notify: $('notify-toggle'),
  lang: $('lang-toggle'), langLogin: $('lang-toggle-login'), adminToggle: $('admin-toggle'),
  workView: $('work-view'), adminView: $('admin-view'), chatStatus: $('chat-status'),
  actClaim: $('act-claim'), actTransfer: $('act-transfer'), actRelease: $('act-release'),
  actResolve: $('act-resolve'), actReopen: $('act-reopen'), transferBox: $('transfer-box'),
  transferTo: $('transfer-to'), transferNote: $('transfer-note'), transferCancel: $('transfer-cancel'),
  typing: $('typing'), noteMode: $('note-mode'), canned: $('canned-menu'), side: $('side'),
  sideAvatar: $('side-avatar'), sideName: $('side-name'), sideFields: $('side-fields'),
  sideTags: $('side-tags'), sideHistory: $('side-history'),
  chatReach: $('chat-reach'), imageButton: $('composer-image'), imagePicker: $('image-picker'),
  lightbox: $('lightbox'), lightboxImage: $('lightbox-image'), lightboxClose: $('lightbox-close'),
};

const NOTICE = { revoked: () => t('notice.revoked'), expired: () => t('notice.expired') };

// ---------------------------------------------------------------- language

function storedLang() {
  try { return localStorage.getItem(LANG_KEY) || DEFAULT_LANG; } catch { return DEFAULT_LANG; }
}

/** Fill every static string of the page from the catalog. */
function applyLang() {
  document.documentElement.lang = lang();
  for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll('[data-i18n-placeholder]')) e.placeholder = t(e.dataset.i18nPlaceholder);
  for (const e of document.querySelectorAll('[data-i18n-title]')) e.title = t(e.dataset.i18nTitle);
  ui.input.placeholder = t(ui.noteMode.checked ? 'composer.note_placeholder' : 'composer.placeholder');
  applySound();
  showHint('');
  ui.list.replaceChildren();
  ui.messageList.replaceChildren();
  renderAll();
}

function toggleLang() {
  const next = lang() === 'en' ? 'zh-CN' : 'en';
  try { localStorage.setItem(LANG_KEY, next); } catch { /* memory only */ }
  setLang(next);
  applyLang();
}
setLang(CATALOG[storedLang()] ? storedLang() : DEFAULT_LANG);

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
  team: true,
});

client.on('change', (opts) => renderAll(opts));
client.on('status', showConnection);
client.on('alert', () => { if (soundOn) beep(); notifyMessage(); });
client.on('assigned', (openid) => notify(t('notify.assigned_title'), nameOf(openid), openid));
client.on('refused', (r) => showHint(r.code === 'taken'
  ? t('refused.taken', { name: r.assignee?.name || '' }) : t('refused.other', { message: r.message || r.code }), true));
client.on('hint', (text) => showHint(text, true));
client.on('session-ended', (reason) => {
  resetConsole();
  showLogin((NOTICE[reason] || NOTICE.revoked)());
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
  ui.adminToggle.hidden = !client.agent?.admin;
  ui.views.querySelector('[data-view="all"]').hidden = !client.agent?.admin;
  ui.notify.hidden = !('Notification' in window) || Notification.permission !== 'default';
  showWork();
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
    showLoginError(t('login.missing'));
    return;
  }
  ui.loginSubmit.disabled = true;
  try {
    await client.signIn(name, password);
    ui.loginNotice.hidden = true;
    showConsole();
  } catch (err) {
    showLoginError(err.status === 401 ? t('login.wrong')
      : err.code === 'agent_disabled' ? t('login.disabled')
        : err.status === 0 ? t('login.unreachable') : err.message || t('login.failed'));
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
  else showLogin(outcome === 'ended' ? NOTICE.revoked() : '');
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
  ui.connStatus.querySelector('.label').textContent = t(`conn.${state}`);
  clearInterval(countdown);
  if (state === 'online' || (state === 'connecting' && !info.everOnline)) {
    ui.banner.hidden = true;
    return;
  }
  ui.banner.hidden = false;
  if (state === 'connecting') {
    ui.bannerText.textContent = t('banner.lost');
    ui.bannerRetry.hidden = true;
  } else if (state === 'stopped') {
    ui.bannerText.textContent = t('banner.stopped');
    ui.bannerRetry.hidden = false;
  } else {
    const tick = () => {
      const s = Math.max(0, Math.ceil((info.retryAt - Date.now()) / 1000));
      ui.bannerText.textContent = t('banner.lost_in', { s });
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
  loadSide(openid);
  client.loadReach(openid);
}

function showThreadPane() {
  const c = client.openId && client.conversations.get(client.openId);
  ui.placeholder.hidden = !!c;
  ui.chat.hidden = !c;
  if (!c) return;
  const team = client.desk.of(c.openid);
  ui.chatTitle.textContent = displayName(c, team.profile);
  ui.chatSub.textContent = team.profile?.name || c.nickname ? c.openid : t('chat.sub');
  const me = client.agent;
  const mine = team.status === 'assigned' && team.assignee?.id === me?.id;
  ui.chatStatus.textContent = team.status === 'assigned' ? t('status.assigned', { name: team.assignee?.name || '' })
    : t(`status.${team.status}`);
  ui.chatStatus.dataset.status = team.status;
  ui.actClaim.hidden = team.status === 'assigned';
  ui.actTransfer.hidden = !(team.status === 'assigned' && (mine || me?.admin));
  ui.actRelease.hidden = ui.actTransfer.hidden;
  ui.actResolve.hidden = team.status === 'resolved' || (team.status === 'assigned' && !mine && !me?.admin);
  ui.actReopen.hidden = team.status !== 'resolved';
  const may = client.desk.mayReply(c.openid);
  ui.input.disabled = !may;
  ui.input.placeholder = may ? t(ui.noteMode.checked ? 'composer.note_placeholder' : 'composer.placeholder')
    : t('chat.readonly', { name: team.assignee?.name || '' });
  renderReach(client.reach.get(c.openid));
  ui.typing.hidden = !client.desk.isTyping(c.openid);
  ui.typing.textContent = `${displayName(c, team.profile)} ${t('chat.typing')}`;
}

/** Whether and until when the user can be reached (WeChat's customer-service channel). */
function renderReach(r) {
  ui.chatReach.hidden = !r;
  if (!r) return;
  const parts = [];
  if (r.connected) parts.push(t('reach.connected'));
  else if (r.wechat) parts.push(t('reach.wechat', { until: new Date(r.wechat.until).toLocaleString(), left: r.wechat.left }));
  else parts.push(t('reach.none'));
  if (r.subscribe?.template) parts.push(t('reach.subscribe', { n: r.subscribe.consents }));
  ui.chatReach.textContent = parts.join(' · ');
  ui.chatReach.dataset.wechat = r.wechat ? 'open' : 'closed';
  ui.chatReach.dataset.connected = String(!!r.connected);
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
  const th = client.openId && client.threads.get(client.openId);
  const s = ui.historyStatus;
  s.replaceChildren();
  if (!th) return;
  if (th.loading) s.textContent = t('history.loading');
  else if (th.error) {
    s.textContent = `${th.error.status === 0 ? t('history.failed') : th.error.message} `;
    const b = document.createElement('button');
    b.className = 'link';
    b.type = 'button';
    b.textContent = t('history.retry');
    b.addEventListener('click', () => loadHistory(client.openId, th.nextBefore === undefined));
    s.append(b);
  } else if (th.nextBefore === null) s.textContent = t('history.start');
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
  if (ui.noteMode.checked) {
    if (client.note(client.openId, ui.input.value)) {
      ui.input.value = '';
      ui.noteMode.checked = false;
      ui.composer.classList.remove('note');
      showThreadPane();
    }
    return;
  }
  const r = client.reply(client.openId, ui.input.value);
  if (r.error === 'too_long') {
    showHint(t('composer.too_long', { bytes: r.bytes, limit: r.limit }), true);
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
  if (!ui.canned.hidden && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
    e.preventDefault();
    moveCanned(e.key === 'ArrowDown' ? 1 : -1);
    return;
  }
  if (!ui.canned.hidden && (e.key === 'Enter' || e.key === 'Tab') && !e.isComposing) {
    e.preventDefault();
    pickCanned(cannedIndex);
    return;
  }
  if (e.key === 'Escape') { ui.canned.hidden = true; return; }
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault(); // Enter sends; Shift+Enter falls through and adds a line
    sendReply();
  }
});

ui.input.addEventListener('input', () => {
  showCanned();
  if (!ui.noteMode.checked && ui.input.value.trim()) client.typing(client.openId);
});

ui.noteMode.addEventListener('change', () => {
  ui.composer.classList.toggle('note', ui.noteMode.checked);
  showThreadPane();
  ui.input.focus();
});

// ---------------------------------------------------------------- pictures: picker, paste, drop

async function sendPictures(files) {
  const openid = client.openId;
  for (const file of files) {
    if (!openid || !file || !/^image\//.test(file.type || '')) continue;
    showHint(t('composer.uploading'));
    try {
      await client.sendImage(openid, file);
      showHint('');
    } catch (err) {
      showHint(t('composer.upload_failed', { message: err.message || err.code }), true);
    }
  }
}

ui.imageButton.addEventListener('click', () => ui.imagePicker.click());
ui.imagePicker.addEventListener('change', () => {
  const files = [...ui.imagePicker.files];
  ui.imagePicker.value = '';
  sendPictures(files);
});
ui.input.addEventListener('paste', (e) => {
  const files = [...(e.clipboardData?.files || [])].filter((f) => /^image\//.test(f.type));
  if (!files.length) return; // text pastes as usual
  e.preventDefault();
  sendPictures(files);
});
ui.chat.addEventListener('dragover', (e) => {
  if ([...(e.dataTransfer?.types || [])].includes('Files')) { e.preventDefault(); ui.chat.classList.add('dropping'); }
});
ui.chat.addEventListener('dragleave', () => ui.chat.classList.remove('dropping'));
ui.chat.addEventListener('drop', (e) => {
  ui.chat.classList.remove('dropping');
  const files = [...(e.dataTransfer?.files || [])];
  if (!files.length) return;
  e.preventDefault();
  sendPictures(files);
});

function showPicture(id) {
  const urls = client.media.get(id);
  if (!urls) return;
  ui.lightboxImage.src = urls.url;
  ui.lightboxImage.dataset.image = id;
  ui.lightbox.hidden = false;
  ui.lightboxClose.focus();
}

function closePicture() {
  ui.lightbox.hidden = true;
  ui.lightboxImage.removeAttribute('src');
}

ui.lightbox.addEventListener('click', (e) => { if (e.target !== ui.lightboxImage) closePicture(); });
document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && !ui.lightbox.hidden) closePicture(); });
client.on('reach', (openid) => { if (openid === client.openId) renderAll(); });

// ---------------------------------------------------------------- canned replies (`/`)

let cannedIndex = 0;
let cannedShown = [];

function showCanned() {
  cannedShown = client.desk.cannedFor(ui.input.value);
  const typed = /^\/\S*$/.test(ui.input.value);
  ui.canned.hidden = !typed;
  if (!typed) return;
  cannedIndex = 0;
  ui.canned.replaceChildren(...(cannedShown.length ? cannedShown.map((c, i) => {
    const li = el('li', 'canned-item');
    li.dataset.shortcut = c.shortcut;
    li.setAttribute('role', 'option');
    li.append(el('b', null, `/${c.shortcut}`), el('span', null, c.body));
    li.addEventListener('mousedown', (e) => { e.preventDefault(); pickCanned(i); });
    return li;
  }) : [el('li', 'canned-none', t('composer.canned_none'))]));
  markCanned();
}

function markCanned() {
  [...ui.canned.children].forEach((li, i) => li.classList.toggle('active', i === cannedIndex));
}

function moveCanned(step) {
  if (!cannedShown.length) return;
  cannedIndex = (cannedIndex + step + cannedShown.length) % cannedShown.length;
  markCanned();
}

function pickCanned(i) {
  const c = cannedShown[i];
  ui.canned.hidden = true;
  if (!c) return;
  ui.input.value = c.body;
  ui.input.focus();
  ui.input.setSelectionRange(c.body.length, c.body.length);
}

// ---------------------------------------------------------------- lifecycle, views, presence

ui.actClaim.addEventListener('click', () => client.changeStatus('claim', client.openId));
ui.actRelease.addEventListener('click', () => client.changeStatus('release', client.openId));
ui.actResolve.addEventListener('click', () => client.changeStatus('resolve', client.openId));
ui.actReopen.addEventListener('click', () => client.changeStatus('reopen', client.openId));
ui.actTransfer.addEventListener('click', () => {
  const targets = client.desk.transferTargets();
  ui.transferTo.replaceChildren(...targets.map((a) => {
    const o = el('option', null, `${a.name}（${t(`presence.${a.status || 'offline'}`)}）`);
    o.value = String(a.id);
    return o;
  }));
  ui.transferBox.hidden = false;
  if (!targets.length) showHint(t('transfer.none'), true);
});
ui.transferCancel.addEventListener('click', () => { ui.transferBox.hidden = true; });
ui.transferBox.addEventListener('submit', (e) => {
  e.preventDefault();
  const to = Number(ui.transferTo.value);
  if (!to) return;
  client.changeStatus('transfer', client.openId, { to, note: ui.transferNote.value.trim() });
  ui.transferNote.value = '';
  ui.transferBox.hidden = true;
});

ui.views.addEventListener('click', (e) => {
  const b = e.target.closest('[data-view]');
  if (b) client.setView(b.dataset.view);
});

ui.presence.addEventListener('change', () => client.setPresence(ui.presence.value));

function renderViews() {
  for (const b of ui.views.querySelectorAll('[data-view]')) {
    const v = b.dataset.view;
    b.classList.toggle('active', v === client.desk.view);
    b.setAttribute('aria-selected', String(v === client.desk.view));
    b.querySelector('.count').textContent = String(client.desk.counts[v] ?? 0);
  }
  const mine = client.desk.myStatus();
  if (ui.presence.value !== mine && mine !== 'offline') ui.presence.value = mine;
  const team = [...client.desk.agents.values()].sort((a, b) => a.name.localeCompare(b.name));
  ui.team.replaceChildren(...team.map((a) => {
    const li = el('li', `mate ${a.status || 'offline'}`);
    li.dataset.agent = a.name;
    li.append(el('span', 'dot'), el('span', 'mate-name', a.name),
      el('span', 'mate-load', `${a.load ?? 0}/${a.limit ?? ''}`), el('span', 'mate-status', t(`presence.${a.status || 'offline'}`)));
    return li;
  }));
}

// ---------------------------------------------------------------- side panel

let sideFor = null;

async function loadSide(openid) {
  sideFor = openid;
  ui.side.hidden = false;
  let r = null;
  try { r = await client.api.customer(openid); } catch { /* shown without the server's details */ }
  if (sideFor !== openid) return;
  renderSide(openid, r);
}

function renderSide(openid, r) {
  const c = client.conversation(openid);
  const p = r?.profile || {};
  const shown = client.desk.of(openid).profile || { name: p.name || p.nickname, avatar: p.avatar || p.user_avatar };
  fillAvatar(ui.sideAvatar, c, shown);
  ui.sideName.textContent = displayName(c, shown);
  const rows = [[t('side.name'), p.name || p.nickname], [t('side.phone'), p.phone], [t('side.openid'), openid],
    ...Object.entries(p.attrs || {}).map(([k, v]) => [k, String(v)])];
  ui.sideFields.replaceChildren(...rows.filter(([, v]) => v).flatMap(([k, v]) => [el('dt', null, k), el('dd', null, v)]));
  ui.sideTags.replaceChildren(...(p.tags || []).map((tag) => el('span', 'tag', tag)));
  const done = (r?.events || []).filter((e) => e.meta?.event === 'resolved');
  ui.sideHistory.replaceChildren(...(done.length ? done.map((e) => el('li', null,
    t('side.resolved_by', { date: `${shortTime(e.ts)}`, by: e.meta?.by?.name || t('event.system') })))
    : [el('li', 'empty', t('side.no_history'))]));
}

// ---------------------------------------------------------------- desktop notifications

function nameOf(openid) {
  const c = client.conversation(openid);
  return displayName(c, client.desk.of(openid).profile);
}

function notify(title, body, openid) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  if (document.visibilityState === 'visible' && openid === client.openId) return;
  try {
    const n = new Notification(title, { body, tag: `kefu-${openid}` });
    n.onclick = () => { window.focus(); openConversation(openid); n.close(); };
  } catch { /* some browsers only notify from a service worker */ }
}

/** A message in one of this agent's conversations while the tab is hidden. */
function notifyMessage() {
  if (document.visibilityState === 'visible') return;
  const c = client.sortedConversations().find((x) => x.last?.from === 'user' && x.unread > 0);
  if (c && client.desk.inView(c.openid, 'mine')) notify(t('notify.message_title', { name: nameOf(c.openid) }), c.last.msg, c.openid);
}

ui.notify.addEventListener('click', async () => {
  try { await Notification.requestPermission(); } catch { /* refused */ }
  ui.notify.hidden = Notification.permission !== 'default';
});

// ---------------------------------------------------------------- admin page

const admin = mountAdmin({ client, t, onError: (m) => showHint(m, true) });

function showWork() {
  ui.adminView.hidden = true;
  ui.workView.hidden = false;
  ui.adminToggle.textContent = t('top.admin');
}

ui.adminToggle.addEventListener('click', () => {
  if (ui.adminView.hidden) {
    ui.workView.hidden = true;
    ui.adminView.hidden = false;
    ui.adminToggle.textContent = t('top.console');
    admin.load();
  } else {
    showWork();
  }
});

ui.lang.addEventListener('click', toggleLang);
ui.langLogin.addEventListener('click', toggleLang);

function defaultHint() { return t('composer.hint'); }
let hintTimer = null;
function showHint(text, error = false) {
  ui.hint.textContent = text || defaultHint();
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
  ui.sound.textContent = soundOn ? t('top.sound_on') : t('top.sound_off');
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
  renderViews();
  const total = client.totalUnread();
  setTitle(total);
  ui.totalUnread.hidden = total === 0;
  ui.totalUnread.textContent = String(total);
  ui.listEmpty.hidden = client.listConversations().length > 0 || !client.listLoaded;
  ui.listMore.hidden = !client.listNextBefore;
  showThreadPane();
  if (client.openId) {
    const box = ui.messages;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    renderThread(ui.messageList, client, client.openId, { onRetry: (cmid) => client.retry(cmid), onImage: showPicture });
    renderHistoryStatus();
    if (stick || atBottom) box.scrollTop = box.scrollHeight;
  }
}

applyLang();
boot();
