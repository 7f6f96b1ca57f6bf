// The team side of the console, without a page: who holds which conversation (status, assignee),
// the views (mine / unassigned / all / resolved) and their counts, the team's presence, who is
// typing, customer profiles, and the canned replies picked with `/`. It takes the server's team
// frames (docs/protocol.md §10: desk, conversation, presence, profile, typing) and the rows of
// GET /api/desk/conversations; ConsoleClient (console.js) sends the requests it builds.

export const VIEWS = ['mine', 'unassigned', 'all', 'resolved'];
export const TYPING_SHOWN_MS = 5000; // a typing indicator fades this long after the last frame
export const TYPING_EVERY_MS = 2000; // the console sends at most one typing frame this often

export class Desk {
  /** @param {object} o  { clock } — { now() } */
  constructor({ clock }) {
    this.clock = clock;
    this.reset();
  }

  reset() {
    this.state = new Map(); // openid -> { status, assignee: {id, name}|null, profile }
    this.agents = new Map(); // id -> { id, name, status, load, limit, admin }
    this.typing = new Map(); // openid -> shown until (ms)
    this.sentTyping = new Map(); // openid -> when this console last sent a typing frame
    this.canned = [];
    this.counts = { mine: 0, unassigned: 0, all: 0, resolved: 0 };
    this.view = 'mine';
    this.me = null; // { id, name, admin }
  }

  // ------------------------------------------------------------------ taking in

  /** Rows of GET /api/desk/conversations (or /api/conversations: no status means waiting). */
  takeRows(rows) {
    for (const r of rows) {
      if (!r || typeof r.openid !== 'string') continue;
      const s = this.of(r.openid);
      if (typeof r.status === 'string') s.status = r.status;
      if ('assignee' in r) s.assignee = r.assignee || null;
      if ('profile' in r) s.profile = r.profile || null;
    }
  }

  /**
   * A server frame. Returns what the console should react to: null (not a team frame),
   * 'roster', 'status' (with `assignedToMe` when it just became this agent's), 'presence',
   * 'profile', 'typing'.
   */
  take(f) {
    switch (f.cmd) {
      case 'desk':
        this.agents.clear();
        for (const a of f.agents || []) this.agents.set(a.id, { ...a });
        return { kind: 'roster' };
      case 'conversation': {
        const s = this.of(f.openid);
        const wasMine = s.status === 'assigned' && s.assignee?.id === this.me?.id;
        s.status = f.status;
        s.assignee = f.assignee || null;
        const mine = s.status === 'assigned' && s.assignee?.id === this.me?.id;
        return { kind: 'status', openid: f.openid, assignedToMe: mine && !wasMine, frame: f };
      }
      case 'presence': {
        const a = f.agent || {};
        if (typeof a.id !== 'number') return null;
        const known = this.agents.get(a.id) || { id: a.id, name: a.name, load: 0, limit: 0, admin: false };
        known.status = f.status;
        if (a.name) known.name = a.name;
        this.agents.set(a.id, known);
        return { kind: 'presence' };
      }
      case 'profile':
        this.of(f.openid).profile = f.profile || null;
        return { kind: 'profile', openid: f.openid };
      case 'typing':
        if (f.from !== 'user' || typeof f.openid !== 'string') return null;
        this.typing.set(f.openid, this.clock.now() + TYPING_SHOWN_MS);
        return { kind: 'typing', openid: f.openid };
      default:
        return null;
    }
  }

  /** GET /api/desk/agents (loads and limits move with every assignment). */
  takeAgents(list) {
    for (const a of list || []) this.agents.set(a.id, { ...this.agents.get(a.id), ...a });
  }

  /** A message from the user ends their typing indicator at once. */
  messageFrom(m) {
    if (m.from === 'user') this.typing.delete(m.openid);
  }

  of(openid) {
    let s = this.state.get(openid);
    if (!s) {
      s = { status: 'open', assignee: null, profile: null };
      this.state.set(openid, s);
    }
    return s;
  }

  // ------------------------------------------------------------------ reading

  inView(openid, view = this.view) {
    const s = this.of(openid);
    if (view === 'all') return true;
    if (view === 'resolved') return s.status === 'resolved';
    if (view === 'unassigned') return s.status === 'open';
    return s.status === 'assigned' && s.assignee?.id === this.me?.id;
  }

  isTyping(openid) {
    const until = this.typing.get(openid);
    return until !== undefined && until > this.clock.now();
  }

  /** Whether this agent may reply: it holds the conversation, nobody does, or it is an admin. */
  mayReply(openid) {
    const s = this.of(openid);
    return this.me?.admin || s.status !== 'assigned' || s.assignee?.id === this.me?.id;
  }

  /** The agents a conversation can go to (enabled, not this one), online first. */
  transferTargets() {
    const rank = { online: 0, away: 1, offline: 2 };
    return [...this.agents.values()].filter((a) => a.id !== this.me?.id)
      .sort((a, b) => (rank[a.status] ?? 3) - (rank[b.status] ?? 3) || a.name.localeCompare(b.name));
  }

  myStatus() {
    return this.agents.get(this.me?.id)?.status ?? 'online';
  }

  /** Throttle outgoing typing frames: true when one may be sent now for `openid`. */
  typingDue(openid) {
    const now = this.clock.now();
    const last = this.sentTyping.get(openid);
    if (last !== undefined && now - last < TYPING_EVERY_MS) return false;
    this.sentTyping.set(openid, now);
    return true;
  }

  // ------------------------------------------------------------------ canned replies

  /** While the composer holds `/word` (and nothing else), the canned replies whose shortcut starts
   * with `word` (any part of the text, when nothing matches the shortcut). */
  cannedFor(text) {
    const m = /^\/(\S*)$/.exec(String(text));
    if (!m) return [];
    const q = m[1].toLowerCase();
    const byShortcut = this.canned.filter((c) => c.shortcut.toLowerCase().startsWith(q));
    if (byShortcut.length || !q) return byShortcut;
    return this.canned.filter((c) => c.body.toLowerCase().includes(q));
  }
}
