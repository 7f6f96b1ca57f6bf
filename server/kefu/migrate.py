"""Schema migrations through Alembic (scripts in migrations/), for SQLite and MySQL alike."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from kefu.config import Settings
from kefu.paths import bundled


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(bundled("migrations")))
    cfg.set_main_option("sqlalchemy.url", settings.sync_database_url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings) -> None:
    if not settings.mysql_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), "head")


def is_current(settings: Settings) -> bool:
    """Whether the database is at the newest migration (serve refuses to run on an old schema)."""
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    engine = create_engine(settings.sync_database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision() == head
    finally:
        engine.dispose()
