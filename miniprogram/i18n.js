// Every string of the sample mini-program, in one catalog: 简体中文 (the default) and English.
// config.lang picks one; pages read strings through t(key, vars) and the templates through the
// `i18n` object each page puts in its data.

var CATALOG = {
  'zh-CN': {
    'status.idle': '', 'status.connecting': '正在连接客服…', 'status.open': '',
    'status.offline': '网络已断开，正在重连…（消息会在恢复后发送）',
    'status.blocked': '连接被服务器拒绝，点击重新连接', 'status.stopped': '',
    'home.idle': '未连接', 'home.connecting': '连接中…', 'home.open': '已连接', 'home.offline': '已断开，正在重连',
    'home.blocked': '连接被服务器拒绝（点击重试）', 'home.stopped': '已停止', 'home.logging_in': '（登录中）',
    'home.user': '用户', 'home.connection': '客服连接', 'home.unread': '未读消息', 'home.queued': '待发送',
    'home.server': '服务器', 'home.chat': '联系客服', 'home.pushes': '通知',
    'profile.title': '我的资料', 'profile.avatar': '头像', 'profile.nickname': '昵称',
    'profile.nickname_placeholder': '请输入昵称', 'profile.save': '保存', 'profile.saved': '已保存',
    'profile.failed': '保存失败',
    'state.sending': '发送中', 'state.retrying': '发送中（稍后重试）', 'state.sent': '未读', 'state.read': '已读',
    'state.failed': '发送失败，点击重试',
    'error.too_large': '消息太长，无法发送', 'error.forbidden': '无权发送此消息', 'error.tap_retry': '，点击重试',
    'chat.me': '我', 'chat.agent': '客服', 'chat.older': '查看更早的消息', 'chat.placeholder': '请输入消息',
    'chat.send': '发送', 'chat.typing': '{name}正在输入…', 'chat.serving': '客服 {name} 为您服务',
    'chat.image': '图片', 'chat.picture': '[图片]', 'chat.image_gone': '[图片已过期]', 'chat.card': '[小程序卡片]',
    'chat.contact': '在微信中联系客服', 'chat.upload_failed': '图片发送失败，请重试'
  },
  en: {
    'status.idle': '', 'status.connecting': 'Connecting to customer service…', 'status.open': '',
    'status.offline': 'Offline, reconnecting… (messages go out when back)',
    'status.blocked': 'The server refused the connection. Tap to reconnect', 'status.stopped': '',
    'home.idle': 'Not connected', 'home.connecting': 'Connecting…', 'home.open': 'Connected',
    'home.offline': 'Offline, reconnecting', 'home.blocked': 'Refused by the server (tap to retry)',
    'home.stopped': 'Stopped', 'home.logging_in': '(logging in)',
    'home.user': 'User', 'home.connection': 'Support', 'home.unread': 'Unread', 'home.queued': 'To send',
    'home.server': 'Server', 'home.chat': 'Contact us', 'home.pushes': 'Notifications',
    'profile.title': 'My profile', 'profile.avatar': 'Avatar', 'profile.nickname': 'Nickname',
    'profile.nickname_placeholder': 'Your nickname', 'profile.save': 'Save', 'profile.saved': 'Saved',
    'profile.failed': 'Could not save',
    'state.sending': 'Sending', 'state.retrying': 'Sending (will retry)', 'state.sent': 'Unread', 'state.read': 'Read',
    'state.failed': 'Failed, tap to retry',
    'error.too_large': 'Too long to send', 'error.forbidden': 'Not allowed', 'error.tap_retry': ', tap to retry',
    'chat.me': 'Me', 'chat.agent': 'Support', 'chat.older': 'Earlier messages', 'chat.placeholder': 'Type a message',
    'chat.send': 'Send', 'chat.typing': '{name} is typing…', 'chat.serving': '{name} is helping you',
    'chat.image': 'Photo', 'chat.picture': '[Picture]', 'chat.image_gone': '[Picture no longer stored]',
    'chat.card': '[Mini-program card]', 'chat.contact': 'Chat with us in WeChat',
    'chat.upload_failed': 'The picture could not be sent; try again'
  }
};

var config = require('./config.js');
var current = CATALOG[config.lang] ? config.lang : 'zh-CN';

function setLang(lang) {
  current = CATALOG[lang] ? lang : 'zh-CN';
  return current;
}

function t(key, vars) {
  var text = CATALOG[current][key];
  if (text === undefined) text = CATALOG['zh-CN'][key];
  if (text === undefined) return key;
  return text.replace(/\{(\w+)\}/g, function (_, k) { return vars && vars[k] !== undefined ? String(vars[k]) : ''; });
}

// The strings a template shows, as one object: {{i18n.chat_send}} etc. (dots become underscores).
function table(prefix) {
  var out = {};
  var all = CATALOG[current];
  for (var k in all) if (k.indexOf(prefix) === 0) out[k.replace('.', '_')] = t(k);
  return out;
}

module.exports = { CATALOG: CATALOG, setLang: setLang, t: t, table: table };
