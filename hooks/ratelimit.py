"""Per-key token buckets: WR_RATE_PER_SECOND sustained, bursts of WR_RATE_BURST.

In Redis when it is configured, so every web process shares one bucket per key; in process
memory for the embedded single-process default.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cache
from typing import Any

import redis

from webreducer.redis import get_redis

logger = logging.getLogger(__name__)

# Returns 0 when a token was taken, else the seconds until one is available. Redis's own clock
# keeps every web process on the same time.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or burst
local ts = tonumber(data[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""  # noqa: S105 - a Lua script, not a password

_local_lock = threading.Lock()
_local_buckets: dict[str, tuple[float, float]] = {}


def take(bucket: str, *, rate: float, burst: int) -> float:
    """Take one token; return 0.0 when allowed, else how many seconds to wait."""
    client = get_redis()
    if client is None:
        return _take_local(bucket, rate=rate, burst=burst)
    try:
        return float(_script(client)(keys=[f"wr:rate:{bucket}"], args=[rate, burst]))
    except redis.RedisError:
        # The limiter protects capacity; it must not turn a Redis hiccup into lost writes.
        logger.warning("rate limiter unavailable, allowing the request", exc_info=True)
        return 0.0


@cache
def _script(client: redis.Redis) -> Any:
    # EVALSHA after the first call: the script's text is not sent with every write.
    return client.register_script(TOKEN_BUCKET)


def _take_local(bucket: str, *, rate: float, burst: int) -> float:
    now = time.monotonic()
    with _local_lock:
        tokens, ts = _local_buckets.get(bucket, (float(burst), now))
        tokens = min(float(burst), tokens + (now - ts) * rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / rate
        _local_buckets[bucket] = (tokens, now)
        return wait
