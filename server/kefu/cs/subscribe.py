"""The "reply received" subscribe message's data, from KEFU_SUBSCRIBE_DATA. Pure.

Each template has its own keywords (`thing1`, `time2`, …: chosen when the template is added in
the mini-program console), so the mapping is a setting: keyword → text with `{text}` (the reply,
or "[图片]"), `{agent}` (the agent's name) and `{time}` (`YYYY-MM-DD HH:MM`, server time) filled
in. Values are cut to `MAX_VALUE` characters: a `thing` keyword holds at most 20 (what WeChat does
with a longer one is not documented in the sources kefu has; cutting is safe either way).
"""

from __future__ import annotations

import json
import time

MAX_VALUE = 20


def template_data(spec: str, *, text: str, agent: str, now: float | None = None) -> dict[str, str]:
    fields = json.loads(spec)
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() if now is None else now))
    values = {"text": " ".join(text.split()), "agent": agent, "time": stamp}
    out: dict[str, str] = {}
    for key, pattern in fields.items():
        value = pattern
        for name, v in values.items():
            value = value.replace("{" + name + "}", v)
        out[key] = value if len(value) <= MAX_VALUE else value[:MAX_VALUE - 1] + "…"
    return out
