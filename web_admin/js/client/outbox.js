// The agent's replies between "Enter" and the server's ack. Each has a client message id (cmid)
// that never changes, so however often it is sent (reconnects, retryable errors, the agent's own
// retry) the server stores it once (docs/protocol.md §4.1, dedupe by cmid).
//
// An entry is "sending" until its ack (or its stored copy in a sync) settles it, when it leaves the
// outbox and becomes a Message in the timeline; or "failed": not confirmed within `ackTimeoutMs`
// of the send, or refused by an error frame that does not say `"retry": true`. The agent may retry
// a failed one by hand. An error frame with `"retry": true` (the server's trouble, not the frame's)
// sends the same cmid again after a backoff; replies typed after it in the same conversation wait
// behind it, so they are stored in the order they were typed.

import { backoffDelay } from './backoff.js';

export const DEFAULTS = Object.freeze({
  ackTimeoutMs: 10_000,
  retryBaseMs: 1000,
  retryMaxMs: 15_000,
});

export class Outbox {
  /**
   * @param {object} o
   * @param {object} o.clock      { now(), setTimeout(fn, ms), clearTimeout(handle) }
   * @param {Function} o.send     (frame) => bool: hand a frame to the socket if it is up
   * @param {Function} [o.onChange]  an entry changed state (for the screen)
   */
  constructor({ clock, send, onChange = () => {}, random = Math.random, options = {} }) {
    this.clock = clock;
    this.sendFrame = send;
    this.onChange = onChange;
    this.random = random;
    this.opt = { ...DEFAULTS, ...options };
    this.entries = new Map(); // cmid -> Entry, in the order they were typed
    this.generation = null; // the socket generation frames go out on; null = offline
    this.flushTimer = null;
  }

  /** Queue a reply: it goes out now if the socket is up, else on the next connection. With
   * `image` (an uploaded picture's meta), it is that picture. */
  add(openid, cmid, msg, image = null) {
    const e = {
      cmid, openid, msg, image, status: 'sending', error: null, errorCode: null,
      createdAt: this.clock.now(), retries: 0, retryAt: 0, sentOn: null, deadline: null,
    };
    this.entries.set(cmid, e);
    this.armDeadline(e);
    this.flush();
    return e;
  }

  /** The agent's retry of a failed reply: the same cmid again, with a fresh deadline. */
  retry(cmid) {
    const e = this.entries.get(cmid);
    if (!e) return false;
    Object.assign(e, { status: 'sending', error: null, errorCode: null, retries: 0, retryAt: 0, sentOn: null });
    this.armDeadline(e);
    this.flush();
    return true;
  }

  get(cmid) {
    return this.entries.get(cmid) || null;
  }

  /** Entries of one conversation, oldest first. */
  forConversation(openid) {
    return [...this.entries.values()].filter((e) => e.openid === openid).sort((a, b) => a.createdAt - b.createdAt);
  }

  /** The reply is stored on the server (its ack, or a copy seen in a sync): it leaves the outbox. */
  settle(cmid) {
    const e = this.entries.get(cmid);
    if (!e) return null;
    this.clock.clearTimeout(e.deadline);
    this.entries.delete(cmid);
    this.flush(); // replies held behind it may go now
    return e;
  }

  /**
   * An error frame answered this cmid. `retry: true` → send it again later, with backoff;
   * anything else → failed. Returns the entry, or null if the cmid is not ours (any more).
   */
  refused(cmid, { retry, code, message }) {
    const e = this.entries.get(cmid);
    if (!e) return null;
    if (retry === true && e.status === 'sending') {
      e.retryAt = this.clock.now() + backoffDelay(e.retries, {
        base: this.opt.retryBaseMs, max: this.opt.retryMaxMs, random: this.random });
      e.retries += 1;
      e.sentOn = null;
      this.flush();
      return e;
    }
    this.fail(e, code || 'error', message || code || null);
    return e;
  }

  /** A socket said hello: everything not confirmed goes again on it (same cmids). */
  connected(generation) {
    this.generation = generation;
    for (const e of this.entries.values()) e.retryAt = 0; // the reconnect already waited
    this.flush();
  }

  disconnected() {
    this.generation = null;
    this.clock.clearTimeout(this.flushTimer);
    this.flushTimer = null;
  }

  /**
   * Send what is due: each "sending" entry not yet sent on this socket, in typed order, except behind
   * an entry of the same conversation that waits out a retryable error.
   */
  flush() {
    if (this.generation === null) return;
    const now = this.clock.now();
    const held = new Set();
    let nextAt = Infinity;
    for (const e of this.entries.values()) {
      if (e.status !== 'sending' || held.has(e.openid)) continue;
      if (e.retryAt > now) {
        held.add(e.openid);
        nextAt = Math.min(nextAt, e.retryAt);
        continue;
      }
      if (e.sentOn === this.generation) continue;
      const frame = e.image ? { type: 1, openid: e.openid, image: e.image.id, cmid: e.cmid }
        : { type: 1, openid: e.openid, msg: e.msg, cmid: e.cmid };
      if (!this.sendFrame(frame)) return; // went down
      e.sentOn = this.generation;
      e.retryAt = 0;
    }
    this.clock.clearTimeout(this.flushTimer);
    this.flushTimer = nextAt === Infinity ? null
      : this.clock.setTimeout(() => { this.flushTimer = null; this.flush(); }, nextAt - now);
  }

  armDeadline(e) {
    this.clock.clearTimeout(e.deadline);
    e.deadline = this.clock.setTimeout(() => {
      if (this.entries.get(e.cmid) === e && e.status === 'sending') this.fail(e, 'no_ack', null);
    }, this.opt.ackTimeoutMs);
  }

  fail(e, code, message) {
    this.clock.clearTimeout(e.deadline);
    e.deadline = null;
    e.status = 'failed';
    e.errorCode = code;
    e.error = message;
    e.retryAt = 0;
    this.onChange(e);
  }

  clear() {
    for (const e of this.entries.values()) this.clock.clearTimeout(e.deadline);
    this.entries.clear();
    this.disconnected();
  }
}
