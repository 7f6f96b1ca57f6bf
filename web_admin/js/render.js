// DOM rendering of what the client (client/console.js, passed in as `store`) holds. User data only
// ever reaches the page through textContent / attributes set one by one: never innerHTML, so a
// message like <img src=x onerror=alert(1)> shows as those characters.

import { t, eventText } from './i18n.js';

const BASE_TITLE = 'kefu';
const AVATAR_COLORS = ['#1f6feb', '#0f9d58', '#e8710a', '#9334e6', '#d01884', '#12a4af', '#c5221f', '#5f6368'];

export function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

/** A customer's name: the profile's (a backend's, else the nickname the user set), else the openid. */
export function displayName(c, profile = null) {
  return profile?.name || c.nickname || c.openid;
}

function pad(n) { return String(n).padStart(2, '0'); }

/** "14:05" today, "Yesterday", "03-14" this year, "2023-03-14" before. */
export function shortTime(ts, now = new Date()) {
  if (!ts) return '';
  const d = new Date(ts);
  if (d.toDateString() === now.toDateString()) return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  const y = new Date(now);
  y.setDate(now.getDate() - 1);
  if (d.toDateString() === y.toDateString()) return t('day.yesterday');
  if (d.getFullYear() === now.getFullYear()) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export function clockTime(ts) {
  const d = new Date(ts);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function dayLabel(ts, now = new Date()) {
  const d = new Date(ts);
  if (d.toDateString() === now.toDateString()) return t('day.today');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function avatarColor(s) {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return AVATAR_COLORS[h % AVATAR_COLORS.length];
}

/** A nickname's first character, or the last two of an openid (openids share their prefixes). */
function avatarText(c, profile) {
  const name = profile?.name || c.nickname;
  if (name) return [...name][0];
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
  if (m.from === 'agent') return `${store.isMine(m) ? t('msg.you') : m.agent || t('msg.agent')}: ${text}`;
  return text;
}

/** An avatar: the profile's picture (an http(s) or kefu URL), else initials on a colour. */
export function fillAvatar(box, c, profile) {
  const url = profile?.avatar;
  const img = box.querySelector('img');
  if (url && /^(https?:\/\/|\/api\/avatars\/)/.test(url)) {
    if (!img || img.getAttribute('src') !== url) {
      const e = document.createElement('img');
      e.alt = '';
      e.referrerPolicy = 'no-referrer';
      e.src = url;
      box.replaceChildren(e);
    }
  } else {
    if (img || box.textContent !== avatarText(c, profile)) box.textContent = avatarText(c, profile);
  }
  box.style.background = avatarColor(c.openid);
}

function statusText(s) {
  if (!s) return '';
  if (s.status === 'assigned') return t('status.assigned', { name: s.assignee?.name || '' });
  return t(`status.${s.status}`);
}

function conversationItem(openid, onOpen) {
  const li = el('li', 'conversation');
  li.dataset.openid = openid;
  li.tabIndex = 0;
  li.setAttribute('role', 'button');
  li.append(el('div', 'avatar'), el('span', 'who'), el('span', 'time'), el('span', 'preview'), el('span', 'badge'),
    el('span', 'state'));
  li.addEventListener('click', () => onOpen(openid));
  li.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onOpen(openid); }
  });
  return li;
}

