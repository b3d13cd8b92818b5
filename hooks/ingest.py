"""The public endpoints' work: take a write, serve a read.

Writes are stored durably (one INSERT, committed before the answer), then a coalesced wake-up
queues the fold. The user's responder runs before the INSERT so its verdict is stored with the
request; a rejected request is logged and never numbered or folded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Field
from django.utils import timezone

from hooks import broadcast, ratelimit, rooms, serving, wakeup
from hooks.answers import answer_record, default_answer
from hooks.fold import request_payload
from hooks.masking import mask, mask_error
from hooks.models import Hook, Key, Request, State, Version
from hooks.response_headers import headers_filter, status_allowed
from hooks.services import hook_limits, hook_secrets
from sandbox import SandboxUnavailable, Session, session, strict_json
from sandbox.runtime import wr_cloudevents

logger = logging.getLogger(__name__)


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)  # the hook's (filtered again at render)
    raw_json: str | None = None  # the body as JSON text, when it is already serialised
    server_headers: dict[str, str] = field(default_factory=dict)  # ours: X-WebReducer-Seq
    request: Request | None = None  # the stored request this answers (request_ingest)


class PublicError(Exception):
    """An answer the public endpoints give instead of doing the work."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


# One round trip for the key, its hook and the live version (without its code). Raw SQL: the
# ORM's query compilation was a third of the write path's CPU (docs/performance.md).
KEY_SQL = """
    SELECT k.id, k.is_paused, k.revoked_at, h.id, h.is_paused, h.limits, h.secrets_version,
        v.id, v.functions
    FROM hooks_key k
    JOIN hooks_hook h ON h.id = k.hook_id
    JOIN hooks_version v ON v.id = h.live_version_id
    WHERE k.token = %s AND k.kind = %s
"""


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def key_resolve(*, token: str, kind: str) -> Key:
    """The usable key with this token, its hook and live version; else a 404 PublicError.

    Unknown, paused and revoked keys answer alike, so a key's existence never leaks. The
    version's code is not loaded here: `version_code()` has it, cached (versions never change).
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute(KEY_SQL, [token, kind])
            row = cursor.fetchone()
    except DatabaseError as error:
        raise database_unavailable() from error
    if row is None:
        raise PublicError(404, "not_found", f"No active {kind} key matches this URL.")
    (
        key_id,
        key_paused,
        revoked_at,
        hook_id,
        hook_paused,
        limits,
        secrets_version,
        version_id,
        functions,
    ) = row
    if key_paused or revoked_at is not None or hook_paused:
        raise PublicError(404, "not_found", f"No active {kind} key matches this URL.")
    hook = Hook(
        id=uuid.UUID(str(hook_id)),
        is_paused=False,
        limits=_json(limits) or {},
        secrets_version=secrets_version,
    )
    hook.live_version = Version(id=version_id, hook_id=hook.id, functions=_json(functions) or [])
    key = Key(id=key_id, hook_id=hook.id, kind=kind, token=token)
    key.hook = hook
    return key


def version_code(version: Version) -> str:
    return _version_code(version.pk, str(version.hook_id))


@lru_cache(maxsize=512)
def _version_code(version_id: int, hook_id: str) -> str:
    # Keyed by the hook too: a test database that reuses ids can never serve another's code.
    return Version.objects.values_list("code", flat=True).get(pk=version_id, hook_id=hook_id)


def database_unavailable() -> PublicError:
    logger.exception("database unavailable")
    return PublicError(503, "unavailable", "The database is unavailable; retry shortly.", 5)


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
) -> Reply:
    """Store one write and answer it with the hook's responder (docs/pipeline.md, "Write path").

    `resent_from` marks a copy of a stored request (hooks.resend); the reply's `request` is
    the stored request (for a batch, the answer lists them instead). `request_id` and
    `responder=False` are for the requests the server makes itself (a two-way socket's JOIN and
    LEAVE, hooks.live.presence): a known id, and the default answer without the responder.

    A CloudEvents batch (`application/cloudevents-batch+json`) is stored as one request per
    event, in order, each answered by the responder; the answer lists every event's result.
    """
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
                _insert(request)
    except DatabaseError as error:
        raise database_unavailable() from error
    broadcast.requests_logged(hook_id=str(hook.pk), requests=requests)
    for room in dict.fromkeys(r.room for r in requests if r.outcome == Request.Outcome.PENDING):
        wakeup.wake(str(hook.pk), room=room)
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
            request.room = _param_room(request.query)
    if not responds and not routed:
        for request in requests:
            request.response = default_answer(str(request.uuid))
        return [Reply(status=202, body={"id": str(r.uuid)}) for r in requests]
    replies = []
    secrets = hook_secrets(hook.pk, version=hook.secrets_version)
    with _fair_share(key), _live_session(key, secrets) as sandbox:
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


def _param_room(query: dict[str, list[str]]) -> str:
    try:
        return rooms.param_room(query)
    except rooms.RoomRefused as refused:
        raise PublicError(refused.status, refused.code, refused.message) from None


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


def _insert(request: Request) -> None:
    """One INSERT, committed on return (autocommit): durable before acknowledged."""
    fields = _insert_fields()
    values = [f.get_db_prep_save(getattr(request, f.attname), connection) for f in fields]
    columns = ", ".join(f.get_attname_column()[1] for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        # Only model metadata is interpolated; values go as parameters.
        sql = f"INSERT INTO {Request._meta.db_table} ({columns}) VALUES ({placeholders})"  # noqa: S608
        cursor.execute(sql, values)


def state_read(*, key: Key, params: dict[str, list[str]]) -> Reply:
    """The live state through the hook's query, with the seq of the last applied request."""
    hook = key.hook
    version = hook.live_version
    assert version is not None
    room = _param_room(params)
    if not version.defines("query"):
        state = _live_state(version, room)
        seq_header = {"X-WebReducer-Seq": str(state.seq)}
        return Reply(status=200, server_headers=seq_header, raw_json=state.value)
    # The slot before the state: a read refused for a busy hook costs the key lookup alone, not
    # a fetch of a state of up to a MiB that would be thrown away.
    with _fair_share(key):
        state = _live_state(version, room)
        seq_header = {"X-WebReducer-Seq": str(state.seq)}
        result = query_run(key=key, state_json=state.value, params=params)
    if not result.ok:
        return Reply(status=500, body=query_error(result.error), server_headers=seq_header)
    if not status_allowed(result.value["status"]):
        invalid = invalid_status("query", result.value["status"])
        return Reply(status=500, body=query_error(invalid), server_headers=seq_header)
    allowed = headers_filter(result.value["headers"])
    if allowed.dropped:
        # No request log for reads: the server's log is where an operator can see it.
        logger.info("hook %s: query headers not sent: %s", hook.pk, ", ".join(allowed.dropped))
    return Reply(
        status=result.value["status"],
        body=result.value["body"],
        headers=allowed.headers,
        server_headers=seq_header,
    )


