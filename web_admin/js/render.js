// DOM rendering of what the client (client/console.js, passed in as `store`) holds. User data only
// ever reaches the page through textContent / attributes set one by one: never innerHTML, so a
// message like <img src=x onerror=alert(1)> shows as those characters.

const BASE_TITLE = 'kefu';
const AVATAR_COLORS = ['#1f6feb', '#0f9d58', '#e8710a', '#9334e6', '#d01884', '#12a4af', '#c5221f', '#5f6368'];

export function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

export function displayName(c) {
  return c.nickname || c.openid;
}

function pad(n) { return String(n).padStart(2, '0'); }

/** "14:05" today, "Yesterday", "03-14" this year, "2023-03-14" before. */
export function shortTime(ts, now = new Date()) {
  if (!ts) return '';
  const d = new Date(ts);
  if (d.toDateString() === now.toDateString()) return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  const y = new Date(now);
  y.setDate(now.getDate() - 1);
  if (d.toDateString() === y.toDateString()) return 'Yesterday';
  if (d.getFullYear() === now.getFullYear()) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export function clockTime(ts) {
  const d = new Date(ts);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function dayLabel(ts, now = new Date()) {
  const d = new Date(ts);
  if (d.toDateString() === now.toDateString()) return 'Today';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function avatarColor(s) {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return AVATAR_COLORS[h % AVATAR_COLORS.length];
}

/** A nickname's first character, or the last two of an openid (openids share their prefixes). */
function avatarText(c) {
  if (c.nickname) return [...c.nickname][0];
  return c.openid.slice(-2).toUpperCase();
}

export function setTitle(unread) {
  document.title = unread > 0 ? `(${unread}) ${BASE_TITLE}` : BASE_TITLE;
}

// ---------- keyed list reconciliation ----------

/** Make `parent`'s children exactly `nodes`, in order, moving only what is out of place. */
function placeChildren(parent, nodes) {
  const keep = new Set(nodes);
  for (const child of [...parent.children]) if (!keep.has(child)) child.remove();
  nodes.forEach((node, i) => {
    if (parent.children[i] !== node) parent.insertBefore(node, parent.children[i] || null);
  });
}

// ---------- conversation list ----------

function previewText(store, m) {
  if (!m) return '';
  const text = m.msg.replace(/\s+/g, ' ').trim();
  if (m.from === 'agent') return `${store.isMine(m) ? 'You' : m.agent || 'Agent'}: ${text}`;
  return text;
}

function conversationItem(openid, onOpen) {
  const li = el('li', 'conversation');
  li.dataset.openid = openid;
  li.tabIndex = 0;
  li.setAttribute('role', 'button');
  li.append(el('div', 'avatar'), el('span', 'who'), el('span', 'time'), el('span', 'preview'), el('span', 'badge'));
  li.addEventListener('click', () => onOpen(openid));
  li.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onOpen(openid); }
  });
  return li;
}

export function renderConversationList(ul, store, { onOpen }) {
  const existing = new Map([...ul.children].map((li) => [li.dataset.openid, li]));
  const nodes = store.sortedConversations().map((c) => {
    const li = existing.get(c.openid) || conversationItem(c.openid, onOpen);
    const name = displayName(c);
    const [avatar, who, time, preview, badge] = li.children;
    avatar.textContent = avatarText(c);
    avatar.style.background = avatarColor(c.openid);
    who.textContent = name;
    who.title = c.openid;
    time.textContent = shortTime(c.last?.ts);
    time.title = c.last ? new Date(c.last.ts).toLocaleString() : '';
    preview.textContent = previewText(store, c.last);
    badge.textContent = c.unread > 99 ? '99+' : String(c.unread);
    badge.hidden = c.unread === 0;
    badge.setAttribute('aria-label', `${c.unread} unread`);
    li.classList.toggle('unread', c.unread > 0);
    li.classList.toggle('active', c.openid === store.openId);
    li.setAttribute('aria-current', c.openid === store.openId ? 'true' : 'false');
    return li;
  });
  placeChildren(ul, nodes);
}

// ---------- one conversation ----------

