"""Agent accounts: admin and disabled flags; tokens carry the admin flag and are found by agent.

`agents.is_admin` may use the admin API; `agents.disabled` may not log in and has no live tokens.
`tokens.admin` is the flag a token was issued with; `ix_tokens_agent_id` lets a password change
revoke every token of one agent. On SQLite `agents` is rebuilt with AUTOINCREMENT so the id of a
deleted agent is never given to a new one (a token that outlived its revocation must not resolve
to someone else); MySQL's AUTO_INCREMENT never reuses ids anyway.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    extra = {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": True}} if sqlite else {}
    with op.batch_alter_table("agents", **extra) as t:  # type: ignore[arg-type]
        t.add_column(sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()))
        t.add_column(sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("tokens") as t:
        t.add_column(sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_tokens_agent_id", "tokens", ["agent_id"])


def downgrade() -> None:
    op.drop_index("ix_tokens_agent_id", "tokens")
    with op.batch_alter_table("tokens") as t:
        t.drop_column("admin")
    with op.batch_alter_table("agents") as t:
        t.drop_column("disabled")
        t.drop_column("is_admin")
