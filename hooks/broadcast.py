"""Broadcasts of hook changes to websocket/SSE subscribers over the channel layer.

Called after commit only, so a subscriber never sees a state that could still roll back.

Two groups per hook, and one per room with two-way sockets:
- `hook_group`: what public subscribers need (`state.changed`, `key.changed`). Each web process
  subscribes to it once per hook (hooks.live.hub), not once per connection.
- `owner_group`: the owner's live feed (`requests.logged`, `replay.progress`). Log events are
  published only while someone watches the hook (`watch`), so the write path pays nothing for
  them otherwise.
- `room_group`: a room's two-way sockets (`presence.changed`, `socket.broadcast`;
  hooks.live.room_sockets), so a broadcast reaches only the processes with sockets in its room.

Sync code without an event loop (the Celery worker, gunicorn) sends through one long-lived event
loop per process, in a daemon thread (`_loop_thread`): channels_redis pools its Redis
connections per event loop, so they are reused. (`async_to_sync` would start a thread, an event
loop and new Redis connections for every broadcast.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from hooks.channel_messages import (
    KeyChanged,
    PresenceChanged,
    ReplayProgress,
    RequestsLogged,
    RequestSummary,
    SocketBroadcast,
    StateChanged,
    StatesChanged,
)
from webreducer.redis import get_redis

logger = logging.getLogger(__name__)

# An owner's feed marks its hook as watched for this long and refreshes the mark a few times
# within it; publishers cache "watched or not" for WATCH_CACHE_SECONDS per process.
WATCH_TTL_SECONDS = 60
WATCH_CACHE_SECONDS = 1.0

# A send still running after this is abandoned (Redis unreachable), so the sends queued behind
# it do not wait forever.
SEND_TIMEOUT = 5.0
# How long a sync caller waits for its broadcast to go out before it goes on (the send goes on
# too). Waiting costs the caller one send (~1 ms on a local Redis) and keeps "sent when
# state_changed() returns" true for tests and for code that runs after it.
BROADCAST_WAIT_SECONDS = 1.0


def hook_group(hook_id: str) -> str:
    return f"hook.{hook_id}"


def owner_group(hook_id: str) -> str:
    return f"hook-owner.{hook_id}"


def room_group(hook_id: str, room: str) -> str:
    """A room's two-way sockets: broadcasts and presence. (Group names are short ASCII: the
    room name is hashed.)"""
    digest = hashlib.sha256(room.encode()).hexdigest()[:24]
    return f"room.{hook_id}.{digest}"


# --- Sending --------------------------------------------------------------------------------

# One lock per event loop: channels_redis's group_send is several Redis commands on pooled
# connections, so two sends running side by side could arrive in either order. asyncio.Lock
# serves waiters first come, first served, and each send takes it before its first await.
_send_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)
_in_flight: set[asyncio.Task[None]] = set()


async def _send(layer: Any, group: str, message: Mapping[str, Any]) -> None:
    """Send in submission order on this loop; never raises (a failure is logged: a lost
    broadcast only delays an update, every hub re-reads its hook every WR_LIVE_RESYNC_SECONDS)."""
    loop = asyncio.get_running_loop()
    lock = _send_locks.get(loop)
    if lock is None:
        lock = _send_locks[loop] = asyncio.Lock()
    try:
        async with lock:
            await asyncio.wait_for(layer.group_send(group, message), SEND_TIMEOUT)
    except Exception:
        logger.exception("broadcast to %s failed", group)


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="wr-broadcast", daemon=True
        )
        self.thread.start()


_loop_thread_lock = threading.Lock()
_loop_thread_current: _LoopThread | None = None


def _loop_thread() -> _LoopThread:
    """This process's broadcast loop, started on first use and again in a forked child (a fork
    copies the loop but not its thread)."""
    global _loop_thread_current
    current = _loop_thread_current
    if current is not None and current.pid == os.getpid():
        return current
    with _loop_thread_lock:
        current = _loop_thread_current
        if current is None or current.pid != os.getpid():
            current = _loop_thread_current = _LoopThread()
        return current


def _outer_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop that called this sync code through sync_to_async, if any (ASGI views,
    database_sync_to_async). asgiref leaves it in the thread afterwards: only a loop that still
    runs counts."""
    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    loop: asyncio.AbstractEventLoop | None = getattr(
        SyncToAsync.threadlocal, "main_event_loop", None
    )
    return loop if loop is not None and loop.is_running() else None


