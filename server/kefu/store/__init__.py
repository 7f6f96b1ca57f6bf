"""Persistence: one SQLAlchemy Core schema, served by SQLite (embedded) or MySQL/MariaDB (aiomysql)."""
