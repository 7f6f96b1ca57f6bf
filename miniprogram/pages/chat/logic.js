// Chat page behaviour, kept out of Page() so it runs (and is tested) anywhere: chat.js only wires
// these functions to the page's lifecycle and events.

var STATUS_TEXT = {
  idle: '',
  connecting: '正在连接客服…',
  open: '',
  offline: '网络已断开，正在重连…（消息会在恢复后发送）',
  blocked: '连接被服务器拒绝，点击重新连接',
  stopped: ''
};

var STATE_TEXT = { sending: '发送中', retrying: '发送中（稍后重试）', sent: '未读', read: '已读', failed: '发送失败，点击重试' };

// Why the server refused a message for good (its error frame said "retry": false).
var ERROR_TEXT = { too_large: '消息太长，无法发送', forbidden: '无权发送此消息' };

// The label of a queued message: a refused one says why, and (unless resending cannot help) that a
// tap sends it again; one waiting out a retryable error says it will be resent.
function outboxStateText(e) {
  if (e.state === 'failed') {
    if (e.error === 'too_large') return ERROR_TEXT.too_large;
    return ERROR_TEXT[e.error] ? ERROR_TEXT[e.error] + '，点击重试' : STATE_TEXT.failed;
  }
  return e.retries > 0 ? STATE_TEXT.retrying : STATE_TEXT.sending;
}

function pad(n) { return n < 10 ? '0' + n : String(n); }

function formatTime(ts) {
  if (!ts) return '';
  var d = new Date(ts);
  return pad(d.getHours()) + ':' + pad(d.getMinutes());
}

// Message list for the template: stored messages (by id), then queued ones (sending / failed).
// A user message is "read" once the agent's read mark (`agentReadUpto`) reaches its id.
function buildItems(state) {
  var items = [];
  state.messages.forEach(function (m) {
    var mine = m.from === 'user';
    var st = mine ? (m.id <= state.agentReadUpto ? 'read' : 'sent') : '';
    items.push({
      key: 'm' + m.id, id: m.id, cmid: m.cmid || '', mine: mine, text: m.msg, time: formatTime(m.ts),
      sender: mine ? '我' : (m.agent || '客服'), state: st, stateText: st ? STATE_TEXT[st] : ''
    });
  });
  state.outbox.forEach(function (e) {
    var st = e.state === 'failed' ? 'failed' : (e.retries > 0 ? 'retrying' : 'sending');
    items.push({
      key: 'c' + e.cmid, id: 0, cmid: e.cmid, mine: true, text: e.msg, time: formatTime(e.ts),
      sender: '我', state: st, stateText: outboxStateText(e), error: e.error || ''
    });
  });
  return items;
}

function viewData(state) {
  var items = buildItems(state);
  return {
    items: items,
    status: state.status,
    statusText: STATUS_TEXT[state.status] || '',
    hasOlder: state.hasOlder,
    scrollInto: items.length ? 'item-' + items[items.length - 1].key : ''
  };
}

// `kefu`: the client from utils/kefu.js; `setData`: the page's this.setData (bound).
function createChatPage(opts) {
  var kefu = opts.kefu;
  var setData = opts.setData;
  var input = '';
  var visible = false;

  function render() { setData(viewData(kefu.getState())); }

  return {
    render: render,
    onLoad: function () {
      kefu.on('change', render);
      render();
    },
    onShow: function () {
      visible = true;
      kefu.setChatVisible(true); // clears the tab badge and sends {"cmd":"read"}
      render();
    },
    onHide: function () {
      visible = false;
      kefu.setChatVisible(false);
    },
    onUnload: function () {
      kefu.off('change', render);
      if (visible) kefu.setChatVisible(false);
      visible = false;
    },
    onInput: function (value) {
      input = value;
      setData({ input: value });
    },
    // Queue the typed text (sent now, or when the connection is back). Returns its cmid or null.
    send: function () {
      var text = String(input || '').trim();
      if (!text) return null;
      var cmid = kefu.send(text);
      input = '';
      setData({ input: '' });
      return cmid;
    },
    retry: function (cmid) { return kefu.retry(cmid); },
    // The status bar after a 4429 close: the client does not reconnect by itself.
    reconnect: function () { if (kefu.status === 'blocked') kefu.reconnect(); },
    loadOlder: function () { return kefu.loadOlder(); }
  };
}

module.exports = { createChatPage: createChatPage, buildItems: buildItems, viewData: viewData,
  formatTime: formatTime, STATUS_TEXT: STATUS_TEXT, STATE_TEXT: STATE_TEXT, ERROR_TEXT: ERROR_TEXT };
