"""Database calls of the live code, on a few long-lived threads with one connection each.

Django keeps connections per context under ASGI: every connection, SSE request or background
task calling `database_sync_to_async` in a context of its own would open (and hold) its own
database connection. Live code instead runs its queries on these threads, each inside one
context kept for the thread's life, so a web process holds at most 2 + WR_LIVE_QUERY_CONCURRENCY
connections for any number of subscribers, and reuses them (CONN_MAX_AGE).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections, connections

T = TypeVar("T")


class DbThreads:
    def __init__(self, name: str, size: int):
        self.name = name
        self.size = size
        self.pool: ThreadPoolExecutor | None = None
        self.local = threading.local()
        self.lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        with self.lock:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(self.size, thread_name_prefix=self.name)
            return self.pool

    def _call(self, func: Callable[..., T], args: tuple[Any, ...]) -> T:
        context = getattr(self.local, "context", None)
        if context is None:
            context = self.local.context = contextvars.Context()
        return context.run(_with_connection, func, args)

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), self._call, func, args)

    def shutdown(self) -> None:
        """Close every thread's connection and stop the threads (tests; process exit)."""
        with self.lock:
            pool, self.pool = self.pool, None
        if pool is None:
            return
        # One job per thread: the barrier keeps a thread from taking two.
        barrier = threading.Barrier(self.size)

        def close() -> None:
            barrier.wait(timeout=10)
            self._call(connections.close_all, ())

        for future in [pool.submit(close) for _ in range(self.size)]:
            future.result()
        pool.shutdown()


def _with_connection(func: Callable[..., T], args: tuple[Any, ...]) -> T:
    # Drop a connection that broke or outlived CONN_MAX_AGE, as a request would.
    close_old_connections()
    try:
        return func(*args)
    finally:
        close_old_connections()


# State and key reads: one thread, one connection, calls in order.
reads = DbThreads("wr-live-db", 1)
# The presence upkeep (hooks.live.room_sockets): a renewal must not wait behind a burst of
# reads, or a process's rows outlive their TTL and its sockets are closed as lapsed (seen with
# 1,000 sockets connecting at once, bench/play_bench.py).
upkeep = DbThreads("wr-live-upkeep", 1)


def queries(size: int) -> DbThreads:
    """Threads for the user's query function (sandbox calls take milliseconds, so several)."""
    global _queries
    if _queries is None or _queries.size != size:
        _queries = DbThreads("wr-live-query", size)
    return _queries


_queries: DbThreads | None = None


def shutdown() -> None:
    reads.shutdown()
    upkeep.shutdown()
    if _queries is not None:
        _queries.shutdown()
