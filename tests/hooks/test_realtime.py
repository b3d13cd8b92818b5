"""Live state (WebSocket /read/<key>/live, SSE /read/<key>/events) and the owners' feed, in
process with Channels' communicators. End to end with real servers: test_realtime_e2e.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import ApplicationCommunicator, WebsocketCommunicator
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone

from hooks import broadcast
from hooks.live import db as live_db
from hooks.live import state as live_state
from hooks.live.subscription import Subscription
from hooks.models import Hook, Key
from tests.conftest import read_key, write_key
from tests.hooks import api
from tests.hooks.realtime_helpers import (  # noqa: F401 (a fixture)
    COUNTER,
    QUERYING,
    hubs_gone,
    live_slots_clean,
    sse_events,
)
from webreducer.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_slots_clean")]


def run(scenario: Callable[[], Any]) -> None:
    async def wrapped() -> None:
        await scenario()
        await hubs_gone()
        # The live code's DB threads would keep the test database from being dropped.
        await asyncio.to_thread(live_db.shutdown)

    async_to_sync(wrapped)()


@database_sync_to_async
def write(hook: Hook, body: Any) -> int:
    return api.write(Client(), write_key(hook), body).status_code


async def connect(path: str, **kwargs: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, **kwargs)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def closed_with(communicator: WebsocketCommunicator) -> int:
    message = await communicator.receive_output(timeout=10)
    assert message["type"] == "websocket.close", message
    # What a server does after the application closes: tell it the socket is gone.
    await communicator.disconnect(code=message["code"])
    return int(message["code"])


def test_it_sends_the_state_at_connect_and_after_each_write(make_hook, eager_tasks) -> None:
    hook = make_hook(COUNTER)
    token = read_key(hook)

    async def scenario() -> None:
        ws = await connect(f"/read/{token}/live")
        assert await ws.receive_json_from(timeout=10) == {"type": "state", "seq": 0, "body": None}
        assert await write(hook, {"n": 1}) == 202
        assert await ws.receive_json_from(timeout=10) == {
            "type": "state",
            "seq": 1,
            "body": {"count": 1, "last": {"n": 1}},
        }
        # Later changes arrive with new bodies: nothing is cached across states.
        assert await write(hook, {"n": 2}) == 202
        assert await ws.receive_json_from(timeout=10) == {
            "type": "state",
            "seq": 2,
            "body": {"count": 2, "last": {"n": 2}},
        }
        await ws.disconnect()

    run(scenario)


def test_its_frames_take_no_hop_to_the_shared_sync_thread(
    make_hook, eager_tasks, monkeypatch
) -> None:
    """Channels closes Django's stale connections before every message a consumer gets, on
    asgiref's one sync thread that all of a process's sockets share; the live consumers keep
    their connections on threads of their own (hooks.live.db) and skip it."""
    import channels.consumer

    hops: list[str] = []

    async def counted() -> None:
        hops.append("close_old_connections")

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    hook = make_hook(COUNTER)
    token = read_key(hook)

    async def scenario() -> None:
        ws = await connect(f"/read/{token}/live")
        assert (await ws.receive_json_from(timeout=10))["type"] == "state"
        for _ in range(3):
            await ws.send_to(text_data="ping")
            assert await ws.receive_json_from(timeout=10) == {"type": "pong"}
        assert await write(hook, {"n": 1}) == 202
        assert (await ws.receive_json_from(timeout=10))["seq"] == 1
        await ws.disconnect()

    run(scenario)
    assert hops == []


def test_it_sends_each_subscriber_its_own_query_result(make_hook, eager_tasks) -> None:
    hook = make_hook(QUERYING)
    token = read_key(hook)

    async def scenario() -> None:
        one = await connect(f"/read/{token}/live?scale=1&since=7")
        two = await connect(f"/read/{token}/live?scale=2")
        first_one = await one.receive_json_from(timeout=10)
        first_two = await two.receive_json_from(timeout=10)
        # `since` belongs to the protocol: the user's query never sees it.
        assert first_one == {
            "type": "state",
            "seq": 0,
            "body": {"count": 0, "params": {"scale": ["1"]}, "scale": "1"},
        }
        assert first_two["body"]["scale"] == "2"
        for n in (1, 2, 3):
            assert await write(hook, {"n": n}) == 202
            got_one = await one.receive_json_from(timeout=10)
            got_two = await two.receive_json_from(timeout=10)
            assert (got_one["seq"], got_one["body"]["count"], got_one["body"]["scale"]) == (
                n,
                n,
                "1",
            )
            assert (got_two["seq"], got_two["body"]["count"], got_two["body"]["scale"]) == (
                n,
                n,
                "2",
            )
        await one.disconnect()
        await two.disconnect()

    run(scenario)


def test_it_runs_one_query_per_change_for_subscribers_with_the_same_params(
    make_hook, eager_tasks, monkeypatch
) -> None:
    hook = make_hook(QUERYING)
    token = read_key(hook)
    runs: list[dict[str, list[str]]] = []
    original = live_state.reads.query_run

    def counting(**kwargs: Any) -> Any:
        runs.append(kwargs["params"])
        return original(**kwargs)

    monkeypatch.setattr(live_state.reads, "query_run", counting)

    async def scenario() -> None:
        # Same params in another order are the same params.
        paths = [f"/read/{token}/live?a=1&b=2"] * 4 + [f"/read/{token}/live?b=2&a=1"]
        sockets = [await connect(path) for path in paths]
        for ws in sockets:
            assert (await ws.receive_json_from(timeout=10))["seq"] == 0
        assert len(runs) == 1
        assert await write(hook, {"n": 1}) == 202
        for ws in sockets:
            message = await ws.receive_json_from(timeout=10)
            assert (message["seq"], message["body"]["count"]) == (1, 1)
        assert len(runs) == 2
        for ws in sockets:
            await ws.disconnect()

    run(scenario)


def test_it_sends_nothing_at_connect_when_since_is_the_current_seq(make_hook, eager_tasks) -> None:
    hook = make_hook(COUNTER)
    token = read_key(hook)

    async def scenario() -> None:
        for n in (1, 2):
            assert await write(hook, {"n": n}) == 202
        current = await connect(f"/read/{token}/live?since=2")
        assert await current.receive_nothing(timeout=0.5)
        behind = await connect(f"/read/{token}/live?since=1")
        assert (await behind.receive_json_from(timeout=10))["seq"] == 2
        assert await write(hook, {"n": 3}) == 202
        assert (await current.receive_json_from(timeout=10))["seq"] == 3
        assert (await behind.receive_json_from(timeout=10))["seq"] == 3
        await current.disconnect()
        await behind.disconnect()

    run(scenario)


def test_it_refuses_unknown_paused_and_revoked_keys(make_hook) -> None:
    hook = make_hook(COUNTER)
    paused = Key.objects.create(hook=hook, kind=Key.Kind.READ, is_paused=True)
    revoked = Key.objects.create(hook=hook, kind=Key.Kind.READ, revoked_at=timezone.now())
    tokens = ("no-such-key", paused.token, revoked.token, write_key(hook))

    async def scenario() -> None:
        for token in tokens:
            ws = await connect(f"/read/{token}/live")
            assert await closed_with(ws) == 4404

    run(scenario)


def test_it_closes_connections_when_their_key_is_paused_or_revoked(make_hook) -> None:
    hook = make_hook(COUNTER)
    token = read_key(hook)
    other = Key.objects.create(hook=hook, kind=Key.Kind.READ)

    async def scenario() -> None:
        paused = await connect(f"/read/{token}/live")
        revoked = await connect(f"/read/{other.token}/live")
        untouched = await connect(f"/read/{other.token}/live")
        for ws in (paused, revoked, untouched):
            await ws.receive_json_from(timeout=10)
        await database_sync_to_async(
            Key.objects.filter(hook=hook, kind="read").exclude(pk=other.pk).update
        )(is_paused=True)
        await database_sync_to_async(broadcast.key_changed)(hook_id=str(hook.pk), key_id=None)
        assert await closed_with(paused) == 4404
        assert await untouched.receive_nothing(timeout=0.3)
        await database_sync_to_async(Key.objects.filter(pk=other.pk).update)(
            revoked_at=timezone.now()
        )
        await database_sync_to_async(broadcast.key_changed)(hook_id=str(hook.pk), key_id=other.pk)
        assert await closed_with(revoked) == 4404
        assert await closed_with(untouched) == 4404

    run(scenario)


@override_settings(WR_LIVE_MAX_PER_KEY=2, WR_LIVE_MAX_PER_IP=3)
def test_it_caps_connections_per_key_and_per_ip(make_hook) -> None:
    hook = make_hook(COUNTER)
    other = make_hook(COUNTER)
    token, other_token = read_key(hook), read_key(other)

    async def scenario() -> None:
        first = await connect(f"/read/{token}/live")
        second = await connect(f"/read/{token}/live")
        for ws in (first, second):
            await ws.receive_json_from(timeout=10)
        third = await connect(f"/read/{token}/live")
        assert await closed_with(third) == 4429
        # Another key from the same address: its own cap is fine, the address's is not.
        fourth = await connect(f"/read/{other_token}/live")
        await fourth.receive_json_from(timeout=10)
        fifth = await connect(f"/read/{other_token}/live")
        assert await closed_with(fifth) == 4429
        # A closed connection frees its slots.
        await first.disconnect()
        again = await connect(f"/read/{token}/live")
        assert (await again.receive_json_from(timeout=10))["seq"] == 0
        for ws in (second, fourth, again):
            await ws.disconnect()

    run(scenario)


async def sse_get(
    path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> ApplicationCommunicator:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path.split("?")[0],
        "query_string": path.partition("?")[2].encode(),
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    return communicator


async def sse_read(communicator: ApplicationCommunicator, count: int) -> list[dict[str, Any]]:
    text, found = "", []
    while len(found) < count:
        message = await communicator.receive_output(timeout=10)
        assert message["type"] == "http.response.body"
        text += message["body"].decode()
        found = sse_events(text)
    return found


def test_it_streams_server_sent_events_and_resumes_from_last_event_id(
    make_hook, eager_tasks
) -> None:
    hook = make_hook(QUERYING)
    token = read_key(hook)

    async def scenario() -> None:
        stream = await sse_get(f"/read/{token}/events?scale=3")
        start = await stream.receive_output(timeout=10)
        assert start["status"] == 200
        headers = dict(start["headers"])
        assert headers[b"Content-Type"] == b"text/event-stream"
        assert headers[b"Access-Control-Allow-Origin"] == b"*"
        assert await write(hook, {"n": 1}) == 202
        found = await sse_read(stream, 2)
        assert [(e["id"], e["event"], e["data"]["seq"]) for e in found] == [
            ("0", "state", 0),
            ("1", "state", 1),
        ]
        assert found[1]["data"]["body"] == {"count": 1, "params": {"scale": ["3"]}, "scale": "3"}
        await stream.send_input({"type": "http.disconnect"})
        await stream.wait(timeout=10)

        resumed = await sse_get(f"/read/{token}/events?scale=3", [(b"last-event-id", b"1")])
        assert (await resumed.receive_output(timeout=10))["status"] == 200
        assert (await resumed.receive_output(timeout=10))["body"] == b": connected\n\n"
        assert await resumed.receive_nothing(timeout=0.5)
        assert await write(hook, {"n": 2}) == 202
        assert [e["data"]["seq"] for e in await sse_read(resumed, 1)] == [2]
        await resumed.send_input({"type": "http.disconnect"})
        await resumed.wait(timeout=10)

        refused = await sse_get("/read/no-such-key/events")
        start = await refused.receive_output(timeout=10)
        body = await refused.receive_output(timeout=10)
        assert start["status"] == 404
        assert json.loads(body["body"])["error"]["code"] == "not_found"

    run(scenario)


def _session_cookie(user: Any) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value
    return [(b"cookie", f"sessionid={cookie}".encode()), (b"origin", settings.SITE_ROOT.encode())]


def test_it_streams_the_request_log_to_the_hooks_owner(make_hook, alice, eager_tasks) -> None:
    hook = make_hook(COUNTER)
    headers = _session_cookie(alice)

    async def scenario() -> None:
        feed = await connect(f"/ws/hooks/{hook.pk}/", headers=headers)
        assert (await feed.receive_json_from(timeout=10))["type"] == "hello"
        assert await write(hook, {"n": 1}) == 202
        seen: dict[str, list[Any]] = {}
        while "state" not in seen or len(seen.get("requests", [])) < 2:
            message = await feed.receive_json_from(timeout=10)
            seen.setdefault(message["type"], []).append(message)
        logged, applied = (m["requests"][0] for m in seen["requests"])
        assert (logged["outcome"], logged["method"], logged["seq"]) == ("pending", "POST", None)
        assert (applied["id"], applied["outcome"], applied["seq"]) == (logged["id"], "applied", 1)
        assert applied["status"] == 202 and applied["received_at"]
        assert seen["state"][0]["seq"] == 1
        await feed.disconnect()

    run(scenario)


def test_it_refuses_the_owners_feed_to_outsiders_and_anonymous_visitors(make_hook, bob) -> None:
    hook = make_hook(COUNTER)
    bobs = _session_cookie(bob)

    async def scenario() -> None:
        outsider = await connect(f"/ws/hooks/{hook.pk}/", headers=bobs)
        assert await closed_with(outsider) == 4404
        anonymous = await connect(
            f"/ws/hooks/{hook.pk}/", headers=[(b"origin", settings.SITE_ROOT.encode())]
        )
        assert await closed_with(anonymous) == 4403

    run(scenario)


def test_it_coalesces_a_burst_into_increasing_seqs_ending_on_the_last(make_hook) -> None:
    hook = make_hook(COUNTER)
    hook.limits = {"rate_per_second": 100000, "rate_burst": 100000}
    hook.save()
    token = read_key(hook)

    async def scenario() -> None:
        sockets = [await connect(f"/read/{token}/live") for _ in range(3)]
        for ws in sockets:
            await ws.receive_json_from(timeout=10)
        from hooks.pipeline import hook_reduce

        for n in range(50):
            assert await write(hook, {"n": n}) == 202
            if n % 7 == 0:
                await database_sync_to_async(hook_reduce)(hook_id=hook.pk)
        await database_sync_to_async(hook_reduce)(hook_id=hook.pk)
        for ws in sockets:
            seqs = []
            while not seqs or seqs[-1] < 50:
                seqs.append((await ws.receive_json_from(timeout=10))["seq"])
            assert seqs == sorted(set(seqs))
            assert await ws.receive_nothing(timeout=0.2)
            await ws.disconnect()

    run(scenario)


def test_a_slow_websocket_client_gets_the_newest_state_when_its_buffer_drains() -> None:
    # A WebSocket subscription writes each state straight through the ASGI send callable; a
    # send that has to wait (the client's buffer is full) holds back only that client, whose
    # later states coalesce into the newest one, and a close still comes through.
    async def scenario() -> None:
        sent: list[int] = []
        drained = asyncio.Event()

        async def send(message: dict[str, Any]) -> None:
            if len(sent) == 1:  # the second frame finds the client's buffer full
                await drained.wait()
            sent.append(json.loads(message["text"])["seq"])

        def state(seq: int) -> live_state.Delivery:
            return live_state.Delivery(seq=seq, version_id=1, body_json="{}")

        subscription = Subscription(hook_id="h", key_id=1, params=())
        subscription.offer(state(1))
        subscription.attach(send)
        assert sent == [1]  # no task, no wait: sent within attach()
        subscription.offer(state(2))  # blocks: the rest waits
        for seq in (3, 5, 4, 1):
            subscription.offer(state(seq))
        assert sent == [1]
        drained.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert sent == [1, 2, 5]  # skipped 3, never went back to 4 or 1
        subscription.offer(state(6))
        assert sent == [1, 2, 5, 6]
        subscription.close(4404, "paused")
        subscription.offer(state(7))
        assert (await subscription.closed()).code == 4404
        assert sent == [1, 2, 5, 6]
        await subscription.detach()

    asyncio.run(scenario())
