// Every setting of the sample mini-program lives here. Edit `baseUrl` before importing the project
// into WeChat DevTools (see README.md). Times are in milliseconds.
module.exports = {
  // HTTPS origin of your kefu server. Its host must be a "request legal domain" AND a
  // "socket legal domain" of the mini-program (console → Development → Server domains).
  baseUrl: 'https://kefu.example.com',
  // WebSocket endpoint. Empty: derived from baseUrl (https → wss, http → ws) + '/ws'.
  socketUrl: '',

  // Position of the chat page in app.json tabBar.list, counted from the left, 0-based.
  // app.json lists [pages/index/index, pages/chat/chat], so the chat tab is 1.
  chatTabIndex: 1,

  // Heartbeat: send {"cmd":"ping"} this often (the server drops a socket silent for 40 s).
  heartbeatInterval: 30000,
  // A socket that received no frame at all this long after a ping is dead: close and reconnect.
  pongTimeout: 10000,
  // A socket that does not open within this time is abandoned and retried.
  connectTimeout: 10000,

  // Reconnect backoff: base * 2^(attempt-1), capped at max, with jitter (a random half of it).
  reconnectBaseDelay: 1000,
  reconnectMaxDelay: 30000,

  // After a reconnect, re-ask for messages from this much (server time) before the newest one
  // seen, so a message whose live frame was overtaken by a newer one is not missed. Duplicates
  // are dropped by message id.
  syncOverlap: 10000,
  // Page size of {"cmd":"sync"} (server allows 1..500).
  syncLimit: 200,
  // Messages loaded over HTTP when the app starts (and per "load older" page).
  historyLimit: 50,
  // Messages kept in memory (oldest are dropped first).
  maxMessages: 500,

  // Offline queue flushing: this many frames at once, then one every sendInterval
  // (the server rate-limits each socket to 10 msg/s with a burst of 30).
  sendBurst: 10,
  sendInterval: 150,
  // A message (or sync) refused with an error frame saying "retry": true is sent again, same cmid,
  // after a backoff: resendDelay doubling per attempt up to resendMaxDelay, with jitter.
  resendDelay: 2000,
  resendMaxDelay: 30000,

  // Typing: tell the agent at most this often while the user types; show the agent's typing this
  // long after their last typing frame (docs/protocol.md §10.4).
  typingInterval: 2000,
  typingShownFor: 5000,

  // Language of the sample's text: 'zh-CN' (default) or 'en' (miniprogram/i18n.js).
  lang: 'zh-CN',

  // Backend pushes (any JSON object pushed to this user) kept in getState().pushes, newest last.
  maxPushes: 20,

  // wx.request timeout.
  requestTimeout: 10000,
  // wx.setStorageSync key prefix (token, openid, the offline queue and the sync cursor are stored).
  storagePrefix: 'kefu_',
  // console.log what the client does.
  debug: false
};
