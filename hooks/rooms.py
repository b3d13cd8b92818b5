"""Rooms: which of a hook's states a request folds into (SPEC §1 "Rooms").

A request's room is chosen once, when it is stored: by the code's `room(request, secrets)` in
the warm sandbox (before the responder, so `request.room` is set there), else by `?room=`. The
main room is stored as "" (never a valid name), so every index and constraint over
(hook, room, …) holds for it too; the API and the sandbox show it as None. A named room's state
row is created by its first write, which is where the rooms-per-hook limit is enforced.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.db import connection

from hooks.masking import mask_error
from hooks.models import MAIN_ROOM, Hook, State, Version
from hooks.request_rows import StoredRequest
from sandbox import Session

MAX_NAME = 200
NAME = re.compile(r"[A-Za-z0-9._:-]{1,200}")
RULES = f"1-{MAX_NAME} characters of A-Z a-z 0-9 . _ : -"


class RoomRefused(Exception):
    """The request cannot go to a room: `status` 400 (a bad name, `room` failed) or 429 (the
    hook has as many rooms as its limit)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def name_error(name: object) -> str | None:
    """Why `name` is not a room name, or None when it is one (None itself is the main room)."""
    if name is None:
        return None
    if not isinstance(name, str):
        return f"a room name must be a string or None, not {type(name).__name__}"
    if not NAME.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "…"
        return f"invalid room name {shown!r}: a room name is {RULES}"
    return None


def stored_room(name: str | None) -> str:
    """The stored form of a checked name: "" for the main room."""
    return MAIN_ROOM if name is None else name


def shown_room(room: str) -> str | None:
    """The stored form back as the API and user code see it."""
    return room or None


def param_room(params: dict[str, list[str]] | Any) -> str:
    """The room a read, a live socket or a hook without `room` names with `?room=`: checked,
    in its stored form. An empty `?room=` is the main room."""
    values = params.get("room") if isinstance(params, dict) else None
    name = values[0] if isinstance(values, list) and values else None
    if name in (None, ""):
        return MAIN_ROOM
    error = name_error(name)
    if error is not None:
        raise RoomRefused(400, "invalid_room", error)
    return str(name)


def room_route(
    version: Version, sandbox: Session | None, request: StoredRequest
) -> str | dict[str, str]:
    """The room the version's code puts `request` in (stored form), or the error that makes
    it fail in the main room: a history request is never dropped."""
    if not version.defines("room"):
        try:
            return param_room(request.query)
        except RoomRefused as refused:  # the previous code chose its room, not `?room=`
            return {"type": "InvalidRoom", "message": refused.message, "traceback": ""}
    assert sandbox is not None
    payload = json.loads(request.payload_json())
    payload["room"] = None
    result = sandbox.room(payload)
    if not result.ok:
        return mask_error(result.error, sandbox.secrets) or {}
    problem = name_error(result.value)
    if problem is not None:
        return {"type": "InvalidRoom", "message": f"room returned {problem}", "traceback": ""}
    return stored_room(result.value)


def max_rooms(hook: Hook) -> int:
    return int(hook.limit("max_rooms", settings.WR_MAX_ROOMS))


# The (version id, room) pairs whose state row this process has seen lately: a write to one
# of them skips room_open's query. Only a hint: the write's INSERT stores nothing when the row
# has gone since (the room was deleted; hooks.writes._insert_sql), and the write forgets the
# pair and opens the room again (counted against the limit, as any new room). Emptied when full.
_seen: dict[tuple[int, str], None] = {}
SEEN_MAX = 10_000


def room_seen(version_id: int, room: str) -> bool:
    """Whether this process saw the room's state row lately (the main room's always exists)."""
    return room == MAIN_ROOM or (version_id, room) in _seen


def room_remember(version_id: int, room: str) -> None:
    if len(_seen) >= SEEN_MAX:
        _seen.clear()
    _seen[version_id, room] = None


def room_forget(version_id: int, room: str) -> None:
    _seen.pop((version_id, room), None)


def room_open(*, hook: Hook, version_id: int, room: str) -> None:
    """Make sure the live version has a state row for `room` before a request of it is stored,
    or refuse it (429) when the hook already has its limit of rooms. Autocommitted statements,
    none for the main room (its row exists from the version's creation) or a room seen lately
    (`room_seen`). Two first writes of two new rooms at the same moment may both pass a limit
    that has room for one: the limit bounds how many rooms a hook can make, not to the exact
    row."""
    if room_seen(version_id, room):
        return
    if State.objects.filter(version_id=version_id, room=room).exists():
        room_remember(version_id, room)
        return
    limit = max_rooms(hook)
    count = State.objects.filter(version_id=version_id).order_by()[:limit].count()
    if count >= limit:
        raise RoomRefused(
            429,
            "too_many_rooms",
            f"This hook already has {limit} rooms, its limit; delete rooms or use fewer names.",
        )
    state_row_ensure(hook_id=str(hook.pk), version_id=version_id, room=room)
    room_remember(version_id, room)


def _hook_column(hook_id: str) -> Any:
    """The hook id as the database stores it (SQLite keeps UUIDs as 32 hex characters)."""
    return Hook._meta.pk.get_db_prep_value(hook_id, connection)  # type: ignore[union-attr]


def state_row_ensure(*, hook_id: str, version_id: int, room: str) -> None:
    """The (version, room) state row, created if missing; a concurrent creator is no error."""
    state_rows_ensure(hook_id=hook_id, version_id=version_id, rooms=[room])


def state_rows_ensure(*, hook_id: str, version_id: int, rooms: list[str]) -> None:
    """`state_row_ensure` of several rooms: one statement on PostgreSQL."""
    table = State._meta.db_table
    hook = _hook_column(hook_id)
    # Only model metadata is interpolated; values go as parameters.
    insert = f"INSERT INTO {table} (version_id, hook_id, room, value, seq, updated_at) "
    conflict = " ON CONFLICT (version_id, room) DO NOTHING"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                insert + "SELECT %s, %s, r, 'null', 0, CURRENT_TIMESTAMP "
                "FROM unnest(%s::text[]) AS r" + conflict,
                [version_id, hook, rooms],
            )
        else:
            cursor.executemany(
                insert + "VALUES (%s, %s, %s, 'null', 0, CURRENT_TIMESTAMP)" + conflict,
                [[version_id, hook, room] for room in rooms],
            )


def room_delete(*, hook: Hook, room: str) -> bool:
    """Delete one named room: its state in every version and its whole history (the ledger
    entries of its requests go with them). Waits for a batch of the room in flight. Returns
    False when the hook has no such room."""
    from django.db import transaction

    from hooks import broadcast
    from hooks.models import Request

    with transaction.atomic():
        # The live worker and a rebuild hold these rows while they fold the room.
        states = State.objects.select_for_update().filter(hook=hook, room=room).order_by("id")
        found = bool(list(states.values_list("pk", flat=True)))
        history = Request.objects.filter(hook=hook, room=room)
        found = found or history.exists()
        if not found:
            return False
        with connection.cursor() as cursor:
            # Rows that name these as duplicates of theirs lose the link, not themselves.
            table = Request._meta.db_table
            cursor.execute(
                f"UPDATE {table} SET duplicate_of_id = NULL WHERE duplicate_of_id IN "  # noqa: S608
                f"(SELECT id FROM {table} WHERE hook_id = %s AND room = %s)",
                [hook.pk, room],
            )
        history.delete()
        State.objects.filter(hook=hook, room=room).delete()
        hook_id = str(hook.pk)
        transaction.on_commit(lambda: broadcast.state_changed(hook_id=hook_id, seq=0, room=room))
    return True
