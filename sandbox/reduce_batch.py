"""One reduce() call's bookkeeping on the parent side: which state the parent knows, which
replies must carry the state, and where to start again after a child dies.

A reduce result carries the new state's text only when it is at most the log cap or the parent
asked for it ("full"); otherwise only its size (docs/sandbox.md, "Big states"). The parent
always asks for it on the batch's last request, so the state to commit comes back once per
batch. When a child dies (a wall-time kill, a crash, a forged reply) after states the parent was
not sent, the parent cannot hand the next child the state to go on from: it runs the requests
since the last state it knows again, in a fresh child that sends every state (at most once per
call), and keeps only those results.

One batch may fold several rooms' states (`groups`): each group's requests follow a "state"
frame with its state, in one exchange, so a multi-room batch (hooks.room_batch) pays one round
trip to the child rather than one per room. A group's last reply always carries its state, and
a rewind never goes back past a group's start (its state is the parent's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.process import encode_frame, frame_text

Payload = dict[str, Any] | str


def request_frame(op: str, request: Payload, *, full: bool = False) -> bytes:
    """The frame of one call; `full` asks a reduce result for the state's text whatever its size."""
    flag = ',"full":true' if full else ""
    if isinstance(request, str):
        return frame_text(f'{{"op":"{op}"{flag},"request":{request}}}')
    return encode_frame({"op": op, **({"full": True} if full else {}), "request": request})


def as_dict(request: Payload) -> dict[str, Any]:
    return json.loads(request) if isinstance(request, str) else request


@dataclass
class ReduceStep:
    ok: bool  # False: this request failed and state_json is the state before it
    # JSON text of the state after this request, or None when it is bigger than the log cap
    # (Session.log_state_bytes) and was not sent. The last step of a reduce() always has it:
    # the state to commit.
    state_json: str | None
    error: dict[str, str] | None
    console: str
    duration_ms: float


class ReduceBatch:
    def __init__(
        self,
        state_json: str,
        requests: Sequence[Payload],
        *,
        groups: Sequence[tuple[str, Sequence[Payload]]] | None = None,
    ) -> None:
        """One state and its requests, or `groups`: several (state, requests), folded one
        after the other (`state_json` and `requests` are then unused)."""
        if groups is None:
            groups = [(state_json, requests)]
        self.sizes = [len(part) for _, part in groups]
        self.requests = [request for _, part in groups for request in part]
        # Where each non-empty group starts (index -> its state), and each one's last index.
        self.starts: dict[int, str] = {}
        self.ends: set[int] = set()
        offset = 0
        for state, part in groups:
            if part:
                self.starts[offset] = state
                offset += len(part)
                self.ends.add(offset - 1)
        self.every = False  # after a rewind: every reply carries its state
        self.frames = [self._frame(i) for i in range(len(self.requests))]
        self.steps: list[ReduceStep] = []
        # The state before request `known_at` is `known` (JSON text already checked).
        self.known_at = 0
        self.known = self.starts.get(0, groups[0][0] if groups else state_json)

    def full(self, index: int) -> bool:
        """Whether the reply to request `index` must carry the state's text."""
        return self.every or index in self.ends

    def _frame(self, index: int) -> bytes:
        frame = request_frame("reduce", self.requests[index], full=self.full(index))
        if index and index in self.starts:
            # The next group's state first (the first group's is the prelude).
            return encode_frame({"op": "state", "state": self.starts[index]}) + frame
        return frame

    def split(self) -> list[list[ReduceStep]]:
        """The steps, one list per group."""
        parts, offset = [], 0
        for size in self.sizes:
            parts.append(self.steps[offset : offset + size])
            offset += size
        return parts

    def prelude(self) -> list[bytes]:
        """What a fresh child is sent first: the state to go on from."""
        return [encode_frame({"op": "state", "state": self.known})]

    def resume(self, index: int) -> int:
        """Where a fresh child starts (or, at the end, whether the batch is done): at `index`
        when the state before it is known, else again at the last state known."""
        if index == self.known_at:
            return index
        self.every = True
        self.frames[self.known_at :] = [
            self._frame(i) for i in range(self.known_at, len(self.requests))
        ]
        del self.steps[self.known_at :]
        return self.known_at

    def record(self, index: int, result: dict[str, Any]) -> None:
        """A checked result of request `index` (a result yielded again replaces the old)."""
        del self.steps[index:]
        text: str | None = result.get("state")
        if result["ok"]:
            if text is not None:
                self.known_at, self.known = index + 1, text
            step = ReduceStep(True, text, None, result["console"], result["ms"])
        else:
            # A failed request leaves the state as it was: known if it was known before it,
            # or sent with this (full or fatal) result.
            if self.known_at == index:
                self.known_at = index + 1
            elif text is not None:
                self.known_at, self.known = index + 1, text
            state = self.known if self.known_at == index + 1 else None
            step = ReduceStep(False, state, result["error"], result["console"], result["ms"])
        self.steps.append(step)
        if index + 1 in self.starts:
            # The next group goes on from its own state: the parent's, known.
            self.known_at, self.known = index + 1, self.starts[index + 1]
