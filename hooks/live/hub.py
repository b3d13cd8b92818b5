"""One channel-layer subscription per hook per process, fanned out to that process's live
connections.

A hub joins the hook's group with one channel, so a change costs one message per web process
(not one per connection), one read of the state per process, and one query run per distinct
params. Notifications only say "something changed": the hub re-reads the committed state, so
a burst coalesces into few reads and every subscriber ends on the latest seq. A timer re-reads
every WR_LIVE_RESYNC_SECONDS too, in case a notification was lost (Redis restart, full
channel): a lost broadcast delays an update, it never loses it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from collections import defaultdict
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from hooks.events import hook_group
from hooks.live.state import Params, delivery_for, snapshot_read
from hooks.live.subscription import CLOSE_NOT_FOUND, CLOSE_RESET, Subscription

logger = logging.getLogger(__name__)

# channels_redis forgets group members after its group_expiry (a day by default).
GROUP_REFRESH_SECONDS = 3600


class Hub:
    def __init__(self, hook_id: str):
        self.hook_id = hook_id
        self.group = hook_group(hook_id)
        self.layer: Any = get_channel_layer()
        self.channel: str | None = None
        self.subscribers: set[Subscription] = set()
        self.last_seq: int | None = None
        self.dirty = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.ready: asyncio.Task[None] = _spawn(self._start())

    async def _start(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        self.tasks = [_spawn(self._receive()), _spawn(self._refresher()), _spawn(self._timer())]

    async def stop(self) -> None:
        for task in [self.ready, *self.tasks]:
            task.cancel()
        await asyncio.gather(self.ready, *self.tasks, return_exceptions=True)
        if self.channel is not None:
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception:
                logger.warning("could not leave %s; the membership expires", self.group)

    async def _receive(self) -> None:
        assert self.channel is not None
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("live hub %s: channel layer receive failed", self.hook_id, exc_info=True)
                await asyncio.sleep(1)
                self.dirty.set()
                continue
            if message.get("type") in ("state.changed", "key.changed"):
                self.dirty.set()

    async def _timer(self) -> None:
        assert self.channel is not None
        waited = 0.0
        while True:
            await asyncio.sleep(settings.WR_LIVE_RESYNC_SECONDS)
            self.dirty.set()
            waited += settings.WR_LIVE_RESYNC_SECONDS
            if waited >= GROUP_REFRESH_SECONDS:
                waited = 0.0
                try:
                    await self.layer.group_add(self.group, self.channel)
                except Exception:
                    logger.warning("live hub %s: group refresh failed", self.hook_id, exc_info=True)

    async def _refresher(self) -> None:
        # Notifications that arrive during a refresh set `dirty` again: one more refresh then
        # reads the newest state, however many arrived.
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("live hub %s: refresh failed; retrying", self.hook_id)
                await asyncio.sleep(1)
                self.dirty.set()

    async def refresh(self) -> None:
        subscribers = list(self.subscribers)
        if not subscribers:
            return
        key_ids = frozenset(s.key_id for s in subscribers)
        snapshot = await database_sync_to_async(snapshot_read)(self.hook_id, key_ids)
        if snapshot is None:
            for subscriber in subscribers:
                subscriber.close(CLOSE_NOT_FOUND, "This read key no longer serves.")
            return
        if self.last_seq is not None and snapshot.seq < self.last_seq:
            # Reads are serialised and see committed states only, so a lower seq means the
            # history was reset (archived): clients must start over.
            self.last_seq = snapshot.seq
            for subscriber in subscribers:
                subscriber.close(CLOSE_RESET, "The hook's history was reset; reconnect.")
            return
        self.last_seq = snapshot.seq
        groups: dict[Params, list[Subscription]] = defaultdict(list)
        for subscriber in subscribers:
            if subscriber.key_id in snapshot.usable_key_ids:
                groups[subscriber.params].append(subscriber)
            else:
                subscriber.close(CLOSE_NOT_FOUND, "This read key was paused or revoked.")
        results = await asyncio.gather(*(delivery_for(snapshot, params) for params in groups))
        for params, delivery in zip(groups, results, strict=True):
            for subscriber in groups[params]:
                subscriber.offer(delivery)


_background: set[asyncio.Task[None]] = set()


def _spawn(coroutine: Any) -> asyncio.Task[None]:
    # A context of its own: hubs outlive the connection that started them, and must not use a
    # request's thread-sensitive executor (Django shuts it down when the request ends).
    task = asyncio.get_running_loop().create_task(coroutine, context=contextvars.Context())
    _background.add(task)  # the loop keeps only weak references to tasks
    task.add_done_callback(_background.discard)
    return task


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Hub]] = (
    weakref.WeakKeyDictionary()
)


def _registry() -> dict[str, Hub]:
    loop = asyncio.get_running_loop()
    hubs = _hubs.get(loop)
    if hubs is None:
        hubs = _hubs[loop] = {}
    return hubs


async def join(subscriber: Subscription) -> None:
    """Add a subscriber to its hook's hub, started (and subscribed to the group) if needed.

    Returns once the hub receives notifications, so a state read after this sees every later
    change either itself or through the hub.
    """
    hubs = _registry()
    hub = hubs.get(subscriber.hook_id)
    if hub is None:
        hub = hubs[subscriber.hook_id] = Hub(subscriber.hook_id)
    hub.subscribers.add(subscriber)
    try:
        await asyncio.shield(hub.ready)
    except BaseException:
        leave(subscriber)
        raise


def leave(subscriber: Subscription) -> None:
    hubs = _registry()
    hub = hubs.get(subscriber.hook_id)
    if hub is None:
        return
    hub.subscribers.discard(subscriber)
    if not hub.subscribers:
        del hubs[subscriber.hook_id]
        _spawn(hub.stop())


def hub_count() -> int:
    return len(_registry())
