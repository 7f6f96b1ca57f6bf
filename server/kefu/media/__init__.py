"""Pictures in chat: checking, storing and serving them (docs/protocol.md §11)."""
