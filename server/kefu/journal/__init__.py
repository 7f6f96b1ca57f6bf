"""Durable intake of accepted messages and the background writer that batches them into the database."""
