"""Coalesced wake-ups: one queued reduce task per hook per burst of writes.

A flag per hook in Redis (SET NX) means "a task is queued"; the task clears it before it
starts folding, so a write that lands during the fold queues the next one. A lost flag or
message only delays work: the reconciler queues hooks that still have pending requests.
"""

from __future__ import annotations

import logging

import redis

from webreducer.redis import get_redis

logger = logging.getLogger(__name__)

FLAG_TTL_SECONDS = 60


def _flag(hook_id: str) -> str:
    return f"wr:wake:{hook_id}"


def wake(hook_id: str) -> None:
    from hooks.tasks import reduce_hook

    client = get_redis()
    try:
        if client is not None and not client.set(_flag(hook_id), 1, nx=True, ex=FLAG_TTL_SECONDS):
            return
        reduce_hook.delay(hook_id)
    except (redis.RedisError, OSError):
        logger.warning("could not queue hook %s; the reconciler will", hook_id, exc_info=True)


def clear(hook_id: str) -> None:
    client = get_redis()
    if client is not None:
        try:
            client.delete(_flag(hook_id))
        except redis.RedisError:
            logger.warning("could not clear the wake-up flag of %s", hook_id, exc_info=True)


def hold(hook_id: str) -> None:
    """Keep the flag set while a deferred task is queued (hooks.worktime): writes queue nothing."""
    client = get_redis()
    if client is not None:
        try:
            client.set(_flag(hook_id), 1, ex=FLAG_TTL_SECONDS)
        except redis.RedisError:
            logger.warning("could not hold the wake-up flag of %s", hook_id, exc_info=True)
