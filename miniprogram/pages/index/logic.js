// Home ("me") page view data, from the kefu client's state. Pure, so it is testable anywhere.

var i18n = require('../../i18n.js');
var t = i18n.t;

var STATUS_TEXT = {};
['idle', 'connecting', 'open', 'offline', 'blocked', 'stopped'].forEach(function (k) { STATUS_TEXT[k] = t('home.' + k); });

// Pushes shown on the home page, newest first.
var SHOWN_PUSHES = 5;

// What a backend push says, in one line: its `msg` (what legacy clients render), else a `title` or
// `text`, else the object itself as JSON. Backends choose the keys (docs/protocol.md §8).
function pushText(push) {
  if (!push || typeof push !== 'object') return String(push);
  var keys = ['msg', 'title', 'text', 'content'];
  for (var i = 0; i < keys.length; i++) {
    if (typeof push[keys[i]] === 'string' && push[keys[i]]) return push[keys[i]];
  }
  return JSON.stringify(push);
}

// wx.showToast options for a push (icon 'none' allows two lines of text; longer text is cut).
function pushToast(push) {
  var text = pushText(push);
  if (text.length > 40) text = text.slice(0, 39) + '…';
  return { title: text, icon: 'none', duration: 3000 };
}

function pad(n) { return n < 10 ? '0' + n : String(n); }

function homeData(state, config) {
  var pushes = (state.pushes || []).slice(-SHOWN_PUSHES).reverse().map(function (p, i) {
    var d = new Date(p.at);
    return { key: 'p' + p.at + '-' + i, text: pushText(p.data), time: pad(d.getHours()) + ':' + pad(d.getMinutes()) };
  });
  return {
    openid: state.openid || t('home.logging_in'),
    status: state.status,
    statusText: STATUS_TEXT[state.status] || state.status,
    unread: state.unread,
    unreadText: state.unread > 0 ? String(state.unread) : '',
    queued: state.outbox.filter(function (e) { return e.state === 'pending'; }).length,
    server: config.baseUrl,
    pushes: pushes,
    i18n: Object.assign(i18n.table('home.'), i18n.table('profile.'))
  };
}

module.exports = { homeData: homeData, pushText: pushText, pushToast: pushToast, STATUS_TEXT: STATUS_TEXT };
