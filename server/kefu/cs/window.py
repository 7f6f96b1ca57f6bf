"""When WeChat lets kefu write to a user by customer-service message (wechat.md §6, §6b). Pure.

After the user sends a message in WeChat's customer-service chat: up to 5 messages within 48
hours. After the user enters that chat (`user_enter_tempsession`): 2 within a minute. Each new user
action resets the quota. kefu keeps its own count (so it does not call WeChat to hear "no"), and
takes WeChat's word over it whenever WeChat answers 45015 (out of the window) or 45047 (quota
used). "Typing…" may be shown only within 30 s of the user's last action, and lasts 15 s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MESSAGE_WINDOW_MS = 48 * 3600 * 1000
MESSAGE_QUOTA = 5
ENTER_WINDOW_MS = 60 * 1000
ENTER_QUOTA = 2
TYPING_RECENT_MS = 30 * 1000
TYPING_LASTS_MS = 15 * 1000

OUT_OF_WINDOW = 45015
QUOTA_USED = 45047
NO_CONSENT = 43101


@dataclass(frozen=True, slots=True)
class Window:
    openid: str
    opened_at: int  # ms
    expires_at: int  # ms
    quota: int
    used: int
    last_action_at: int  # ms: the user's last message or entry (typing is allowed shortly after)

    def is_open(self, now: int) -> bool:
        return now < self.expires_at and self.used < self.quota

    def left(self, now: int) -> int:
        return max(0, self.quota - self.used) if now < self.expires_at else 0

    def may_type(self, now: int) -> bool:
        return self.is_open(now) and now - self.last_action_at < TYPING_RECENT_MS


def after_message(openid: str, now: int) -> Window:
    """The user wrote: 5 messages within 48 hours, counted afresh."""
    return Window(openid, now, now + MESSAGE_WINDOW_MS, MESSAGE_QUOTA, 0, now)


def after_enter(prev: Window | None, openid: str, now: int) -> Window:
    """The user opened the chat: 2 messages within a minute — unless a longer window with more
    left is open already, which stays (only its last action moves)."""
    short = Window(openid, now, now + ENTER_WINDOW_MS, ENTER_QUOTA, 0, now)
    if prev is not None and prev.is_open(now) and prev.expires_at > short.expires_at \
            and prev.left(now) >= ENTER_QUOTA:
        return replace(prev, last_action_at=now)
    return short


def after_error(w: Window, errcode: int, now: int) -> Window:
    """WeChat's answer wins over kefu's count."""
    if errcode == OUT_OF_WINDOW:
        return replace(w, expires_at=min(w.expires_at, now))
    if errcode == QUOTA_USED:
        return replace(w, used=w.quota)
    return w


def reach(w: Window | None, connected: bool, template: bool, consents: int, now: int) -> dict[str, object]:
    """What the console shows per conversation (docs/protocol.md §12)."""
    wechat = ({"until": w.expires_at, "left": w.left(now)} if w is not None and w.is_open(now) else None)
    return {"connected": connected, "wechat": wechat,
            "subscribe": {"template": template, "consents": consents if template else 0}}