def _live_state(version: Version, room: str) -> State:
    """The room's state; a room nothing was written to yet reads as null at seq 0 (SPEC)."""
    try:
        state = State.objects.only("value", "seq").filter(version_id=version.pk, room=room).first()
    except DatabaseError as error:
        raise database_unavailable() from error
    return state if state is not None else State(value="null", seq=0)


def invalid_status(function: str, status: object) -> dict[str, str]:
    # The sandbox refuses these already; a child that got around its own checks is refused
    # again here, before anything is rendered (issue 13, finding 5).
    return {
        "type": "InvalidResponse",
        "message": f"{function} answered with status {status!r}; a hook may answer 200-599",
        "traceback": "",
    }


def query_run(*, key: Key, state_json: str, params: dict[str, list[str]]) -> Any:
    hook = key.hook
    with _live_session(key, hook_secrets(hook.pk, version=hook.secrets_version)) as sandbox:
        return sandbox.query(state_json, params)


@contextlib.contextmanager
def _fair_share(key: Key) -> Iterator[None]:
    """One of the hook's sandbox call slots in this web process, or 429 for this hook alone."""
    try:
        with serving.sandbox_slot(hook_id=str(key.hook_id)):
            yield
    except serving.HookSaturated as error:
        raise PublicError(
            429,
            "hook_busy",
            f"This hook is already running {error.limit} responder or query call(s) at once "
            "here; retry shortly.",
            # 1 or 2 s: a refused crowd that honours Retry-After does not come back all at once.
            retry_after=random.randint(1, 2),  # noqa: S311 - spreading load, not a secret
        ) from None


@contextlib.contextmanager
def _live_session(key: Key, secrets: dict[str, str]) -> Iterator[Session]:
    """A sandbox session on the key's live code, warm per hook (responders and queries); a
    missing isolation layer answers 503. The database connection goes back to the pool while
    the code runs."""
    hook, version = key.hook, key.hook.live_version
    assert version is not None
    code = version_code(version)
    serving.connection_release()
    try:
        with session(
            code=code,
            secrets=secrets,
            limits=hook_limits(hook),
            hook_id=str(hook.pk),
        ) as sandbox:
            yield sandbox
    except SandboxUnavailable as error:
        raise PublicError(503, "sandbox_unavailable", str(error), retry_after=30) from error


def query_error(error: dict[str, Any] | None) -> dict[str, Any]:
    # Readers see what went wrong, not the traceback: that is for the owner's dry runs.
    kind = (error or {}).get("type", "Error")
    detail = (error or {}).get("message", "")
    message = (
        f"The hook's query raised {kind}: {detail}"
        if detail
        else f"The hook's query raised {kind}."
    )
    return {"error": {"code": "query_error", "message": message}}
