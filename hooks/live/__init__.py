"""Live state for public subscribers (WebSocket `/read/<key>/live`, SSE `/read/<key>/events`).

`subscribe()` checks the key and the connection caps, joins the hook's hub (hooks.live.hub)
and offers the current state; the transport then sends whatever `Subscription.next()` yields.
See docs/realtime.md.
"""

from __future__ import annotations

from hooks import public_calls, rooms
from hooks.live import db, hub, slots
from hooks.live.state import connect_read, delivery_for, params_canonical
from hooks.live.subscription import (
    CLOSE_BAD_REQUEST,
    CLOSE_NOT_FOUND,
    CLOSE_TOO_MANY,
    CLOSE_UNAVAILABLE,
    Closing,
    Subscription,
)
from hooks.models import Key

__all__ = ["Closing", "Refused", "Subscription", "since_parse", "subscribe", "unsubscribe"]


class Refused(Exception):
    """A connection that is not served: a WebSocket close code and the HTTP status for SSE."""

    def __init__(self, close_code: int, status: int, code: str, message: str):
        super().__init__(message)
        self.close_code = close_code
        self.status = status
        self.code = code
        self.message = message


def since_parse(value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None  # a client that sends nonsense gets the current state, like a new one


async def subscribe(
    *, token: str, query: dict[str, list[str]], since: int | None, ip: str
) -> Subscription:
    """A subscription with the current state waiting in it (unless the client has it already,
    per `since`); raises Refused."""
    try:
        room = rooms.param_room(query)
    except rooms.RoomRefused as error:
        raise Refused(CLOSE_BAD_REQUEST, 400, error.code, error.message) from None
    try:
        key = await db.reads.run(_key_resolve, token)
    except public_calls.PublicError as error:
        raise _refused(error) from None
    try:
        slot = await slots.acquire(key_id=key.pk, ip=ip)
    except slots.SlotRefused as error:
        raise Refused(CLOSE_TOO_MANY, 429, "too_many_connections", error.message) from None
    subscription = Subscription(
        hook_id=str(key.hook.pk),
        key_id=key.pk,
        params=params_canonical(query),
        slot=slot,
        room=room,
    )
    try:
        await hub.join(subscription)
        # Read the state only now that the hub listens: a change committed before this read
        # is in it, one committed after reaches the hub. (The key is checked again too.)
        _, snapshot = await db.reads.run(connect_read, token, room)
        delivery = await delivery_for(snapshot, subscription.params)
    except BaseException as error:
        await unsubscribe(subscription)
        if isinstance(error, public_calls.PublicError):
            raise _refused(error) from None
        if isinstance(error, Exception):
            raise Refused(
                CLOSE_UNAVAILABLE,
                503,
                "unavailable",
                "Live updates are unavailable; retry shortly.",
            ) from error
        raise
    if since is not None and since == delivery.seq:
        subscription.mark_sent(delivery.seq, delivery.version_id)
    else:
        subscription.offer(delivery)
    return subscription


def _key_resolve(token: str) -> Key:
    return public_calls.key_resolve(token=token, kind=Key.Kind.READ)


def _refused(error: public_calls.PublicError) -> Refused:
    close = CLOSE_NOT_FOUND if error.status == 404 else CLOSE_UNAVAILABLE
    return Refused(close, error.status, error.code, error.message)


async def unsubscribe(subscription: Subscription) -> None:
    hub.leave(subscription)
    if subscription.slot is not None:
        slot, subscription.slot = subscription.slot, None
        await slots.release(slot)
