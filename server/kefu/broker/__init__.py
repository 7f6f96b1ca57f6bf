"""Fan-out and message ids: one small interface, an in-process and a Redis implementation."""
