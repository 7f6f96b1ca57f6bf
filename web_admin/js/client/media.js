// Signed picture URLs (docs/protocol.md §11), without a page. A message carries only its picture's
// id (`meta.image.id`); the server signs short-lived URLs for whoever may see the conversation
// (POST /api/media/sign), because <img> cannot send the token. This cache asks for the ids the
// screen wants, a batch at a time, and again before a URL expires; `get(id)` answers at once with
// what it has (undefined while asking, null for a picture that is gone).

export const REFRESH_BEFORE_MS = 30_000; // ask again when a URL has less than this left
export const BATCH = 100;

export class MediaUrls {
  /** @param {object} o  { api (signMedia), clock ({ now, setTimeout }), onChange } */
  constructor({ api, clock, onChange = () => {} }) {
    this.api = api;
    this.clock = clock;
    this.onChange = onChange;
    this.urls = new Map(); // id -> {url, thumb_url, expires_at} | null (gone)
    this.wanted = new Set();
    this.asking = new Set();
    this.timer = null;
  }

  /** The URLs for `id` (asking for fresh ones when missing or about to expire). */
  get(id) {
    if (typeof id !== 'string') return undefined;
    const u = this.urls.get(id);
    if (u === null) return null;
    if (!u || u.expires_at * 1000 - this.clock.now() < REFRESH_BEFORE_MS) this.want(id);
    return u;
  }

  /** URLs the server already gave (an upload's answer). */
  put(id, urls) {
    this.urls.set(id, { url: urls.url, thumb_url: urls.thumb_url, expires_at: urls.expires_at });
  }

  want(id) {
    if (this.asking.has(id)) return;
    this.wanted.add(id);
    if (!this.timer) this.timer = this.clock.setTimeout(() => { this.timer = null; this.flush(); }, 10);
  }

  async flush() {
    const ids = [...this.wanted].slice(0, BATCH);
    if (!ids.length) return;
    for (const id of ids) { this.wanted.delete(id); this.asking.add(id); }
    try {
      const r = await this.api.signMedia(ids);
      for (const id of ids) {
        const u = r?.images?.[id];
        this.urls.set(id, u ? { url: u.url, thumb_url: u.thumb_url, expires_at: u.expires_at } : null);
      }
      this.onChange();
    } catch { /* asked again the next time the screen wants them */ } finally {
      for (const id of ids) this.asking.delete(id);
    }
    if (this.wanted.size) this.flush();
  }

  reset() {
    this.urls.clear();
    this.wanted.clear();
  }
}
