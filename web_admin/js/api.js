// HTTP API client (docs/protocol.md §2). Every call returns parsed JSON or throws ApiError.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status; // 0 when the server could not be reached
    this.code = code;
  }
}

let token = null;
let onUnauthorized = () => {};

export function setToken(t) { token = t; }
/** Called when an authenticated request answers 401: the token expired or was revoked. */
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

async function request(method, path, { body, query, auth = true } = {}) {
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) q.set(k, String(v));
    const s = q.toString();
    if (s) url += `?${s}`;
  }
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth && token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'network', 'The server could not be reached.');
  }
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const err = new ApiError(res.status, data?.error, data?.message);
    if (res.status === 401 && auth) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const agentLogin = (name, password) =>
  request('POST', '/api/agent/login', { body: { name, password }, auth: false });
export const me = () => request('GET', '/api/me');
export const logout = () => request('POST', '/api/logout');
export const conversations = (before, limit = 50) =>
  request('GET', '/api/conversations', { query: { before, limit } });
export const messages = (openid, before, limit = 30) =>
  request('GET', `/api/conversations/${encodeURIComponent(openid)}/messages`, { query: { before, limit } });
export const markRead = (openid, upto) =>
  request('POST', `/api/conversations/${encodeURIComponent(openid)}/read`, { body: upto ? { upto } : {} });
