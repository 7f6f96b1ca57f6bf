// The console's client, without a page: the agent's session, the chat socket and the HTTP API
// wired into the timeline, read marks, outbox and sync. It speaks docs/protocol.md; web_admin/js/
// app.js draws what it holds and calls it on the agent's clicks, and tests/web_admin/ drives it
// headless. Everything from the outside world is handed in:
//
//   new ConsoleClient({ WebSocket, fetch, storage, clock, random, socketUrl, baseUrl, isWatching })
//
// Events (on(name, fn) returns an unsubscribe function):
//   change {stick}          something shown changed; stick: scroll the open thread to the bottom
//   status state, info      the connection's state (connection.js), info.everOnline: a hello came before
//   alert                   a user message arrived that the agent is not looking at (play a sound)
//   hint text               a server error frame that no reply or sync was waiting for
//   session-ended reason    "revoked" (401 or close 4401) or "expired": back to sign-in
//   reset                   the server's history was reset (a new epoch): everything was reloaded
//   assigned openid         (team) a conversation was just assigned to this agent (notify)
//   refused {code, message, assignee}  (team) a claim, transfer, … was refused (e.g. `taken`)
//   reach openid            where a user can be reached changed (WeChat's customer-service channel)
//
// With `team: true` (the page) it is a team console (docs/console.md): the list comes in views
// from GET /api/desk/conversations, the socket joins the desk, and desk.js keeps who holds what.

import { Api, ApiError } from './api.js';
import { Connection } from './connection.js';
import { Desk, VIEWS } from './desk.js';
import { MediaUrls } from './media.js';
import { Outbox } from './outbox.js';
import { ReadMarks } from './readmarks.js';
import { SessionStore } from './session.js';
import { memoryStorage } from './storage.js';
import { Cursor, SyncPager } from './sync.js';
import { Timeline, isMessage } from './timeline.js';

export const HISTORY_PAGE = 30;
export const LIST_PAGE = 50;
const LIST_RETRY_MS = 5000;
const MAX_TIMER_MS = 2 ** 31 - 1; // setTimeout overflows past ~24.8 days

export class ConsoleClient {
  /**
   * @param {object} o
   * @param {Function} o.WebSocket     a WHATWG WebSocket class
   * @param {Function} o.fetch         a WHATWG fetch
   * @param {Storage|null} o.storage   the tab's sessionStorage (the token and the sync cursor); null = memory
   * @param {object} o.clock           { now(), setTimeout(fn, ms), clearTimeout(handle) }
   * @param {string} o.socketUrl       ws(s)://host/ws
   * @param {string} [o.baseUrl]       the HTTP API's origin ('' = the page's)
   * @param {Storage[]} [o.legacyStorage]  where an older console kept the token (it is removed there)
   * @param {Function} [o.isWatching]  () => bool: the agent can see the page (else nothing is marked read)
   * @param {object} [o.options]       { connection, outbox, sync }: timings (see each module's DEFAULTS)
   */
  constructor({
    WebSocket, fetch, storage, clock, random = Math.random, socketUrl, baseUrl = '',
    legacyStorage = [], isWatching = () => true, options = {}, team = false,
  }) {
    this.team = team;
    this.clock = clock;
    this.random = random;
    this.isWatching = isWatching;
    this.listeners = new Map();
    const store = storage || memoryStorage();
    this.api = new Api({ fetch, baseUrl, onUnauthorized: () => this.endSession('revoked') });
    this.sessions = new SessionStore({ storage: store, clock, legacy: legacyStorage });
    this.cursor = new Cursor({ storage: store });
    this.timeline = new Timeline();
    this.marks = new ReadMarks(this.timeline);
    this.conn = new Connection({
      url: socketUrl, WebSocket, clock, random, options: options.connection,
      handlers: {
        onStatus: (state, info) => this.emit('status', state, { ...info, everOnline: this.everOnline }),
        onHello: (f) => this.onHello(f),
        onFrame: (f) => this.onFrame(f),
        onClose: (c) => this.onClose(c),
      },
    });
    const send = (f) => this.conn.send(f);
    this.outbox = new Outbox({ clock, random, send, onChange: () => this.changed(), options: options.outbox });
    this.sync = new SyncPager({ send, clock, random, options: options.sync });
    this.session = null; // {token, agent: {id, name}, expiresAt}
    this.running = false;
    this.sessionGen = 0; // +1 per start, stop and history reset: answers to older requests are dropped
    this.everOnline = false;
    this.gapSuspected = false;
    this.openId = null;
    this.maxMessageBytes = 65536;
    this.seq = 0;
    this.firstList = null; // the first page of conversations, while it is being fetched
    this.timers = { expiry: null, list: null, refresh: null };
    this.desk = new Desk({ clock });
    this.requests = new Map(); // cmid -> {kind: 'note'|'change', openid, msg} awaiting the server
    this.media = new MediaUrls({ api: this.api, clock, onChange: () => this.changed() });
    this.reach = new Map(); // openid -> {connected, wechat: {until, left}|null, subscribe}
  }

