"""Worker time shared between hooks by cost (docs/pipeline.md, "Fairness").

Each reduce slice charges its wall time to its hook, in windows of WR_WORKER_WINDOW_SECONDS
kept in Redis (shared by every worker process). A hook that has already spent its share of the
current window (WR_WORKER_SHARE_SECONDS) is deferred to the next window instead of folding, and
a hook close to its share gets a slice no longer than what is left of it. A hook with a huge
state or a slow reducer therefore holds at most that share of one worker process, whatever its
write rate, and the other processes stay free for everyone else; a cheap hook never comes near
its share (a 1,000-request batch folds in ~0.1 s).

Without Redis (the embedded default, tasks in process) nothing is charged or deferred.
"""

from __future__ import annotations

import logging
import math
import time

import redis
from django.conf import settings

from webreducer.redis import get_redis

logger = logging.getLogger(__name__)


def _window() -> tuple[str, float]:
    """The current window's key suffix and the seconds left in it."""
    length = settings.WR_WORKER_WINDOW_SECONDS
    now = time.time()
    index = math.floor(now / length)
    return str(index), (index + 1) * length - now


def _key(hook_id: str, window: str) -> str:
    return f"wr:worktime:{hook_id}:{window}"


def spent(hook_id: str) -> float:
    client = get_redis()
    if client is None:
        return 0.0
    window, _ = _window()
    try:
        return float(client.get(_key(hook_id, window)) or 0)
    except (redis.RedisError, ValueError):
        logger.warning("could not read the worker time of %s", hook_id, exc_info=True)
        return 0.0


def charge(hook_id: str, seconds: float) -> None:
    client = get_redis()
    if client is None or seconds <= 0:
        return
    window, left = _window()
    key = _key(hook_id, window)
    try:
        with client.pipeline() as pipe:
            pipe.incrbyfloat(key, seconds)
            pipe.expire(key, math.ceil(left) + 5)
            pipe.execute()
    except redis.RedisError:
        logger.warning("could not charge worker time to %s", hook_id, exc_info=True)


def slice_for(hook_id: str) -> tuple[float | None, float]:
    """(slice seconds, 0) when the hook may fold now, else (None, seconds to defer it by)."""
    share = settings.WR_WORKER_SHARE_SECONDS
    if share <= 0:
        return settings.WR_REDUCE_SLICE_SECONDS, 0.0
    left_of_share = share - spent(hook_id)
    if left_of_share <= 0:
        _, left_of_window = _window()
        return None, left_of_window
    # A short slice still folds a batch: the slice ends after the batch that crosses it.
    return min(settings.WR_REDUCE_SLICE_SECONDS, left_of_share), 0.0