def broadcast(group: str, message: Mapping[str, Any]) -> None:
    """Send `message` to `group` from sync or async code. Never raises; broadcasts from one
    thread or event loop arrive in the order they were made."""
    try:
        _broadcast(group, message)
    except Exception:
        logger.exception("broadcast to %s failed", group)


def broadcast_all(group: str, messages: Sequence[Mapping[str, Any]]) -> Sending | None:
    """`broadcast` of several messages to one group, in order, without waiting (from plain
    sync code): a multi-room batch's state changes (hooks.room_batch) go out while the worker
    folds the next batch. Returns what to `sent_wait()` for, or None when they are sent
    already. Never raises."""
    try:
        if get_channel_layer() is None or not messages:
            return None
        if _plain_sync():
            loop = _loop_thread().loop
            layer = get_channel_layer()
            futures = [
                asyncio.run_coroutine_threadsafe(_send(layer, group, m), loop) for m in messages
            ]
            return Sending(group, futures[-1])  # sent in order: the last one is the last
    except Exception:
        logger.exception("broadcast to %s failed", group)
        return None
    for message in messages:
        broadcast(group, message)
    return None


@dataclass
class Sending:
    group: str
    last: concurrent.futures.Future[None]


def sent_wait(sending: Sending | None) -> None:
    """Wait (up to BROADCAST_WAIT_SECONDS) for what `broadcast_all` sends to go out."""
    if sending is None:
        return
    try:
        sending.last.result(timeout=BROADCAST_WAIT_SECONDS)
    except concurrent.futures.TimeoutError:
        logger.warning("broadcast to %s is slow; not waiting for it", sending.group)


