"""Alembic environment: kefu passes the database URL in; both SQLite and MySQL run these scripts."""

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config


def run() -> None:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, render_as_batch=conn.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()


run()
