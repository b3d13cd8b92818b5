"""One reduce() call's bookkeeping on the parent side: which state the parent knows, which
replies must carry the state, and where to start again after a child dies.

A reduce result carries the new state's text only when it is at most the log cap or the parent
asked for it ("full"); otherwise only its size (docs/sandbox.md, "Big states"). The parent
always asks for it on the batch's last request, so the state to commit comes back once per
batch. When a child dies (a wall-time kill, a crash, a forged reply) after states the parent was
not sent, the parent cannot hand the next child the state to go on from: it runs the requests
since the last state it knows again, in a fresh child that sends every state (at most once per
call), and keeps only those results.
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
    def __init__(self, state_json: str, requests: Sequence[Payload]) -> None:
        self.requests = requests
        self.every = False  # after a rewind: every reply carries its state
        self.frames = [self._frame(i) for i in range(len(requests))]
        self.steps: list[ReduceStep] = []
        # The state before request `known_at` is `known` (JSON text already checked).
        self.known_at = 0
        self.known = state_json

    def full(self, index: int) -> bool:
        """Whether the reply to request `index` must carry the state's text."""
        return self.every or index == len(self.requests) - 1

    def _frame(self, index: int) -> bytes:
        return request_frame("reduce", self.requests[index], full=self.full(index))

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
