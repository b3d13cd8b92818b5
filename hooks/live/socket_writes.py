"""The writes of a two-way socket (`WS /write/<key>/live`, SPEC §2): each frame
`{"type": "write", "ref", "idempotency_key", "body"}` is one request with every guarantee of an
HTTP write, stored by the same code (hooks.writes.request_ingest) and answered, after commit,
with an ack `{"type": "ack", "ref", "id", "status", "body"}`.

The database and sandbox work runs on WR_LIVE_WRITE_THREADS threads per web process (each with
one database connection, hooks.live.db), a socket's writes one after another (so its acks come
in the order it sent them), and one hook's sockets on at most WR_LIVE_WRITE_THREADS_PER_HOOK of
the threads at once: a hook with a slow responder waits for its own share, the others' writes
go on.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from hooks import public_calls, writes
from hooks.live import db
from hooks.live.presence import identity_headers
from hooks.models import Key

# A ref is the client's own label for a write; it comes back in the ack.
REF_MAX_BYTES = 256


class KeyGone(Exception):
    """The socket's write key no longer serves (paused, revoked, hook deleted): close 4404."""


@dataclass(frozen=True)
class Write:
    ref: Any
    body: Any
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Sender:
    """Who a socket is, as its requests carry it."""

    token: str
    connection_id: str
    name: str | None
    query: dict[str, list[str]]  # the socket's query string, without its read key


def ack(
    ref: Any, status: int, body: Any, request_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {"type": "ack", "ref": ref, "id": request_id, "status": status, "body": body, **extra}


def error_ack(ref: Any, status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return ack(ref, status, {"error": {"code": code, "message": message}}, **extra)


def ref_check(ref: Any) -> str | None:
    """Why `ref` cannot be echoed, or None."""
    if len(json.dumps(ref, ensure_ascii=False).encode()) > REF_MAX_BYTES:
        return f"ref is over {REF_MAX_BYTES} bytes of JSON"
    return None


def writes_store(sender: Sender, writes: Sequence[Write]) -> list[dict[str, Any]]:
    """Store `writes` in order, each committed before the next; their acks. Raises KeyGone when
    the key stops serving (the acks of the writes before it are lost with the socket: the client
    resends them with their idempotency keys)."""
    acks = []
    for write in writes:
        try:
            acks.append(_store(sender, write))
        except public_calls.PublicError as error:
            if error.status == 404:
                raise KeyGone(error.message) from None
            extra = {"retry_after": error.retry_after} if error.retry_after is not None else {}
            acks.append(error_ack(write.ref, error.status, error.code, error.message, **extra))
    return acks


def _store(sender: Sender, write: Write) -> dict[str, Any]:
    # The key is looked up for every write, as on HTTP: a paused key stops the next write.
    key = public_calls.key_resolve(token=sender.token, kind=Key.Kind.WRITE)
    body = json.dumps(write.body, ensure_ascii=False).encode()
    limit = writes.max_body_bytes(key)
    if len(body) > limit:  # before the rate limit, as on HTTP: a refused body costs no token
        raise public_calls.PublicError(413, "too_large", f"The body is over {limit} bytes.")
    writes.rate_check(key)
    headers = identity_headers(sender.connection_id, sender.name)
    if write.idempotency_key is not None:
        headers["Idempotency-Key"] = write.idempotency_key
    reply = writes.request_ingest(
        key=key,
        method="WS",
        path="",
        headers=headers,
        query=sender.query,
        content_type="application/json",
        body=body,
    )
    stored = reply.request
    return ack(write.ref, reply.status, reply.body, str(stored.uuid) if stored else None)


# --- Threads ---------------------------------------------------------------------------------

_threads: db.DbThreads | None = None


class _Share:
    """One hook's share of the write threads on one event loop, kept while it is used."""

    def __init__(self, size: int) -> None:
        self.semaphore = asyncio.Semaphore(size)
        self.users = 0


_shares: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Share]] = (
    weakref.WeakKeyDictionary()
)


def threads() -> db.DbThreads:
    global _threads
    if _threads is None or _threads.size != settings.WR_LIVE_WRITE_THREADS:
        _threads = db.DbThreads("wr-live-write", settings.WR_LIVE_WRITE_THREADS)
    return _threads


async def run(hook_id: str, func: Any, *args: Any) -> Any:
    """`func(*args)` on a write thread, within the hook's share of them."""
    loop = asyncio.get_running_loop()
    shares = _shares.get(loop)
    if shares is None:
        shares = _shares[loop] = {}
    share = shares.get(hook_id)
    if share is None:
        # No more than the hook's sandbox share (hooks.serving): its writes then queue here, in
        # order, instead of being refused 429 hook_busy by their own socket's other writes.
        size = min(settings.WR_LIVE_WRITE_THREADS_PER_HOOK, settings.WR_SANDBOX_CALLS_PER_HOOK)
        share = shares[hook_id] = _Share(max(1, size))
    share.users += 1
    try:
        async with share.semaphore:
            return await threads().run(func, *args)
    finally:
        share.users -= 1
        if share.users == 0:
            del shares[hook_id]


def shutdown() -> None:
    if _threads is not None:
        _threads.shutdown()
