// Every Message the console holds, by conversation. A Message (docs/protocol.md §4.1) is the same
// object in a live frame, a sync reply, an ack turned into a message and an HTTP history page, so
// all of them merge here by id: a message seen twice (live and again in a sync after a reconnect,
// or in a history page) is held once. Ids grow over time, so sorting by id is display order.

export class Timeline {
  constructor() {
    this.reset();
  }

  reset() {
    this.conversations = new Map(); // openid -> Conversation
    this.threads = new Map(); // openid -> Thread, for conversations whose history was asked for
    this.listLoaded = false; // the first page of GET /api/conversations came in
    this.listNextBefore = null; // where the next (older) page of conversations starts
  }

  /**
   * The conversation for openid, created empty on first sight. Its read marks and unread count are
   * kept by ReadMarks (readmarks.js); `last` and `nickname` here.
   */
  conversation(openid) {
    let c = this.conversations.get(openid);
    if (!c) {
      c = { openid, nickname: null, last: null, unread: 0, agentReadUpto: 0, userReadUpto: 0, countedUpto: 0 };
      this.conversations.set(openid, c);
    }
    return c;
  }

  /** Conversations, latest activity first. */
  sortedConversations() {
    return [...this.conversations.values()].sort((a, b) => (b.last?.id ?? 0) - (a.last?.id ?? 0));
  }

  /** The loaded history of one conversation: messages by id, and where the next older page starts. */
  thread(openid) {
    let t = this.threads.get(openid);
    if (!t) {
      // nextBefore: undefined = no page asked for yet, null = the beginning is reached
      t = { byId: new Map(), nextBefore: undefined, loading: false, error: null };
      this.threads.set(openid, t);
    }
    return t;
  }

  /**
   * Take in one Message. Returns its conversation, or null for something that is not a Message.
   * The thread keeps it only if that conversation's history is loaded (else the first history page
   * brings it anyway).
   */
  add(m) {
    if (!isMessage(m)) return null;
    const c = this.conversation(m.openid);
    // Notes and status events are in the thread, but the list previews the chat.
    const chat = m.kind !== 'note' && m.kind !== 'event';
    if (chat && (!c.last || m.id >= c.last.id)) c.last = m;
    const t = this.threads.get(m.openid);
    if (t) t.byId.set(m.id, m);
    return c;
  }

  /** One conversation's messages, oldest first. */
  messages(openid) {
    const t = this.threads.get(openid);
    return t ? [...t.byId.values()].sort((a, b) => a.id - b.id) : [];
  }

  /** A page of GET /api/conversations: names and last messages (ReadMarks takes the counts). */
  mergeRows(rows) {
    for (const row of rows) {
      const c = this.conversation(row.openid);
      if (row.nickname) c.nickname = row.nickname;
      if (isMessage(row.last_message) && (!c.last || row.last_message.id >= c.last.id)) c.last = row.last_message;
    }
  }

  /** Forget loaded histories (they may have gaps); `keep` stays, to be refreshed by its caller. */
  forgetThreads(keep = null) {
    for (const openid of [...this.threads.keys()]) if (openid !== keep) this.threads.delete(openid);
  }
}

export function isMessage(m) {
  return !!m && typeof m === 'object' && typeof m.id === 'number' && typeof m.openid === 'string'
    && typeof m.msg === 'string';
}
