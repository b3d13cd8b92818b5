"""One hub per hook per process: it re-reads the live state after each change and offers it to
that process's live connections.

Notifications only say "something changed": the hub re-reads the committed state, so a burst
coalesces into few reads and every subscriber ends on the latest seq; one read per process and
one query run per distinct params serve every connection. A timer re-reads every
WR_LIVE_RESYNC_SECONDS too, in case a notification was lost (Redis restart, full channel): a
lost broadcast delays an update, it never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from typing import Any

from django.conf import settings

from hooks.events import hook_group
from hooks.live import db, listeners
from hooks.live.state import Params, delivery_for, snapshot_read
from hooks.live.subscription import CLOSE_NOT_FOUND, CLOSE_RESET, Subscription

logger = logging.getLogger(__name__)


class Hub:
    def __init__(self, hook_id: str):
        self.hook_id = hook_id
        self.group = hook_group(hook_id)
        self.subscribers: set[Subscription] = set()
        self.last_seq: int | None = None
        self.dirty = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.ready: asyncio.Task[None] = listeners.spawn(self._start())

    def on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") in ("state.changed", "key.changed", "listener.resync"):
            self.dirty.set()

    async def _start(self) -> None:
        await listeners.listen(self.group, self.on_message)
        self.tasks = [listeners.spawn(self._refresher()), listeners.spawn(self._timer())]

    async def stop(self) -> None:
        try:
            await self.ready
        except BaseException:
            return
        listeners.unlisten(self.group, self.on_message)
        # Safe to cancel: these wait on sleeps, events and DB threads, never on Redis reads.
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(settings.WR_LIVE_RESYNC_SECONDS)
            self.dirty.set()

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
        snapshot = await db.reads.run(snapshot_read, self.hook_id, key_ids)
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
    """Add a subscriber to its hook's hub, started (and listening) if needed.

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
        listeners.spawn(hub.stop())


def hub_count() -> int:
    return len(_registry())
