"""The messages that travel over the channel layer (hooks.broadcast sends them), and the ones
the owners' feed sends on to the browser (hooks.consumers.OwnerFeedConsumer).

Each is a TypedDict whose `type` is a Literal, so mypy knows which fields a message of a given
type has; a receiver keeps one handler per type (see OwnerFeedConsumer.HANDLERS) instead of an
if/elif chain. The live hub (hooks.live.hub) receives the same `state.changed` and `key.changed`.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# --- Over the channel layer (group hooks.broadcast.hook_group) ------------------------------


class StateChanged(TypedDict):
    """A room's live state changed (committed). `value` is the state's JSON text of version
    `version_id` when it fits WR_LIVE_INLINE_STATE_BYTES. `room` absent: the main room; None:
    every room of the hook (a publish's switch, an archive)."""

    type: Literal["state.changed"]
    seq: int
    room: NotRequired[str | None]
    version_id: NotRequired[int]
    value: NotRequired[str]


class StatesChanged(TypedDict):
    """Several rooms' `state.changed` in one message (a multi-room batch's commit): one send
    instead of one per room. The process's listener hands each on as its own
    (hooks.live.listeners), so receivers only know `state.changed`."""

    type: Literal["states.changed"]
    changes: list[StateChanged]


class KeyChanged(TypedDict):
    """A key was paused, resumed or revoked; `key_id` None: the whole hook changed."""

    type: Literal["key.changed"]
    key_id: int | None


# --- Over the channel layer (group hooks.broadcast.owner_group) -----------------------------


class RequestSummary(TypedDict):
    """One row of the owner's live request log (hooks.broadcast.request_summary)."""

    id: str
    room: str | None  # None: the main room
    seq: int | None
    outcome: str
    method: str
    path: str
    status: int | None
    received_at: str | None
    duration_ms: float | None
    error: str | None


class RequestsLogged(TypedDict):
    type: Literal["requests.logged"]
    requests: list[RequestSummary]


class ReplayProgress(TypedDict):
    type: Literal["replay.progress"]
    version: int
    done: int
    total: int
    status: str  # building, published, failed


# --- Over the channel layer (group hooks.broadcast.room_group: a room's two-way sockets) ------


class PresenceChanged(TypedDict):
    """Someone joined or left the room: each process lists its members again."""

    type: Literal["presence.changed"]


class SocketBroadcast(TypedDict):
    """A socket's broadcast, for the room's other sockets (`body` is JSON text, sent as is)."""

    type: Literal["socket.broadcast"]
    sender: str  # the connection id
    body: str


class ListenerResync(TypedDict):
    """Not sent by anyone: a process's listener (hooks.live.listeners) hands this to its
    callbacks after a channel-layer failure, when whatever arrived meanwhile is unknown."""

    type: Literal["listener.resync"]


HookMessage = StateChanged | KeyChanged
RoomMessage = PresenceChanged | SocketBroadcast
OwnerMessage = RequestsLogged | ReplayProgress


# --- From the owners' feed to the browser (docs/realtime.md, "The owners' feed") ------------


class FeedHello(TypedDict):
    type: Literal["hello"]
    hook: str


class FeedState(TypedDict):
    """A room's state changed: `room` as the API names it (None: the main room), or, with
    `every_room`, all of the hook's rooms (a publish's switch, an archive)."""

    type: Literal["state"]
    seq: int
    room: str | None
    every_room: bool


class FeedKeys(TypedDict):
    type: Literal["keys"]
    key_id: int | None


class FeedRequests(TypedDict):
    type: Literal["requests"]
    requests: list[RequestSummary]


class FeedReplay(TypedDict):
    type: Literal["replay"]
    version: int
    done: int
    total: int
    status: str


class FeedPong(TypedDict):
    type: Literal["pong"]


FeedMessage = FeedHello | FeedState | FeedKeys | FeedRequests | FeedReplay | FeedPong


def message_type(message: dict[str, Any]) -> str | None:
    """A received message's type, None when it has none (a receiver skips it)."""
    kind = message.get("type")
    return kind if isinstance(kind, str) else None
