// Opens the kefu connection once, at launch; pages reach it through getApp().globalData.kefu.
var getKefu = require('./utils/kefu.js').getKefu;

App({
  globalData: {
    kefu: null,       // the client (utils/kefu.js)
    socketTask: null  // the current wx.connectSocket SocketTask (null while disconnected)
  },

  onLaunch: function () {
    var kefu = getKefu();
    this.globalData.kefu = kefu;
    kefu.start({ app: this }); // login → unread badge → history → socket
  },
  onShow: function () {
    if (this.globalData.kefu) this.globalData.kefu.onAppShow(); // reconnect at once if the socket died
  },
  onHide: function () {
    if (this.globalData.kefu) this.globalData.kefu.onAppHide();
  }
});
