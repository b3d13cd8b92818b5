"""Fixed-window counters for the account flows: visitors per IP, sign-in links per email and IP.

In Redis when it is configured, so every web process shares the counters; in Django's cache for
the embedded single-process default. A limit answers with how long to wait, for `Retry-After`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time

import redis
from django.core.cache import cache

from webreducer.redis import get_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "wr:accounts:rl:"


class RateLimited(Exception):
    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def hit(scope: str, ident: str, *, limit: int, window: int, message: str) -> None:
    """Count one event for (scope, ident); raise RateLimited past `limit` per `window` seconds,
    its message saying how long to wait (at `{wait}` in it, else after it)."""
    if limit <= 0:
        return
    now = time.time()
    window_start = int(now // window) * window
    # Hashed: the keys must not hold email addresses in clear.
    digest = hashlib.sha256(ident.lower().encode()).hexdigest()[:32]
    key = f"{KEY_PREFIX}{scope}:{digest}:{window_start}"
    count = _incr(key, ttl=window + 1)
    if count > limit:
        retry_after = max(1, int(window_start + window - now) + 1)
        wait = wait_text(retry_after)
        text = (
            message.format(wait=wait) if "{wait}" in message else f"{message} Try again in {wait}."
        )
        raise RateLimited(text, retry_after=retry_after)


def wait_text(seconds: int) -> str:
    """A wait as people say it: "40 seconds", "1 minute", "46 minutes" (rounded up)."""
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _incr(key: str, *, ttl: int) -> int:
    client = get_redis()
    if client is None:
        cache.add(key, 0, timeout=ttl)
        try:
            return int(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=ttl)
            return 1
    try:
        pipe = client.pipeline()
        pipe.incr(key)
        pipe.expire(key, ttl)
        count, _ = pipe.execute()
        return int(count)
    except redis.RedisError:
        # These limits slow down abuse; a Redis hiccup must not lock everybody out of sign-in.
        logger.warning("account rate limiter unavailable, allowing the request", exc_info=True)
        return 0


def reset() -> None:
    """Forget every counter (tests, and operators unblocking someone)."""
    client = get_redis()
    if client is None:
        cache.clear()
        return
    for key in client.scan_iter(match=f"{KEY_PREFIX}*", count=1000):
        client.delete(key)
