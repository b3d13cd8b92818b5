"""Caps on live connections per read key and per client IP, shared by every web process.

With Redis, each cap is a sorted set of connection ids scored by an expiry time; a process
refreshes its connections' scores every TTL/3 seconds, so the ids of a crashed process drop out
after WR_LIVE_SLOT_TTL seconds instead of holding slots forever (a bare INCR/DECR counter would
leak). Without Redis (the embedded default: one process) the counts are in memory.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
import weakref
from dataclasses import dataclass

import redis
import redis.asyncio as aredis
from django.conf import settings

logger = logging.getLogger(__name__)

# KEYS: the key's set, the IP's set. ARGV: ttl, connection id, max per key, max per IP.
# Returns 0 when taken, 1 when the key is full, 2 when the IP is. Redis's clock for everyone.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 2 end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[2])
  redis.call('EXPIRE', KEYS[i], math.ceil(ttl) + 1)
end
return 0
"""

# KEYS: pairs of sets; ARGV: ttl, then one connection id per pair.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  local id = ARGV[math.floor((i - 1) / 2) + 2]
  redis.call('ZADD', KEYS[i], now + ttl, id)
  redis.call('EXPIRE', KEYS[i], math.ceil(ttl) + 1)
end
return 0
"""


class SlotRefused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Slot:
    id: str
    key_set: str
    ip_set: str


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = (
    weakref.WeakKeyDictionary()
)
_held: dict[str, Slot] = {}
_local_counts: dict[str, int] = {}
_heartbeats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def _client() -> aredis.Redis | None:
    if not settings.REDIS_URL:
        return None
    # An asyncio client belongs to one event loop (tests run several, one after another).
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # A blocking pool: a burst of connects or disconnects waits for one of a few Redis
        # connections instead of failing with "Too many connections".
        pool = aredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=16,
            timeout=10,
            socket_timeout=5,
            socket_connect_timeout=5,
        )
        client = _clients[loop] = aredis.Redis(connection_pool=pool)
    return client


def _refusal(which: str) -> SlotRefused:
    if which == "key":
        return SlotRefused(
            f"Too many live connections for this read key (at most {settings.WR_LIVE_MAX_PER_KEY})."
        )
    return SlotRefused(
        f"Too many live connections from this address (at most {settings.WR_LIVE_MAX_PER_IP})."
    )


async def acquire(*, key_id: int, ip: str) -> Slot:
    """Take one connection slot of the key and of the IP, or raise SlotRefused."""
    slot = Slot(id=uuid.uuid4().hex, key_set=f"wr:live:key:{key_id}", ip_set=f"wr:live:ip:{ip}")
    client = _client()
    if client is None:
        if _local_counts.get(slot.key_set, 0) >= settings.WR_LIVE_MAX_PER_KEY:
            raise _refusal("key")
        if _local_counts.get(slot.ip_set, 0) >= settings.WR_LIVE_MAX_PER_IP:
            raise _refusal("ip")
        for name in (slot.key_set, slot.ip_set):
            _local_counts[name] = _local_counts.get(name, 0) + 1
        _held[slot.id] = slot
        return slot
    try:
        verdict = await client.eval(  # type: ignore[misc]
            ACQUIRE,
            2,
            slot.key_set,
            slot.ip_set,
            settings.WR_LIVE_SLOT_TTL,
            slot.id,
            settings.WR_LIVE_MAX_PER_KEY,
            settings.WR_LIVE_MAX_PER_IP,
        )
    except (redis.RedisError, OSError):
        # The caps protect capacity; a Redis hiccup must not take every live connection down.
        logger.warning("live connection caps unavailable, allowing the connection", exc_info=True)
        verdict = 0
    if int(verdict) == 1:
        raise _refusal("key")
    if int(verdict) == 2:
        raise _refusal("ip")
    _held[slot.id] = slot
    _heartbeat_start()
    return slot


async def release(slot: Slot) -> None:
    if _held.pop(slot.id, None) is None:
        return
    client = _client()
    if client is None:
        for name in (slot.key_set, slot.ip_set):
            count = _local_counts.get(name, 0) - 1
            if count > 0:
                _local_counts[name] = count
            else:
                _local_counts.pop(name, None)
        return
    try:
        pipe = client.pipeline(transaction=False)
        pipe.zrem(slot.key_set, slot.id)
        pipe.zrem(slot.ip_set, slot.id)
        await pipe.execute()
    except (redis.RedisError, OSError):
        logger.warning(
            "could not release live slot %s; it expires by itself", slot.id, exc_info=True
        )


def _heartbeat_start() -> None:
    loop = asyncio.get_running_loop()
    task = _heartbeats.get(loop)
    if task is None or task.done():
        # A context of its own: the task outlives the connection that started it.
        _heartbeats[loop] = loop.create_task(_heartbeat(), context=contextvars.Context())


async def _heartbeat() -> None:
    interval = settings.WR_LIVE_SLOT_TTL / 3
    while True:
        await asyncio.sleep(interval)
        slots = list(_held.values())
        if not slots:
            return  # restarted by the next acquire()
        client = _client()
        assert client is not None
        try:
            for start in range(0, len(slots), 500):
                chunk = slots[start : start + 500]
                keys = [name for slot in chunk for name in (slot.key_set, slot.ip_set)]
                await client.eval(  # type: ignore[misc]
                    HEARTBEAT, len(keys), *keys, settings.WR_LIVE_SLOT_TTL, *(s.id for s in chunk)
                )
        except (redis.RedisError, OSError):
            logger.warning("live slot heartbeat failed; retrying", exc_info=True)
