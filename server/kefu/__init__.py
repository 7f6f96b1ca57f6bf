"""kefu: real-time customer-service chat and push server for WeChat mini-programs and the web."""

__version__ = "0.1.0"
