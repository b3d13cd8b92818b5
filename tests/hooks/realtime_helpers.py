"""Shared code of the realtime tests (not a test module)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hooks.live import hub, listeners
from webreducer.redis import get_redis

COUNTER = """
def reducer(state, request, secrets):
    state = state or {"count": 0, "last": None}
    state["count"] += 1
    state["last"] = request.body
    return state
"""

# The query answers with what it was given, so tests can see params and the state it ran on.
QUERYING = (
    COUNTER
    + """
def query(state, params, secrets):
    return {"count": (state or {}).get("count", 0), "params": dict(params), "scale": params.get("scale")}
"""
)

RAPID = {"rate_per_second": 100000, "rate_burst": 100000}


async def hubs_gone(timeout: float = 5) -> None:
    """Wait until every hub of this event loop stopped (tests end each loop clean)."""
    loop_deadline = asyncio.get_running_loop().time() + timeout
    while hub.hub_count() or listeners.busy():
        if asyncio.get_running_loop().time() > loop_deadline:
            raise AssertionError("live hubs still running")
        await asyncio.sleep(0.01)


def sse_events(text: str) -> list[dict[str, Any]]:
    """Parse a chunk of an SSE stream into its events (comments dropped)."""
    events = []
    for block in text.split("\n\n"):
        event: dict[str, Any] = {}
        data = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            if name == "data":
                data.append(value)
            else:
                event[name] = value
        if data:
            event["data"] = json.loads("\n".join(data))
        if event and "data" in event:
            events.append(event)
    return events


@pytest.fixture
def live_slots_clean() -> None:
    """Forget connection slots an interrupted earlier run left in Redis (they expire anyway)."""
    client = get_redis()
    if client is not None:
        for name in client.scan_iter("wr:live:*"):
            client.delete(name)