def _plain_sync() -> bool:
    """Sync code with no event loop of its own or above it (the Celery worker, gunicorn)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return False
    layer = get_channel_layer()
    return not isinstance(layer, InMemoryChannelLayer) and _outer_loop() is None


def _broadcast(group: str, message: Mapping[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        # Async code (ASGI): a task on this loop, not awaited.
        task = running.create_task(_send(layer, group, message))
        _in_flight.add(task)
        task.add_done_callback(_in_flight.discard)
        return
    if isinstance(layer, InMemoryChannelLayer) or _outer_loop() is not None:
        # Sync code called from an event loop: send on that loop, whose channel-layer
        # connections are warm. The in-memory layer (the embedded default) must: its queues
        # belong to the loop its receivers run on.
        async_to_sync(_send)(layer, group, message)
        return
    # Plain sync code (Celery worker, gunicorn): the process's broadcast loop.
    future = asyncio.run_coroutine_threadsafe(_send(layer, group, message), _loop_thread().loop)
    if BROADCAST_WAIT_SECONDS > 0:
        try:
            future.result(timeout=BROADCAST_WAIT_SECONDS)
        except concurrent.futures.TimeoutError:
            logger.warning("broadcast to %s is slow; not waiting for it", group)


def state_changed(
    *,
    hook_id: str,
    seq: int,
    version_id: int | None = None,
    value: str | None = None,
    room: str | None = "",
) -> None:
    """A room's live state changed (call after commit). With `value`, the committed state's
    JSON text of version `version_id`: up to WR_LIVE_INLINE_STATE_BYTES it travels in the
    message, and web processes deliver it without reading the database. `room` None means
    every room of the hook (a publish's switch, an archive): subscribers read theirs again."""
    broadcast(hook_group(hook_id), state_message(seq, version_id, value, room))


def states_changed(
    *, hook_id: str, version_id: int, changes: Sequence[tuple[str, int, str]]
) -> Sending | None:
    """`state_changed` for several rooms of one version at once, (room, seq, value) each, as
    few `states.changed` messages as fit BUNDLE_BYTES of inline states each, through
    `broadcast_all` (a send per room, several Redis round trips each, had been what bounded a
    multi-room batch's rate: docs/performance.md)."""
    bundles: list[StatesChanged] = []
    size = BUNDLE_BYTES
    for room, seq, value in changes:
        message = state_message(seq, version_id, value, room)
        weight = len(message.get("value", "")) + 64
        if size + weight > BUNDLE_BYTES:
            bundles.append({"type": "states.changed", "changes": []})
            size = 0
        bundles[-1]["changes"].append(message)
        size += weight
    return broadcast_all(hook_group(hook_id), bundles)


# Inline state text per states.changed message (a state over it still travels alone).
BUNDLE_BYTES = 256 * 1024


def state_message(
    seq: int, version_id: int | None, value: str | None, room: str | None
) -> StateChanged:
    message: StateChanged = {"type": "state.changed", "seq": seq}
    if room != "":
        message["room"] = room  # absent: the main room, as before rooms existed
    if version_id is not None:
        message["version_id"] = version_id
        if value is not None and _inline_fits(value):
            message["value"] = value
    return message


def _inline_fits(value: str) -> bool:
    limit: int = settings.WR_LIVE_INLINE_STATE_BYTES
    # UTF-8 takes 1 to 4 bytes a character: encode only when the length alone cannot tell.
    if len(value) > limit:
        return False
    return len(value) * 4 <= limit or len(value.encode()) <= limit


def key_changed(*, hook_id: str, key_id: int | None = None) -> None:
    """A key was paused, resumed or revoked (or, with key_id None, the whole hook changed: paused
    by an operator, deleted). Call after commit: open live connections re-check their key and
    the ones that lost it close within a second."""
    message: KeyChanged = {"type": "key.changed", "key_id": key_id}
    broadcast(hook_group(hook_id), message)


def presence_changed(*, hook_id: str, room: str) -> None:
    """A socket joined or left `room` (call after commit): every process with sockets in the
    room sends them its members again."""
    message: PresenceChanged = {"type": "presence.changed"}
    broadcast(room_group(hook_id, room), message)


def socket_broadcast(*, hook_id: str, room: str, sender: str, body: str) -> None:
    """A two-way socket's broadcast (JSON text), for the other sockets of its room."""
    message: SocketBroadcast = {"type": "socket.broadcast", "sender": sender, "body": body}
    broadcast(room_group(hook_id, room), message)


def request_summary(request: Any) -> RequestSummary:
    """One row of the owner's live request log."""
    return {
        "id": str(request.uuid),
        "room": request.room or None,
        "seq": request.seq,
        "outcome": request.outcome,
        "method": request.method,
        "path": request.path,
        "status": request.response_status,
        "received_at": request.received_at.isoformat() if request.received_at else None,
        "duration_ms": request.duration_ms,
        "error": (request.error or {}).get("type") if isinstance(request.error, dict) else None,
    }


def requests_logged(*, hook_id: str, requests: Sequence[Any]) -> None:
    """New log entries, or new outcomes of known ones (the feed upserts by id). Cheap when no
    owner is watching: one cached flag lookup."""
    if not requests or not watched(hook_id):
        return
    message: RequestsLogged = {
        "type": "requests.logged",
        "requests": [request_summary(r) for r in requests],
    }
    broadcast(owner_group(hook_id), message)


def replay_progress(*, hook_id: str, version: int, done: int, total: int, status: str) -> None:
    """Progress of a publish/rollback replay, for the owner's feed (status: building,
    published, failed)."""
    message: ReplayProgress = {
        "type": "replay.progress",
        "version": version,
        "done": done,
        "total": total,
        "status": status,
    }
    broadcast(owner_group(hook_id), message)


# --- Who is watching ------------------------------------------------------------------------

_watch_lock = threading.Lock()
_watch_cache: dict[str, tuple[float, bool]] = {}
_local_watchers: dict[str, int] = {}  # the embedded default: one process, no Redis


def _watch_key(hook_id: str) -> str:
    return f"wr:watch:{hook_id}"


def watch(hook_id: str, *, watching: bool = True) -> None:
    """Mark (or, in the embedded default, unmark) a hook as watched by an owner's feed."""
    client = get_redis()
    if client is None:
        with _watch_lock:
            count = _local_watchers.get(hook_id, 0) + (1 if watching else -1)
            if count > 0:
                _local_watchers[hook_id] = count
            else:
                _local_watchers.pop(hook_id, None)
            _watch_cache.pop(hook_id, None)
        return
    if watching:
        try:
            client.set(_watch_key(hook_id), 1, ex=WATCH_TTL_SECONDS)
        except redis.RedisError:
            logger.warning("could not mark hook %s as watched", hook_id, exc_info=True)
    # Unwatching leaves the mark to expire: another owner's tab may still be watching.


def watched(hook_id: str) -> bool:
    now = time.monotonic()
    with _watch_lock:
        cached = _watch_cache.get(hook_id)
        if cached is not None and cached[0] > now:
            return cached[1]
    client = get_redis()
    if client is None:
        value = hook_id in _local_watchers
    else:
        try:
            value = bool(client.exists(_watch_key(hook_id)))
        except redis.RedisError:
            value = True  # publish rather than silently drop the owner's log
    with _watch_lock:
        if len(_watch_cache) > 10_000:
            _watch_cache.clear()
        _watch_cache[hook_id] = (now + WATCH_CACHE_SECONDS, value)
    return value
