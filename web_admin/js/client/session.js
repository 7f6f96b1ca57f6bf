// The agent's session: token, agent and expiry. It lives in the tab's sessionStorage (or memory),
// never in localStorage, where it would outlive the tab and be readable by every later page of the
// origin: a security requirement. The storage is handed in.

export class SessionStore {
  /**
   * @param {object} o
   * @param {Storage|null} o.storage   sessionStorage in the page; null keeps the session in memory
   * @param {object} o.clock           { now() }
   * @param {Storage[]} [o.legacy]     stores an older console kept the token in: it is removed there
   */
  constructor({ storage, clock, key = 'kefu.session', legacy = [] }) {
    this.storage = storage;
    this.clock = clock;
    this.key = key;
    this.legacy = legacy;
    this.memory = null;
  }

  /** The saved session if it is well-formed and not expired; else null (and it is removed). */
  load() {
    for (const s of this.legacy) {
      try { s.removeItem(this.key); } catch { /* not ours to worry about */ }
    }
    let s = null;
    if (this.storage) {
      try { s = JSON.parse(this.storage.getItem(this.key) || 'null'); } catch { s = null; }
    }
    s = s || this.memory; // what a refused storage did not keep
    if (s && typeof s.token === 'string' && s.token && (!s.expiresAt || s.expiresAt > this.clock.now())) return s;
    this.clear();
    return null;
  }

  save(session) {
    this.memory = session;
    if (!this.storage) return;
    try {
      this.storage.setItem(this.key, JSON.stringify(session));
    } catch { /* storage refused: the session lasts as long as the page */ }
  }

  clear() {
    this.memory = null;
    if (!this.storage) return;
    try { this.storage.removeItem(this.key); } catch { /* already gone */ }
  }
}
