// Home ("me") page: who you are, the connection state and a button to the chat tab.
var homeData = require('./logic.js').homeData;

Page({
  data: { openid: '', status: 'idle', statusText: '', unread: 0, unreadText: '', queued: 0, server: '' },

  onLoad: function () {
    var page = this;
    var kefu = getApp().globalData.kefu;
    this.kefu = kefu;
    this.render = function () { page.setData(homeData(kefu.getState(), kefu.config)); };
    kefu.on('change', this.render);
    this.render();
  },
  onShow: function () {
    this.kefu.refreshBadge(); // a badge set while no tab page was on screen
    this.render();
  },
  onUnload: function () { this.kefu.off('change', this.render); },

  openChat: function () { wx.switchTab({ url: '/pages/chat/chat' }); }
});
