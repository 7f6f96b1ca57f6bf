// Chat page behaviour, kept out of Page() so it runs (and is tested) anywhere: chat.js only wires
// these functions to the page's lifecycle and events.

var i18n = require('../../i18n.js');
var t = i18n.t;

function texts(prefix, keys) {
  var out = {};
  keys.forEach(function (k) { out[k] = t(prefix + k); });
  return out;
}

var STATUS_TEXT = texts('status.', ['idle', 'connecting', 'open', 'offline', 'blocked', 'stopped']);
var STATE_TEXT = texts('state.', ['sending', 'retrying', 'sent', 'read', 'failed']);
// Why the server refused a message for good (its error frame said "retry": false).
var ERROR_TEXT = texts('error.', ['too_large', 'forbidden']);

// The label of a queued message: a refused one says why, and (unless resending cannot help) that a
// tap sends it again; one waiting out a retryable error says it will be resent.
function outboxStateText(e) {
  if (e.state === 'failed') {
    if (e.error === 'too_large') return ERROR_TEXT.too_large;
    return ERROR_TEXT[e.error] ? ERROR_TEXT[e.error] + t('error.tap_retry') : STATE_TEXT.failed;
  }
  return e.retries > 0 ? STATE_TEXT.retrying : STATE_TEXT.sending;
}

function pad(n) { return n < 10 ? '0' + n : String(n); }

function formatTime(ts) {
  if (!ts) return '';
  var d = new Date(ts);
  return pad(d.getHours()) + ':' + pad(d.getMinutes());
}

// A picture's thumbnail for <image src>: signed URLs come from the client (kefu.imageUrls) and
// are empty while they are being asked for.
function picture(image, urlsFor) {
  if (!image || !image.id) return { imageId: '', thumb: '', gone: false };
  var u = urlsFor ? urlsFor(image.id) : undefined;
  return { imageId: image.id, thumb: u ? u.thumb : '', gone: u === null };
}

// What a message shows: its text, or a picture, or a mini-program card (title and picture).
function content(m, urlsFor) {
  var meta = m.meta || {};
  if (m.kind === 'image' || m.image) {
    var p = picture(m.image || meta.image, urlsFor);
    return { isImage: true, imageId: p.imageId, thumb: p.thumb, text: p.gone ? t('chat.image_gone') : t('chat.picture') };
  }
  if (m.kind === 'card' && meta.card) {
    var c = picture(meta.card.image, urlsFor);
    return { isCard: true, imageId: c.imageId, thumb: c.thumb, text: t('chat.card') + ' ' + (meta.card.title || '') };
  }
  return { text: m.msg };
}

function assign(target, extra) {
  for (var k in extra) target[k] = extra[k];
  return target;
}

// Message list for the template: stored messages (by id), then queued ones (sending / failed).
// A user message is "read" once the agent's read mark (`agentReadUpto`) reaches its id.
function buildItems(state, urlsFor) {
  var items = [];
  state.messages.forEach(function (m) {
    var mine = m.from === 'user';
    var st = mine ? (m.id <= state.agentReadUpto ? 'read' : 'sent') : '';
    items.push(assign({
      key: 'm' + m.id, id: m.id, cmid: m.cmid || '', mine: mine, text: m.msg, time: formatTime(m.ts),
      sender: mine ? t('chat.me') : (m.agent || t('chat.agent')), state: st, stateText: st ? STATE_TEXT[st] : '',
      isImage: false, isCard: false, imageId: '', thumb: ''
    }, content(m, urlsFor)));
  });
  state.outbox.forEach(function (e) {
    var st = e.state === 'failed' ? 'failed' : (e.retries > 0 ? 'retrying' : 'sending');
    items.push(assign({
      key: 'c' + e.cmid, id: 0, cmid: e.cmid, mine: true, text: e.msg, time: formatTime(e.ts),
      sender: t('chat.me'), state: st, stateText: outboxStateText(e), error: e.error || '',
      isImage: false, isCard: false, imageId: '', thumb: ''
    }, content(e, urlsFor)));
  });
  return items;
}

function viewData(state, urlsFor) {
  var items = buildItems(state, urlsFor);
  return {
    items: items,
    status: state.status,
    statusText: STATUS_TEXT[state.status] || '',
    hasOlder: state.hasOlder,
    scrollInto: items.length ? 'item-' + items[items.length - 1].key : '',
    // The team: who answers, and whether they are typing now.
    typingText: state.agentTyping !== null && state.agentTyping !== undefined
      ? t('chat.typing', { name: state.agentTyping || t('chat.agent') }) : '',
    servingText: state.agentName ? t('chat.serving', { name: state.agentName }) : '',
    i18n: i18n.table('chat.')
  };
}

// `kefu`: the client from utils/kefu.js; `setData`: the page's this.setData (bound).
function createChatPage(opts) {
  var kefu = opts.kefu;
  var setData = opts.setData;
  var input = '';
  var visible = false;

  function render() { setData(viewData(kefu.getState(), kefu.imageUrls)); }

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
      if (String(value || '').trim() && kefu.typing) kefu.typing();
    },
    // Queue the typed text (sent now, or when the connection is back). Returns its cmid or null.
    // The tap is also when the "reply received" subscribe message may be asked for (once).
    send: function () {
      var text = String(input || '').trim();
      if (!text) return null;
      if (kefu.askSubscribe) kefu.askSubscribe();
      var cmid = kefu.send(text);
      input = '';
      setData({ input: '' });
      return cmid;
    },
    retry: function (cmid) { return kefu.retry(cmid); },
    // The picture button: wx.chooseMedia, then wx.uploadFile and an image message.
    chooseImage: function () {
      if (kefu.askSubscribe) kefu.askSubscribe();
      return kefu.chooseImage().catch(function (e) {
        if (e && e.code !== 'cancelled') setData({ notice: t('chat.upload_failed') });
        return null;
      });
    },
    // A tap on a picture: WeChat's viewer (wx.previewImage).
    preview: function (imageId) { return imageId ? kefu.previewImage(imageId) : false; },
    // The status bar after a 4429 close: the client does not reconnect by itself.
    reconnect: function () { if (kefu.status === 'blocked') kefu.reconnect(); },
    loadOlder: function () { return kefu.loadOlder(); }
  };
}

module.exports = { createChatPage: createChatPage, buildItems: buildItems, viewData: viewData,
  formatTime: formatTime, STATUS_TEXT: STATUS_TEXT, STATE_TEXT: STATE_TEXT, ERROR_TEXT: ERROR_TEXT };
