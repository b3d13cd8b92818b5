"""Worker time shared between hooks by cost (docs/pipeline.md, "Fairness").

Each reduce slice charges its wall time to its hook, in windows of WR_WORKER_WINDOW_SECONDS
kept in Redis (shared by every worker process). A hook that has already spent its share of the
current window (WR_WORKER_SHARE_SECONDS) is deferred to the next window instead of folding, and
a hook close to its share gets a slice no longer than what is left of it. A hook with a huge
state or a slow reducer therefore holds at most that share of one worker process, whatever its
write rate, while other hooks have work waiting, and the other processes stay free for everyone
else; a cheap hook never comes near its share (a 1,000-request batch folds in ~0.1 s). The cap
is work-conserving: while no other hook has a request pending, a hook over its share folds on,
in short slices (OVER_SHARE_SLICE_SECONDS), so another hook's write waits at most one of them
before the share binds again.

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
    """(slice seconds, 0) when the hook may fold now, else (None, seconds to defer it by).

    The share binds only while another hook has work waiting (`others_waiting`): a hook alone
    on the workers folds at full speed, whatever it has spent (work-conserving)."""
    share = settings.WR_WORKER_SHARE_SECONDS
    if share <= 0:
        return settings.WR_REDUCE_SLICE_SECONDS, 0.0
    left_of_share = share - spent(hook_id)
    if left_of_share > 0:
        # A short slice still folds a batch: the slice ends after the batch that crosses it.
        return min(settings.WR_REDUCE_SLICE_SECONDS, left_of_share), 0.0
    if not others_waiting(hook_id):
        # Nobody else waits: a short slice, so that a write to another hook, which queues its
        # task behind this one's re-queue, finds the share binding again soon.
        return min(settings.WR_REDUCE_SLICE_SECONDS, OVER_SHARE_SLICE_SECONDS), 0.0
    _, left_of_window = _window()
    return None, left_of_window


# The slice of a hook over its share while no other hook has work waiting.
OVER_SHARE_SLICE_SECONDS = 0.5


def others_waiting(hook_id: str) -> bool:
    """Whether any other hook has a request pending: two probes of the pending index (hooks
    before and after this one in its order), each stopping at its first row."""
    from hooks.models import Request

    pending = Request.objects.filter(outcome=Request.Outcome.PENDING).order_by()
    return (
        pending.filter(hook_id__lt=hook_id).exists() or pending.filter(hook_id__gt=hook_id).exists()
    )
