"""What a subscriber is sent: the live state through the hook's query, computed once per
(hook, version, seq, params) in each process however many subscribers share it."""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from django.conf import settings
from django.db.models import F

from hooks import public_calls, reads
from hooks.live import db
from hooks.models import MAIN_ROOM, Hook, Key, State

T = TypeVar("T")
# Canonical params: sorted names, each with its values in order.
Params = tuple[tuple[str, tuple[str, ...]], ...]

# Query string names that belong to the live protocol, never passed to the user's query.
RESERVED_PARAMS = ("since",)


def params_canonical(query: dict[str, list[str]]) -> Params:
    return tuple(
        sorted(
            (name, tuple(values)) for name, values in query.items() if name not in RESERVED_PARAMS
        )
    )


@dataclass(eq=False)
class Delivery:
    """One state as one subscriber group sees it. The wire forms are built once and shared."""

    seq: int
    version_id: int
    body_json: str  # JSON text
    status: int = 200

    @cached_property
    def ws_text(self) -> str:
        status = "" if self.status == 200 else f',"status":{self.status}'
        return f'{{"type":"state","seq":{self.seq}{status},"body":{self.body_json}}}'

    @cached_property
    def sse_bytes(self) -> bytes:
        status = "" if self.status == 200 else f',"status":{self.status}'
        data = f'{{"seq":{self.seq}{status},"body":{self.body_json}}}'
        # Newlines in JSON text are only whitespace; SSE joins data lines with "\n" again.
        lines = "".join(f"data: {line}\n" for line in data.replace("\r", "").split("\n"))
        return f"id: {self.seq}\nevent: state\n{lines}\n".encode()


@dataclass(frozen=True)
class Snapshot:
    """The live state of a hook, read in one go after a change."""

    hook: Hook  # with live_version loaded
    seq: int
    value: str
    usable_key_ids: frozenset[int]
    room: str = MAIN_ROOM  # part of what a delivery is shared by: two rooms can be at one seq


def snapshot_read(hook_id: str, key_ids: frozenset[int], room: str = MAIN_ROOM) -> Snapshot | None:
    """The room's live state and which of `key_ids` still serve it; None if the hook stopped
    serving altogether (deleted, paused by an operator, no live version). Two queries. A room
    the live version has no row for reads as null at seq 0."""
    state = (
        State.objects.select_related("hook", "version")
        .only(
            "seq",
            "value",
            "hook__id",
            "hook__is_paused",
            "hook__limits",
            "hook__secrets_version",
            "hook__live_version_id",
            "version__id",
            "version__code",
            "version__functions",
        )
        .filter(hook_id=hook_id, version_id=F("hook__live_version_id"), room=room)
        .first()
    )
    if state is None and room != MAIN_ROOM:
        return _unknown_room(hook_id, key_ids, room)
    if state is None or state.hook.is_paused:
        return None
    hook = state.hook
    hook.live_version = state.version
    usable = Key.objects.filter(
        pk__in=key_ids,
        hook_id=hook_id,
        kind=Key.Kind.READ,
        is_paused=False,
        revoked_at__isnull=True,
    ).values_list("pk", flat=True)
    return Snapshot(
        hook=hook, seq=state.seq, value=state.value, usable_key_ids=frozenset(usable), room=room
    )


def _unknown_room(hook_id: str, key_ids: frozenset[int], room: str) -> Snapshot | None:
    """A room that has no state yet: null at seq 0, if the hook serves at all (SPEC)."""
    main = snapshot_read(hook_id, key_ids)
    if main is None:
        return None
    return Snapshot(
        hook=main.hook, seq=0, value="null", usable_key_ids=main.usable_key_ids, room=room
    )


def connect_read(token: str, room: str = MAIN_ROOM) -> tuple[Key, Snapshot]:
    """The usable read key and its hook's live state of `room`; raises public_calls.PublicError
    (404, 503). An unknown room reads as null at seq 0."""
    key = public_calls.key_resolve(token=token, kind=Key.Kind.READ)
    hook = key.hook
    assert hook.live_version is not None
    state = (
        State.objects.only("seq", "value")
        .filter(version_id=hook.live_version.pk, room=room)
        .first()
    )
    if state is None and room != MAIN_ROOM:
        return key, Snapshot(
            hook=hook, seq=0, value="null", usable_key_ids=frozenset({key.pk}), room=room
        )
    if state is None:
        raise public_calls.PublicError(404, "not_found", "No active read key matches this URL.")
    return key, Snapshot(
        hook=hook, seq=state.seq, value=state.value, usable_key_ids=frozenset({key.pk}), room=room
    )


def delivery_compute(snapshot: Snapshot, params: Params) -> Delivery:
    hook = snapshot.hook
    version = hook.live_version
    assert version is not None
    if not version.defines("query"):
        # The stored JSON text as it is: no parse, no serialise.
        return Delivery(seq=snapshot.seq, version_id=version.pk, body_json=snapshot.value)
    body: Any
    try:
        result = reads.query_run(
            key=Key(hook=hook, kind=Key.Kind.READ),
            state_json=snapshot.value,
            params={name: list(values) for name, values in params},
        )
    except public_calls.PublicError as error:
        status, body = error.status, {"error": {"code": error.code, "message": error.message}}
    else:
        if result.ok:
            status, body = result.value["status"], result.value["body"]
        else:
            status, body = 500, reads.query_error(result.error)
    return Delivery(
        seq=snapshot.seq,
        version_id=version.pk,
        body_json=json.dumps(body, ensure_ascii=False),
        status=status,
    )


class SharedResults:
    """Results by key, computed once however many coroutines ask, kept for the newest entries.

    Keys carry the state's seq, so nothing is ever shared across states (the original product
    kept a subscriber's first result forever). The computation runs as a task of its own: a
    subscriber that disconnects while waiting does not cancel it for the others.
    """

    def __init__(self, size: int):
        self.size = size
        self.entries: OrderedDict[Any, asyncio.Task[Any]] = OrderedDict()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def get(self, key: Any, compute: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:  # tasks belong to one event loop
            self.entries.clear()
            self.loop = loop
        task = self.entries.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = loop.create_task(compute(), context=contextvars.Context())  # type: ignore[arg-type]
            self.entries[key] = task
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        else:
            self.entries.move_to_end(key)
        return await asyncio.shield(task)


_deliveries = SharedResults(size=1024)


async def delivery_for(snapshot: Snapshot, params: Params) -> Delivery:
    version = snapshot.hook.live_version
    assert version is not None
    if not version.defines("query"):
        params = ()  # every subscriber gets the same state: share one Delivery
    key = (str(snapshot.hook.pk), snapshot.room, version.pk, snapshot.seq, params)
    return await _deliveries.get(key, lambda: _compute(snapshot, params))


async def _compute(snapshot: Snapshot, params: Params) -> Delivery:
    assert snapshot.hook.live_version is not None
    if not snapshot.hook.live_version.defines("query"):
        return delivery_compute(snapshot, params)  # no I/O: no thread
    # Off the reads thread: sandbox calls take milliseconds and may run side by side (as many
    # as WR_LIVE_QUERY_CONCURRENCY).
    threads = db.queries(settings.WR_LIVE_QUERY_CONCURRENCY)
    return await threads.run(delivery_compute, snapshot, params)
