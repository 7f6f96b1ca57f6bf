// Home ("me") page view data, from the kefu client's state. Pure, so it is testable anywhere.

var STATUS_TEXT = {
  idle: '未连接', connecting: '连接中…', open: '已连接', offline: '已断开，正在重连',
  blocked: '被服务器拒绝', stopped: '已停止'
};

function homeData(state, config) {
  return {
    openid: state.openid || '（登录中）',
    status: state.status,
    statusText: STATUS_TEXT[state.status] || state.status,
    unread: state.unread,
    unreadText: state.unread > 0 ? String(state.unread) : '',
    queued: state.outbox.filter(function (e) { return e.state === 'pending'; }).length,
    server: config.baseUrl
  };
}

module.exports = { homeData: homeData, STATUS_TEXT: STATUS_TEXT };
