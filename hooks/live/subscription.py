"""One live connection's mailbox: it holds the newest state not yet sent, so a slow client skips
intermediate states instead of queueing them, and seq never goes backwards.

Two ways out. SSE (and any transport that pulls) awaits `next()`. A WebSocket `attach()`es its
ASGI send callable instead: `offer()` then writes the frame at once, in the hub's own pass over
its subscribers, with no task to wake per connection. Only when the server's write buffer for
that client is full (a slow reader) does its send wait, in a task of its own; meanwhile newer
offers replace each other in `pending`, and the newest is sent when the buffer drains.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any

from hooks.live.slots import Slot
from hooks.live.state import Delivery, Params

# Close codes (WebSocket) — the SSE equivalents are HTTP statuses at connect.
CLOSE_BAD_REQUEST = 4400  # an invalid ?room= name
CLOSE_NOT_FOUND = 4404  # unknown, paused or revoked key (at connect or later)
CLOSE_TOO_MANY = 4429  # connection cap of the key or the IP
CLOSE_RESET = 4409  # the hook's history was reset (archive): reconnect without `since`
CLOSE_UNAVAILABLE = 4503  # database or channel layer unavailable: retry later
CLOSE_FORBIDDEN = 4403  # owners' feed without a signed-in user

AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]


async def _awaited(awaitable: Awaitable[None]) -> None:
    await awaitable


@dataclass(frozen=True)
class Closing:
    code: int
    reason: str


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], awaiting: Any) -> Generator[Any, Any, None]:
    """Go on running `coro`, already started by hand and now waiting on `awaiting`, inside the
    task that awaits this (the same as `await coro` would have done from where it stopped)."""
    while True:
        try:
            sent = yield awaiting
        except BaseException as error:  # handed to the coroutine, as `await` does
            try:
                awaiting = coro.throw(error)
            except StopIteration:
                return
        else:
            try:
                awaiting = coro.send(sent)
            except StopIteration:
                return


@dataclass(eq=False)
class Subscription:
    hook_id: str
    key_id: int
    params: Params
    slot: Slot | None = None
    room: str = ""  # hooks.rooms: "" is the main room
    last_seq: int = -1
    last_version: int | None = None
    pending: Delivery | None = None
    closing: Closing | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Direct sending (WebSocket): the ASGI send callable, the task of a send that had to wait
    # for the client, and whether the connection failed under a send.
    _send: AsgiSend | None = None
    _sending: asyncio.Task[None] | None = None
    _broken: bool = False

    def offer(self, delivery: Delivery) -> None:
        """Take `delivery` if it is newer than what was sent or is waiting: a higher seq, or the
        same seq in a later version (a publish or rollback switched the state; each makes a new
        Version row, so a later live version always has a higher id)."""
        if self.closing is not None:
            return
        ref_seq, ref_version = (
            (self.pending.seq, self.pending.version_id)
            if self.pending is not None
            else (self.last_seq, self.last_version)
        )
        if delivery.seq > ref_seq or (
            delivery.seq == ref_seq and delivery.version_id > (ref_version or 0)
        ):
            self.pending = delivery
            if self._send is not None:
                self._flush()
            else:
                self._wake.set()

    def mark_sent(self, seq: int, version_id: int) -> None:
        """The client already has this state (catch-up with `since`)."""
        if (seq, version_id) > (self.last_seq, self.last_version or 0):
            self.last_seq, self.last_version = seq, version_id

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = Closing(code, reason)
            self.pending = None
            self._wake.set()

    async def next(self, timeout: float | None = None) -> Delivery | Closing | None:
        """The next thing to send: a state, a close, or None when `timeout` passed first."""
        if self.closing is None and self.pending is None:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None
        self._wake.clear()
        if self.closing is not None:
            return self.closing
        delivery, self.pending = self.pending, None
        if delivery is None:
            return None
        self.last_seq, self.last_version = delivery.seq, delivery.version_id
        return delivery

    # -- direct sending (WebSocket) -------------------------------------------------------

    def attach(self, send: AsgiSend) -> None:
        """From now on send states straight through `send` (an ASGI send callable) as they are
        offered, starting with the one waiting. Wait for a close with `closed()`."""
        self._send = send
        self._flush()

    async def closed(self) -> Closing:
        """Once the subscription is closed (key paused or revoked, history reset): why."""
        while self.closing is None:
            self._wake.clear()
            await self._wake.wait()
        return self.closing

    async def detach(self) -> None:
        """Stop sending (the connection ended); waits for a send in progress to give up."""
        self._send = None
        self.pending = None
        if self._sending is not None:
            self._sending.cancel()
            await asyncio.gather(self._sending, return_exceptions=True)

    def _flush(self) -> None:
        # Called by offer() and when a waiting send finished: send the pending state unless a
        # send is in progress (it sends the newest pending state when done).
        send = self._send
        while (
            send is not None
            and self._sending is None
            and self.pending is not None
            and self.closing is None
            and not self._broken
        ):
            delivery, self.pending = self.pending, None
            self.last_seq, self.last_version = delivery.seq, delivery.version_id
            # Run the send coroutine by hand: on a writable connection it finishes without ever
            # suspending, so this is a plain call; no task, no event-loop round trip.
            sending = send({"type": "websocket.send", "text": delivery.ws_text})
            coro = sending if isinstance(sending, types.CoroutineType) else _awaited(sending)
            try:
                awaiting = coro.send(None)
            except StopIteration:
                continue
            except Exception:
                # The client went away mid-send; the consumer's disconnect() cleans up.
                self._broken = True
                return
            self._sending = asyncio.ensure_future(self._finish(coro, awaiting))

    async def _finish(self, coro: Coroutine[Any, Any, None], awaiting: Any) -> None:
        try:
            await _resume(coro, awaiting)
        except asyncio.CancelledError:
            coro.close()
            raise
        except Exception:
            self._broken = True
            return
        finally:
            self._sending = None
        self._flush()
