"""What the UI's pages and panels share: the hook's URLs, pretty JSON, request log rows."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from hooks.models import MAIN_ROOM, Hook, Key, Request
from hooks.selectors import live_state_get
from hooks.serializers import key_url
from webreducer import origins

LOG_PAGE = 40
# The state panel and request details show at most this much pretty-printed JSON; the read URL
# serves the whole of it.
MAX_SHOWN_CHARS = 200_000
PREVIEW_CHARS = 120


def pretty_json(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    if len(text) > MAX_SHOWN_CHARS:
        return text[:MAX_SHOWN_CHARS] + "\n… (cut here; the read URL serves all of it)"
    return text


def pretty_json_text(text: str | None) -> str:
    if text is None:
        return ""
    try:
        return pretty_json(json.loads(text))
    except ValueError:
        return text[:MAX_SHOWN_CHARS]


def usable_key(hook: Hook, kind: str) -> Key | None:
    for key in hook.keys.all():
        if key.kind == kind and key.is_usable:
            return key
    return None


def curl_line(key: Key | None, body: str = '{"number": 1}') -> str:
    if key is None:
        return ""
    return (
        f"curl -X POST {shlex.quote(key_url(key))} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )


@dataclass
class LiveState:
    seq: int
    version: int | None
    text: str
    size: int


def live_state(hook: Hook, room: str = MAIN_ROOM) -> LiveState:
    """A room's live state as the state panel shows it."""
    state = live_state_get(hook=hook, room=room)
    if state is None:
        return LiveState(seq=0, version=None, text="null", size=4)
    return LiveState(
        seq=state.seq,
        version=state.version.number,
        text=pretty_json_text(state.value),
        size=len(state.value.encode()),
    )


def body_preview(row: Request) -> str:
    body = bytes(row.body)
    if not body:
        return ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"({len(body)} bytes, binary)"
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def log_page(
    hook: Hook,
    *,
    before: int | None = None,
    outcome: str = "",
    path: str = "",
    room: str | None = None,
) -> tuple[list[Request], bool]:
    """The newest LOG_PAGE rows (older than id `before`; of one outcome, under a path prefix,
    of one room), and whether there are more."""
    rows = Request.objects.filter(hook=hook).defer("state_after", "console", "headers", "response")
    if room is not None:
        rows = rows.filter(room=room)
    if outcome in Request.Outcome.values:
        rows = rows.filter(outcome=outcome)
    if path:
        rows = rows.filter(path__startswith=path.lstrip("/"))
    if before is not None:
        rows = rows.filter(id__lt=before)
    page = list(rows.order_by("-id")[: LOG_PAGE + 1])
    for row in page:
        row.preview = body_preview(row)  # type: ignore[attr-defined]
    return page[:LOG_PAGE], len(page) > LOG_PAGE


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def public_root() -> str:
    """Where the write and read URLs live (webreducer/origins.py): not the app's origin when
    WR_PUBLIC_ORIGIN is set."""
    return origins.public_root()
