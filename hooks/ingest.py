"""The public endpoints' work: take a write, serve a read.

Writes are stored durably (one INSERT, committed before the answer), then a coalesced wake-up
queues the fold. The user's responder runs before the INSERT so its verdict is stored with the
request; a rejected request is logged and never numbered or folded.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from hooks import ratelimit, wakeup
from hooks.fold import request_payload
from hooks.models import Key, Request, State
from hooks.services import hook_limits, hook_secrets
from sandbox import SandboxUnavailable, session

logger = logging.getLogger(__name__)


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_json: str | None = None  # the body as JSON text, when it is already serialised


class PublicError(Exception):
    """An answer the public endpoints give instead of doing the work."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def key_resolve(*, token: str, kind: str) -> Key:
    """The usable key with this token, its hook and live version; else a 404 PublicError.

    Unknown, paused and revoked keys answer alike, so a key's existence never leaks.
    """
    try:
        key = (
            Key.objects.select_related("hook__live_version")
            .only(
                "id",
                "kind",
                "is_paused",
                "revoked_at",
                "hook__id",
                "hook__is_paused",
                "hook__limits",
                "hook__live_version__id",
                "hook__live_version__code",
                "hook__live_version__functions",
            )
            .get(token=token, kind=kind)
        )
    except Key.DoesNotExist:
        key = None
    except DatabaseError as error:
        raise database_unavailable() from error
    if key is None or not key.is_usable or key.hook.is_paused or key.hook.live_version is None:
        raise PublicError(404, "not_found", f"No active {kind} key matches this URL.")
    return key


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
    """Refuse a body that says it is JSON but is not: nothing could read it later."""
    if content_type == "application/json" or content_type.endswith("+json"):
        if not body.strip():
            return
        try:
            json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise PublicError(400, "invalid_json", f"The body is not valid JSON: {error}") from None


def request_ingest(
    *,
    key: Key,
    method: str,
    path: str,
    headers: dict[str, str],
    query: dict[str, list[str]],
    content_type: str,
    body: bytes,
) -> Reply:
    """Store one write and answer it with the hook's responder (SPEC §2, §3.1)."""
    hook = key.hook
    version = key.hook.live_version
    assert version is not None
    body_check(content_type, body)
    request = Request(
        uuid=uuid.uuid4(),
        hook_id=hook.pk,
        key_id=key.pk,
        method=method,
        path=path,
        headers=headers,
        query=query,
        content_type=content_type,
        body=body,
        received_at=timezone.now(),
    )
    reply = Reply(status=202, body={"id": str(request.uuid)})
    if version.defines("responder"):
        try:
            with session(
                code=version.code,
                secrets=hook_secrets(hook.pk),
                limits=hook_limits(hook),
                hook_id=str(hook.pk),
            ) as sandbox:
                result = sandbox.respond(request_payload(request))
        except SandboxUnavailable as error:
            raise PublicError(503, "sandbox_unavailable", str(error), retry_after=30) from error
        request.console = result.console
        request.duration_ms = result.duration_ms
        if result.ok:
            reply = Reply(
                status=result.value["status"],
                body=result.value["body"],
                headers=result.value["headers"],
            )
        else:
            request.error = result.error
            reply = Reply(
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
    request.response_status = reply.status
    if reply.status >= 400:
        request.outcome = Request.Outcome.REJECTED
    try:
        request.save(force_insert=True)
    except DatabaseError as error:
        raise database_unavailable() from error
    if request.outcome == Request.Outcome.PENDING:
        wakeup.wake(str(hook.pk))
    return reply


def state_read(*, key: Key, params: dict[str, list[str]]) -> Reply:
    """The live state through the hook's query, with the seq of the last applied request."""
    hook = key.hook
    version = hook.live_version
    assert version is not None
    try:
        state = State.objects.only("value", "seq").get(version_id=version.pk)
    except DatabaseError as error:
        raise database_unavailable() from error
    seq_header = {"X-WebReducer-Seq": str(state.seq)}
    if not version.defines("query"):
        return Reply(status=200, headers=seq_header, raw_json=state.value)
    result = query_run(key=key, state_json=state.value, params=params)
    return Reply(
        status=result.value["status"] if result.ok else 500,
        body=result.value["body"] if result.ok else query_error(result.error),
        headers={**(result.value["headers"] if result.ok else {}), **seq_header},
    )


def query_run(*, key: Key, state_json: str, params: dict[str, list[str]]) -> Any:
    hook = key.hook
    version = hook.live_version
    assert version is not None
    try:
        with session(
            code=version.code,
            secrets=hook_secrets(hook.pk),
            limits=hook_limits(hook),
            hook_id=str(hook.pk),
        ) as sandbox:
            return sandbox.query(state_json, params)
    except SandboxUnavailable as error:
        raise PublicError(503, "sandbox_unavailable", str(error), retry_after=30) from error


def query_error(error: dict[str, Any] | None) -> dict[str, Any]:
    # Readers see what went wrong, not the traceback: that is for the owner's dry runs.
    kind = (error or {}).get("type", "Error")
    detail = (error or {}).get("message", "")
    message = f"The hook's query raised {kind}: {detail}" if detail else f"The hook's query raised {kind}."
    return {"error": {"code": "query_error", "message": message}}
