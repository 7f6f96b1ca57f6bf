// Read marks and unread counts. The server keeps two marks per conversation (message ids: how far
// the agents and how far the user have read) and counts a conversation's unread messages as the
// user's messages after the agents' mark. The console starts from the server's counts (the
// conversation list) and counts on from there, each user message once however many ways it arrives.

export class ReadMarks {
  /** @param {import('./timeline.js').Timeline} timeline  whose Conversation records hold the counts */
  constructor(timeline) {
    this.timeline = timeline;
    this.seen = new Set(); // message ids already taken in (counted or not)
  }

  reset() {
    this.seen.clear();
  }

  /**
   * A page of GET /api/conversations. The server's unread count covers every message up to its
   * last_message, so it replaces ours unless we already hold something newer than the server did.
   */
  mergeRows(rows) {
    for (const row of rows) {
      const c = this.timeline.conversation(row.openid);
      c.userReadUpto = Math.max(c.userReadUpto, row.user_read_upto || 0);
      c.agentReadUpto = Math.max(c.agentReadUpto, row.agent_read_upto || 0);
      const last = row.last_message;
      if (!last || typeof last.id !== 'number') continue;
      if (!c.last || last.id >= c.last.id) {
        c.unread = row.unread || 0;
        c.countedUpto = Math.max(c.countedUpto, last.id);
      }
    }
  }

  /**
   * A Message was taken in. With `count` (live frames and sync replies, not history pages), a user
   * message nobody has counted yet (not in the server's count, not behind the agents' read mark)
   * bumps the unread count; returns true then.
   */
  take(m, { count = true } = {}) {
    const fresh = !this.seen.has(m.id);
    this.seen.add(m.id);
    const c = this.timeline.conversation(m.openid);
    if (count && fresh && m.from === 'user' && m.id > c.countedUpto && m.id > c.agentReadUpto) {
      c.unread += 1;
      return true;
    }
    return false;
  }

  /** A read mark moved: a `read` frame (ours from another tab, or the user's), or our own marking. */
  apply(openid, by, upto) {
    const c = this.timeline.conversation(openid);
    if (typeof upto !== 'number') return;
    if (by === 'user') {
      c.userReadUpto = Math.max(c.userReadUpto, upto);
      return;
    }
    c.agentReadUpto = Math.max(c.agentReadUpto, upto);
    if (!c.last || upto >= c.last.id) {
      c.unread = 0;
      return;
    }
    if (this.timeline.threads.has(openid)) {
      const after = this.timeline.messages(openid).filter((m) => m.from === 'user' && m.id > upto).length;
      c.unread = Math.min(c.unread, after);
    }
  }

  /**
   * Mark a conversation read up to its newest message, if there is anything to mark. Returns the
   * mark to tell the server ({openid, upto}; upto 0 = "newest", nothing is held yet), or null.
   */
  markRead(openid) {
    const c = this.timeline.conversation(openid);
    const upto = c.last?.id || 0;
    if (c.unread === 0 && (c.last?.from !== 'user' || c.agentReadUpto >= upto)) return null;
    this.apply(openid, 'agent', upto);
    c.unread = 0;
    return { openid, upto };
  }

  total() {
    let n = 0;
    for (const c of this.timeline.conversations.values()) n += c.unread;
    return n;
  }
}
