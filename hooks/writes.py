"""The public write path: take a write (docs/pipeline.md, "Write path").

Writes are stored durably (one INSERT, committed before the answer), then a coalesced wake-up
queues the fold. The INSERT itself checks that the key is still usable and the hook still on the
version and secrets the write was answered with: the key row a write starts from may come from
this process's short cache (`write_key_resolve`), yet a paused or revoked key stores nothing
from the moment it is paused. The user's responder runs before the INSERT so its verdict is stored with the
request; a rejected request is logged and never numbered or folded. What follows the commit of an
HTTP write (the owners' feed entry, the wake-up) is sent off the request, coalesced
(hooks/deferred.py).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Field
from django.utils import timezone

from hooks import deferred, ratelimit, rooms
from hooks.answers import answer_record, default_answer
from hooks.fold import request_payload
from hooks.masking import mask, mask_error
from hooks.models import MAIN_ROOM, Hook, Key, Request, State
from hooks.public_calls import (
    PublicError,
    Reply,
    database_unavailable,
    fair_share,
    invalid_status,
    key_resolve,
    live_session,
    param_room,
)
from hooks.response_headers import headers_filter, status_allowed
from hooks.services import hook_secrets
from sandbox import Session, strict_json
from sandbox.runtime import wr_cloudevents

# How long this process answers writes from a key row it read: the lookup was a third of a
# write's round trips to PostgreSQL. Safe because the INSERT re-checks what must hold at once
# (key not paused or revoked, hook not paused, the same live version and secrets); what the
# row also carries, the hook's limits, may be this old in other processes (operators change
# them, through Hook.save(), which clears this process's copies: hooks/apps.py).
KEY_CACHE_SECONDS = 2.0
KEY_CACHE_SIZE = 4096
_keys: dict[str, tuple[float, Key]] = {}


class KeyChanged(Exception):
    """The key, or its hook's live version or secrets, changed since the key row was read."""


def write_key_resolve(token: str) -> Key:
    """The usable write key with this token, as key_resolve() gives it, read at most
    KEY_CACHE_SECONDS ago by this process; else a 404 PublicError."""
    now = time.monotonic()
    cached = _keys.get(token)
    if cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
        return cached[1]
    key = key_resolve(token=token, kind=Key.Kind.WRITE)
    if len(_keys) >= KEY_CACHE_SIZE:
        _keys.clear()
    _keys[token] = (now, key)
    return key


def keys_forget(**kwargs: object) -> None:
    """Drop this process's key rows (a hook or key was saved: its limits may have changed)."""
    _keys.clear()


def rate_check(key: Key) -> None:
    hook = key.hook
    wait = ratelimit.take(
        f"key:{key.pk}",
        rate=float(hook.limit("rate_per_second", settings.WR_RATE_PER_SECOND)),
        burst=int(hook.limit("rate_burst", settings.WR_RATE_BURST)),
    )
    if wait > 0:
        raise PublicError(
            429, "rate_limited", "Too many requests for this key; slow down.", retry_after=wait
        )


def max_body_bytes(key: Key) -> int:
    return int(key.hook.limit("max_body_bytes", settings.WR_MAX_BODY_BYTES))


def body_check(content_type: str, body: bytes) -> None:
    """Refuse a body that says it is JSON but is not: nothing could read it later. Strict, as
    for what the sandbox sends: NaN and Infinity are not JSON, and a reducer's state made of them
    could never be served."""
    if content_type == "application/json" or content_type.endswith("+json"):
        if not body.strip():
            return
        try:
            strict_json.loads(body.decode())
        except (ValueError, UnicodeDecodeError) as error:
            raise PublicError(400, "invalid_json", f"The body is not valid JSON: {error}") from None
        except RecursionError:
            raise PublicError(400, "invalid_json", "The body is nested too deeply.") from None


def idempotency_key_check(headers: dict[str, str]) -> None:
    """Refuse an Idempotency-Key over the documented limit at write time: the ledger could
    not keep it, and a key cut to fit would make different keys one (docs/security.md)."""
    limit = settings.WR_MAX_IDEMPOTENCY_KEY_BYTES
    for name, value in headers.items():
        if (
            name.lower() == "idempotency-key"
            and len(value.encode("utf-8", "surrogateescape")) > limit
        ):
            raise PublicError(
                400,
                "idempotency_key_too_long",
                f"The Idempotency-Key header is over {limit} bytes.",
            )


