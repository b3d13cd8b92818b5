"""WebSocket consumers: public live state on a read key, the two-way socket on a write key, and
the owner's live feed of a hook.

Protocol, close codes and limits: docs/realtime.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404, QueryDict

from hooks import broadcast, live
from hooks.channel_messages import (
    FeedKeys,
    FeedMessage,
    FeedReplay,
    FeedRequests,
    FeedState,
    KeyChanged,
    ReplayProgress,
    RequestsLogged,
    StateChanged,
    message_type,
)
from hooks.live import db, listeners
from hooks.live.subscription import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND
from hooks.live.two_way import TwoWaySocket
from hooks.selectors import hook_get_for_user
from webreducer.clientip import scope_client_ip

logger = logging.getLogger(__name__)

# A WebSocket close reason must fit in 123 bytes.
MAX_REASON = 120
OUTBOX_SIZE = 1000


class LiveConsumer(AsyncWebsocketConsumer):
    """A consumer that never uses Django's database connections on the event loop's sync
    thread: its queries run on hooks.live.db's threads, which keep their own connections and
    close the stale ones themselves.

    So it skips what Channels does before every message (`aclose_old_connections`): a hop to
    asgiref's one thread-sensitive sync thread, which every consumer of the process shares, for
    each frame a socket receives. At 1,000 socket writes a second that hop was ~6 % of the web
    processes' samples, and every frame queued behind the others' (docs/performance.md,
    2026-12-04)."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class LiveStateConsumer(LiveConsumer):
    """WS /read/<key>/live[?params][&since=N]: the queried state now and after every change."""

    # No channel per connection: the process's hub for the hook (hooks.live.hub) listens for
    # all of its connections, so a change is one channel-layer message per process.
    channel_layer_alias = "none"
    subscription: live.Subscription | None = None
    writer: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        # Accept first, then refuse with a close code: a refused handshake reaches browsers only
        # as an anonymous 1006, a close code says why.
        await self.accept()
        query = QueryDict(self.scope.get("query_string", b""))
        params = {name: query.getlist(name) for name in query}
        try:
            self.subscription = await live.subscribe(
                token=self.scope["url_route"]["kwargs"]["token"],
                query=params,
                since=live.since_parse(query.get("since")),
                ip=scope_client_ip(self.scope),
            )
        except live.Refused as refused:
            await self.close(code=refused.close_code, reason=refused.message[:MAX_REASON])
            return
        # States go out straight from the hub's pass over its subscribers (no task per
        # connection wakes per change): the consumer only waits for a close.
        self.subscription.attach(self.base_send)
        self.writer = asyncio.create_task(self._close_when_told(self.subscription))

    async def _close_when_told(self, subscription: live.Subscription) -> None:
        closing = await subscription.closed()
        await self.close(code=closing.code, reason=closing.reason[:MAX_REASON])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Browsers cannot send protocol pings: an application-level "ping" keeps proxies from
        # cutting an idle connection and tells the client the server is alive.
        if text_data is not None and text_data.strip() in (
            "ping",
            '{"type":"ping"}',
            '{"type": "ping"}',
        ):
            await self.send(text_data='{"type":"pong"}')

    async def disconnect(self, code: int) -> None:
        if self.writer is not None:
            self.writer.cancel()
            with contextlib.suppress(BaseException):
                await self.writer
        if self.subscription is not None:
            subscription, self.subscription = self.subscription, None
            await subscription.detach()
            await live.unsubscribe(subscription)


class TwoWaySocketConsumer(LiveConsumer):
    """WS /write/<key>/live[?room=…&read=<read_key>&name=…]: writes in, acks, state frames,
    broadcasts and presence out (hooks.live.two_way)."""

    channel_layer_alias = "none"
    socket: TwoWaySocket | None = None

    async def connect(self) -> None:
        await self.accept()  # then refuse with a close code, as LiveStateConsumer does
        query = QueryDict(self.scope.get("query_string", b""))
        socket = TwoWaySocket(send=self._send_text, close=self._close, raw_send=self.base_send)
        try:
            await socket.open(
                token=self.scope["url_route"]["kwargs"]["token"],
                query={name: query.getlist(name) for name in query},
                ip=scope_client_ip(self.scope),
            )
        except live.Refused as refused:
            await self.close(code=refused.close_code, reason=refused.message[:MAX_REASON])
            return
        self.socket = socket

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def _close(self, code: int, reason: str) -> None:
        await self.close(code=code, reason=reason[:MAX_REASON])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.socket is not None:
            self.socket.receive(text_data, bytes_data)

    async def disconnect(self, code: int) -> None:
        if self.socket is not None:
            socket, self.socket = self.socket, None
            await socket.end()


