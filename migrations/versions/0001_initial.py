"""Initial schema: messages, conversations, agents, users, tokens.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MYSQL_OPTS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=False),
        sa.Column("openid", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(8), nullable=False),
        sa.Column("agent_id", sa.Integer, nullable=True),
        sa.Column("agent_name", sa.String(64), nullable=True),
        sa.Column("sender_key", sa.String(80), nullable=False),
        sa.Column("cmid", sa.String(64), nullable=True),
        sa.Column("body", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("sender_key", "cmid", name="uq_messages_sender_cmid"),
        **MYSQL_OPTS,
    )
    op.create_index("ix_messages_openid_id", "messages", ["openid", "id"])
    op.create_table(
        "conversations",
        sa.Column("openid", sa.String(64), primary_key=True),
        sa.Column("last_message_id", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("agent_read_upto", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("user_read_upto", sa.BigInteger, nullable=False, server_default="0"),
        **MYSQL_OPTS,
    )
    op.create_index("ix_conversations_last", "conversations", ["last_message_id"])
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        **MYSQL_OPTS,
    )
    op.create_table(
        "users",
        sa.Column("openid", sa.String(64), primary_key=True),
        sa.Column("unionid", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_login_at", sa.BigInteger, nullable=False),
        **MYSQL_OPTS,
    )
    op.create_table(
        "tokens",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("openid", sa.String(64), nullable=True),
        sa.Column("agent_id", sa.Integer, nullable=True),
        sa.Column("agent_name", sa.String(64), nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        **MYSQL_OPTS,
    )


def downgrade() -> None:
    for table in ("tokens", "users", "agents", "conversations", "messages"):
        op.drop_table(table)
