"""What the public write and read paths share: the key in the URL resolved, the answer and
the refusal they give, and the hook's live code in the sandbox (a fair share of it per hook).

The write path is hooks/writes.py, the read path hooks/reads.py (docs/pipeline.md).
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

from django.db import DatabaseError, connection

from hooks import rooms, serving
from hooks.models import Hook, Key, Request, Version
from hooks.services import hook_limits
from sandbox import SandboxUnavailable, Session, session

logger = logging.getLogger(__name__)


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)  # the hook's (filtered again at render)
    raw_json: str | None = None  # the body as JSON text, when it is already serialised
    server_headers: dict[str, str] = field(default_factory=dict)  # ours: X-WebReducer-Seq
    request: Request | None = None  # the stored request this answers (writes.request_ingest)


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


def invalid_status(function: str, status: object) -> dict[str, str]:
    # The sandbox refuses these already; a child that got around its own checks is refused
    # again here, before anything is rendered (issue 13, finding 5).
    return {
        "type": "InvalidResponse",
        "message": f"{function} answered with status {status!r}; a hook may answer 200-599",
        "traceback": "",
    }


def param_room(query: dict[str, list[str]]) -> str:
    try:
        return rooms.param_room(query)
    except rooms.RoomRefused as refused:
        raise PublicError(refused.status, refused.code, refused.message) from None


@contextlib.contextmanager
def fair_share(key: Key) -> Iterator[None]:
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
def live_session(key: Key, secrets: dict[str, str]) -> Iterator[Session]:
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
