// A ConsoleClient with everything it emits recorded, for the unit tests (fake world) and the
// live tests (real server) alike.

import { ConsoleClient } from '../../web_admin/js/client/console.js';
import { memoryStorage } from './fakes.js';

/**
 * @param {object} o  WebSocket, fetch, clock, socketUrl, baseUrl: as ConsoleClient takes them
 *   storage: the tab's session storage (a fresh memory one by default); legacy: "localStorage"
 *   watching: whether the agent looks at the page (changeable later through `view.watching`)
 */
export function recordedConsole({ storage = memoryStorage(), legacy = memoryStorage(), watching = true, random = () => 0.5, options, ...world }) {
  const view = { watching };
  const client = new ConsoleClient({
    ...world, storage, random, legacyStorage: [legacy], isWatching: () => view.watching, options,
  });
  const events = { status: [], alerts: 0, hints: [], ended: [], resets: 0, changes: 0 };
  client.on('status', (state, info) => events.status.push({ state, ...info }));
  client.on('alert', () => { events.alerts += 1; });
  client.on('hint', (text) => events.hints.push(text));
  client.on('session-ended', (reason) => events.ended.push(reason));
  client.on('reset', () => { events.resets += 1; });
  client.on('change', () => { events.changes += 1; });
  return {
    client, events, view, storage, legacy,
    /** The open (or given) thread as "from:text" strings, pending replies marked with their status. */
    thread(openid = client.openId) {
      const { msgs, pend } = client.threadItems(openid);
      return [...msgs.map((m) => `${m.from}:${m.msg}`), ...pend.map((p) => `${p.status}:${p.msg}`)];
    },
    state: () => client.conn.state,
  };
}
