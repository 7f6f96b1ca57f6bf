"""Pictures in chat, and WeChat's customer-service channel.

`images`: one row per stored picture (which conversation it belongs to, who sent it, its size);
`image_blobs`: the bytes, when pictures are kept in the database (KEFU_MEDIA_STORE=database: every
node serves every picture) rather than in a local directory. `cs_windows`: per user, until when
WeChat lets kefu answer by customer-service message and how many of the window's messages are
used. `subscribe_consents`: how many "reply received" subscribe messages each user allowed.
The media secret that signs image URLs lives in `kefu_meta` (k = `media_secret`).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MYSQL_OPTS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("openid", sa.String(64), nullable=False),
        sa.Column("uploader", sa.String(80), nullable=False),
        sa.Column("source", sa.String(16), nullable=False, server_default="upload"),
        sa.Column("mime", sa.String(32), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False),
        sa.Column("thumb_mime", sa.String(32), nullable=False),
        sa.Column("thumb_width", sa.Integer, nullable=False),
        sa.Column("thumb_height", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Index("ix_images_created_at", "created_at"),
        sa.Index("ix_images_openid", "openid"),
        **MYSQL_OPTS,
    )
    op.create_table(
        "image_blobs",
        sa.Column("image_id", sa.String(32), primary_key=True),
        sa.Column("variant", sa.String(8), primary_key=True),
        sa.Column("data", sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql"), nullable=False),
        **MYSQL_OPTS,
    )
    op.create_table(
        "cs_windows",
        sa.Column("openid", sa.String(64), primary_key=True),
        sa.Column("opened_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("quota", sa.Integer, nullable=False),
        sa.Column("used", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_action_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        **MYSQL_OPTS,
    )
    op.create_table(
        "subscribe_consents",
        sa.Column("openid", sa.String(64), primary_key=True),
        sa.Column("template_id", sa.String(128), primary_key=True),
        sa.Column("granted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        **MYSQL_OPTS,
    )


def downgrade() -> None:
    op.drop_table("subscribe_consents")
    op.drop_table("cs_windows")
    op.drop_table("image_blobs")
    op.drop_table("images")
