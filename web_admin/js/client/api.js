// The HTTP API (docs/protocol.md §2). Every call returns parsed JSON or throws ApiError. The fetch
// function is handed in (the browser's, Node's, or a fake), and so is the base URL ('' in the page).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status; // 0 when the server could not be reached
    this.code = code;
  }
}

export class Api {
  /**
   * @param {object} o
   * @param {Function} o.fetch            a WHATWG fetch
   * @param {string} [o.baseUrl]          prefix of every path ('' = same origin)
   * @param {Function} [o.onUnauthorized] an authenticated call answered 401: the token is dead
   */
  constructor({ fetch, baseUrl = '', onUnauthorized = () => {} }) {
    this.fetch = fetch;
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.onUnauthorized = onUnauthorized;
    this.token = null;
  }

  async request(method, path, { body, query, auth = true, token = this.token } = {}) {
    let url = this.baseUrl + path;
    if (query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) q.set(k, String(v));
      const s = q.toString();
      if (s) url += `?${s}`;
    }
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth && token) headers.Authorization = `Bearer ${token}`;
    const doFetch = this.fetch; // called unbound: a browser's fetch refuses any other `this`
    let res;
    try {
      res = await doFetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
    } catch {
      throw new ApiError(0, 'network', 'The server could not be reached.');
    }
    let data = null;
    try { data = await res.json(); } catch { /* not JSON */ }
    if (!res.ok) {
      const err = new ApiError(res.status, data?.error, data?.message);
      // Only if the token is still the one in use: a late answer for a token already replaced says nothing.
      if (res.status === 401 && auth && token && token === this.token) this.onUnauthorized(err);
      throw err;
    }
    return data;
  }

  agentLogin(name, password) {
    return this.request('POST', '/api/agent/login', { body: { name, password }, auth: false });
  }

  me() { return this.request('GET', '/api/me'); }

  /** Revoke `token` (by default the one in use) on the server. */
  logout(token = this.token) { return this.request('POST', '/api/logout', { token }); }

  conversations(before, limit = 50) {
    return this.request('GET', '/api/conversations', { query: { before, limit } });
  }

  /** A page of history; `all`: with private notes and status events (the team console). */
  messages(openid, before, limit = 30, all = false) {
    const query = all ? { before, limit, kinds: 'all' } : { before, limit };
    return this.request('GET', `/api/conversations/${encodeURIComponent(openid)}/messages`, { query });
  }

  // ---- the team console (docs/protocol.md §10)

  deskConversations(view, before, limit = 50) {
    return this.request('GET', '/api/desk/conversations', { query: { view, before, limit } });
  }

  deskCounts() { return this.request('GET', '/api/desk/counts'); }

  deskAgents() { return this.request('GET', '/api/desk/agents'); }

  customer(openid) { return this.request('GET', `/api/customers/${encodeURIComponent(openid)}`); }

  canned() { return this.request('GET', '/api/canned'); }

  createCanned(shortcut, body) { return this.request('POST', '/api/admin/canned', { body: { shortcut, body } }); }

  deleteCanned(id) { return this.request('DELETE', `/api/admin/canned/${id}`); }

  adminAgents() { return this.request('GET', '/api/admin/agents'); }

  createAgent(fields) { return this.request('POST', '/api/admin/agents', { body: fields }); }

  updateAgent(id, fields) { return this.request('PATCH', `/api/admin/agents/${id}`, { body: fields }); }

  resetPassword(id, password) {
    return this.request('POST', `/api/admin/agents/${id}/password`, { body: { password } });
  }

  deleteAgent(id) { return this.request('DELETE', `/api/admin/agents/${id}`); }

  // ---- pictures and WeChat's customer-service channel (docs/protocol.md §11, §12)

  signMedia(ids) { return this.request('POST', '/api/media/sign', { body: { ids } }); }

  /** Upload a picture (a Blob or File) into `openid`'s conversation: {image, url, thumb_url, expires_at}. */
  async uploadImage(openid, blob) {
    const doFetch = this.fetch;
    let res;
    try {
      res = await doFetch(`${this.baseUrl}/api/media?openid=${encodeURIComponent(openid)}`, {
        method: 'POST', body: blob, cache: 'no-store',
        headers: { Accept: 'application/json', 'Content-Type': blob.type || 'application/octet-stream',
          Authorization: `Bearer ${this.token}` },
      });
    } catch {
      throw new ApiError(0, 'network', 'The server could not be reached.');
    }
    let data = null;
    try { data = await res.json(); } catch { /* not JSON */ }
    if (!res.ok) throw new ApiError(res.status, data?.error, data?.message);
    return data;
  }

  reach(openid) { return this.request('GET', `/api/wechat/reach/${encodeURIComponent(openid)}`); }

  markRead(openid, upto) {
    return this.request('POST', `/api/conversations/${encodeURIComponent(openid)}/read`, { body: upto ? { upto } : {} });
  }
}
