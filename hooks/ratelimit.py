"""Per-key token buckets: WR_RATE_PER_SECOND sustained, bursts of WR_RATE_BURST.

In Redis when it is configured, so every web process shares one bucket per key; in process
memory for the embedded single-process default.

A process takes a key's tokens from Redis a few at a time (a lease): for a key allowed more than
20 writes/s, up to LEASE_SECONDS of its rate (at most a quarter of its burst, at most
LEASE_MAX), used here within LEASE_HOLD_SECONDS; what is left goes back to the bucket with the
process's next call for the key. Every write admitted was a token taken from the shared
bucket, so a key never gets more than its limit across all processes; what a lease costs is the
other way: tokens one process holds are not available to another until its next write of the
key, at most LEASE_MAX of them per process, and a burst may use held tokens on top of the
bucket's (at most one lease per process). A key limited to 20 writes/s or less takes one token
per write, exactly as without leases. The hold is longer than the lease's share of the rate so
that a process serving a fraction of a key's writes still uses its whole lease: with 50 ms, a
gunicorn worker taking 150 writes/s of a key used ~7 of 32 tokens per call (docs/performance.md,
"Write path").
"""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import cache
from typing import Any

import redis

from webreducer.redis import get_redis

logger = logging.getLogger(__name__)

LEASE_SECONDS = 0.05
LEASE_HOLD_SECONDS = 0.5
LEASE_MAX = 32

# Gives back ARGV[4] unused tokens, then takes up to ARGV[3] whole tokens (at least one); returns {tokens taken, seconds to wait}: the
# wait is 0 when any was taken, else the seconds until one is available. Redis's own clock keeps
# every web process on the same time.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local back = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or burst
local ts = tonumber(data[2]) or now
tokens = math.min(burst, tokens + back + math.max(0, now - ts) * rate)
local taken = 0
local wait = 0
if tokens >= 1 then
    taken = math.min(want, math.floor(tokens))
    tokens = tokens - taken
else
    wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {taken, tostring(wait)}
"""  # noqa: S105 - a Lua script, not a password

_local_lock = threading.Lock()
_local_buckets: dict[str, tuple[float, float]] = {}
# bucket -> (tokens this process holds, until when); per process (a fork starts with none).
_leases: dict[str, tuple[int, float]] = {}
_leases_pid = 0


def lease_size(*, rate: float, burst: int) -> int:
    """How many tokens a process takes at once for a bucket of this rate and burst."""
    return max(1, min(LEASE_MAX, int(rate * LEASE_SECONDS), burst // 4))


def take(bucket: str, *, rate: float, burst: int) -> float:
    """Take one token; return 0.0 when allowed, else how many seconds to wait."""
    global _leases_pid
    client = get_redis()
    if client is None:
        return _take_local(bucket, rate=rate, burst=burst)
    want = lease_size(rate=rate, burst=burst)
    now = time.monotonic()
    back = 0
    with _local_lock:
        if _leases_pid != os.getpid():
            _leases.clear()
            _leases_pid = os.getpid()
        held, until = _leases.pop(bucket, (0, 0.0))
        if held > 0 and now < until:
            _leases[bucket] = (held - 1, until)
            return 0.0
        back = held
    try:
        taken, wait = _script(client)(keys=[f"wr:rate:{bucket}"], args=[rate, burst, want, back])
    except redis.RedisError:
        # The limiter protects capacity; it must not turn a Redis hiccup into lost writes.
        logger.warning("rate limiter unavailable, allowing the request", exc_info=True)
        return 0.0
    if int(taken) > 1:
        with _local_lock:
            if len(_leases) > 10_000:
                _leases.clear()
            _leases[bucket] = (int(taken) - 1, now + LEASE_HOLD_SECONDS)
    return 0.0 if int(taken) > 0 else float(wait)


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
