"""One channel-layer channel per group per process, its messages handed to in-process callbacks.

Live connections never receive from the channel layer themselves: each web process listens to a
hook's groups once, whatever the number of its connections. This also keeps connections clear
of a hazard of channels_redis 4.3 on redis-py 8: cancelling a receive() that is blocked in
BZPOPMIN can be swallowed, leaving the task running forever (and the ASGI server unable to
shut down). A listener is stopped by a message on its own channel, never by cancellation.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], None]
STOP = "listener.stop"
BUNDLE = "states.changed"
# channels_redis forgets group members after its group_expiry (a day by default).
GROUP_REFRESH_SECONDS = 3600.0
STOP_TIMEOUT = 10.0


class Listener:
    def __init__(self, group: str):
        self.group = group
        self.layer: Any = get_channel_layer()
        self.channel: str | None = None
        self.callbacks: set[Callback] = set()
        self.stopping = False
        self.loop_task: asyncio.Task[None] | None = None
        self.refresh_task: asyncio.Task[None] | None = None
        self.ready = spawn(self._start())

    async def _start(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        self.loop_task = spawn(self._receive())
        self.refresh_task = spawn(self._refresh_membership())

    async def _receive(self) -> None:
        assert self.channel is not None
        while not self.stopping:
            try:
                message = await self.layer.receive(self.channel)
            except Exception:
                logger.warning(
                    "listener %s: channel layer receive failed", self.group, exc_info=True
                )
                await asyncio.sleep(1)
                # Whatever arrived meanwhile is unknown: let callbacks re-read.
                message = {"type": "listener.resync"}
            if message.get("type") == STOP:
                return
            # A bundle of rooms' changes (hooks.broadcast.states_changed) goes on one by one.
            bundled = message.get("changes") if message.get("type") == BUNDLE else None
            for each in bundled if isinstance(bundled, list) else [message]:
                for callback in list(self.callbacks):
                    try:
                        callback(each)
                    except Exception:
                        logger.exception("listener %s: callback failed", self.group)

    async def _refresh_membership(self) -> None:
        assert self.channel is not None
        while True:
            await asyncio.sleep(GROUP_REFRESH_SECONDS)
            try:
                await self.layer.group_add(self.group, self.channel)
            except Exception:
                logger.warning("listener %s: group refresh failed", self.group, exc_info=True)

    async def stop(self) -> None:
        self.stopping = True
        try:
            await self.ready
        except BaseException:
            return
        assert self.channel is not None and self.loop_task is not None
        if self.refresh_task is not None:
            self.refresh_task.cancel()
        try:
            await self.layer.group_discard(self.group, self.channel)
            await self.layer.send(self.channel, {"type": STOP})
            await asyncio.wait_for(asyncio.shield(self.loop_task), STOP_TIMEOUT)
        except Exception:
            logger.warning(
                "listener %s did not stop cleanly; cancelling it", self.group, exc_info=True
            )
            self.loop_task.cancel()


_background: set[asyncio.Task[Any]] = set()


def spawn(coroutine: Any) -> asyncio.Task[Any]:
    """A background task in a context of its own: it outlives the connection that started it,
    and must not use a request's thread-sensitive executor (Django shuts it down when the
    request ends)."""
    task = asyncio.get_running_loop().create_task(coroutine, context=contextvars.Context())
    _background.add(task)  # the loop keeps only weak references to tasks
    task.add_done_callback(_background.discard)
    return task


K = TypeVar("K")
V = TypeVar("V")


class PerLoop(Generic[K, V]):
    """A registry (a dict) per event loop: asyncio objects belong to one loop, and tests run
    several loops one after another. Forgotten with its loop."""

    def __init__(self) -> None:
        self._dicts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[K, V]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self) -> dict[K, V]:
        loop = asyncio.get_running_loop()
        entries = self._dicts.get(loop)
        if entries is None:
            entries = self._dicts[loop] = {}
        return entries


_registry: PerLoop[str, Listener] = PerLoop()


async def listen(group: str, callback: Callback) -> None:
    """Call `callback` with every message sent to `group` from now on (once this returns)."""
    listeners = _registry()
    listener = listeners.get(group)
    if listener is None or listener.stopping:
        listener = listeners[group] = Listener(group)
    listener.callbacks.add(callback)
    try:
        await asyncio.shield(listener.ready)
    except BaseException:
        unlisten(group, callback)
        raise


def unlisten(group: str, callback: Callback) -> None:
    listeners = _registry()
    listener = listeners.get(group)
    if listener is None:
        return
    listener.callbacks.discard(callback)
    if not listener.callbacks:
        del listeners[group]
        spawn(listener.stop())


def busy() -> bool:
    """Whether this event loop still has listeners or background work (for tests)."""
    return bool(_registry()) or any(not task.done() for task in _background)
