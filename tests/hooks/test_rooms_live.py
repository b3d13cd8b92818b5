"""Live state per room: WebSocket and SSE subscribers of a room get that room's states only,
and `since=` / `Last-Event-ID` resume within the room."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from hooks.models import Hook
from tests.conftest import read_key, write_key
from tests.hooks.realtime_helpers import COUNTER, live_slots_clean  # noqa: F401 (a fixture)
from tests.hooks.test_realtime import closed_with, connect, run, sse_get, sse_read

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_slots_clean")]


@database_sync_to_async
def write(hook: Hook, body: Any, room: str | None = None) -> int:
    query = f"?room={room}" if room else ""
    response = Client().post(
        f"/write/{write_key(hook)}{query}", json.dumps(body), content_type="application/json"
    )
    return response.status_code


def test_subscribers_of_a_room_receive_its_changes_and_nothing_of_another_room(
    make_hook, eager_tasks
) -> None:
    hook = make_hook(COUNTER)
    token = read_key(hook)

    async def scenario() -> None:
        a = await connect(f"/read/{token}/live?room=a")
        b = await connect(f"/read/{token}/live?room=b")
        main = await connect(f"/read/{token}/live")
        for ws in (a, b, main):
            assert await ws.receive_json_from(timeout=10) == {
                "type": "state",
                "seq": 0,
                "body": None,
            }
        assert await write(hook, {"n": 5}, room="b") == 202
        assert await write(hook, {"n": 6}, room="b") == 202
        assert [(await b.receive_json_from(timeout=10))["seq"] for _ in range(2)] == [1, 2]
        assert await a.receive_nothing(timeout=0.5)
        assert await main.receive_nothing(timeout=0.1)
        assert await write(hook, {"n": 1}, room="a") == 202
        frame = await a.receive_json_from(timeout=10)
        assert frame["seq"] == 1 and frame["body"]["count"] == 1
        assert await b.receive_nothing(timeout=0.5)
        assert await main.receive_nothing(timeout=0.1)
        for ws in (a, b, main):
            await ws.disconnect()

    run(scenario)


def test_since_resumes_within_the_room(make_hook, eager_tasks) -> None:
    hook = make_hook(COUNTER)
    token = read_key(hook)

    async def scenario() -> None:
        for n in range(3):
            assert await write(hook, {"n": n}, room="r") == 202
        assert await write(hook, {"n": 9}) == 202  # the main room is at seq 1
        current = await connect(f"/read/{token}/live?room=r&since=3")
        assert await current.receive_nothing(timeout=0.5)
        behind = await connect(f"/read/{token}/live?room=r&since=1")
        assert (await behind.receive_json_from(timeout=10))["seq"] == 3
        await current.disconnect()
        await behind.disconnect()

        stream = await sse_get(f"/read/{token}/events?room=r", [(b"last-event-id", b"3")])
        assert (await stream.receive_output(timeout=10))["status"] == 200
        assert (await stream.receive_output(timeout=10))["body"] == b": connected\n\n"
        assert await stream.receive_nothing(timeout=0.5)
        assert await write(hook, {"n": 9}) == 202  # another room: nothing here
        assert await stream.receive_nothing(timeout=0.5)
        assert await write(hook, {"n": 3}, room="r") == 202
        assert [(e["id"], e["data"]["seq"]) for e in await sse_read(stream, 1)] == [("4", 4)]
        await stream.send_input({"type": "http.disconnect"})
        await stream.wait(timeout=10)

    run(scenario)


def test_an_invalid_room_name_is_refused_on_the_socket_and_the_stream(make_hook) -> None:
    hook = make_hook(COUNTER)
    token = read_key(hook)

    async def scenario() -> None:
        ws = await connect(f"/read/{token}/live?room=no%20spaces")
        assert await closed_with(ws) == 4400
        stream = await sse_get(f"/read/{token}/events?room=no%20spaces")
        start = await stream.receive_output(timeout=10)
        assert start["status"] == 400
        body = await stream.receive_output(timeout=10)
        assert json.loads(body["body"])["error"]["code"] == "invalid_room"

    run(scenario)


def test_the_owners_feed_names_the_room_of_each_state_change(make_hook, alice, eager_tasks) -> None:
    from tests.hooks.test_realtime import _session_cookie

    hook = make_hook(COUNTER)
    headers = _session_cookie(alice)

    async def scenario() -> None:
        feed = await connect(f"/ws/hooks/{hook.pk}/", headers=headers)
        assert (await feed.receive_json_from(timeout=10))["type"] == "hello"
        assert await write(hook, {"n": 1}, room="match-7") == 202
        assert await write(hook, {"n": 1}) == 202
        states = []
        while len(states) < 2:
            message = await feed.receive_json_from(timeout=10)
            if message["type"] == "state":
                states.append(message)
        assert states == [
            {"type": "state", "seq": 1, "room": "match-7", "every_room": False},
            {"type": "state", "seq": 1, "room": None, "every_room": False},
        ]
        await feed.disconnect()

    run(scenario)
