// Home ("me") page: who you are, the connection state, a button to the chat tab, and what backends
// pushed to this user (a toast as each arrives, the latest few listed).
var logic = require('./logic.js');
var t = require('../../i18n.js').t;

Page({
  data: { openid: '', status: 'idle', statusText: '', unread: 0, unreadText: '', queued: 0, server: '', pushes: [],
    i18n: {}, avatarUrl: '', nickname: '' },

  onLoad: function () {
    var page = this;
    var kefu = getApp().globalData.kefu;
    this.kefu = kefu;
    this.render = function () { page.setData(logic.homeData(kefu.getState(), kefu.config)); };
    kefu.on('change', this.render);
    // A tab page stays loaded while another tab is shown, so the toast shows wherever the user is.
    this.offPush = kefu.onPush(function (push) { wx.showToast(logic.pushToast(push)); });
    this.render();
  },
  onShow: function () {
    this.kefu.refreshBadge(); // a badge set while no tab page was on screen
    this.render();
  },
  onUnload: function () {
    this.kefu.off('change', this.render);
    this.offPush();
  },

  // The chosen avatar is a temporary local path: upload it (wx.uploadFile) for the team to see.
  onChooseAvatar: function (e) {
    var page = this;
    var path = e.detail && e.detail.avatarUrl;
    if (!path) return;
    this.setData({ avatarUrl: path });
    this.kefu.uploadAvatar(path).catch(function () { wx.showToast({ title: t('profile.failed'), icon: 'none' }); page.setData({ avatarUrl: '' }); });
  },
  // WeChat checks a nickname asynchronously on blur and may clear it: read it from the form submit.
  onSaveProfile: function (e) {
    var nickname = e.detail && e.detail.value ? e.detail.value.nickname : '';
    this.setData({ nickname: nickname || '' });
    this.kefu.setNickname(nickname).then(function () { wx.showToast({ title: t('profile.saved'), icon: 'success' }); },
      function () { wx.showToast({ title: t('profile.failed'), icon: 'none' }); });
  },

  openChat: function () { wx.switchTab({ url: '/pages/chat/chat' }); },
  // After a 4429 close the client waits for the user: tapping the status reconnects.
  onStatusTap: function () { if (this.kefu.status === 'blocked') this.kefu.reconnect(); }
});
