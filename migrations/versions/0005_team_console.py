"""The team console: conversation status and assignee, per-agent limits, customer profiles (with
a user-set avatar), canned replies.

Assignment lives on the conversation row so that a claim is one conditional UPDATE (exactly one of
two racing claims changes the row, on any node). `status`: open (waiting), assigned, resolved.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MYSQL_OPTS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="open"))
        batch.add_column(sa.Column("assignee_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("status_at", sa.BigInteger, nullable=False, server_default="0"))
        batch.create_index("ix_conversations_assignee", ["assignee_id", "status"])
        batch.create_index("ix_conversations_status", ["status", "last_message_id"])
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("max_open", sa.Integer, nullable=True))
    op.create_table(
        "profiles",
        sa.Column("openid", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=True),
        sa.Column("avatar", sa.String(512), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("tags", sa.Text, nullable=True),
        sa.Column("attrs", sa.Text, nullable=True),
        sa.Column("nickname", sa.String(64), nullable=True),
        sa.Column("user_avatar", sa.String(512), nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False, server_default="0"),
        **MYSQL_OPTS,
    )
    op.create_table(
        "avatars",
        sa.Column("openid", sa.String(64), primary_key=True),
        sa.Column("mime", sa.String(32), nullable=False),
        sa.Column("data", sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql"), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        **MYSQL_OPTS,
    )
    op.create_table(
        "canned_replies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("shortcut", sa.String(32), nullable=False, unique=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        **MYSQL_OPTS,
    )


def downgrade() -> None:
    op.drop_table("canned_replies")
    op.drop_table("avatars")
    op.drop_table("profiles")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("max_open")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_index("ix_conversations_status")
        batch.drop_index("ix_conversations_assignee")
        batch.drop_column("status_at")
        batch.drop_column("assignee_id")
        batch.drop_column("status")