def cloudevent_check(headers: dict[str, str], content_type: str, body: bytes) -> None:
    """Refuse a request that declares a CloudEvent (structured content type or ce- headers)
    and is not a valid CloudEvents 1.0 event: nothing of it is stored (docs/helpers.md, CloudEvents)."""
    try:
        wr_cloudevents.parse_cloudevent(headers, content_type, body)
    except (ValueError, RecursionError) as error:
        raise PublicError(400, "invalid_cloudevents", str(error)) from None


def request_ingest(
    *,
    key: Key,
    method: str,
    path: str,
    headers: dict[str, str],
    query: dict[str, list[str]],
    content_type: str,
    body: bytes,
    resent_from: int | None = None,
    request_id: uuid.UUID | None = None,
    responder: bool = True,
    soon: bool = False,
) -> Reply:
    """Store one write and answer it with the hook's responder (docs/pipeline.md, "Write path").

    `resent_from` marks a copy of a stored request (hooks.resend); the reply's `request` is
    the stored request (for a batch, the answer lists them instead). `request_id` and
    `responder=False` are for the requests the server makes itself (a two-way socket's JOIN and
    LEAVE, hooks.live.presence): a known id, and the default answer without the responder.
    `soon`: the owners' feed entry and the wake-up may be sent off the request (hooks/deferred.py;
    the HTTP write view's); otherwise they are sent before this returns.

    A CloudEvents batch (`application/cloudevents-batch+json`) is stored as one request per
    event, in order, each answered by the responder; the answer lists every event's result.

    When the INSERT finds the key row out of date (KeyChanged), the write starts again once from
    a fresh one: answered by the version now live, or refused if the key no longer works.
    """

    def attempt(key: Key) -> Reply:
        return _ingest(
            key=key,
            method=method,
            path=path,
            headers=headers,
            query=query,
            content_type=content_type,
            body=body,
            resent_from=resent_from,
            request_id=request_id,
            responder=responder,
            soon=soon,
        )

    try:
        return attempt(key)
    except KeyChanged:
        _keys.pop(key.token, None)
    try:
        return attempt(key_resolve(token=key.token, kind=Key.Kind.WRITE))
    except KeyChanged:
        # Changed again in the instant between this lookup and the INSERT (a publish): rare.
        raise PublicError(
            503, "unavailable", "The hook changed while this write was stored; retry.", 1
        ) from None


def _ingest(
    *,
    key: Key,
    method: str,
    path: str,
    headers: dict[str, str],
    query: dict[str, list[str]],
    content_type: str,
    body: bytes,
    resent_from: int | None,
    request_id: uuid.UUID | None,
    responder: bool,
    soon: bool,
) -> Reply:
    hook = key.hook
    body_check(content_type, body)
    idempotency_key_check(headers)
    batch = wr_cloudevents.is_batch(content_type)
    if not batch:
        cloudevent_check(headers, content_type, body)
    received_at = timezone.now()

    def new(content_type: str, body: bytes, headers: dict[str, str]) -> Request:
        return Request(
            uuid=request_id or uuid.uuid4(),
            hook_id=hook.pk,
            key_id=key.pk,
            routed_by=hook.live_id,
            method=method,
            path=path,
            headers=headers,
            query=query,
            content_type=content_type,
            body=body,
            received_at=received_at,
            resent_from_id=resent_from,
        )

    if batch:
        try:
            events_bodies = wr_cloudevents.split_batch(body)
        except (ValueError, RecursionError) as error:
            raise PublicError(400, "invalid_cloudevents", str(error)) from None
        single = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        single["Content-Type"] = wr_cloudevents.STRUCTURED_CONTENT_TYPE
        requests = [new(wr_cloudevents.STRUCTURED_CONTENT_TYPE, b, single) for b in events_bodies]
    else:
        requests = [new(content_type, body, headers)]

    replies = _respond(key, requests, responder=responder)
    for request, reply in zip(requests, replies, strict=True):
        request.response_status = reply.status
        reply.request = request
        if reply.status >= 400:
            request.outcome = Request.Outcome.REJECTED
    _rooms_open(key, requests)
    try:
        # One request: a single autocommitted INSERT. A batch: all of its events or none.
        with transaction.atomic() if len(requests) > 1 else contextlib.nullcontext():
            for request in requests:
                _insert(request, key)
    except DatabaseError as error:
        raise database_unavailable() from error
    # The owners' feed entry and the wake-up; off the request for the HTTP view (hooks/deferred.py).
    deferred.after_commit(
        hook_id=str(hook.pk),
        requests=requests,
        rooms=list(dict.fromkeys(r.room for r in requests if r.outcome == Request.Outcome.PENDING)),
        soon=soon,
    )
    if not batch:
        return replies[0]
    accepted = any(reply.status < 400 for reply in replies)
    return Reply(
        status=202 if accepted or not replies else replies[0].status,
        body={
            "results": [
                {"id": str(request.uuid), "status": reply.status, "body": reply.body}
                for request, reply in zip(requests, replies, strict=True)
            ]
        },
    )


