"""Durability: the deployment's epoch and id high-water mark, per-message `delivered`, and a
non-unique (sender, cmid) index.

Dedupe is a window (KEFU_DEDUPE_TTL), decided by Redis or, embedded, inside the writer's
transaction; a unique index would make the database silently refuse a cmid reused after the
window instead of storing the message it was acked as.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MYSQL_OPTS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "kefu_meta",
        sa.Column("k", sa.String(32), primary_key=True),
        sa.Column("v", sa.String(64), nullable=False),
        **MYSQL_OPTS,
    )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("delivered", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.drop_constraint("uq_messages_sender_cmid", type_="unique")
        batch.create_index("ix_messages_sender_cmid", ["sender_key", "cmid"])


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_sender_cmid")
        batch.create_unique_constraint("uq_messages_sender_cmid", ["sender_key", "cmid"])
        batch.drop_column("delivered")
    op.drop_table("kefu_meta")
