"""The process's Redis client, or None in the embedded default (no REDIS_URL)."""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


@cache
def _client(url: str) -> redis.Redis:
    # redis-py's pool notices a fork and opens new connections in the child.
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def get_redis() -> redis.Redis | None:
    return _client(settings.REDIS_URL) if settings.REDIS_URL else None
