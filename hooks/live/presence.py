"""Presence on the two-way socket: who is in each room, across every web process (SPEC §2).

Each open `WS /write/<key>/live` is a Connection row, so every process can list a room's
members with one query, and a web process that dies leaves rows behind that say so: the
process renews its rows' `expires_at` every WR_PRESENCE_TTL_SECONDS / 3 (`renew`), and any
process (`reap`, run by every web process with sockets and by the Celery reconciler) takes the
expired rows of a dead one and ends them as if their sockets had closed.

A hook whose code sets `PRESENCE = True` also gets each join and leave as a request folded by
its reducer (method JOIN / LEAVE, docs/functions.md). Both have an id derived from the
connection id, so a leave is stored at most once whoever ends the connection (the socket's own
process, or a reaper that took over), and only after its join was:

    join:  INSERT the row  →  store JOIN
    leave: store LEAVE (if its JOIN is stored and accepted, and it is not)  →  DELETE the row

A crash between two steps leaves a row that expires and is reaped, so every JOIN gets its
LEAVE, once. These functions are sync (database and sandbox); the sockets call them on the
write threads (hooks.live.socket_writes).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from hooks import broadcast, public_calls, writes
from hooks.models import Connection, Key, Request
from sandbox.check import PRESENCE

logger = logging.getLogger(__name__)

NAME_MAX = 64
PRESENCE_NAMESPACE = uuid.UUID("6f1c2a9e-4b8d-4e51-9a57-2d0f3c7be0a1")
# How many expired connections one reap ends (the next reap takes the rest).
REAP_BATCH = 200

_process: tuple[int, str] | None = None
_process_lock = threading.Lock()


def process_id() -> str:
    """This process's name on its Connection rows (host, pid and a random part: a pid is reused
    after a restart, the random part is not). Made once, under a lock: two threads' first joins
    at once made two names, and the upkeep, renewing under one, closed the sockets joined under
    the other as lapsed (bench/play_bench.py, 100 sockets connecting at once)."""
    global _process
    process = _process
    if process is not None and process[0] == os.getpid():
        return process[1]
    with _process_lock:
        if _process is None or _process[0] != os.getpid():
            _process = (
                os.getpid(),
                f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            )
        return _process[1]


@dataclass(frozen=True)
class Member:
    id: str
    name: str | None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


def request_id(connection_id: str, kind: str) -> uuid.UUID:
    """The id of a connection's JOIN or LEAVE request: the same whoever stores it."""
    return uuid.uuid5(PRESENCE_NAMESPACE, f"{connection_id}:{kind}")


def identity_headers(connection_id: str, name: str | None) -> dict[str, str]:
    """The headers every request from a socket carries (writes, JOIN, LEAVE)."""
    headers = {"Content-Type": "application/json", "X-WebReducer-Connection": connection_id}
    if name:
        headers["X-WebReducer-Name"] = name
    return headers


def _expiry() -> Any:
    return timezone.now() + timedelta(seconds=settings.WR_PRESENCE_TTL_SECONDS)


def join(
    *, key: Key, connection_id: str, room: str, name: str | None, query: dict[str, Any]
) -> None:
    """Record a socket's arrival in `room` (and store its JOIN when the hook opts in); raises
    public_calls.PublicError when the JOIN is refused (rate limit, rooms limit, `room` failing)."""
    try:
        Connection.objects.create(
            id=connection_id,
            hook_id=key.hook_id,
            key_id=key.pk,
            room=room,
            name=name or "",
            query=query,
            process=process_id(),
            expires_at=_expiry(),
        )
    except DatabaseError as error:
        raise public_calls.database_unavailable() from error
    version = key.hook.live_version
    if version is not None and version.defines(PRESENCE):
        try:
            writes.rate_check(key)
            reply = _presence_request(key, connection_id, "JOIN", name, query)
        except BaseException:
            Connection.objects.filter(pk=connection_id).delete()
            raise
        if reply.status >= 400:
            # `room` refused it (logged as rejected): no JOIN, so no LEAVE either.
            Connection.objects.filter(pk=connection_id).delete()
            why = (reply.body or {}).get("error", {}) if isinstance(reply.body, dict) else {}
            raise public_calls.PublicError(
                reply.status,
                why.get("code", "join_refused"),
                why.get("message", "The hook refused this connection's JOIN."),
            )
    broadcast.presence_changed(hook_id=str(key.hook_id), room=room)


def leave(connection_id: str) -> None:
    """End a connection: its LEAVE (once, if its JOIN was stored), then its row."""
    row = Connection.objects.filter(pk=connection_id).first()
    if row is None:
        return
    _leave_row(row)


def _leave_row(row: Connection) -> None:
    join_id, leave_id = request_id(row.id, "JOIN"), request_id(row.id, "LEAVE")
    stored = set(
        Request.objects.filter(uuid__in=[join_id, leave_id])
        .exclude(outcome=Request.Outcome.REJECTED)
        .values_list("uuid", flat=True)
    )
    if join_id in stored and leave_id not in stored:
        key = Key.objects.select_related("hook__live_version").filter(pk=row.key_id).first()
        if key is not None and key.hook.live_version is not None:
            # Even on a key paused since: the JOIN it pairs with was folded.
            _presence_request(key, row.id, "LEAVE", row.name or None, row.query)
    Connection.objects.filter(pk=row.id).delete()
    broadcast.presence_changed(hook_id=str(row.hook_id), room=row.room)


def _presence_request(
    key: Key, connection_id: str, kind: str, name: str | None, query: dict[str, Any]
) -> public_calls.Reply:
    body = json.dumps({"connection": connection_id, "name": name}).encode()
    return writes.request_ingest(
        key=key,
        method=kind,
        path="",
        headers=identity_headers(connection_id, name),
        query=query,
        content_type="application/json",
        body=body,
        request_id=request_id(connection_id, kind),
        responder=False,
    )


def members(hook_id: str, room: str) -> list[Member]:
    """The room's open connections, oldest first (expired ones, of a dead process, are not)."""
    rows = (
        Connection.objects.filter(hook_id=hook_id, room=room, expires_at__gt=timezone.now())
        .order_by("joined_at", "id")
        .values_list("id", "name")
    )
    return [Member(id=id_, name=name or None) for id_, name in rows]


def renew(connection_ids: set[str]) -> set[str]:
    """Extend this process's rows; returns which of `connection_ids` no longer have one (a
    stall longer than the TTL let a reaper end them: their sockets must close, to rejoin)."""
    me = process_id()
    if not connection_ids:
        return set()
    held = set(
        Connection.objects.filter(pk__in=connection_ids, process=me).values_list("pk", flat=True)
    )
    Connection.objects.filter(process=me).update(expires_at=_expiry())
    return connection_ids - held


def reap(limit: int = REAP_BATCH) -> int:
    """End the connections whose process stopped renewing them; returns how many. Any number
    of processes may reap at once: each takes rows no other holds (SKIP LOCKED), and renews
    them under its own name while it ends them, so a reaper that dies leaves them to the next."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Connection.objects.select_for_update(skip_locked=True)
            .filter(expires_at__lt=now)
            .order_by("expires_at")[:limit]
        )
        if not rows:
            return 0
        Connection.objects.filter(pk__in=[row.pk for row in rows]).update(
            process=process_id(), expires_at=_expiry()
        )
    ended = 0
    for row in rows:
        try:
            _leave_row(row)
            ended += 1
        except Exception:
            logger.exception("could not end expired connection %s; it is retried", row.pk)
    if ended:
        logger.info("presence: ended %d connection(s) of processes that stopped", ended)
    return ended
