// Every string the QR login page shows, in one catalog: 简体中文 first (the default), English as an
// option (`?lang=en`, or kept in localStorage `kefu.lang`, which the console shares). t(key, vars)
// fills {name} placeholders; a key missing from a language falls back to Chinese. DOM-free.

export const LANGS = { 'zh-CN': '简体中文', en: 'English' };
export const DEFAULT_LANG = 'zh-CN';

export const CATALOG = {
  'zh-CN': {
    'page.title': 'kefu · 微信扫码登录',
    'lang.switch': 'English',
    'conn.idle': '未连接',
    'conn.connecting': '连接中…',
    'conn.online': '已连接',
    'conn.done': '已完成',
    'conn.refused': '服务器拒绝了连接（{code}）',
    'conn.retrying': '连接已断开（{code}），正在重试',
    'head.title': '微信扫码登录',
    'head.lead': '用微信扫一扫二维码即可登录，扫码后本页会立即收到通知。',
    'qr.get': '获取二维码',
    'qr.alt': '微信登录二维码',
    'qr.expired_badge': '已过期',
    'qr.expires_in': '有效期剩余',
    'qr.refresh': '换一个二维码',
    'qr.simulate': '模拟扫码（开发）',
    'qr.simulate_title': '仅限沙箱：假装微信已报告扫码',
    'qr.waiting_socket': '正在连接服务器…',
    'qr.binding': '正在关联本页与二维码…',
    'qr.bound': '请用微信扫码登录',
    'qr.reconnecting': '正在重新连接…',
    'qr.disconnected': '连接已断开',
    'qr.busy': '服务器繁忙，稍后自动重新关联…',
    'qr.invalid': '该二维码已失效，请获取新的二维码。',
    'qr.expired': '二维码已过期，请获取新的二维码。',
    'result.title': '登录成功',
    'result.signed_in_as': '当前登录：',
    'result.token': '令牌（token）',
    'pushes.title': '推送到本页的消息',
    'error.too_many': '服务器因错误过多关闭了本页的连接。请获取新的二维码重试。',
    'error.qrcode_http': '无法获取二维码（HTTP {status}）',
    'error.qrcode': '无法获取二维码：{message}',
    'error.simulate_http': '模拟扫码失败（HTTP {status}）',
  },
  en: {
    'page.title': 'kefu · WeChat QR login',
    'lang.switch': '简体中文',
    'conn.idle': 'Not connected',
    'conn.connecting': 'Connecting…',
    'conn.online': 'Connected',
    'conn.done': 'Done',
    'conn.refused': 'Refused by the server ({code})',
    'conn.retrying': 'Disconnected ({code}) – retrying',
    'head.title': 'Log in with WeChat',
    'head.lead': 'Scan the QR code with WeChat (扫码登录). This page is told the moment you have.',
    'qr.get': 'Get QR code',
    'qr.alt': 'WeChat login QR code',
    'qr.expired_badge': 'Expired',
    'qr.expires_in': 'Expires in',
    'qr.refresh': 'New QR code',
    'qr.simulate': 'Simulate scan (dev)',
    'qr.simulate_title': 'Sandbox only: pretend WeChat reported a scan',
    'qr.waiting_socket': 'Waiting for the socket…',
    'qr.binding': 'Linking this page to the QR code…',
    'qr.bound': 'Scan with WeChat to log in',
    'qr.reconnecting': 'Reconnecting…',
    'qr.disconnected': 'Disconnected',
    'qr.busy': 'Server busy – linking again shortly…',
    'qr.invalid': 'This QR code is no longer valid – get a new one.',
    'qr.expired': 'QR code expired – get a new one.',
    'result.title': 'Logged in',
    'result.signed_in_as': 'Signed in as',
    'result.token': 'Token',
    'pushes.title': 'Pushed to this page',
    'error.too_many': 'The server closed this page for too many errors. Get a new QR code to try again.',
    'error.qrcode_http': 'Could not get a QR code (HTTP {status})',
    'error.qrcode': 'Could not get a QR code: {message}',
    'error.simulate_http': 'Simulated scan failed (HTTP {status})',
  },
};

let current = DEFAULT_LANG;

export function setLang(lang) {
  current = CATALOG[lang] ? lang : DEFAULT_LANG;
  return current;
}

export function lang() { return current; }

export function t(key, vars = {}) {
  const text = CATALOG[current][key] ?? CATALOG[DEFAULT_LANG][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => (vars[k] === undefined || vars[k] === null ? '' : String(vars[k])));
}
