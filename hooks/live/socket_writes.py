"""The writes of a two-way socket (`WS /write/<key>/live`, SPEC §2): each frame
`{"type": "write", "ref", "idempotency_key", "body"}` is one request with every guarantee of an
HTTP write, checked and answered as one (hooks.writes.socket_writes_ingest) and acknowledged,
after commit, with `{"type": "ack", "ref", "id", "status", "body"}`.

A hook's sockets in one web process store their writes in trips (`store`): a trip takes the
writes all of them queued meanwhile, up to WRITES_PER_TRIP, and stores them with one commit and
one wake-up per room; each is still checked, limited and answered by the responder on its own,
and a refused one does not touch the others. The database and sandbox work runs on
WR_LIVE_WRITE_THREADS threads per web process (each with one database connection,
hooks.live.db), one hook's trips on at most WR_LIVE_WRITE_THREADS_PER_HOOK of them at once (a
hook with a slow responder waits for its own share, the others' writes go on), and a socket
hands its next writes to a trip only once the last ones are acked, so its acks come in the
order it sent them.
"""

from __future__ import annotations

import asyncio
import collections
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from hooks import public_calls, writes
from hooks.live import db, listeners
from hooks.live.presence import identity_headers

# A ref is the client's own label for a write; it comes back in the ack.
REF_MAX_BYTES = 256


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


