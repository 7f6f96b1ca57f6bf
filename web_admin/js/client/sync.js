// Catching up: where the console's view of the history ends (the cursor), and the paged `sync`
// requests that fetch what came after it (docs/protocol.md §4.3).

import { backoffDelay } from './backoff.js';

/**
 * The server's history epoch and the newest message id seen in it, kept in storage so a reload
 * still knows which history its ids belong to. `hello` and `sync` replies carry the epoch; a
 * different one than ours means the server's history was reset and its ids started again, so ours
 * point nowhere: back to 0.
 */
export class Cursor {
  constructor({ storage, key = 'kefu.cursor' }) {
    this.storage = storage;
    this.key = key;
    this.scope = null;
    this.epoch = null;
    this.lastId = 0;
    this.dirty = false;
  }

  /** Read the saved cursor of this agent (another agent's, in the same tab, is not ours). */
  load(scope) {
    this.scope = String(scope);
    this.epoch = null;
    this.lastId = 0;
    try {
      const saved = JSON.parse(this.storage.getItem(this.key) || 'null');
      if (saved && saved.scope === this.scope) {
        if (typeof saved.epoch === 'string') this.epoch = saved.epoch;
        if (Number.isInteger(saved.lastId) && saved.lastId > 0) this.lastId = saved.lastId;
      }
    } catch { /* a corrupt entry: start afresh */ }
  }

  note(id) {
    if (typeof id === 'number' && id > this.lastId) {
      this.lastId = id;
      this.dirty = true;
    }
  }

  /**
   * An epoch from the server: "same", "first" (none known before), "reset" (a different one: the
   * last id is 0 again), or "none" (the server sends no epochs).
   */
  observe(epoch) {
    if (typeof epoch !== 'string' || !epoch) return 'none';
    if (epoch === this.epoch) return 'same';
    const first = this.epoch === null;
    this.epoch = epoch;
    if (!first) this.lastId = 0;
    this.dirty = true;
    this.save();
    return first ? 'first' : 'reset';
  }

  /** Write it out if it changed (called once per frame, not once per message). */
  save() {
    if (!this.dirty || this.scope === null) return;
    this.dirty = false;
    try {
      this.storage.setItem(this.key, JSON.stringify({ scope: this.scope, epoch: this.epoch, lastId: this.lastId }));
    } catch { /* storage full or refused: the cursor lives on in memory */ }
  }

  forget() {
    this.scope = null;
    this.epoch = null;
    this.lastId = 0;
    this.dirty = false;
    try { this.storage.removeItem(this.key); } catch { /* nothing to forget */ }
  }
}

export const DEFAULTS = Object.freeze({ pageSize: 200, retryBaseMs: 1000, retryMaxMs: 15_000 });

/**
 * One sync at a time, paged: `{"cmd":"sync","after"}` → reply with `more` → ask again after its last
 * id, until `more` is false. A request while one runs (a `resync` frame) is queued and runs after it,
 * from the lowest id asked for. A sync cut off by a dropped socket resumes on the next one.
 */
export class SyncPager {
  constructor({ send, clock, random = Math.random, options = {} }) {
    this.sendFrame = send;
    this.clock = clock;
    this.random = random;
    this.opt = { ...DEFAULTS, ...options };
    this.inflight = null; // the `after` of the page asked for, or null
    this.queued = null; // the lowest `after` asked for while a sync ran
    this.resumeAfter = null; // where a cut-off sync must start again on the next socket
    this.retries = 0;
    this.retryTimer = null;
  }

  get running() {
    return this.inflight !== null;
  }

  /** Sync everything after `after` (now, or after the running one). */
  request(after) {
    if (this.inflight !== null) {
      this.queued = this.queued === null ? after : Math.min(this.queued, after);
      return;
    }
    this.ask(after);
  }

  ask(after) {
    if (this.sendFrame({ cmd: 'sync', after, limit: this.opt.pageSize })) {
      this.inflight = after;
    } else {
      this.inflight = null;
      this.resumeAfter = this.resumeAfter === null ? after : Math.min(this.resumeAfter, after);
    }
  }

  /**
   * A sync reply came. Returns "stale" for a reply to a request this pager no longer waits for
   * (its messages are still good to merge), "more" when the next page was asked for, "done".
   */
  replied(f) {
    if (this.inflight === null || (typeof f.after === 'number' && f.after !== this.inflight)) return 'stale';
    this.retries = 0;
    this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const list = Array.isArray(f.messages) ? f.messages : [];
    this.inflight = null;
    if (f.more && list.length) {
      this.ask(list[list.length - 1].id);
      return 'more';
    }
    if (this.queued !== null) {
      const after = this.queued;
      this.queued = null;
      this.ask(after);
      return 'more';
    }
    return 'done';
  }

  /** The server could not answer (an error frame with `"retry": true`): ask again after a backoff. */
  retryLater() {
    if (this.inflight === null || this.retryTimer) return;
    const after = this.inflight;
    const delay = backoffDelay(this.retries++, { base: this.opt.retryBaseMs, max: this.opt.retryMaxMs, random: this.random });
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = null;
      if (this.inflight === after) this.ask(after);
    }, delay);
  }

  /** The socket dropped: what was running or queued resumes on the next socket (takeResume()). */
  dropped() {
    for (const after of [this.inflight, this.queued]) {
      if (after !== null) this.resumeAfter = this.resumeAfter === null ? after : Math.min(this.resumeAfter, after);
    }
    this.inflight = null;
    this.queued = null;
    this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /** Where an unfinished sync must start again (null: none was cut off); cleared by reading. */
  takeResume() {
    const after = this.resumeAfter;
    this.resumeAfter = null;
    return after;
  }

  /** Forget everything (sign-out, or a history reset: the old ids mean nothing). */
  reset() {
    this.inflight = null;
    this.queued = null;
    this.resumeAfter = null;
    this.retries = 0;
    this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }
}