export function renderConversationList(ul, store, { onOpen }) {
  const existing = new Map([...ul.children].map((li) => [li.dataset.openid, li]));
  const nodes = store.listConversations().map((c) => {
    const li = existing.get(c.openid) || conversationItem(c.openid, onOpen);
    const team = store.team ? store.desk.of(c.openid) : null;
    const name = displayName(c, team?.profile);
    const [avatar, who, time, preview, badge, state] = li.children;
    fillAvatar(avatar, c, team?.profile);
    state.textContent = team ? statusText(team) : '';
    state.hidden = !team;
    li.dataset.status = team?.status || '';
    li.classList.toggle('typing', !!team && store.desk.isTyping(c.openid));
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
const ERROR_TEXT = { no_ack: () => t('msg.no_ack') };

function messageItem() {
  const li = el('li', 'message');
  li.append(el('div', 'meta'), el('div', 'bubble'), el('div', 'status'), el('div', 'delivery'));
  return li;
}

/** A picture's thumbnail (click: the larger view), through the store's signed URLs. */
function pictureInto(box, image, store, onImage) {
  const urls = store.media.get(image.id);
  if (urls === null) { box.append(el('span', 'picture-gone', t('msg.image_gone'))); return; }
  const img = document.createElement('img');
  img.className = 'thumb';
  img.alt = t('msg.image');
  img.dataset.image = image.id;
  if (image.thumb?.width) { img.width = image.thumb.width; img.height = image.thumb.height; }
  if (urls) img.src = urls.thumb_url;
  img.addEventListener('click', () => onImage(image.id));
  box.append(img);
}

/**
 * The bubble's content: text; a picture (`kind` image, or a pending reply's `image`); a mini-program
 * card (title, its picture). Rebuilt only when what it shows changed.
 */
function fillBubble(bubble, m, store, onImage) {
  const image = m.kind === 'image' ? m.meta?.image : m.image || null;
  const card = m.kind === 'card' ? m.meta?.card : null;
  const pic = image || card?.image || null;
  const urls = pic ? store.media.get(pic.id) : undefined;
  const key = image ? `i:${image.id}:${urls?.thumb_url ?? urls}` : card ? `c:${card.title}:${urls?.thumb_url ?? urls}`
    : `t:${m.msg}`;
  if (bubble.dataset.key === key) return;
  bubble.dataset.key = key;
  bubble.replaceChildren();
  bubble.classList.toggle('picture', !!image);
  bubble.classList.toggle('card', !!card);
  if (image) pictureInto(bubble, image, store, onImage);
  else if (card) {
    bubble.append(el('div', 'card-label', t('msg.card')), el('div', 'card-title', card.title || ''));
    if (card.image) pictureInto(bubble, card.image, store, onImage);
    if (card.pagepath) bubble.append(el('div', 'card-path', card.pagepath));
  } else bubble.textContent = m.msg;
}

/** Under an agent's reply: how it reached a user who was not connected (a `delivery` event). */
function fillDelivery(box, d) {
  box.hidden = !d;
  if (!d) { box.textContent = ''; delete box.dataset.status; return; }
  box.dataset.status = d.status;
  box.dataset.via = d.via;
  if (d.status === 'sent') {
    box.textContent = t(d.via === 'subscribe' ? 'delivery.sent_subscribe' : 'delivery.sent_wechat');
  } else {
    const reason = t(`reason.${d.reason || 'wechat_error'}`);
    box.textContent = t('delivery.failed', { reason: d.errcode ? `${reason}（${d.errcode}）` : reason });
  }
  box.title = box.textContent;
}

function fillStatus(box, status, error, onRetry) {
  if (box.dataset.status === status && box.dataset.error === (error || '')) return;
  box.dataset.status = status;
  box.dataset.error = error || '';
  box.replaceChildren();
  box.title = error || '';
  if (status === 'failed') {
    const retry = el('button', 'link retry', t('msg.retry'));
    retry.type = 'button';
    retry.addEventListener('click', onRetry);
    box.append(el('span', 'status-text', t('msg.failed')), retry);
  } else {
    box.append(el('span', 'status-text', { sending: t('msg.sending'), sent: t('msg.sent'), read: t('msg.read') }[status] || status));
  }
}

/**
 * Render the open conversation into `ol`: stored messages oldest to newest with day separators, then
 * the agent's pending replies. Elements are keyed (by cmid where there is one, so a reply keeps its
 * element from "sending" to "sent").
 */
export function renderThread(ol, store, openid, { onRetry, onImage = () => {} }) {
  const conv = store.conversation(openid);
  const { msgs, pend } = store.threadItems(openid);
  const deliveries = store.deliveries ? store.deliveries(openid) : new Map();
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
    if (m.kind === 'event') { // a status change: a line across the thread, not a bubble
      if (m.meta?.event === 'delivery') continue; // shown under the reply it is about
      const li = add(`e:${m.id}`, () => el('li', 'event'));
      li.dataset.id = String(m.id);
      li.dataset.event = m.meta?.event || '';
      li.textContent = `${eventText(m.meta || {})} · ${clockTime(m.ts)}`;
      prev = null;
      continue;
    }
    const li = add(messageKey(m, store), messageItem);
    const mine = store.isMine(m);
    li.dataset.id = String(m.id);
    li.dataset.from = m.from;
    const side = mine ? 'mine' : m.from === 'agent' ? 'mine agent-other' : 'theirs';
    const note = m.kind === 'note';
    li.className = `message ${side}${note ? ' note' : ''}${grouped(`${m.from}:${m.agent || ''}:${note}`, m.ts)}`;
    const [meta, bubble, status, delivery] = li.children;
    const label = note ? `${t('msg.note')} · ` : '';
    const via = m.meta?.via === 'wechat' ? ` · ${t('msg.via_wechat')}` : '';
    meta.textContent = m.from === 'agent' && !mine ? `${label}${m.agent || t('msg.agent')} · ${clockTime(m.ts)}`
      : `${label}${clockTime(m.ts)}${via}`;
    meta.title = new Date(m.ts).toLocaleString();
    li.classList.toggle('via-wechat', !!via);
    fillBubble(bubble, m, store, onImage);
    if (m.from === 'agent' && !note) {
      status.hidden = false;
      fillStatus(status, conv.userReadUpto >= m.id ? 'read' : 'sent', null, null);
      fillDelivery(delivery, deliveries.get(m.id) || null);
    } else {
      status.hidden = true;
      fillDelivery(delivery, null);
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
    fillBubble(bubble, p, store, onImage);
    status.hidden = false;
    fillStatus(status, p.status, p.error || ERROR_TEXT[p.errorCode]?.() || p.errorCode, () => onRetry(p.cmid));
  }
  placeChildren(ol, nodes);
}