function messageKey(m, store) {
  if (m.cmid) return `c:${m.from}:${m.from === 'agent' ? m.agent || '' : ''}:${m.cmid}`;
  return `m:${m.id}`;
}

/** Why a reply failed, for codes the client sets itself (the server's errors carry their own text). */
const ERROR_TEXT = { no_ack: 'No confirmation from the server.' };

function messageItem() {
  const li = el('li', 'message');
  li.append(el('div', 'meta'), el('div', 'bubble'), el('div', 'status'));
  return li;
}

function fillStatus(box, status, error, onRetry) {
  if (box.dataset.status === status && box.dataset.error === (error || '')) return;
  box.dataset.status = status;
  box.dataset.error = error || '';
  box.replaceChildren();
  box.title = error || '';
  if (status === 'failed') {
    const retry = el('button', 'link retry', 'retry');
    retry.type = 'button';
    retry.addEventListener('click', onRetry);
    box.append(el('span', 'status-text', 'failed – '), retry);
  } else {
    box.append(el('span', 'status-text', { sending: 'sending...', sent: 'sent', read: 'read' }[status] || status));
  }
}

/**
 * Render the open conversation into `ol`: stored messages oldest to newest with day separators, then
 * the agent's pending replies. Elements are keyed (by cmid where there is one, so a reply keeps its
 * element from "sending" to "sent").
 */
export function renderThread(ol, store, openid, { onRetry }) {
  const conv = store.conversation(openid);
  const { msgs, pend } = store.threadItems(openid);
  const existing = new Map([...ol.children].map((li) => [li.dataset.key, li]));
  const nodes = [];
  let lastDay = null;
  const add = (key, make) => {
    const node = existing.get(key) || make();
    node.dataset.key = key;
    nodes.push(node);
    return node;
  };
  const day = (ts) => {
    const label = dayLabel(ts);
    if (label === lastDay) return;
    lastDay = label;
    add(`d:${label}`, () => el('li', 'day', label));
  };

  // Consecutive messages from one sender within two minutes share one header.
  let prev = null;
  const grouped = (sender, ts) => {
    const g = prev !== null && prev.sender === sender && ts - prev.ts < 120_000 && lastDay === prev.day;
    prev = { sender, ts, day: lastDay };
    return g ? ' grouped' : '';
  };

  for (const m of msgs) {
    day(m.ts);
    const li = add(messageKey(m, store), messageItem);
    const mine = store.isMine(m);
    li.dataset.id = String(m.id);
    li.dataset.from = m.from;
    const side = mine ? 'mine' : m.from === 'agent' ? 'mine agent-other' : 'theirs';
    li.className = `message ${side}${grouped(`${m.from}:${m.agent || ''}`, m.ts)}`;
    const [meta, bubble, status] = li.children;
    meta.textContent = m.from === 'agent' && !mine ? `${m.agent || 'Agent'} · ${clockTime(m.ts)}` : clockTime(m.ts);
    meta.title = new Date(m.ts).toLocaleString();
    if (bubble.textContent !== m.msg) bubble.textContent = m.msg;
    if (m.from === 'agent') {
      status.hidden = false;
      fillStatus(status, conv.userReadUpto >= m.id ? 'read' : 'sent', null, null);
    } else {
      status.hidden = true;
    }
  }
  for (const p of pend) {
    day(p.createdAt);
    const li = add(`c:agent:${store.agent?.name || ''}:${p.cmid}`, messageItem);
    delete li.dataset.id;
    li.dataset.from = 'agent';
    const g = grouped(`agent:${store.agent?.name || ''}`, p.createdAt);
    li.className = `message mine pending${p.status === 'failed' ? ' failed' : ''}${g}`;
    const [meta, bubble, status] = li.children;
    meta.textContent = clockTime(p.createdAt);
    if (bubble.textContent !== p.msg) bubble.textContent = p.msg;
    status.hidden = false;
    fillStatus(status, p.status, p.error || ERROR_TEXT[p.errorCode] || p.errorCode, () => onRetry(p.cmid));
  }
  placeChildren(ol, nodes);
}