  // ------------------------------------------------------------------ events

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event).delete(fn);
  }

  emit(event, ...args) {
    for (const fn of [...(this.listeners.get(event) || [])]) fn(...args);
  }

  changed(opts = {}) {
    this.emit('change', opts);
  }

  // ------------------------------------------------------------------ what the screen reads

  get agent() { return this.session?.agent ?? null; }
  get conversations() { return this.timeline.conversations; }
  get threads() { return this.timeline.threads; }
  get listLoaded() { return this.timeline.listLoaded; }
  get listNextBefore() { return this.timeline.listNextBefore; }
  get online() { return this.conn.online; }

  conversation(openid) { return this.timeline.conversation(openid); }
  thread(openid) { return this.timeline.thread(openid); }
  sortedConversations() { return this.timeline.sortedConversations(); }

  /** The list on screen: a team console shows the current view only. */
  listConversations() {
    const all = this.timeline.sortedConversations();
    return this.team ? all.filter((c) => this.desk.inView(c.openid)) : all;
  }
  totalUnread() { return this.marks.total(); }

  /** The thread's items in display order: stored messages by id, then the agent's unconfirmed replies. */
  threadItems(openid) {
    return { msgs: this.timeline.messages(openid), pend: this.outbox.forConversation(openid) };
  }

  isMine(m) {
    return m.from === 'agent' && !!this.agent && m.agent === this.agent.name;
  }

  // ------------------------------------------------------------------ session

  /**
   * Pick up the session this tab kept: "started", "none" (nothing kept), "ended" (the server says
   * the token is dead) or "refused" (not an agent's token). An unreachable server keeps the session:
   * the socket keeps trying.
   */
  async resume() {
    const saved = this.sessions.load();
    if (!saved) return 'none';
    this.session = saved;
    this.api.token = saved.token;
    try {
      const who = await this.api.me();
      if (who?.role !== 'agent') throw new ApiError(403, 'forbidden', 'not an agent token');
      this.session = { ...saved, agent: who.agent };
      this.sessions.save(this.session);
    } catch (err) {
      if (err.status !== 0) {
        this.session = null;
        this.api.token = null;
        this.sessions.clear();
        return err.status === 401 ? 'ended' : 'refused';
      }
    }
    this.start();
    return 'started';
  }

  /** POST /api/agent/login, keep the session, start. Throws ApiError (status 401: wrong name or password). */
  async signIn(name, password) {
    const r = await this.api.agentLogin(name, password);
    if (this.running) this.stop();
    this.session = { token: r.token, agent: r.agent, expiresAt: this.clock.now() + r.expires_in * 1000 };
    this.sessions.save(this.session);
    this.start();
  }

  /** Forget the session here, then revoke the token on the server (its sockets close with 4401). */
  async signOut() {
    const token = this.session?.token;
    this.stop(); // first, so the server's 4401 close is not taken for an expired session
    this.sessions.clear();
    if (token) {
      try { await this.api.logout(token); } catch { /* revoked or unreachable: the local session is gone anyway */ }
    }
  }

  /** The token is dead (401, close 4401, expiry): stop and tell the page, once. */
  endSession(reason) {
    if (!this.running) return;
    this.stop();
    this.sessions.clear();
    this.emit('session-ended', reason);
  }

  start() {
    const s = this.session;
    this.sessionGen += 1;
    this.running = true;
    this.api.token = s.token;
    this.desk.me = s.agent ? { id: s.agent.id, name: s.agent.name, admin: !!s.agent.admin } : null;
    if (this.team) this.loadCanned().catch(() => {});
    this.cursor.load(s.agent?.id ?? s.agent?.name ?? '');
    this.clock.clearTimeout(this.timers.expiry);
    if (s.expiresAt) {
      const left = Math.min(Math.max(0, s.expiresAt - this.clock.now()), MAX_TIMER_MS);
      this.timers.expiry = this.clock.setTimeout(() => this.endSession('expired'), left);
    }
    this.changed();
    this.loadConversations().catch(() => { /* tried again when the socket says hello */ });
    this.conn.start(s.token);
  }

  stop() {
    this.sessionGen += 1;
    this.running = false;
    this.conn.stop();
    this.outbox.clear();
    this.sync.reset();
    this.timeline.reset();
    this.marks.reset();
    this.desk.reset();
    this.requests.clear();
    this.media.reset();
    this.reach.clear();
    this.cursor.save();
    for (const t of Object.values(this.timers)) this.clock.clearTimeout(t);
    this.session = null;
    this.api.token = null;
    this.openId = null;
    this.firstList = null;
    this.everOnline = false;
    this.gapSuspected = false;
    this.changed();
  }

  /** Skip the rest of the reconnect wait. */
  retryNow() {
    this.conn.retryNow();
  }

  // ------------------------------------------------------------------ the conversation list

  /**
   * A page of GET /api/conversations (the newest, or the one `before`). Returns the highest message
   * id it showed (where a sync after it starts).
   */
  loadConversations(before) {
    if (before !== undefined && before !== null) return this.fetchConversations(before);
    if (this.timeline.listLoaded) return this.fetchConversations(undefined);
    // The first page is asked for at start and again at hello: one request serves both.
    if (!this.firstList) {
      const p = this.fetchConversations(undefined).finally(() => {
        if (this.firstList === p) this.firstList = null;
      });
      this.firstList = p;
    }
    return this.firstList;
  }

  async fetchConversations(before) {
    const gen = this.sessionGen;
    const view = this.desk.view;
    const r = this.team
      ? await this.api.deskConversations(view, before ?? undefined, LIST_PAGE)
      : await this.api.conversations(before ?? undefined, LIST_PAGE);
    if (gen !== this.sessionGen || view !== this.desk.view) return 0;
    const rows = Array.isArray(r?.conversations) ? r.conversations : [];
    this.desk.takeRows(rows);
    if (r?.counts) this.desk.counts = r.counts;
    this.marks.mergeRows(rows); // before the timeline takes the rows' last messages
    this.timeline.mergeRows(rows);
    let top = 0;
    for (const row of rows) {
      const id = row.last_message?.id;
      if (typeof id === 'number') {
        top = Math.max(top, id);
        this.cursor.note(id);
        this.marks.seen.add(id);
      }
    }
    const tl = this.timeline;
    if (before === undefined || before === null) {
      if (!tl.listLoaded) tl.listNextBefore = r.next_before ?? null;
      tl.listLoaded = true;
    } else {
      tl.listNextBefore = r.next_before ?? null;
    }
    this.cursor.save();
    this.changed();
    return top;
  }

  // ------------------------------------------------------------------ socket

  onHello(hello) {
    if (hello.role !== 'agent') return;
    if (typeof hello.max_message_bytes === 'number') this.maxMessageBytes = hello.max_message_bytes;
    const reconnect = this.everOnline;
    this.everOnline = true;
    const reset = this.cursor.observe(hello.epoch) === 'reset';
    if (reset) this.forgetHistory();
    const gap = this.gapSuspected && !reset;
    this.gapSuspected = false;
    // Replies still waiting for an ack go again with the same cmid: the server dedupes them.
    this.outbox.connected(this.conn.generation);
    if (this.team) this.conn.send({ cmd: 'desk', all: !!this.agent?.admin });
    this.catchUp({ after: reset ? 0 : this.cursor.lastId, fromStart: reset, refreshList: reconnect, gap });
    this.markOpenRead();
    this.changed();
  }

  /**
   * Fetch what was missed: the conversation list first if it never loaded (its newest id is where
   * `sync` starts; without it a sync from 0 would replay every conversation ever), then `sync` after
   * the newest id seen, or from where a cut-off sync stopped, or from 0 after a history reset.
   * `after` is taken when the socket said hello: live frames arriving meanwhile do not move it.
   */
  async catchUp({ after, fromStart = false, refreshList = false, gap = false }) {
    const gen = this.conn.generation;
    const sgen = this.sessionGen;
    this.clock.clearTimeout(this.timers.list);
    let start = after;
    if (!this.timeline.listLoaded) {
      try {
        const top = await this.loadConversations();
        if (!fromStart) start = Math.max(start, top);
      } catch {
        if (sgen !== this.sessionGen || gen !== this.conn.generation) return;
        this.timers.list = this.clock.setTimeout(() => {
          if (this.conn.online && gen === this.conn.generation) this.catchUp({ after, fromStart, gap });
        }, LIST_RETRY_MS);
        return;
      }
      if (sgen !== this.sessionGen || gen !== this.conn.generation) return; // a newer socket catches up itself
    } else if (refreshList || gap) {
      this.loadConversations().catch(() => {}); // read marks and unread counts moved meanwhile
    }
    if (gap) this.refreshThreads();
    const resume = this.sync.takeResume();
    if (resume !== null && !fromStart) start = Math.min(start, resume);
    this.sync.request(start);
  }

  onClose({ action }) {
    this.outbox.disconnected();
    this.sync.dropped();
    this.clock.clearTimeout(this.timers.list);
    if (action.gap) this.gapSuspected = true;
    if (action.then === 'sign-in') this.endSession('revoked');
  }

  onFrame(f) {
    switch (f.cmd) {
      case undefined:
        if (isMessage(f)) this.onMessages([f]);
        break;
      case 'sync':
        this.onSyncReply(f);
        break;
      case 'ack':
        this.onAck(f);
        break;
      case 'read':
        if (typeof f.openid === 'string') {
          this.marks.apply(f.openid, f.by, f.upto);
          this.changed();
        }
        break;
      case 'error':
        this.onError(f);
        break;
      case 'resync':
        this.onResync(f);
        break;
      case 'reach':
        if (typeof f.openid === 'string' && f.reach) {
          this.reach.set(f.openid, f.reach);
          this.emit('reach', f.openid);
          this.changed();
        }
        break;
      case 'desk':
      case 'conversation':
      case 'presence':
      case 'profile':
      case 'typing':
        this.onTeamFrame(f);
        break;
      default:
        break; // pong, and frames this console does not know
    }
    this.cursor.save();
  }

  onTeamFrame(f) {
    const what = this.desk.take(f);
    if (!what) return;
    if (what.kind === 'status') {
      if (what.assignedToMe) this.emit('assigned', what.openid);
      if (f.cmid) this.requests.delete(f.cmid);
      this.refreshTeamSoon();
    }
    if (what.kind === 'typing') this.clock.setTimeout(() => this.changed(), 5100);
    this.changed();
  }

  /** Counts and loads move with every status change: ask for them again, once per burst. */
  refreshTeamSoon() {
    if (this.timers.refresh) return;
    const gen = this.sessionGen;
    this.timers.refresh = this.clock.setTimeout(async () => {
      this.timers.refresh = null;
      try {
        const [c, a] = await Promise.all([this.api.deskCounts(), this.api.deskAgents()]);
        if (gen !== this.sessionGen) return;
        this.desk.counts = c.counts || this.desk.counts;
        this.desk.takeAgents(a.agents);
        this.changed();
      } catch { /* the next change asks again */ }
    }, 300);
  }

  /** Show another view of the list (mine, unassigned, all, resolved), loading its first page. */
  async setView(view) {
    if (!VIEWS.includes(view)) return;
    this.desk.view = view;
    this.timeline.listNextBefore = null;
    this.changed();
    try {
      await this.fetchConversations(undefined);
    } catch { /* the list keeps what it has */ }
  }

  async loadCanned() {
    const r = await this.api.canned();
    this.desk.canned = Array.isArray(r?.canned) ? r.canned : [];
    this.changed();
  }

  // ------------------------------------------------------------------ team requests

  /** Claim, release, resolve or reopen a conversation; transfer it with `{to, note}`. */
  changeStatus(action, openid, extra = {}) {
    const cmid = this.newCmid();
    const frame = { cmd: action, openid, cmid, ...extra };
    if (!this.conn.send(frame)) return false;
    this.requests.set(cmid, { kind: 'change', openid, action });
    return true;
  }

  setPresence(status) {
    const me = this.desk.agents.get(this.agent?.id);
    if (me) me.status = status;
    this.changed();
    return this.conn.send({ cmd: 'presence', status });
  }

  /** The agent is typing in `openid`: at most one frame every TYPING_EVERY_MS. */
  typing(openid) {
    if (openid && this.desk.typingDue(openid)) this.conn.send({ cmd: 'typing', openid });
  }

  /** A private note: only agents ever see it. Returns its cmid, or null when offline or empty. */
  note(openid, text) {
    const body = String(text).trim();
    if (!openid || !body) return null;
    const cmid = this.newCmid();
    if (!this.conn.send({ cmd: 'note', openid, msg: body, cmid })) return null;
    this.requests.set(cmid, { kind: 'note', openid, msg: body });
    return cmid;
  }

  /** Take in one Message; true when it is a user message the agent should be alerted to. */
  ingest(m, { count = true } = {}) {
    if (!this.timeline.add(m)) return false;
    this.cursor.note(m.id);
    this.desk.messageFrom(m);
    if (m.cmid && this.isMine(m)) this.outbox.settle(m.cmid); // our reply, stored: the pending copy goes
    const bumped = this.marks.take(m, { count });
    return bumped && !(m.openid === this.openId && this.isWatching());
  }

  onMessages(list) {
    let alert = false;
    for (const m of list) alert = this.ingest(m) || alert;
    if (alert) this.emit('alert');
    if (this.openId && this.isWatching()) this.markOpenRead();
    this.changed();
  }

  onSyncReply(f) {
    if (this.cursor.observe(f.epoch) === 'reset') {
      // The history was reset since this sync began: its page is of the old ids. Start over.
      this.forgetHistory();
      this.catchUp({ after: 0, fromStart: true });
      return;
    }
    this.sync.replied(f); // asks for the next page (while `more`) before this one is taken in
    this.onMessages(Array.isArray(f.messages) ? f.messages : []);
  }

  onAck(f) {
    const req = this.requests.get(f.cmid);
    if (req?.kind === 'note' && typeof f.id === 'number') {
      this.requests.delete(f.cmid);
      this.ingest({ id: f.id, ts: f.ts, openid: req.openid, from: 'agent', agent: this.agent?.name,
        agent_id: this.agent?.id, msg: req.msg, cmid: f.cmid, kind: 'note' }, { count: false });
      this.changed({ stick: true });
      return;
    }
    const e = this.outbox.get(f.cmid);
    if (!e || typeof f.id !== 'number') return;
    const m = { id: f.id, ts: f.ts, openid: e.openid, from: 'agent', agent: this.agent?.name, msg: e.msg, cmid: e.cmid };
    if (e.image) Object.assign(m, { kind: 'image', meta: { image: e.image } });
    this.ingest(m);
    this.changed({ stick: true });
  }

  /**
   * `{"cmd":"error","code","message","retry","cmid"?}`. The server says with `retry` whether the
   * same request may succeed later: a reply is then sent again (same cmid), a sync asked again,
   * both after a backoff. Otherwise the reply fails (the agent may retry it by hand).
   */
  onError(f) {
    const retry = f.retry === true;
    if (f.cmid && this.outbox.get(f.cmid)) {
      this.outbox.refused(f.cmid, { retry, code: f.code, message: f.message });
      this.changed();
      return;
    }
    const req = f.cmid && this.requests.get(f.cmid);
    if (req) {
      this.requests.delete(f.cmid);
      this.emit('refused', { code: f.code, message: f.message, assignee: f.assignee || null, action: req.action });
      return;
    }
    if (retry && this.sync.running) {
      this.sync.retryLater();
      return;
    }
    this.emit('hint', f.message || f.code || 'error');
  }

  /** The server may have missed fan-out to this socket: sync again from before the gap. */
  onResync(f) {
    if (typeof f.after === 'number' && f.after >= 0) {
      this.sync.request(Math.min(this.cursor.lastId, f.after));
      return;
    }
    // No position given: the gap may be anywhere. The list brings every conversation's newest
    // message and count, the open thread its newest page; then sync after the newest id seen.
    this.loadConversations().catch(() => {});
    this.refreshThreads();
    this.sync.request(this.cursor.lastId);
  }

  /** A new history epoch: every id held is of the old history. The outbox stays (same cmids). */
  forgetHistory() {
    this.sessionGen += 1;
    this.firstList = null;
    this.timeline.reset();
    this.marks.reset();
    this.sync.reset();
    this.emit('reset');
    if (this.openId) this.loadHistory(this.openId, { first: true }).then(() => this.changed({ stick: true }));
    this.changed();
  }

  /** Loaded histories may have gaps: drop all but the open one, and merge its newest page again. */
  refreshThreads() {
    const openid = this.openId;
    this.timeline.forgetThreads(openid);
    if (!openid || !this.timeline.threads.has(openid)) return;
    const gen = this.sessionGen;
    this.api.messages(openid, undefined, HISTORY_PAGE, this.team).then((r) => {
      if (gen !== this.sessionGen) return;
      for (const m of r?.messages || []) this.ingest(m, { count: false });
      if (this.openId === openid && this.isWatching()) this.markOpenRead();
      this.changed();
    }, () => { /* the next reconnect or resync tries again */ });
  }

  // ------------------------------------------------------------------ the open conversation

  /** Put a conversation on screen (its history is loaded by loadHistory). */
  select(openid) {
    this.openId = openid;
    this.timeline.thread(openid);
    this.changed({ stick: true });
  }

  /**
   * Load the first (`first`) or the next older page of a thread's history. Resolves to false when
   * nothing was asked (already loading, or the beginning is reached, or the session changed).
   * A failure is kept in thread.error ({status, message}).
   */
  async loadHistory(openid, { first = false } = {}) {
    const t = this.timeline.thread(openid);
    if (t.loading || t.nextBefore === null) return false;
    const gen = this.sessionGen;
    t.loading = true;
    t.error = null;
    this.changed();
    try {
      const r = await this.api.messages(openid, first ? undefined : t.nextBefore, HISTORY_PAGE, this.team);
      if (gen !== this.sessionGen || this.timeline.threads.get(openid) !== t) return false;
      for (const m of r.messages || []) if (m?.openid === openid) this.ingest(m, { count: false });
      t.nextBefore = r.next_before ?? null;
    } catch (err) {
      t.error = { status: err.status ?? 0, message: err.message };
    } finally {
      t.loading = false;
    }
    this.cursor.save();
    return true;
  }

  /** Mark the open conversation read up to its newest message, when there is something unread. */
  markOpenRead() {
    const openid = this.openId;
    if (!openid || !this.running || !this.isWatching()) return;
    const mark = this.marks.markRead(openid);
    if (!mark) return;
    const frame = mark.upto ? { cmd: 'read', openid, upto: mark.upto } : { cmd: 'read', openid };
    if (!this.conn.send(frame)) this.api.markRead(openid, mark.upto || undefined).catch(() => {});
    this.changed();
  }

  // ------------------------------------------------------------------ replies

  /**
   * Send a reply to `openid`. Leading blank lines and trailing space are trimmed. Returns
   * {ok: true, entry}, or {error: "empty"}, or {error: "too_long", bytes, limit}.
   */
  reply(openid, text) {
    const body = String(text).replace(/^\s*\n+|\s+$/g, '');
    if (!openid || !body.trim()) return { error: 'empty' };
    const bytes = new TextEncoder().encode(body).length;
    if (bytes > this.maxMessageBytes) return { error: 'too_long', bytes, limit: this.maxMessageBytes };
    const entry = this.outbox.add(openid, this.newCmid(), body);
    this.changed({ stick: true });
    return { ok: true, entry };
  }

  /**
   * Upload a picture (Blob/File) and send it as a reply. Resolves to {ok: true, entry} or throws
   * ApiError (400 bad_image, 413 too_large, …).
   */
  async sendImage(openid, blob) {
    const gen = this.sessionGen;
    const up = await this.api.uploadImage(openid, blob);
    if (gen !== this.sessionGen) return { ok: false };
    this.media.put(up.image.id, up);
    const entry = this.outbox.add(openid, this.newCmid(), '[图片]', up.image);
    this.changed({ stick: true });
    return { ok: true, entry };
  }

  /** How the user of `openid` can be reached now (GET /api/wechat/reach); kept in `this.reach`. */
  async loadReach(openid) {
    try {
      const r = await this.api.reach(openid);
      this.reach.set(openid, r);
      this.changed();
      return r;
    } catch {
      return null;
    }
  }

  /** Delivery events of a conversation by the reply they are about (newest wins). */
  deliveries(openid) {
    const out = new Map();
    for (const m of this.timeline.messages(openid)) {
      if (m.kind === 'event' && m.meta?.event === 'delivery') out.set(m.meta.message_id, m.meta);
    }
    return out;
  }

  /** Send a failed reply again, with the SAME cmid, so a copy the server did store is not stored twice. */
  retry(cmid) {
    if (this.outbox.retry(cmid)) this.changed({ stick: true });
  }

  newCmid() {
    this.seq += 1;
    const rnd = () => Math.floor(this.random() * 2 ** 32).toString(36);
    return `w${this.agent?.id ?? 0}-${this.clock.now().toString(36)}-${this.seq.toString(36)}${rnd()}${rnd()}`;
  }
}
