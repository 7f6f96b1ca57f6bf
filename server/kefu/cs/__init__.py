"""WeChat's own customer-service channel: the user's messages from WeChat's chat window in, agents'
replies out by customer-service message (or one subscribe message) while the user is not connected
(docs/wechat-channel.md)."""
