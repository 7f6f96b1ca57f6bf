// The chat page: all behaviour is in ./logic.js (tested under Node); this file wires it to Page().
var logic = require('./logic.js');

Page({
  data: { items: [], input: '', status: 'idle', statusText: '', hasOlder: false, scrollInto: '', typingText: '',
    servingText: '', notice: '', i18n: {} },

  onLoad: function () {
    var page = this;
    this.chat = logic.createChatPage({
      kefu: getApp().globalData.kefu,
      setData: function (d) { page.setData(d); }
    });
    this.chat.onLoad();
  },
  onShow: function () { this.chat.onShow(); },
  onHide: function () { this.chat.onHide(); },
  onUnload: function () { this.chat.onUnload(); },

  onInput: function (e) { this.chat.onInput(e.detail.value); },
  onSend: function () { this.chat.send(); },
  onRetry: function (e) {
    var cmid = e.currentTarget.dataset.cmid;
    if (e.currentTarget.dataset.state === 'failed') this.chat.retry(cmid);
  },
  onLoadOlder: function () { this.chat.loadOlder(); },
  onChooseImage: function () { this.chat.chooseImage(); },
  onPreview: function (e) { this.chat.preview(e.currentTarget.dataset.id); },
  onStatusTap: function () { this.chat.reconnect(); }
});