def _respond(key: Key, requests: list[Request], *, responder: bool = True) -> list[Reply]:
    """The responder's answer to each request (one sandbox child for all of them), or the
    default `202 {"id": …}` without a sandbox when the code has no responder (or `responder`
    is False)."""
    hook, version = key.hook, key.hook.live_version
    assert version is not None
    routed = version.defines("room")
    responds = responder and version.defines("responder")
    if not routed:
        for request in requests:
            request.room = param_room(request.query)
    if not responds and not routed:
        for request in requests:
            request.response = default_answer(str(request.uuid))
        return [Reply(status=202, body={"id": str(r.uuid)}) for r in requests]
    replies = []
    secrets = hook_secrets(hook.pk, version=hook.secrets_version)
    with fair_share(key), live_session(key, secrets) as sandbox:
        for request in requests:
            if routed:
                refused = _route(sandbox, request, secrets)
                if refused is not None:
                    replies.append(refused)
                    continue
            if not responds:
                request.response = default_answer(str(request.uuid))
                replies.append(Reply(status=202, body={"id": str(request.uuid)}))
                continue
            result = sandbox.respond(request_payload(request))
            request.console += mask(result.console, secrets)  # after what `room` printed
            request.duration_ms = (request.duration_ms or 0.0) + result.duration_ms
            error = result.error
            if result.ok:
                value = result.value
                if status_allowed(value["status"]):
                    allowed = headers_filter(value["headers"])
                    request.console += allowed.note()
                    replies.append(Reply(value["status"], value["body"], allowed.headers))
                    # What the producer got: the headers that survived the allow-list.
                    request.response = answer_record(
                        status=value["status"],
                        headers=allowed.headers,
                        body=value["body"],
                        secrets=secrets,
                    )
                    continue
                error = invalid_status("responder", value["status"])
            request.error = mask_error(error, secrets)
            replies.append(
                Reply(
                    status=500,
                    body={
                        "error": {
                            "code": "responder_error",
                            "message": "The hook's responder raised an exception; "
                            "the request was rejected.",
                            "request_id": str(request.uuid),
                        }
                    },
                )
            )
            request.response = answer_record(
                status=500, headers={}, body=replies[-1].body, secrets=secrets
            )
    return replies


def _route(sandbox: Session, request: Request, secrets: dict[str, str]) -> Reply | None:
    """Run the code's `room` on `request` and set request.room; a `room` that raises or names
    no valid room rejects the request (logged, never folded): its 400 reply."""
    result = sandbox.room(request_payload(request))
    request.console = mask(result.console, secrets)
    request.duration_ms = result.duration_ms
    error: dict[str, Any] | None = result.error
    if result.ok:
        problem = rooms.name_error(result.value)
        if problem is None:
            request.room = rooms.stored_room(result.value)
            return None
        error = {"type": "InvalidRoom", "message": f"room returned {problem}", "traceback": ""}
    assert error is not None
    request.error = mask_error(error, secrets)
    message = f"The hook's room function raised {error['type']}: {error['message']}"
    if error["type"] == "InvalidRoom":
        message = f"The hook's room function returned no valid room: {error['message']}"
    body = {
        "error": {
            "code": "room_error",
            "message": mask(message, secrets),
            "request_id": str(request.uuid),
        }
    }
    request.response = answer_record(status=400, headers={}, body=body, secrets=secrets)
    return Reply(status=400, body=body)


def _rooms_open(key: Key, requests: list[Request]) -> None:
    """The live version's state row of each accepted request's room, or 429 for the write when
    it would make one room too many (nothing of it is stored)."""
    hook, version_id = key.hook, key.hook.live_id
    try:
        for room in dict.fromkeys(r.room for r in requests if r.outcome == Request.Outcome.PENDING):
            rooms.room_open(hook=hook, version_id=version_id, room=room)
    except rooms.RoomRefused as refused:
        raise PublicError(refused.status, refused.code, refused.message) from None
    except DatabaseError as error:
        raise database_unavailable() from error


INSERT_FIELDS = [
    "uuid",
    "hook_id",
    "key_id",
    "room",
    "routed_by",
    "method",
    "path",
    "headers",
    "query",
    "content_type",
    "body",
    "received_at",
    "outcome",
    "response_status",
    "error",
    "console",
    "duration_ms",
    "response",
    "resent_from_id",
]


