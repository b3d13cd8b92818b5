"""One live connection's mailbox: it holds the newest state not yet sent, so a slow client skips
intermediate states instead of queueing them, and seq never goes backwards."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hooks.live.slots import Slot
from hooks.live.state import Delivery, Params

# Close codes (WebSocket) — the SSE equivalents are HTTP statuses at connect.
CLOSE_NOT_FOUND = 4404  # unknown, paused or revoked key (at connect or later)
CLOSE_TOO_MANY = 4429  # connection cap of the key or the IP
CLOSE_RESET = 4409  # the hook's history was reset (archive): reconnect without `since`
CLOSE_UNAVAILABLE = 4503  # database or channel layer unavailable: retry later
CLOSE_FORBIDDEN = 4403  # owners' feed without a signed-in user


@dataclass(frozen=True)
class Closing:
    code: int
    reason: str


@dataclass(eq=False)
class Subscription:
    hook_id: str
    key_id: int
    params: Params
    slot: Slot | None = None
    last_seq: int = -1
    last_version: int | None = None
    pending: Delivery | None = None
    closing: Closing | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, delivery: Delivery) -> None:
        """Take `delivery` if it is newer than what was sent or is waiting (a new version with
        the same seq counts as newer: a publish switched the state)."""
        if self.closing is not None:
            return
        ref_seq, ref_version = (
            (self.pending.seq, self.pending.version_id)
            if self.pending is not None
            else (self.last_seq, self.last_version)
        )
        if delivery.seq > ref_seq or (
            delivery.seq == ref_seq and delivery.version_id != ref_version
        ):
            self.pending = delivery
            self._wake.set()

    def mark_sent(self, seq: int, version_id: int) -> None:
        """The client already has this state (catch-up with `since`)."""
        if seq > self.last_seq:
            self.last_seq, self.last_version = seq, version_id

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = Closing(code, reason)
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
