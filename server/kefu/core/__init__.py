"""The pure core: per-socket protocol state and the routing rules, drivable without sockets."""
