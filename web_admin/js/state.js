// What the console knows: conversations, loaded threads, the agent's pending replies.
// No DOM here. Every Message is the server's object (docs/protocol.md §4.1), deduplicated by id;
// the agent's own unacknowledged replies are "pending" entries keyed by cmid.

export class Store {
  constructor() {
    this.reset();
  }

  reset() {
    this.agent = null;              // {id, name}
    this.maxMessageBytes = 65536;
    this.conversations = new Map(); // openid -> Conversation (see conversation())
    this.listLoaded = false;
    this.listNextBefore = null;
    this.threads = new Map();       // openid -> {byId: Map, nextBefore, loading, error}
    this.pending = new Map();       // cmid -> {cmid, openid, msg, status, error, createdAt, timer}
    this.seen = new Set();          // message ids already counted (for unread badges)
    this.lastSeenId = 0;            // highest message id received: where `sync` resumes
    this.openId = null;             // the conversation on screen
  }

  /** The conversation for openid, created empty on first sight. */
  conversation(openid) {
    let c = this.conversations.get(openid);
    if (!c) {
      c = { openid, nickname: null, last: null, unread: 0, agentReadUpto: 0, userReadUpto: 0, countedUpto: 0 };
      this.conversations.set(openid, c);
    }
    return c;
  }

  /** Conversations, latest activity first (ids grow over time, so the last message id orders them). */
  sortedConversations() {
    return [...this.conversations.values()].sort((a, b) => (b.last?.id ?? 0) - (a.last?.id ?? 0));
  }

  totalUnread() {
    let n = 0;
    for (const c of this.conversations.values()) n += c.unread;
    return n;
  }

  /**
   * Merge a page of GET /api/conversations. The server's unread count covers every message up to its
   * last_message, so it replaces ours unless we already hold something newer than the server does.
   */
  mergeConversations(rows) {
    for (const row of rows) {
      const c = this.conversation(row.openid);
      if (row.nickname) c.nickname = row.nickname;
      c.userReadUpto = Math.max(c.userReadUpto, row.user_read_upto || 0);
      c.agentReadUpto = Math.max(c.agentReadUpto, row.agent_read_upto || 0);
      const last = row.last_message;
      if (!last) continue;
      this.note(last.id);
      if (!c.last || last.id >= c.last.id) {
        c.last = last;
        c.unread = row.unread;
        c.countedUpto = Math.max(c.countedUpto, last.id);
      }
    }
  }

  note(id) {
    if (id > this.lastSeenId) this.lastSeenId = id;
  }

  /**
   * Take in one Message (live frame, sync reply or history page). Returns true when it is a user message
   * nobody has counted yet (it bumped the unread badge), so the caller may play a sound.
   */
  ingest(m, { count = true } = {}) {
    if (!m || typeof m.id !== 'number' || typeof m.openid !== 'string') return false;
    this.note(m.id);
    const c = this.conversation(m.openid);
    if (!c.last || m.id > c.last.id) c.last = m;
    const thread = this.threads.get(m.openid);
    if (thread) thread.byId.set(m.id, m);
    if (m.cmid && this.isMine(m)) this.settle(m.cmid);
    const fresh = !this.seen.has(m.id);
    this.seen.add(m.id);
    if (count && fresh && m.from === 'user' && m.id > c.countedUpto && m.id > c.agentReadUpto) {
      c.unread += 1;
      return true;
    }
    return false;
  }

  isMine(m) {
    return m.from === 'agent' && !!this.agent && m.agent === this.agent.name;
  }

  /** A read mark moved (a `read` frame, or our own marking). */
  applyRead(openid, by, upto) {
    const c = this.conversation(openid);
    if (by === 'user') {
      c.userReadUpto = Math.max(c.userReadUpto, upto);
      return;
    }
    c.agentReadUpto = Math.max(c.agentReadUpto, upto);
    if (!c.last || upto >= c.last.id) {
      c.unread = 0;
      return;
    }
    const thread = this.threads.get(openid);
    if (thread) {
      let n = 0;
      for (const m of thread.byId.values()) if (m.from === 'user' && m.id > upto) n += 1;
      c.unread = Math.min(c.unread, n);
    }
  }

  thread(openid) {
    let t = this.threads.get(openid);
    if (!t) {
      t = { byId: new Map(), nextBefore: undefined, loading: false, error: null };
      this.threads.set(openid, t);
    }
    return t;
  }

  /** The open thread's items in display order: stored messages by id, then pending replies. */
  threadItems(openid) {
    const t = this.threads.get(openid);
    const msgs = t ? [...t.byId.values()].sort((a, b) => a.id - b.id) : [];
    const pend = [...this.pending.values()].filter((p) => p.openid === openid)
      .sort((a, b) => a.createdAt - b.createdAt);
    return { msgs, pend };
  }

  addPending(openid, cmid, msg) {
    const p = { cmid, openid, msg, status: 'sending', error: null, createdAt: Date.now(), timer: null };
    this.pending.set(cmid, p);
    return p;
  }

  /** Our reply with this cmid is stored on the server: forget the pending copy. */
  settle(cmid) {
    const p = this.pending.get(cmid);
    if (!p) return null;
    clearTimeout(p.timer);
    this.pending.delete(cmid);
    return p;
  }

  /** An `ack` frame: the pending reply becomes a stored Message. */
  acked(ack) {
    const p = this.pending.get(ack.cmid);
    if (!p) return null;
    const m = { id: ack.id, ts: ack.ts, openid: p.openid, from: 'agent', agent: this.agent?.name, msg: p.msg, cmid: p.cmid };
    this.ingest(m);
    this.settle(p.cmid);
    return m;
  }
}
