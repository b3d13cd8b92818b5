"""One hub per room of a hook per process: it turns each change of the room's live state into
one offer to that process's live connections of the room. The hubs of one hook's rooms share
the hook's channel-layer group and each takes only its own room's notifications (a missing
`room` is the main room; `room: None`, a publish or an archive, is every room's).

A `state.changed` notification carries the new state's JSON text (hooks.broadcast.state_changed,
up to WR_LIVE_INLINE_STATE_BYTES): when it is for the version the hub knows is live, the hub
builds the snapshot from the message, with no database read. Otherwise (no value, another
version, a seq older than the last one, keys the hub has not checked yet, a `key.changed`) it
re-reads the committed state and which of its subscribers' keys are usable, and caches both.
Notifications that arrive during a refresh coalesce: the hub then handles the newest one, so a
burst costs few refreshes and every subscriber ends on the latest seq; one refresh per process
and one query run per distinct params serve every connection. A timer re-reads every
WR_LIVE_RESYNC_SECONDS too, in case a notification was lost (Redis restart, full channel): a lost
broadcast delays an update, it never loses it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from django.conf import settings

from hooks.broadcast import hook_group
from hooks.channel_messages import KeyChanged, ListenerResync, StateChanged, message_type
from hooks.live import db, listeners
from hooks.live.state import Delivery, Params, Snapshot, delivery_for, snapshot_read
from hooks.live.subscription import CLOSE_NOT_FOUND, CLOSE_RESET, Subscription
from hooks.models import Hook

logger = logging.getLogger(__name__)

# A fan-out gives the event loop a turn this often, so notifications keep arriving during it.
FAN_OUT_SLICE_SECONDS = 0.002


class Hub:
    def __init__(self, hook_id: str, room: str = ""):
        self.hook_id = hook_id
        self.room = room
        self.group = hook_group(hook_id)
        self.subscribers: set[Subscription] = set()
        self.last_seq: int | None = None
        # From the last database read: the hook with its live version, and which of the read
        # keys checked then are usable.
        self.hook: Hook | None = None
        self.checked_key_ids: frozenset[int] = frozenset()
        self.usable_key_ids: frozenset[int] = frozenset()
        # What the next refresh does: read the database, or deliver the newest state that a
        # notification carried.
        self.must_read = True
        self.carried: dict[str, Any] | None = None
        self.dirty = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.ready: asyncio.Task[None] = listeners.spawn(self._start())

    def on_message(self, message: dict[str, Any]) -> None:
        handler = self.HANDLERS.get(message_type(message) or "")
        if handler is not None and handler(self, message):
            self.dirty.set()

    # One handler per message type (hooks.channel_messages); each says whether to refresh.
    def _on_state_changed(self, message: StateChanged) -> bool:
        room = message.get("room", "")
        if room is not None and room != self.room:
            return False  # another room's change
        if room is not None and isinstance(message.get("value"), str):
            carried = self.carried
            if carried is None or message["seq"] >= carried["seq"]:
                self.carried = dict(message)
        else:
            self.must_read = True  # no state carried, or every room's (a publish, an archive)
        return True

    def _on_must_read(self, message: KeyChanged | ListenerResync) -> bool:
        self.must_read = True
        return True

    HANDLERS: ClassVar[dict[str, Callable[[Hub, Any], bool]]] = {
        "state.changed": _on_state_changed,
        "key.changed": _on_must_read,
        "listener.resync": _on_must_read,
    }

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
            self.must_read = True
            self.dirty.set()

    async def _refresher(self) -> None:
        # Notifications that arrive during a refresh set `dirty` again: one more refresh then
        # handles the newest state, however many arrived.
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
                self.must_read = True
                self.dirty.set()

    async def refresh(self) -> None:
        subscribers = list(self.subscribers)
        if not subscribers:
            return
        key_ids = frozenset(s.key_id for s in subscribers)
        carried, self.carried = self.carried, None
        must_read, self.must_read = self.must_read, False
        snapshot = None
        if not must_read and carried is not None:
            snapshot = self._carried_snapshot(carried, key_ids)
        if snapshot is None:
            snapshot = await self._read(key_ids)
            if snapshot is None:
                for subscriber in subscribers:
                    subscriber.close(CLOSE_NOT_FOUND, "This read key no longer serves.")
                return
        if self.last_seq is not None and snapshot.seq < self.last_seq:
            # Only a read gets here (a carried state older than the last one is re-read), and
            # reads are serialised and see committed states only: a lower seq means the history
            # was reset (archived). Clients must start over.
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
        await self._fan_out(
            (subscriber, delivery)
            for params, delivery in zip(groups, results, strict=True)
            for subscriber in groups[params]
        )

    async def _fan_out(self, offers: Iterable[tuple[Subscription, Delivery]]) -> None:
        """Offer each subscriber its delivery, giving the event loop a turn every
        FAN_OUT_SLICE_SECONDS. A pass over thousands of connections takes tens of milliseconds
        (more on a busy machine): without the turns, the listener would receive one notification
        per pass, and a hub that fell behind would send old carried states one after another
        instead of skipping to the newest (the hub reads only the latest notification)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + FAN_OUT_SLICE_SECONDS
        for count, (subscriber, delivery) in enumerate(offers, start=1):
            subscriber.offer(delivery)
            if count % 32 == 0 and loop.time() > until:
                await asyncio.sleep(0)
                until = loop.time() + FAN_OUT_SLICE_SECONDS

    def _carried_snapshot(
        self, message: dict[str, Any], key_ids: frozenset[int]
    ) -> Snapshot | None:
        """The state a notification carried, if it can be delivered without a read: the version
        the last read found live, a seq no older than the last one, keys all checked."""
        hook = self.hook
        if (
            hook is None
            or self.last_seq is None
            or message.get("version_id") != hook.live_version_id
            or message["seq"] < self.last_seq
            or not key_ids <= self.checked_key_ids
        ):
            return None
        return Snapshot(
            hook=hook,
            seq=message["seq"],
            value=message["value"],
            usable_key_ids=self.usable_key_ids,
            room=self.room,
        )

    async def _read(self, key_ids: frozenset[int]) -> Snapshot | None:
        snapshot = await db.reads.run(snapshot_read, self.hook_id, key_ids, self.room)
        if snapshot is None:
            self.hook, self.checked_key_ids, self.usable_key_ids = None, frozenset(), frozenset()
        else:
            self.hook = snapshot.hook
            self.checked_key_ids, self.usable_key_ids = key_ids, snapshot.usable_key_ids
        return snapshot


# This loop's hubs by (hook, room).
_registry: listeners.PerLoop[tuple[str, str], Hub] = listeners.PerLoop()


async def join(subscriber: Subscription) -> None:
    """Add a subscriber to its hook's hub, started (and listening) if needed.

    Returns once the hub receives notifications, so a state read after this sees every later
    change either itself or through the hub.
    """
    hubs = _registry()
    where = (subscriber.hook_id, subscriber.room)
    hub = hubs.get(where)
    if hub is None:
        hub = hubs[where] = Hub(subscriber.hook_id, subscriber.room)
    hub.subscribers.add(subscriber)
    try:
        await asyncio.shield(hub.ready)
    except BaseException:
        leave(subscriber)
        raise


def leave(subscriber: Subscription) -> None:
    hubs = _registry()
    where = (subscriber.hook_id, subscriber.room)
    hub = hubs.get(where)
    if hub is None:
        return
    hub.subscribers.discard(subscriber)
    if not hub.subscribers:
        del hubs[where]
        listeners.spawn(hub.stop())


def hub_count() -> int:
    return len(_registry())
