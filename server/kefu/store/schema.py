"""The column names queries use. The schema itself (types, keys, indexes) is in migrations/."""

from __future__ import annotations

import sqlalchemy as sa


def _table(name: str, *columns: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in columns))


messages = _table("messages", "id", "openid", "sender", "agent_id", "agent_name", "sender_key", "cmid",
                  "body", "ts", "delivered", "kind", "meta")
conversations = _table("conversations", "openid", "last_message_id", "agent_read_upto", "user_read_upto")
agents = _table("agents", "id", "name", "password_hash", "created_at", "is_admin", "disabled")
users = _table("users", "openid", "unionid", "created_at", "last_login_at")
tokens = _table("tokens", "digest", "role", "openid", "agent_id", "agent_name", "expires_at", "admin")
meta = _table("kefu_meta", "k", "v")

# The team console (migration 0005).
desk_conversations = _table("conversations", "openid", "last_message_id", "agent_read_upto",
                            "user_read_upto", "status", "assignee_id", "status_at")
agent_limits = _table("agents", "id", "name", "disabled", "is_admin", "max_open")
profiles = _table("profiles", "openid", "name", "avatar", "phone", "tags", "attrs", "nickname",
                  "user_avatar", "updated_at")
avatars = _table("avatars", "openid", "mime", "data", "updated_at")
canned_replies = _table("canned_replies", "id", "shortcut", "body", "created_at", "updated_at")

# Pictures and WeChat's customer-service channel (migration 0006).
images = _table("images", "id", "openid", "uploader", "source", "mime", "width", "height", "bytes",
                "thumb_mime", "thumb_width", "thumb_height", "created_at")
image_blobs = _table("image_blobs", "image_id", "variant", "data")
cs_windows = _table("cs_windows", "openid", "opened_at", "expires_at", "quota", "used", "last_action_at",
                    "updated_at")
subscribe_consents = _table("subscribe_consents", "openid", "template_id", "granted", "updated_at")
