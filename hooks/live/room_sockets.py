"""The two-way sockets of each room in this web process: broadcasts and presence frames out to
them, and the process's presence upkeep (hooks.live.presence).

Like the live hubs (hooks.live.hub), a process listens to a room's channel-layer group once
(hooks.broadcast.room_group) whatever the number of its sockets there: a broadcast is one
channel-layer message per process with sockets in the room, a join or leave makes each such
process list the room's members once (one query, coalesced under a burst) and send the frame
to its sockets. The sender's own process gets its broadcasts through the group too, so every
socket of the room sees them in one order. Each room's entry also listens to its hook's group
for `key.changed`: sockets whose write key was paused or revoked close with 4404 at once,
without waiting for their next write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from django.conf import settings

from hooks.broadcast import hook_group, room_group
from hooks.channel_messages import ListenerResync, PresenceChanged, SocketBroadcast, message_type
from hooks.live import db, listeners, presence, socket_writes
from hooks.live.subscription import CLOSE_NOT_FOUND, CLOSE_UNAVAILABLE
from hooks.models import Key

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Peer:
    """What the room needs of one socket: who it is and how to reach it."""

    connection_id: str
    hook_id: str
    room: str
    key_id: int
    push: Callable[[str], None]  # queue a text frame for the client (never blocks)
    close: Callable[[int, str], None]  # close the socket with this code and reason
    # Whether its presence row is recorded (hooks.live.presence.join): before that, the upkeep
    # neither renews it nor takes its missing row for a lapse (a join can wait seconds behind a
    # burst of others).
    present: bool = False


class RoomSockets:
    def __init__(self, hook_id: str, room: str) -> None:
        self.hook_id = hook_id
        self.room = room
        self.peers: dict[str, Peer] = {}
        self.dirty = asyncio.Event()
        self.check_keys = False
        self.tasks: list[asyncio.Task[None]] = []
        self.ready: asyncio.Task[None] = listeners.spawn(self._start())

    async def _start(self) -> None:
        await listeners.listen(room_group(self.hook_id, self.room), self.on_room_message)
        try:
            await listeners.listen(hook_group(self.hook_id), self.on_hook_message)
        except BaseException:
            listeners.unlisten(room_group(self.hook_id, self.room), self.on_room_message)
            raise
        self.tasks = [listeners.spawn(self._refresher())]

    async def stop(self) -> None:
        try:
            await self.ready
        except BaseException:
            return
        listeners.unlisten(room_group(self.hook_id, self.room), self.on_room_message)
        listeners.unlisten(hook_group(self.hook_id), self.on_hook_message)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def on_room_message(self, message: dict[str, Any]) -> None:
        handler = self.ROOM_HANDLERS.get(message_type(message) or "")
        if handler is not None:
            handler(self, message)

    def on_hook_message(self, message: dict[str, Any]) -> None:
        if message_type(message) in ("key.changed", "listener.resync"):
            self.check_keys = True
            self.dirty.set()

    # One handler per message type of the room's group (hooks.channel_messages).
    def _on_broadcast(self, message: SocketBroadcast) -> None:
        sender = message["sender"]
        frame = f'{{"type":"broadcast","from":{json.dumps(sender)},"body":{message["body"]}}}'
        for connection_id, peer in list(self.peers.items()):
            if connection_id != sender:
                peer.push(frame)

    def _on_presence(self, message: PresenceChanged | ListenerResync) -> None:
        self.dirty.set()

    ROOM_HANDLERS: ClassVar[dict[str, Callable[[RoomSockets, Any], None]]] = {
        "socket.broadcast": _on_broadcast,
        "presence.changed": _on_presence,
        "listener.resync": _on_presence,
    }

    async def _refresher(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "room sockets %s/%s: refresh failed; retrying", self.hook_id, self.room
                )
                await asyncio.sleep(1)
                self.dirty.set()

    async def refresh(self) -> None:
        if not self.peers:
            return
        if self.check_keys:
            self.check_keys = False
            key_ids = {peer.key_id for peer in self.peers.values()}
            usable = await db.reads.run(_usable_write_keys, self.hook_id, key_ids)
            for peer in list(self.peers.values()):
                if peer.key_id not in usable:
                    peer.close(CLOSE_NOT_FOUND, "This write key was paused or revoked.")
        members = await db.reads.run(presence.members, self.hook_id, self.room)
        frame = json.dumps(
            {"type": "presence", "connections": [m.as_json() for m in members]},
            ensure_ascii=False,
        )
        for peer in list(self.peers.values()):
            peer.push(frame)


def _usable_write_keys(hook_id: str, key_ids: set[int]) -> set[int]:
    return set(
        Key.objects.filter(
            pk__in=key_ids,
            hook_id=hook_id,
            kind=Key.Kind.WRITE,
            is_paused=False,
            revoked_at__isnull=True,
            hook__is_paused=False,
        ).values_list("pk", flat=True)
    )


# This loop's rooms with sockets, by (hook, room).
_registry: listeners.PerLoop[tuple[str, str], RoomSockets] = listeners.PerLoop()
_upkeep: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


async def join(peer: Peer) -> None:
    """Add a socket to its room; returns once the room's broadcasts reach it."""
    rooms = _registry()
    where = (peer.hook_id, peer.room)
    entry = rooms.get(where)
    if entry is None:
        entry = rooms[where] = RoomSockets(peer.hook_id, peer.room)
    entry.peers[peer.connection_id] = peer
    try:
        await asyncio.shield(entry.ready)
    except BaseException:
        leave(peer)
        raise
    _upkeep_start()


def leave(peer: Peer) -> None:
    rooms = _registry()
    where = (peer.hook_id, peer.room)
    entry = rooms.get(where)
    if entry is None:
        return
    entry.peers.pop(peer.connection_id, None)
    if not entry.peers:
        del rooms[where]
        listeners.spawn(entry.stop())


def peers() -> list[Peer]:
    return [peer for entry in _registry().values() for peer in entry.peers.values()]


def _upkeep_start() -> None:
    loop = asyncio.get_running_loop()
    task = _upkeep.get(loop)
    if task is None or task.done():
        _upkeep[loop] = listeners.spawn(_presence_upkeep())


async def _presence_upkeep() -> None:
    """While this process has sockets: renew their presence, close the ones a stall lost (they
    reconnect and join again), and end the connections of processes that died."""
    while True:
        await asyncio.sleep(settings.WR_PRESENCE_TTL_SECONDS / 3)
        every = peers()
        if not every:
            return  # restarted by the next join()
        current = {peer.connection_id: peer for peer in every if peer.present}
        try:
            lost = await db.upkeep.run(presence.renew, set(current))
            for connection_id in lost:
                current[connection_id].close(
                    CLOSE_UNAVAILABLE, "This connection's presence lapsed; reconnect."
                )
            await socket_writes.threads().run(presence.reap)
        except Exception:
            logger.warning("presence upkeep failed; retrying", exc_info=True)
