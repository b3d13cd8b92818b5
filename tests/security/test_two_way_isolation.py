"""The two-way socket between tenants (SPEC "Trust boundaries"), attacked on a real uvicorn:
a hostile hook's slow responder over many sockets does not hold another hook's socket writes,
and a room name shared by two hooks shares nothing (broadcasts, presence, state)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from hooks.models import Hook, Request
from tests.conftest import read_key, write_key
from tests.hooks.realtime_helpers import live_slots_clean  # noqa: F401
from tests.security.test_fairness import QUICK, SLOW_RESPONDER
from tests.servers import asgi_server

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("live_slots_clean"),
    pytest.mark.skipif(not settings.REDIS_URL, reason="the channel layer needs Redis"),
]


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[str]:
    with (
        django_db_blocker.unblock(),
        asgi_server(
            tmp_path_factory.mktemp("two-way-isolation"),
            WR_SANDBOX_CALLS_PER_HOOK="2",
            WR_LIVE_WRITE_THREADS="4",
            WR_LIVE_WRITE_THREADS_PER_HOOK="2",
            # The hostile calls must run to their end on a loaded machine.
            WR_WALL_SECONDS="20",
        ) as base,
    ):
        yield base


def url(base: str, hook: Hook, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return base.replace("http://", "ws://") + f"/write/{write_key(hook)}/live?{query}"


def opened(address: str) -> ClientConnection:
    ws = ws_connect(address, open_timeout=20)
    assert json.loads(ws.recv(timeout=20))["type"] == "hello"
    return ws


def next_of(ws: ClientConnection, kind: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if frame["type"] == kind:
            return frame


def test_a_hostile_hooks_slow_socket_writes_do_not_hold_another_hooks(server, make_hook) -> None:
    hostile = make_hook(SLOW_RESPONDER, name="hostile")
    victim = make_hook(QUICK, name="victim")
    hostile_urls = [url(server, hostile) for _ in range(6)]
    victim_url = url(server, victim)
    with opened(victim_url) as warm:  # the victim's sandbox child is warm
        warm.send(json.dumps({"type": "write", "body": {}}))
        assert next_of(warm, "ack")["status"] == 200
    finished: list[str] = []
    lock = threading.Lock()
    started = threading.Event()

    def hostile_player(address: str) -> None:
        with opened(address) as ws:
            for n in range(3):
                ws.send(json.dumps({"type": "write", "ref": n, "body": {}}))
            started.set()
            for _ in range(3):
                ack = next_of(ws, "ack")
                with lock:
                    finished.append(f"hostile:{ack['status']}")

    players = [threading.Thread(target=hostile_player, args=(a,)) for a in hostile_urls]
    for player in players:
        player.start()
    assert started.wait(30)
    time.sleep(0.3)  # the hostile writes are running and queued
    with opened(victim_url) as ws:
        ws.send(json.dumps({"type": "write", "ref": "v", "body": {}}))
        ack = next_of(ws, "ack")
        with lock:
            finished.append(f"victim:{ack['status']}")
    for player in players:
        player.join(timeout=120)
    assert ack["body"] == {"quick": True}
    # The other tenant's write was answered while the hostile ones were still being served.
    hostile_done = [i for i, f in enumerate(finished) if f.startswith("hostile")]
    assert len(hostile_done) == 18, finished
    assert finished.index("victim:200") < hostile_done[-1], finished
    # A hook's socket writes wait for its own share of the write threads, which is no more than
    # its sandbox share: queued and served in turn, not refused, and never more at once.
    assert finished.count("hostile:200") == 18, finished
    assert Request.objects.filter(hook=hostile, outcome="pending").count() == 18


def test_one_room_name_in_two_hooks_shares_no_broadcast_presence_or_state(
    server, make_hook
) -> None:
    ours = make_hook("PRESENCE = True\n", name="ours")
    theirs = make_hook("PRESENCE = True\n", name="theirs")
    with (
        opened(url(server, ours, room="lobby", name="us", read=read_key(ours))) as us,
        opened(url(server, theirs, room="lobby", name="spy", read=read_key(theirs))) as spy,
    ):
        # Presence lists each hook's own sockets only.
        assert [c["name"] for c in next_of(us, "presence")["connections"]] == ["us"]
        assert [c["name"] for c in next_of(spy, "presence")["connections"]] == ["spy"]
        us.send(json.dumps({"type": "broadcast", "body": "secret plans"}))
        us.send(json.dumps({"type": "write", "ref": 1, "body": "secret move"}))
        assert next_of(us, "ack")["status"] == 202
        # The spy hears nothing of it: a pong answered after it proves nothing was queued.
        time.sleep(1)
        spy.send("ping")
        frames = []
        while (frame := json.loads(spy.recv(timeout=20)))["type"] != "pong":
            frames.append(frame)
        assert all(f["type"] in ("presence", "state") for f in frames), frames
        assert all("secret" not in json.dumps(f) for f in frames), frames
    assert not Request.objects.filter(hook=theirs).exclude(method__in=["JOIN", "LEAVE"]).exists()


def test_a_read_key_of_another_hook_gets_no_state_from_the_write_socket(server, make_hook) -> None:
    ours = make_hook("", name="ours")
    theirs = make_hook("", name="theirs")
    # Our write key with their read key: refused before any state is sent.
    ws = ws_connect(url(server, ours, read=read_key(theirs)), open_timeout=20)
    frames = []
    with pytest.raises(Exception) as closed:
        while True:
            frames.append(json.loads(ws.recv(timeout=20)))
    assert getattr(getattr(closed.value, "rcvd", None), "code", None) == 4404
    assert all(f["type"] != "state" for f in frames), frames