@lru_cache(maxsize=1)
def _insert_fields() -> list[Field[Any, Any]]:
    fields = [Request._meta.get_field(name) for name in INSERT_FIELDS]
    return [f for f in fields if isinstance(f, Field)]


@lru_cache(maxsize=4)
def _insert_sql(vendor: str) -> str:
    """INSERT … SELECT the values FROM the key and its hook WHERE they still hold: one statement,
    so no pause, revocation or publish can fall between the check and the row. PostgreSQL types
    a SELECT list's parameters as text: each is cast to its column's type there."""
    fields = _insert_fields()
    columns = ", ".join(f.get_attname_column()[1] for f in fields)
    if vendor == "postgresql":
        values = ", ".join(f"CAST(%s AS {f.db_type(connection)})" for f in fields)
    else:
        values = ", ".join(["%s"] * len(fields))
    key_table, hook_table, state_table = (
        Key._meta.db_table,
        Hook._meta.db_table,
        State._meta.db_table,
    )
    # Only model metadata is interpolated; values go as parameters. The last two are the room
    # whose state row must exist (a pending request of a named room), else NULL: the row was
    # seen by this process, but the room may have been deleted since (hooks.rooms.room_seen).
    return (
        f"INSERT INTO {Request._meta.db_table} ({columns}) SELECT {values} "  # noqa: S608
        f"FROM {key_table} k JOIN {hook_table} h ON h.id = k.hook_id "
        "WHERE k.id = %s AND NOT k.is_paused AND k.revoked_at IS NULL AND NOT h.is_paused "
        "AND h.live_version_id = %s AND h.secrets_version = %s "
        "AND (CAST(%s AS varchar) IS NULL OR EXISTS "
        f"(SELECT 1 FROM {state_table} s WHERE s.version_id = h.live_version_id "
        "AND s.room = CAST(%s AS varchar)))"
    )


def _insert_params(request: Request, key: Key) -> list[Any]:
    fields = _insert_fields()
    values = [f.get_db_prep_save(getattr(request, f.attname), connection) for f in fields]
    hook = key.hook
    needs_row = request.room != MAIN_ROOM and request.outcome == Request.Outcome.PENDING
    room = request.room if needs_row else None
    return [*values, key.pk, hook.live_id, hook.secrets_version, room, room]


def _forget_rooms(key: Key, requests: Sequence[Request]) -> None:
    """After an INSERT stored nothing: the key row is stale, or a room's state row has gone."""
    _keys.pop(key.token, None)
    for request in requests:
        rooms.room_forget(key.hook.live_id or 0, request.room)


def _insert(request: Request, key: Key) -> None:
    """One INSERT, committed on return (autocommit): durable before acknowledged. KeyChanged
    when the key no longer takes writes, or its hook moved to another version or secrets, or
    the request's room lost its state row (deleted) since this process saw it."""
    params = _insert_params(request, key)
    sql = _insert_sql(connection.vendor)
    if connection.vendor == "postgresql":
        rowcount = _prepared_execute(sql, params)
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rowcount = cursor.rowcount
    if rowcount != 1:
        _forget_rooms(key, [request])
        raise KeyChanged(str(key.pk))


