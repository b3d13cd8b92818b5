"""Coalesced wake-ups: at most one queued reduce task per hook, and a pause for a failing one.

A flag per hook in Redis (SET NX) means "a task is queued": writes, the reconciler, a slice
that ran out of time and a busy retry all queue through `wake()`, so whatever they do a hook
has at most one task waiting. The task clears the flag when it starts (`claim()`), so a write
that lands during the fold queues the next one. A lost flag or message only delays work: the
reconciler queues hooks that still have pending requests.

The flag is the hook's, not the room's: one task folds every pending room of its hook
(hooks.room_batch), so a task per room only cost a queue round trip and a look at a room
another task had folded already (2 to 5 ms of worker time each: at 1,000 writes/s over 1,000
rooms, more than two worker processes have). A task's message still names the room that woke
it (where it starts). Rooms still fold in parallel: a task that leaves rooms for later queues
the hook again when it starts folding (hooks.room_batch), and a write during a fold queues the
next task, which takes the rooms the running one does not hold.

A hook whose task fails for a reason that is not one request (hooks.pipeline.HookFailing, the
database down, its secrets unreadable) backs off: `back_off()` sets the same flag to "backing
off" for WR_REDUCE_BACKOFF_SECONDS, doubling with every failure in a row up to
WR_REDUCE_BACKOFF_MAX_SECONDS. While it is set, writes and the reconciler queue nothing (SET NX
fails) and a task queued before the pause does nothing; when it expires the reconciler (or the
next write) queues the hook again, and a task that succeeds forgets the failures. The pause is
the hook's, all of its rooms: a tenant's failing room costs that tenant, no one else.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis
from django.conf import settings

from webreducer.redis import get_redis

logger = logging.getLogger(__name__)

# How long a "queued" flag outlives a lost message: the reconciler queues the hook again after
# it. Short, so a lost message costs seconds; a task that waits longer in a deep queue may get a
# twin, which is harmless (the pipeline locks) and bounded (one per hook per this many seconds).
FLAG_TTL_SECONDS = 15
QUEUED = b"q"
BACKING_OFF = b"b"

# KEYS: flag, failure count. Clears a "queued" flag (not a pause) and reports the failures in a
# row so far, in one round trip: the usual task pays no more than the DEL it always did.
_CLAIM = """
local flag = redis.call('GET', KEYS[1])
if flag == ARGV[1] then
    return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
if flag then
    redis.call('DEL', KEYS[1])
end
return {1, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""


def _flag(hook_id: str) -> str:
    return f"wr:wake:{hook_id}"


def _failures(hook_id: str) -> str:
    return f"wr:fails:{hook_id}"


def wake(hook_id: str, *, room: str = "", countdown: float | None = None, busy: int = 0) -> bool:
    """Queue a reduce task for the hook, starting at `room`, unless one is queued already or
    the hook is backing off; return whether this call queued it. `countdown` delays the task
    (a busy retry, a deferral)."""
    client = get_redis()
    try:
        if client is not None and not client.set(
            _flag(hook_id), QUEUED, nx=True, ex=FLAG_TTL_SECONDS
        ):
            return False
    except (redis.RedisError, OSError):
        logger.warning("could not queue hook %s; the reconciler will", hook_id, exc_info=True)
        return False
    return _queue(hook_id, room, countdown=countdown, busy=busy)


def wake_all(rooms: Sequence[tuple[str, str]]) -> int:
    """`wake()` of several (hook id, room): one per hook (its first room), their flags set in
    one round trip to Redis (the write path's coalesced wake-ups, hooks/deferred.py); how many
    tasks it queued."""
    first = dict(reversed(rooms))  # hook id -> its first room in `rooms`
    hooks = list(dict.fromkeys(hook_id for hook_id, _ in rooms))
    client = get_redis()
    if client is None or len(hooks) == 1:
        return sum(wake(hook_id, room=first[hook_id]) for hook_id in hooks)
    try:
        pipe = client.pipeline(transaction=False)
        for hook_id in hooks:
            pipe.set(_flag(hook_id), QUEUED, nx=True, ex=FLAG_TTL_SECONDS)
        flags_set = pipe.execute()
    except (redis.RedisError, OSError):
        logger.warning("could not queue %d hooks; the reconciler will", len(hooks), exc_info=True)
        return 0
    return sum(_queue(h, first[h]) for h, was_set in zip(hooks, flags_set, strict=True) if was_set)


def _queue(hook_id: str, room: str, *, countdown: float | None = None, busy: int = 0) -> bool:
    from hooks.tasks import reduce_hook

    # The main room's task message is what it was before rooms: queued tasks survive a deploy.
    kwargs: dict[str, object] = {"room": room} if room else {}
    try:
        if countdown is None and not busy:
            reduce_hook.delay(hook_id, **kwargs)
        else:
            reduce_hook.apply_async((hook_id,), {"busy": busy, **kwargs}, countdown=countdown)
    except (redis.RedisError, OSError):
        logger.warning("could not queue hook %s; the reconciler will", hook_id, exc_info=True)
        return False
    return True


def claim(hook_id: str) -> tuple[bool, int]:
    """At the start of a task: (whether to run, how many times in a row the hook's task failed
    before). False while the hook backs off."""
    client = get_redis()
    if client is None:
        return True, 0
    try:
        run, failures = client.eval(_CLAIM, 2, _flag(hook_id), _failures(hook_id), BACKING_OFF)
    except redis.RedisError:
        logger.warning("could not clear the wake-up flag of %s", hook_id, exc_info=True)
        return True, 0
    return bool(run), int(failures)


def back_off(hook_id: str) -> float:
    """The hook's task failed again: pause it; return for how many seconds."""
    client = get_redis()
    first: float = settings.WR_REDUCE_BACKOFF_SECONDS
    longest: float = settings.WR_REDUCE_BACKOFF_MAX_SECONDS
    if client is None:
        return 0.0
    try:
        failures = int(client.incr(_failures(hook_id)))
        # Forgotten after a while even if no task succeeds (e.g. the hook was deleted).
        client.expire(_failures(hook_id), int(4 * longest) + 60)
        delay = min(longest, first * 2 ** min(failures - 1, 30))
        client.set(_flag(hook_id), BACKING_OFF, px=max(1, int(delay * 1000)))
    except redis.RedisError:
        logger.warning("could not pause hook %s", hook_id, exc_info=True)
        return 0.0
    return delay


def recovered(hook_id: str) -> None:
    """The hook's task succeeded after failures: the next failure pauses it briefly again."""
    client = get_redis()
    if client is not None:
        try:
            client.delete(_failures(hook_id))
        except redis.RedisError:
            logger.warning("could not reset the failures of %s", hook_id, exc_info=True)
