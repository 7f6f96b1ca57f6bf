'use strict';
// The agent side: a plain `ws` client on /ws?token=…&v=2, as the web admin would be.

const WebSocket = require('ws');
const { waitFor } = require('./util');

let seq = 0;

class AgentSocket {
  static async connect(wsUrl, token, timeout = 5000) {
    const a = new AgentSocket(new WebSocket(`${wsUrl}?token=${encodeURIComponent(token)}&v=2`));
    await a.waitFor((f) => f.cmd === 'hello', { timeout, what: 'the agent hello frame' });
    return a;
  }

  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.closed = null;
    ws.on('message', (data) => { this.frames.push(JSON.parse(data.toString('utf8'))); });
    ws.on('close', (code, reason) => { this.closed = { code, reason: reason.toString() }; });
    ws.on('error', () => { /* surfaced through `closed` and timeouts */ });
  }

  send(frame) { this.ws.send(JSON.stringify(frame)); }

  // Frames seen so far that match; waits (bounded) for the first match.
  async waitFor(pred, { timeout = 5000, what = 'an agent frame' } = {}) {
    return waitFor(() => {
      const hit = this.frames.find(pred);
      if (!hit && this.closed) throw new Error(`agent socket closed: ${JSON.stringify(this.closed)}`);
      return hit;
    }, { timeout, what });
  }

  // Send a reply to `openid` and wait for its ack. Returns the ack.
  async reply(openid, msg, { timeout = 5000 } = {}) {
    seq += 1;
    const cmid = `agent-${process.pid}-${Date.now().toString(36)}-${seq}`;
    this.send({ type: 1, openid, msg, cmid });
    return this.waitFor((f) => f.cmd === 'ack' && f.cmid === cmid, { timeout, what: `the ack of agent message ${msg}` });
  }

  // User messages of one conversation received live by this agent.
  userMessages(openid) {
    return this.frames.filter((f) => f.cmd === undefined && f.from === 'user' && f.openid === openid);
  }

  close() {
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) { resolve(); return; }
      const t = setTimeout(() => { this.ws.terminate(); resolve(); }, 2000);
      this.ws.once('close', () => { clearTimeout(t); resolve(); });
      this.ws.close(1000);
    });
  }
}

module.exports = { AgentSocket };
