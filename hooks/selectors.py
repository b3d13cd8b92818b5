"""Reads ("selectors take care of the pull"): access control for hooks, in one place (every
management route fetches hooks through hook_get_for_user), and the read queries the API and the
UI share: outcome counts, the live state, a hook's keys, the request log."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from typing import Any

from django.db.models import Count, F, Q, QuerySet
from django.http import Http404

from hooks.diff import json_diff
from hooks.models import MAIN_ROOM, Hook, Key, Request, State


def hook_list_for_user(*, user: Any) -> QuerySet[Hook]:
    if user is None or not user.is_authenticated:
        return Hook.objects.none()
    return Hook.objects.filter(owner=user)


def hook_get_for_user(*, user: Any, hook_id: object, for_update: bool = False) -> Hook:
    """`user`'s hook `hook_id`, else Http404 (DRF answers 404).

    Another user's hook, a missing one and a malformed id all look the same: never 403, so
    hook ids cannot be probed. `for_update` locks the row (inside a transaction).
    """
    try:
        pk = hook_id if isinstance(hook_id, uuid.UUID) else uuid.UUID(str(hook_id))
    except (TypeError, ValueError):
        raise Http404("No such hook.") from None
    hooks = hook_list_for_user(user=user)
    if for_update:
        hooks = hooks.select_for_update()
    hook = hooks.filter(pk=pk).first()
    if hook is None:
        raise Http404("No such hook.")
    return hook


def request_counts(*, hook: Hook) -> dict[str, int]:
    """How many of the hook's requests there are of each outcome (every outcome, 0 included)."""
    counts = dict.fromkeys(Request.Outcome.values, 0)
    rows = Request.objects.filter(hook=hook).values_list("outcome").annotate(n=Count("id"))
    counts.update({outcome: n for outcome, n in rows})
    return counts


def live_state_get(*, hook: Hook, room: str = MAIN_ROOM) -> State | None:
    """A room's live state with its version, or None before the first publish or the room's
    first write."""
    if hook.live_version_id is None:
        return None
    states = State.objects.filter(version_id=hook.live_version_id, room=room)
    return states.select_related("version").first()


def key_get_for_hook(*, hook: Hook, key_id: object) -> Key | None:
    """The hook's key `key_id` (revoked ones too), else None: a key of another hook is none."""
    text = str(key_id)
    if not text.isascii() or not text.isdigit() or len(text) > 9:  # a malformed id is none too
        return None
    return Key.objects.filter(hook=hook, pk=int(text)).first()


def log_rows(*, hook: Hook) -> QuerySet[Request]:
    """The hook's log rows with the ids RequestLogSerializer shows for linked rows."""
    return Request.objects.filter(hook=hook).annotate(
        duplicate_of_uuid=F("duplicate_of__uuid"), resent_from_uuid=F("resent_from__uuid")
    )


_MISSING = object()


def _json(text: str | None) -> Any:
    return _MISSING if text is None else json.loads(text)


def log_entries(*, hook: Hook, rows: Sequence[Request]) -> list[Request]:
    """Decorate a page of rows for RequestLogSerializer: the body as text or base64, the state
    after each one and its diff to the state before it.

    The state before seq N of a room is the state after seq N - 1 of that room: the rows on
    the page give most of them, one more query fetches the rest (a filtered page has gaps).
    """
    on_page: dict[tuple[str, int], str | None] = {
        (row.room, row.seq): row.state_after for row in rows if row.seq is not None
    }
    wanted = {
        (row.room, row.seq - 1) for row in rows if row.seq is not None and row.seq > 1
    } - on_page.keys()
    before: dict[tuple[str, int], str | None] = dict(on_page)
    for room in {row.room for row in rows}:
        before[(room, 0)] = "null"
    if wanted:
        where = Q()
        for room, seq in wanted:
            where |= Q(room=room, seq=seq)
        rows_before = Request.objects.filter(where, hook=hook).order_by()
        for earlier in rows_before.only("room", "seq", "state_after"):
            if earlier.seq is not None:
                before[(earlier.room, earlier.seq)] = earlier.state_after
    for row in rows:
        body = bytes(row.body)
        try:
            row.body_text, row.body_encoding = body.decode("utf-8"), "utf-8"  # type: ignore[attr-defined]
        except UnicodeDecodeError:
            row.body_text, row.body_encoding = base64.b64encode(body).decode(), "base64"  # type: ignore[attr-defined]
        after = _json(row.state_after) if row.outcome != Request.Outcome.PENDING else _MISSING
        previous = _json(before.get((row.room, row.seq - 1))) if row.seq is not None else _MISSING
        row.state_after_value = None if after is _MISSING else after  # type: ignore[attr-defined]
        row.state_diff = (  # type: ignore[attr-defined]
            None if after is _MISSING or previous is _MISSING else json_diff(previous, after)
        )
    return list(rows)


def log_entry_get(*, hook: Hook, request_id: object) -> Request | None:
    """One decorated log entry of `hook` by its uuid, else None (a malformed id too)."""
    try:
        wanted = request_id if isinstance(request_id, uuid.UUID) else uuid.UUID(str(request_id))
    except ValueError:
        return None
    row = log_rows(hook=hook).filter(uuid=wanted).first()
    if row is None:
        return None
    (entry,) = log_entries(hook=hook, rows=[row])
    return entry
