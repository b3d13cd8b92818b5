"""One two-way socket, `WS /write/<write_key>/live[?room=…&read=<read_key>&name=…]` (SPEC §2,
docs/realtime.md "The two-way socket"), apart from its transport (hooks.consumers).

At open: the room and name are checked, the write key resolved, a connection slot taken (the
caps of hooks.live.slots, counted on the write key), with `read=` the room's live state
subscribed exactly as `/read/<key>/live` does (hooks.live.subscribe, its own slot on the read
key), the socket joins its room in this process (hooks.live.room_sockets) and its presence is
recorded (hooks.live.presence, a JOIN for a hook with `PRESENCE = True`). Then frames:

- `write`: queued, stored in order on the write threads (hooks.live.socket_writes), with the
  writes the hook's other sockets queued meanwhile (one commit per trip), each acked after
  commit; errors are acks with a status and a JSON error, and the socket stays open.
- `broadcast`: checked (size, this connection's rate) and relayed to the room at once, never
  stored.
- `ping`: `{"type":"pong"}`.

Everything the socket sends besides state frames (which the hub writes straight to the
transport) goes through one outbox in order: acks are never dropped (their number is bounded by
WR_LIVE_WRITES_IN_FLIGHT), broadcasts to a client that stops reading are.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from hooks import broadcast, live, public_calls, rooms
from hooks.live import db, presence, room_sockets, slots, socket_writes
from hooks.live.subscription import (
    CLOSE_BAD_REQUEST,
    CLOSE_NOT_FOUND,
    CLOSE_TOO_MANY,
    CLOSE_UNAVAILABLE,
)
from hooks.models import Key
from sandbox import strict_json

# Query-string names of the socket itself: not passed to `query`, not stored on its writes.
SOCKET_PARAMS = ("read", "since")
# Broadcast frames waiting for a client that does not read; beyond this they are dropped.
OUTBOX_BROADCASTS = 1000
# A socket's writes handed to a trip at once (hooks.live.socket_writes.store), at most.
WRITES_PER_SOCKET_TRIP = 32

Send = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]


class Bucket:
    """A token bucket in this process (a broadcast costs no round trip)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate if self.rate > 0 else 60.0


def name_parse(value: str | None) -> str | None:
    """The socket's `?name=`: optional, at most presence.NAME_MAX printable characters."""
    if value is None or value == "":
        return None
    if len(value) > presence.NAME_MAX or not value.isprintable():
        raise live.Refused(
            CLOSE_BAD_REQUEST,
            400,
            "invalid_name",
            f"name is at most {presence.NAME_MAX} printable characters.",
        )
    return value


