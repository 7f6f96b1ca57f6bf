"""WebSocket adapters: turn socket events into calls on the session and the node."""
