"""The servers kefu is measured against, written plainly on the `websockets` library.

They are the floor of what Python does on this machine for the same job, not products: no
storage, no auth beyond the seed dialect, nothing kefu's guarantees need. Each listens on
127.0.0.1 only and stops by itself after `--max-seconds`.
"""