def _owns(user: Any, hook_id: str) -> bool:
    """Through the one door every management route uses (a malformed id is no hook either)."""
    try:
        hook_get_for_user(user=user, hook_id=hook_id)
    except Http404:
        return False
    return True


# What the feed sends for each message it receives: one function per message type.
def _feed_state(message: StateChanged) -> FeedState:
    # Absent: the main room (messages from before rooms); None: every room.
    every = "room" in message and message["room"] is None
    room = message.get("room") or None
    return {"type": "state", "seq": message["seq"], "room": room, "every_room": every}


def _feed_keys(message: KeyChanged) -> FeedKeys:
    return {"type": "keys", "key_id": message.get("key_id")}


def _feed_requests(message: RequestsLogged) -> FeedRequests:
    return {"type": "requests", "requests": message["requests"]}


def _feed_replay(message: ReplayProgress) -> FeedReplay:
    return {
        "type": "replay",
        "version": message["version"],
        "done": message["done"],
        "total": message["total"],
        "status": message["status"],
    }


class OwnerFeedConsumer(LiveConsumer):
    """WS /ws/hooks/<hook_id>/: the owner's live request log, outcomes, state seq and replay
    progress (session authentication; anyone else is refused without learning whether the
    hook exists)."""

    # Messages come through the process's listeners (hooks.live.listeners), not a channel per
    # connection.
    channel_layer_alias = "none"
    hook_id: str | None = None
    tasks: list[asyncio.Task[None]]

    HANDLERS: ClassVar[dict[str, Callable[[Any], FeedMessage]]] = {
        "state.changed": _feed_state,
        "key.changed": _feed_keys,
        "requests.logged": _feed_requests,
        "replay.progress": _feed_replay,
    }

    async def connect(self) -> None:
        self.tasks = []
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_FORBIDDEN, reason="Sign in to follow this hook.")
            return
        hook_id = str(self.scope["url_route"]["kwargs"]["hook_id"])
        if not await db.reads.run(_owns, user, hook_id):
            await self.close(code=CLOSE_NOT_FOUND, reason="No such hook.")
            return
        self.hook_id = hook_id
        # Bounded: a client that stops reading loses log rows (it reloads the log), not memory.
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        await listeners.listen(broadcast.hook_group(hook_id), self.on_event)
        await listeners.listen(broadcast.owner_group(hook_id), self.on_event)
        self.tasks = [asyncio.create_task(self._write()), asyncio.create_task(self._watch(hook_id))]
        await self.send_json({"type": "hello", "hook": hook_id})

    def on_event(self, message: dict[str, Any]) -> None:
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            logger.warning("owner feed of %s is not reading; dropping an event", self.hook_id)

    async def _write(self) -> None:
        while True:
            message = await self.outbox.get()
            handler = self.HANDLERS.get(message_type(message) or "")
            if handler is not None:  # a type the feed does not forward
                await self.send_json(handler(message))

    async def _watch(self, hook_id: str) -> None:
        # Publishers send log events only while a hook is marked watched (broadcast.watched).
        while True:
            await sync_to_async(broadcast.watch, thread_sensitive=False)(hook_id)
            await asyncio.sleep(broadcast.WATCH_TTL_SECONDS / 3)

    async def disconnect(self, code: int) -> None:
        if self.hook_id is None:
            return
        hook_id, self.hook_id = self.hook_id, None
        listeners.unlisten(broadcast.hook_group(hook_id), self.on_event)
        listeners.unlisten(broadcast.owner_group(hook_id), self.on_event)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await sync_to_async(broadcast.watch, thread_sensitive=False)(hook_id, watching=False)

    async def send_json(self, content: FeedMessage) -> None:
        await self.send(text_data=json.dumps(content, ensure_ascii=False))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None and "ping" in text_data:
            await self.send_json({"type": "pong"})
