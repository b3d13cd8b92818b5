"""Helpers for the sandbox tests: requests as the Django side builds them, and short limits."""

from __future__ import annotations

import base64
import json
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import sandbox
from sandbox import CallResult, Limits, session

# Short limits keep the hostile tests quick; the defaults are tested separately.
FAST = Limits(cpu_seconds=0.5, wall_seconds=1.5, memory_bytes=128 * 2**20)


def make_request(
    body: Any = b"",
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    query: dict[str, list[str]] | None = None,
    seq: int | None = 1,
    path: str = "",
) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {
        "id": str(uuid.uuid4()),
        "seq": seq,
        "method": "POST",
        "path": path,
        "headers": headers if headers is not None else {"Content-Type": content_type},
        "query": query or {},
        "content_type": content_type,
        "body_b64": base64.b64encode(raw).decode(),
        "received_at": "2026-11-27T20:00:00.123456Z",
    }


def respond(
    code: str,
    request: dict[str, Any] | None = None,
    *,
    limits: Limits = FAST,
    secrets: dict[str, str] | None = None,
) -> CallResult:
    with session(code=textwrap.dedent(code), secrets=secrets or {}, limits=limits) as box:
        return box.respond(request or make_request({}))


COUNTER = """
def reducer(state, request, secrets):
    state = state or {"number": 0}
    state["number"] += request.body["number"]
    return state
"""


def assert_sandbox_works() -> None:
    """A well-behaved hook still folds correctly (after whatever the previous test tried)."""
    with session(code=COUNTER, secrets={}, limits=FAST) as box:
        steps = box.reduce("null", [make_request({"number": 4}), make_request({"number": 3})])
    assert [step.state_json for step in steps] == ['{"number":4}', '{"number":7}']


@pytest.fixture(autouse=True)
def _no_leftover_test_layers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sandbox.process, "TEST_DISABLED_LAYERS", frozenset())
    yield
