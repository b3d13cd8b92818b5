"""Broadcasts of hook changes to websocket/SSE subscribers over the channel layer.

Called after commit only, so a subscriber never sees a state that could still roll back.

Two groups per hook:
- `hook_group`: what public subscribers need (`state.changed`, `key.changed`). Each web process
  subscribes to it once per hook (hooks.live.hub), not once per connection.
- `owner_group`: the owner's live feed (`requests.logged`, `replay.progress`). Log events are
  published only while someone watches the hook (`watch`), so the write path pays nothing for
  them otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from webreducer.redis import get_redis

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

# An owner's feed marks its hook as watched for this long and refreshes the mark a few times
# within it; publishers cache "watched or not" for WATCH_CACHE_SECONDS per process.
WATCH_TTL_SECONDS = 60
WATCH_CACHE_SECONDS = 1.0


def hook_group(hook_id: str) -> str:
    return f"hook.{hook_id}"


def owner_group(hook_id: str) -> str:
    return f"hook-owner.{hook_id}"


def broadcast(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        # Subscribers re-read the state on their next message or reconnect; a lost broadcast
        # delays an update, it never loses data.
        logger.exception("broadcast to %s failed", group)


def state_changed(*, hook_id: str, seq: int) -> None:
    broadcast(hook_group(hook_id), {"type": "state.changed", "seq": seq})


def key_changed(*, hook_id: str, key_id: int | None = None) -> None:
    """A key was paused, resumed or revoked (or, with key_id None, the whole hook changed: paused
    by an operator, deleted). Call after commit: open live connections re-check their key and
    the ones that lost it close within a second."""
    broadcast(hook_group(hook_id), {"type": "key.changed", "key_id": key_id})


def request_summary(request: Any) -> dict[str, Any]:
    """One row of the owner's live request log."""
    return {
        "id": str(request.uuid),
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
    broadcast(
        owner_group(hook_id),
        {"type": "requests.logged", "requests": [request_summary(r) for r in requests]},
    )


def replay_progress(*, hook_id: str, version: int, done: int, total: int, status: str) -> None:
    """Progress of a publish/rollback replay, for the owner's feed (status: building,
    published, failed)."""
    broadcast(
        owner_group(hook_id),
        {
            "type": "replay.progress",
            "version": version,
            "done": done,
            "total": total,
            "status": status,
        },
    )


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
