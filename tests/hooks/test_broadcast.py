"""hooks.broadcast.broadcast: from sync code through one long-lived event loop per process, from
async code as a task, in order, never raising; and the in-memory layer of the embedded default."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import pytest
from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.test import Client, override_settings

from hooks import broadcast
from tests.conftest import read_key, write_key
from tests.hooks.realtime_helpers import COUNTER, live_slots_clean  # noqa: F401 (a fixture)
from tests.hooks.test_realtime import connect, run


async def _listen(group: str) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def _drain(channel: str, count: int) -> list[dict[str, Any]]:
    layer = get_channel_layer()
    return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(count)]


@pytest.fixture
def send_loops(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.AbstractEventLoop]:
    """The event loop each group_send of the channel layer ran on."""
    layer = get_channel_layer()
    loops: list[asyncio.AbstractEventLoop] = []
    original = layer.group_send

    async def recording(group: str, message: dict[str, Any]) -> None:
        loops.append(asyncio.get_running_loop())
        await original(group, message)

    monkeypatch.setattr(layer, "group_send", recording)
    return loops


def test_sync_code_sends_in_order_on_one_long_lived_loop(send_loops, monkeypatch) -> None:
    channel = async_to_sync(_listen)("events-test.order")
    # asgiref leaves the loop of a finished sync_to_async call in its thread: a stale one must
    # not count as a caller's loop.
    stale = asyncio.new_event_loop()
    stale.close()
    monkeypatch.setattr(SyncToAsync.threadlocal, "main_event_loop", stale, raising=False)
    monkeypatch.setattr(SyncToAsync.threadlocal, "main_event_loop_pid", os.getpid(), raising=False)
    for n in range(100):
        broadcast.broadcast("events-test.order", {"type": "test.message", "n": n})
    # The caller waited for its send: everything is there already.
    messages = async_to_sync(_drain)(channel, 100)
    assert [m["n"] for m in messages] == list(range(100))
    # One loop for all of them (channels_redis keeps its connections per loop), still running.
    assert len(send_loops) == 100 and len(set(send_loops)) == 1
    assert send_loops[0].is_running()
    assert send_loops[0] is broadcast._loop_thread().loop


def test_a_forked_process_starts_its_own_broadcast_loop(send_loops) -> None:
    broadcast.broadcast("events-test.fork", {"type": "test.message"})
    parent = broadcast._loop_thread()
    # What a child of a fork sees: the parent's loop object, without its thread.
    parent.pid = -1
    broadcast.broadcast("events-test.fork", {"type": "test.message"})
    child = broadcast._loop_thread()
    assert child is not parent and child.thread.is_alive()
    assert send_loops == [parent.loop, child.loop]
    parent.loop.call_soon_threadsafe(parent.loop.stop)


def test_a_failed_broadcast_is_logged_and_never_raises(monkeypatch, caplog) -> None:
    layer = get_channel_layer()

    async def failing(group: str, message: dict[str, Any]) -> None:
        raise ConnectionError("redis is gone")

    monkeypatch.setattr(layer, "group_send", failing)
    with caplog.at_level(logging.ERROR, logger="hooks.broadcast"):
        broadcast.state_changed(hook_id="h", seq=1)  # plain sync code

        async def from_async_code() -> None:
            broadcast.key_changed(hook_id="h")
            await asyncio.sleep(0.1)

        async_to_sync(from_async_code)()
    failures = [r for r in caplog.records if r.getMessage() == "broadcast to hook.h failed"]
    assert len(failures) == 2


def test_async_code_sends_in_order_without_blocking_its_loop() -> None:
    async def scenario() -> list[int]:
        channel = await _listen("events-test.async")
        for n in range(20):
            broadcast.broadcast("events-test.async", {"type": "test.message", "n": n})
        return [m["n"] for m in await _drain(channel, 20)]

    assert async_to_sync(scenario)() == list(range(20))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_slots_clean")
@override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}})
def test_the_in_memory_layer_of_the_embedded_default_still_delivers(make_hook, eager_tasks):
    # No Redis channel layer: the write runs its task in process (eagerly), and the broadcast
    # must reach the hub on the ASGI event loop, where the in-memory layer's queues live.
    hook = make_hook(COUNTER)
    token = read_key(hook)

    def write(n: int) -> int:
        response = Client().post(
            f"/write/{write_key(hook)}", json.dumps({"n": n}), content_type="application/json"
        )
        return response.status_code

    async def scenario() -> None:
        from channels.db import database_sync_to_async

        ws = await connect(f"/read/{token}/live")
        assert (await ws.receive_json_from(timeout=10))["seq"] == 0
        for n in (1, 2):
            assert await database_sync_to_async(write)(n) == 202
            message = await ws.receive_json_from(timeout=10)
            assert (message["seq"], message["body"]) == (n, {"count": n, "last": {"n": n}})
        await ws.disconnect()

    run(scenario)


def test_a_batch_of_rooms_changes_is_one_send_and_listeners_get_each_room(send_loops) -> None:
    from hooks.live import listeners

    hook_id = "00000000-0000-4000-8000-00000000b0d1"
    changes = [(f"r{n}", n + 1, json.dumps({"n": n})) for n in range(3)] + [("", 9, "[]")]

    async def scenario() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        group = broadcast.hook_group(hook_id)
        await listeners.listen(group, got.append)
        try:
            # From a worker (plain sync code): one group_send for the batch's four rooms.
            await asyncio.to_thread(
                lambda: broadcast.sent_wait(
                    broadcast.states_changed(hook_id=hook_id, version_id=7, changes=changes)
                )
            )
            for _ in range(100):
                if len(got) >= 4:
                    break
                await asyncio.sleep(0.05)
        finally:
            listeners.unlisten(group, got.append)
        return got

    got = async_to_sync(scenario)()
    assert len(send_loops) == 1
    # Each listener callback (a live hub, the owners' feed) gets each room's own state.changed.
    assert got == [
        {"type": "state.changed", "seq": 1, "room": "r0", "version_id": 7, "value": '{"n": 0}'},
        {"type": "state.changed", "seq": 2, "room": "r1", "version_id": 7, "value": '{"n": 1}'},
        {"type": "state.changed", "seq": 3, "room": "r2", "version_id": 7, "value": '{"n": 2}'},
        {"type": "state.changed", "seq": 9, "version_id": 7, "value": "[]"},
    ]


def test_bundles_stay_under_their_size_and_keep_the_rooms_order() -> None:
    big = "x" * (broadcast.BUNDLE_BYTES // 5)  # inline (under WR_LIVE_INLINE_STATE_BYTES)
    sent: list[Any] = []
    original = broadcast.broadcast_all
    try:
        broadcast.broadcast_all = lambda group, messages: sent.extend(messages)  # type: ignore[assignment]
        broadcast.states_changed(
            hook_id="h", version_id=1, changes=[(f"r{n}", n, json.dumps(big)) for n in range(7)]
        )
    finally:
        broadcast.broadcast_all = original  # type: ignore[assignment]
    assert [len(b["changes"]) for b in sent] == [4, 3]
    assert [c["room"] for b in sent for c in b["changes"]] == [f"r{n}" for n in range(7)]