def _last(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _close_code(error: public_calls.PublicError) -> int:
    return {404: CLOSE_NOT_FOUND, 400: CLOSE_BAD_REQUEST, 429: CLOSE_TOO_MANY}.get(
        error.status, CLOSE_UNAVAILABLE
    )


def _key_resolve(token: str) -> Key:
    return public_calls.key_resolve(token=token, kind=Key.Kind.WRITE)


class TwoWaySocket:
    def __init__(self, *, send: Send, close: Close, raw_send: Callable[..., Awaitable[None]]):
        self._transport_send = send
        self._transport_close = close
        self._raw_send = raw_send  # the ASGI send: state frames go straight through it
        self.connection_id = uuid.uuid4().hex
        self.hook_id = ""
        self.room = ""
        self.sender: socket_writes.Sender | None = None
        self.peer: room_sockets.Peer | None = None
        self.slot: slots.Slot | None = None
        self.subscription: live.Subscription | None = None
        self.joined = False
        self.inbox: asyncio.Queue[socket_writes.Write | dict[str, Any]] = asyncio.Queue()
        self.in_flight = 0
        self.outbox: collections.deque[tuple[str, bool]] = collections.deque()
        self.outbox_broadcasts = 0
        self.outbox_ready = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.close_task: asyncio.Future[None] | None = None
        self.broadcasts = Bucket(
            settings.WR_LIVE_BROADCAST_PER_SECOND, settings.WR_LIVE_BROADCAST_BURST
        )
        self.closing = False

    # -- opening --------------------------------------------------------------------------

    async def open(self, *, token: str, query: dict[str, list[str]], ip: str) -> None:
        """Check and join; raises live.Refused (the socket then closes with its code)."""
        try:
            room = rooms.param_room(query)
        except rooms.RoomRefused as error:
            raise live.Refused(CLOSE_BAD_REQUEST, 400, error.code, error.message) from None
        name = name_parse(_last(query, "name"))
        read_tokens = query.get("read") or []
        try:
            key = await db.reads.run(_key_resolve, token)
        except public_calls.PublicError as error:
            raise live.Refused(
                _close_code(error), error.status, error.code, error.message
            ) from None
        self.hook_id, self.room = str(key.hook_id), room
        stored_query = {n: v for n, v in query.items() if n not in SOCKET_PARAMS}
        self.sender = socket_writes.Sender(token, self.connection_id, name, stored_query)
        try:
            self.slot = await slots.acquire(key_id=key.pk, ip=ip)
        except slots.SlotRefused as error:
            raise live.Refused(CLOSE_TOO_MANY, 429, "too_many_connections", error.message) from None
        try:
            if read_tokens:
                await self._subscribe(read_tokens[-1], query, ip)
            self.peer = room_sockets.Peer(
                connection_id=self.connection_id,
                hook_id=self.hook_id,
                room=room,
                key_id=key.pk,
                push=self.push,
                close=self.close_soon,
            )
            await room_sockets.join(self.peer)
            try:
                join = functools.partial(
                    presence.join,
                    key=key,
                    connection_id=self.connection_id,
                    room=room,
                    name=name,
                    query=stored_query,
                )
                await socket_writes.run(self.hook_id, join)
                self.peer.present = True
            except public_calls.PublicError as error:
                raise live.Refused(
                    _close_code(error), error.status, error.code, error.message
                ) from None
            self.joined = True
        except BaseException:
            await self.end()
            raise
        hello = {"type": "hello", "id": self.connection_id, "room": room or None, "name": name}
        await self._transport_send(json.dumps(hello, ensure_ascii=False))
        self.tasks = [
            asyncio.create_task(self._write()),
            asyncio.create_task(self._send_outbox()),
        ]
        if self.subscription is not None:
            self.subscription.attach(self._raw_send)
            self.tasks.append(asyncio.create_task(self._close_with(self.subscription)))

    async def _subscribe(self, read_token: str, query: dict[str, list[str]], ip: str) -> None:
        params = {n: v for n, v in query.items() if n not in ("read", "name")}
        since = live.since_parse(_last(query, "since"))
        subscription = await live.subscribe(token=read_token, query=params, since=since, ip=ip)
        self.subscription = subscription
        if subscription.hook_id != self.hook_id:
            raise live.Refused(
                CLOSE_NOT_FOUND, 404, "not_found", "The read key is not a key of this hook."
            )

    async def _close_with(self, subscription: live.Subscription) -> None:
        closing = await subscription.closed()
        self.close_soon(closing.code, closing.reason)

    # -- frames in ------------------------------------------------------------------------

    def receive(self, text: str | None, data: bytes | None) -> None:
        if self.closing:
            return
        if text is None:
            self._answer(
                socket_writes.error_ack(None, 400, "binary_frame", "Frames are JSON text.")
            )
            return
        if text.strip() == "ping":
            self.push('{"type":"pong"}')
            return
        try:
            frame = strict_json.loads(text)
        except (ValueError, RecursionError) as error:
            detail = "nested too deeply" if isinstance(error, RecursionError) else str(error)
            self._answer(
                socket_writes.error_ack(
                    None, 400, "invalid_json", f"The frame is not valid JSON: {detail}"
                )
            )
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            self._answer(
                socket_writes.error_ack(
                    None, 400, "invalid_frame", 'A frame is a JSON object with a "type".'
                )
            )
            return
        ref = frame.get("ref")
        problem = socket_writes.ref_check(ref)
        if problem is not None:
            self._answer(socket_writes.error_ack(None, 400, "invalid_frame", problem))
            return
        kind = frame["type"]
        if kind == "write":
            self._write_queue(frame, ref)
        elif kind == "broadcast":
            self._broadcast(frame, ref)
        elif kind == "ping":
            self.push('{"type":"pong"}')
        else:
            self._answer(
                socket_writes.error_ack(
                    ref,
                    400,
                    "unknown_type",
                    f'Unknown frame type {kind[:40]!r}: send "write", "broadcast" or "ping".',
                )
            )

    def _write_queue(self, frame: dict[str, Any], ref: Any) -> None:
        key = frame.get("idempotency_key")
        if key is not None and not isinstance(key, str):
            self._answer(
                socket_writes.error_ack(
                    ref, 400, "invalid_frame", "idempotency_key must be a string."
                )
            )
            return
        if self.in_flight >= settings.WR_LIVE_WRITES_IN_FLIGHT:
            self.push(
                json.dumps(
                    socket_writes.error_ack(
                        ref,
                        429,
                        "too_many_in_flight",
                        f"Over {settings.WR_LIVE_WRITES_IN_FLIGHT} writes are waiting for "
                        "their ack; wait for some.",
                        retry_after=1,
                    )
                )
            )
            return
        self.in_flight += 1
        self.inbox.put_nowait(
            socket_writes.Write(ref=ref, body=frame.get("body"), idempotency_key=key)
        )

    def _answer(self, ack: dict[str, Any]) -> None:
        """An ack for a frame that is not stored, in order with the writes' acks."""
        self.in_flight += 1
        self.inbox.put_nowait(ack)

    def _broadcast(self, frame: dict[str, Any], ref: Any) -> None:
        body = json.dumps(frame.get("body"), ensure_ascii=False)
        limit = settings.WR_LIVE_BROADCAST_MAX_BYTES
        if len(body) > limit or len(body.encode()) > limit:
            self.push(
                json.dumps(
                    socket_writes.error_ack(
                        ref, 413, "too_large", f"A broadcast body is at most {limit} bytes."
                    )
                )
            )
            return
        wait = self.broadcasts.take()
        if wait > 0:
            self.push(
                json.dumps(
                    socket_writes.error_ack(
                        ref,
                        429,
                        "rate_limited",
                        "Too many broadcasts from this connection; slow down.",
                        retry_after=round(wait, 3),
                    )
                )
            )
            return
        broadcast.socket_broadcast(
            hook_id=self.hook_id, room=self.room, sender=self.connection_id, body=body
        )

    # -- frames out -----------------------------------------------------------------------

    def push(self, text: str, *, droppable: bool = True) -> None:
        """Queue a frame for the client. A broadcast or presence frame is dropped when the
        client has not read OUTBOX_BROADCASTS of them (acks never are)."""
        if self.closing:
            return
        if droppable:
            if self.outbox_broadcasts >= OUTBOX_BROADCASTS:
                return
            self.outbox_broadcasts += 1
        self.outbox.append((text, droppable))
        self.outbox_ready.set()

    async def _send_outbox(self) -> None:
        while True:
            await self.outbox_ready.wait()
            self.outbox_ready.clear()
            while self.outbox:
                text, droppable = self.outbox.popleft()
                if droppable:
                    self.outbox_broadcasts -= 1
                await self._transport_send(text)

    async def _write(self) -> None:
        assert self.sender is not None
        while True:
            items = [await self.inbox.get()]
            while len(items) < WRITES_PER_SOCKET_TRIP and not self.inbox.empty():
                items.append(self.inbox.get_nowait())
            start = 0
            while start < len(items):
                item = items[start]
                if isinstance(item, dict):
                    self._ack(item)
                    start += 1
                    continue
                end = start
                while end < len(items) and isinstance(items[end], socket_writes.Write):
                    end += 1
                writes = [w for w in items[start:end] if isinstance(w, socket_writes.Write)]
                try:
                    acks = await socket_writes.store(self.hook_id, self.sender, writes)
                except socket_writes.KeyGone as gone:
                    for one in gone.acks:  # stored before the key stopped serving
                        self._ack(one)
                    self.close_soon(CLOSE_NOT_FOUND, str(gone))
                    return
                except Exception:
                    acks = [
                        socket_writes.error_ack(
                            w.ref, 503, "unavailable", "The write could not be stored; resend it."
                        )
                        for w in writes
                    ]
                for one in acks:
                    self._ack(one)
                start = end

    def _ack(self, ack: dict[str, Any]) -> None:
        self.in_flight -= 1
        self.push(json.dumps(ack, ensure_ascii=False), droppable=False)

    # -- closing --------------------------------------------------------------------------

    def close_soon(self, code: int, reason: str) -> None:
        """Close the socket (from a callback: the close runs as a task)."""
        if self.closing:
            return
        self.closing = True
        self.close_task = asyncio.ensure_future(self._transport_close(code, reason))

    async def end(self) -> None:
        """The transport is gone (or the open failed): leave everything that was joined."""
        self.closing = True
        current = asyncio.current_task()
        tasks = [task for task in self.tasks if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.peer is not None:
            room_sockets.leave(self.peer)
            self.peer = None
        if self.subscription is not None:
            subscription, self.subscription = self.subscription, None
            await subscription.detach()
            await live.unsubscribe(subscription)
        if self.joined:
            self.joined = False
            with contextlib.suppress(Exception):
                # If this fails, the row expires and another process ends it.
                await socket_writes.run(self.hook_id, presence.leave, self.connection_id)
        if self.slot is not None:
            slot, self.slot = self.slot, None
            await slots.release(slot)