def _prepared_execute(sql: str, params: list[Any]) -> int:
    """Execute as a prepared statement on this connection (parsed and planned by PostgreSQL once
    per connection, its values sent apart): Django's cursors bind values into the SQL text on
    the client, so PostgreSQL parsed and planned the 22-parameter INSERT … SELECT, and psycopg
    quoted every value into it, for every write (docs/performance.md, "Write path"). Errors are
    Django's, as from its own cursors."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.rowcount


# --- Two-way socket writes: one transaction per trip (hooks.live.socket_writes) ---------------
# Apart from the HTTP path above, which it only calls into: a socket write is one request with
# every check and answer of an HTTP one, but the writes a hook's sockets queued meanwhile are
# stored together, with one commit and one wake-up per room for all of them.


@dataclass(frozen=True)
class SocketWrite:
    """One socket write, its key and limits checked (hooks.live.socket_writes): a JSON body."""

    key: Key
    headers: dict[str, str]
    query: dict[str, list[str]]
    body: bytes


def socket_writes_ingest(items: Sequence[SocketWrite]) -> list[Reply | PublicError]:
    """Store `items` as request_ingest stores each (method WS, JSON, the responder's answer),
    with one transaction for all of them; each one's Reply, or the PublicError that refused it.

    Each write is checked and answered on its own, and a refused one (invalid JSON, its room
    over the limit, its responder's 4xx stored as rejected) does not touch the others. Nothing
    is acknowledged before the one commit, so each write is durable before its ack. When the
    shared transaction cannot be committed (the database refused a row, or a key row was out of
    date: a pause, a publish), nothing of it is stored and every write that reached it goes
    through request_ingest alone instead, exactly as an HTTP write would."""
    results: list[Reply | PublicError | None] = [None] * len(items)
    received_at = timezone.now()
    groups: dict[str, list[tuple[int, Request]]] = {}  # by key token: one sandbox session each
    for index, item in enumerate(items):
        try:
            body_check("application/json", item.body)
            idempotency_key_check(item.headers)
            cloudevent_check(item.headers, "application/json", item.body)
        except PublicError as error:
            results[index] = error
            continue
        request = Request(
            uuid=uuid.uuid4(),
            hook_id=item.key.hook.pk,
            key_id=item.key.pk,
            routed_by=item.key.hook.live_id,
            method="WS",
            path="",
            headers=item.headers,
            query=item.query,
            content_type="application/json",
            body=item.body,
            received_at=received_at,
        )
        groups.setdefault(item.key.token, []).append((index, request))
    stored: list[tuple[int, Request]] = []
    for group in groups.values():
        key = items[group[0][0]].key
        try:
            replies = _respond(key, [request for _, request in group])
        except PublicError as error:
            for index, _ in group:
                results[index] = error
            continue
        for (index, request), reply in zip(group, replies, strict=True):
            request.response_status = reply.status
            reply.request = request
            if reply.status >= 400:
                request.outcome = Request.Outcome.REJECTED
            results[index] = reply
        for index, refused in _socket_rooms_open(key, group).items():
            results[index] = refused
        stored += [(i, r) for i, r in group if not isinstance(results[i], PublicError)]
    try:
        _socket_insert([(items[index].key, request) for index, request in stored])
    except (KeyChanged, DatabaseError):
        for index, _ in stored:
            results[index] = _socket_ingest_alone(items[index])
        stored = []
    by_hook: dict[str, list[Request]] = {}  # one hook's in practice: a trip is per hook
    for _, request in stored:
        by_hook.setdefault(str(request.hook_id), []).append(request)
    for hook_id, requests in by_hook.items():
        # Now, not soon: the acks wait for nothing but the commit, and a socket write's fold
        # should not wait a coalescing window either.
        pending = dict.fromkeys(r.room for r in requests if r.outcome == Request.Outcome.PENDING)
        deferred.after_commit(hook_id=hook_id, requests=requests, rooms=list(pending), soon=False)
    assert all(result is not None for result in results)
    return results  # type: ignore[return-value]


def _socket_rooms_open(key: Key, group: list[tuple[int, Request]]) -> dict[int, PublicError]:
    """rooms.room_open for the accepted requests' rooms, the rooms that have a state row found
    in one query; the refusals, by index (a refused room refuses its own writes only)."""
    hook, version_id = key.hook, key.hook.live_id
    assert version_id is not None
    wanted = {
        r.room
        for _, r in group
        if r.outcome == Request.Outcome.PENDING and not rooms.room_seen(version_id, r.room)
    }
    refused: dict[int, PublicError] = {}
    try:
        known = set(
            State.objects.filter(version_id=version_id, room__in=wanted).values_list(
                "room", flat=True
            )
            if wanted
            else ()
        )
    except DatabaseError:
        return {index: database_unavailable() for index, _ in group}
    for room in known:
        rooms.room_remember(version_id, room)
    for room in wanted - known:
        try:
            rooms.room_open(hook=hook, version_id=version_id, room=room)
        except rooms.RoomRefused as error:
            problem = PublicError(error.status, error.code, error.message)
        except DatabaseError:
            problem = database_unavailable()
        else:
            continue
        refused.update(
            (index, problem)
            for index, request in group
            if request.room == room and request.outcome == Request.Outcome.PENDING
        )
    return refused


def _socket_insert(rows: list[tuple[Key, Request]]) -> None:
    """The rows' INSERTs (as _insert's) in one transaction, sent together; KeyChanged, with
    nothing stored, when one of them stored nothing."""
    if not rows:
        return
    params = [_insert_params(request, key) for key, request in rows]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(_insert_sql(connection.vendor), params)
        if cursor.rowcount != len(rows):
            for key, request in rows:
                _forget_rooms(key, [request])
            raise KeyChanged("a key row of the trip")  # rolls the transaction back


def _socket_ingest_alone(item: SocketWrite) -> Reply | PublicError:
    try:
        return request_ingest(
            key=item.key,
            method="WS",
            path="",
            headers=item.headers,
            query=item.query,
            content_type="application/json",
            body=item.body,
        )
    except PublicError as error:
        return error