class KeyGone(Exception):
    """The socket's write key no longer serves (paused, revoked, hook deleted): close 4404,
    after the acks of the socket's writes stored before it (`acks`)."""

    def __init__(self, message: str, acks: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.acks = acks or []


def trip_store(
    entries: Sequence[tuple[Sender, Sequence[Write]]],
) -> list[list[dict[str, Any]] | KeyGone]:
    """One trip: the writes of several sockets of one hook, stored with one commit
    (hooks.writes.socket_writes_ingest); per socket, its writes' acks in order, or KeyGone when
    its key stopped serving."""
    items: list[writes.SocketWrite] = []
    # Per socket, per write: its ack already (refused before the database), or its index in
    # `items`.
    slots: list[list[dict[str, Any] | int]] = []
    for sender, socket_writes in entries:
        slots.append([])
        for write in socket_writes:
            try:
                items.append(_prepare(sender, write))
            except public_calls.PublicError as error:
                if error.status == 404:
                    slots[-1].append(error_ack(write.ref, 404, error.code, error.message))
                    break  # its key is gone: the rest of its writes are not tried
                slots[-1].append(_error(write, error))
            else:
                slots[-1].append(len(items) - 1)
    results = writes.socket_writes_ingest(items) if items else []
    out: list[list[dict[str, Any]] | KeyGone] = []
    for (_, socket_writes), socket_slots in zip(entries, slots, strict=True):
        acks: list[dict[str, Any]] = []
        gone: KeyGone | None = None
        for write, slot in zip(socket_writes, socket_slots, strict=False):
            outcome = slot if isinstance(slot, dict) else results[slot]
            if isinstance(outcome, public_calls.PublicError):
                outcome = _error(write, outcome)
            elif isinstance(outcome, public_calls.Reply):
                stored = outcome.request
                request_id = str(stored.uuid) if stored else None
                outcome = ack(write.ref, outcome.status, outcome.body, request_id)
            if outcome["status"] == 404 and outcome["id"] is None:
                gone = KeyGone(outcome["body"]["error"]["message"], acks)
                break
            acks.append(outcome)
        out.append(gone if gone is not None else acks)
    return out


def _error(write: Write, error: public_calls.PublicError) -> dict[str, Any]:
    extra = {"retry_after": error.retry_after} if error.retry_after is not None else {}
    return error_ack(write.ref, error.status, error.code, error.message, **extra)


def _prepare(sender: Sender, write: Write) -> writes.SocketWrite:
    """The write's key and limits checked, as on HTTP: the key row of the last 2 s (the INSERT
    re-checks that it still takes writes), the body size before the rate limit (a refused body
    costs no token)."""
    key = writes.write_key_resolve(sender.token)
    body = json.dumps(write.body, ensure_ascii=False).encode()
    limit = writes.max_body_bytes(key)
    if len(body) > limit:
        raise public_calls.PublicError(413, "too_large", f"The body is over {limit} bytes.")
    writes.rate_check(key)
    headers = identity_headers(sender.connection_id, sender.name)
    if write.idempotency_key is not None:
        headers["Idempotency-Key"] = write.idempotency_key
    return writes.SocketWrite(key=key, headers=headers, query=sender.query, body=body)


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


def share_size() -> int:
    """How many of the write threads one hook's sockets use at once in a process."""
    return max(1, min(settings.WR_LIVE_WRITE_THREADS_PER_HOOK, settings.WR_SANDBOX_CALLS_PER_HOOK))


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
        share = shares[hook_id] = _Share(share_size())
    share.users += 1
    try:
        async with share.semaphore:
            return await threads().run(func, *args)
    finally:
        share.users -= 1
        if share.users == 0:
            del shares[hook_id]


# --- Trips -----------------------------------------------------------------------------------

# Writes stored in one trip to a write thread, from any of a hook's sockets in this process.
WRITES_PER_TRIP = 64


@dataclass
class _Waiting:
    sender: Sender
    writes: Sequence[Write]
    done: asyncio.Future[list[dict[str, Any]] | KeyGone]


class _HookTrips:
    """One hook's socket writes waiting for a trip, on one event loop, and its trips under way
    (at most its share of the write threads)."""

    def __init__(self) -> None:
        self.waiting: collections.deque[_Waiting] = collections.deque()
        self.trips = 0


_trips: listeners.PerLoop[str, _HookTrips] = listeners.PerLoop()


async def store(
    hook_id: str, sender: Sender, socket_writes: Sequence[Write]
) -> list[dict[str, Any]]:
    """Store one socket's `socket_writes` in order; their acks, once committed. Raises KeyGone.

    The writes of all the hook's sockets in this process go in trips: a trip starts at once
    while the hook has a free share of the write threads, and what its sockets send meanwhile
    waits and goes in the next trip together (up to WRITES_PER_TRIP writes, one commit). A
    socket waits for its acks before it sends more, so its writes are stored, and acked, in
    the order it sent them."""
    trips = _trips()
    hook_trips = trips.get(hook_id)
    if hook_trips is None:
        hook_trips = trips[hook_id] = _HookTrips()
    done: asyncio.Future[list[dict[str, Any]] | KeyGone] = (
        asyncio.get_running_loop().create_future()
    )
    hook_trips.waiting.append(_Waiting(sender, socket_writes, done))
    _trips_start(hook_id, hook_trips)
    # Cancelled (the socket closed): the trip goes on, and its acks go nowhere, as when a
    # connection drops after a commit; the client resends with its idempotency keys.
    result = await done
    if isinstance(result, KeyGone):
        raise result
    return result


def _trips_start(hook_id: str, hook_trips: _HookTrips) -> None:
    while hook_trips.waiting and hook_trips.trips < share_size():
        batch: list[_Waiting] = []
        count = 0
        waiting = hook_trips.waiting
        while waiting and (not batch or count + len(waiting[0].writes) <= WRITES_PER_TRIP):
            batch.append(waiting.popleft())
            count += len(batch[-1].writes)
        hook_trips.trips += 1
        listeners.spawn(_trip(hook_id, hook_trips, batch))


async def _trip(hook_id: str, hook_trips: _HookTrips, batch: list[_Waiting]) -> None:
    results: Sequence[list[dict[str, Any]] | KeyGone | Exception]
    try:
        results = await run(hook_id, trip_store, [(w.sender, w.writes) for w in batch])
    except Exception as error:  # the thread or its database failed: every socket is told
        results = [error] * len(batch)
    except BaseException:  # cancelled with its event loop
        for waiting in batch:
            waiting.done.cancel()
        raise
    finally:
        hook_trips.trips -= 1
    for waiting, result in zip(batch, results, strict=True):
        if waiting.done.done():  # cancelled: its socket closed
            continue
        if isinstance(result, Exception) and not isinstance(result, KeyGone):
            waiting.done.set_exception(result)
        else:
            waiting.done.set_result(result)
    trips = _trips()
    if hook_trips.waiting:
        _trips_start(hook_id, hook_trips)
    elif hook_trips.trips == 0 and trips.get(hook_id) is hook_trips:
        del trips[hook_id]


def shutdown() -> None:
    if _threads is not None:
        _threads.shutdown()
