"""The two-way socket end to end (SPEC §2, docs/realtime.md "The two-way socket"): real uvicorn
processes, a real Celery worker, Redis and PostgreSQL, and a real websocket client library."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from hooks.models import Connection, Hook, Key, Request, State
from tests.conftest import read_key, write_key
from tests.hooks.realtime_helpers import RAPID, live_slots_clean  # noqa: F401
from tests.servers import asgi_process, asgi_server, celery_worker, wait_for, worker_settle

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("live_slots_clean"),
    pytest.mark.skipif(not settings.REDIS_URL, reason="several processes need Redis"),
]

# Short, so a killed server's connections expire within seconds.
PRESENCE_TTL = "3"

# Every request in order, with who sent it: the tests read the fold from the state.
REDUCER = """
def reducer(state, request, secrets):
    state = state or {"log": [], "present": []}
    who = request.headers.get("X-WebReducer-Connection")
    if request.method == "JOIN":
        state["present"].append(request.body["name"])
    elif request.method == "LEAVE":
        state["present"].remove(request.body["name"])
    else:
        state["log"].append([request.method, who, request.body, request.seq])
    return state
"""
RESPONDER = """
from webreducer import Response

def responder(request, secrets):
    if isinstance(request.body, dict) and request.body.get("bad"):
        return Response({"refused": True}, status=422)
    return {"ok": request.body}
"""
RECORDER = "PRESENCE = True\n" + REDUCER + RESPONDER


@pytest.fixture(scope="module")
def stack(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[tuple[str, str]]:
    """Two uvicorn servers (A, B) and one Celery worker against the test database."""
    logs = tmp_path_factory.mktemp("two-way")
    with django_db_blocker.unblock(), ExitStack() as stack:
        env = {"WR_PRESENCE_TTL_SECONDS": PRESENCE_TTL}
        first = stack.enter_context(asgi_server(logs, **env))
        second = stack.enter_context(asgi_server(logs, **env))
        stack.enter_context(celery_worker(logs, concurrency=2, name="two-way"))
        yield first, second


@pytest.fixture(autouse=True)
def quiet_worker(stack: tuple[str, str]) -> Iterator[None]:
    yield
    worker_settle()


def socket_url(base: str, hook: Hook, **params: str) -> str:
    query = "&".join(f"{name}={value}" for name, value in params.items())
    url = base.replace("http://", "ws://") + f"/write/{write_key(hook)}/live"
    return f"{url}?{query}" if query else url


def recv(ws: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def recv_type(ws: ClientConnection, kind: str, timeout: float = 20) -> dict[str, Any]:
    """The next frame of `kind`, skipping the others (presence, states…)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = recv(ws, timeout=max(0.1, deadline - time.monotonic()))
        if frame["type"] == kind:
            return frame


def opened(url: str) -> ClientConnection:
    ws = ws_connect(url, open_timeout=20)
    hello = recv(ws)
    assert hello["type"] == "hello", hello
    return ws


def close_code(ws: ClientConnection, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=max(0.1, deadline - time.monotonic()))
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def state_of(hook: Hook, room: str = "") -> Any:
    hook.refresh_from_db()
    row = State.objects.filter(version_id=hook.live_version_id, room=room).first()
    return (json.loads(row.value), row.seq) if row is not None else (None, 0)


def settled(hook: Hook, room: str = "", timeout: float = 60) -> Any:
    """The room's state once every accepted request of it is applied."""

    def done() -> bool:
        return not Request.objects.filter(hook=hook, room=room, outcome="pending").exists()

    wait_for(done, timeout, "the worker to fold every request")
    return state_of(hook, room)[0]


def test_a_write_is_stored_before_its_ack_and_answered_by_the_responder(stack, make_hook) -> None:
    hook = make_hook(RECORDER)
    with opened(socket_url(stack[0], hook, room="t1", name="ann")) as ws:
        ws.send(json.dumps({"type": "write", "ref": "m1", "body": {"move": 1}}))
        ack = recv_type(ws, "ack")
        # Checked from another connection (the test's own) the moment the ack arrives.
        stored = Request.objects.get(uuid=ack["id"])
        assert ack == {
            "type": "ack",
            "ref": "m1",
            "id": ack["id"],
            "status": 200,
            "body": {"ok": {"move": 1}},
        }
        assert stored.method == "WS" and stored.room == "t1"
        assert json.loads(bytes(stored.body)) == {"move": 1}
        assert stored.headers["X-WebReducer-Name"] == "ann"
        assert "read" not in stored.query
        ws.send(json.dumps({"type": "write", "ref": 2, "body": {"bad": True}}))
        refused = recv_type(ws, "ack")
        assert refused["status"] == 422 and refused["body"] == {"refused": True}
        assert Request.objects.get(uuid=refused["id"]).outcome == "rejected"
    state = settled(hook, "t1")
    assert [entry[2] for entry in state["log"]] == [{"move": 1}]


def test_500_writes_over_10_sockets_fold_once_each_in_ack_order(stack, make_hook) -> None:
    # No responder: its calls would be refused 429 hook_busy past the hook's fair share of the
    # sandbox (tests/security/test_fairness.py), which is not what this test is about.
    hook = make_hook(REDUCER)
    hook.limits = RAPID
    hook.save()
    token = write_key(hook)
    per_socket = 50

    # Built here: a thread of the pool would hold a database connection of the test's own.
    urls = [socket_url(stack[i % 2], hook, room="arena", name=f"p{i}") for i in range(10)]

    def player(index: int) -> list[str]:
        base = stack[index % 2]
        acks = []
        with opened(urls[index]) as ws:
            for n in range(per_socket):
                ws.send(json.dumps({"type": "write", "ref": n, "body": {"p": index, "n": n}}))
                if n % 10 == 9:  # an HTTP write of the same room in between
                    response = httpx.post(
                        f"{base}/write/{token}?room=arena",
                        json={"http": index, "n": n},
                        timeout=30,
                    )
                    assert response.status_code == 202
            while len(acks) < per_socket:
                frame = recv_type(ws, "ack")
                assert frame["status"] == 202, frame
                assert frame["ref"] == len(acks)
                acks.append(frame["id"])
        return acks

    with ThreadPoolExecutor(10) as pool:
        acked = list(pool.map(player, range(10)))
    state = settled(hook, "arena")
    log = state["log"]
    assert len(log) == 10 * per_socket + 10 * (per_socket // 10)
    assert [entry[3] for entry in log] == list(range(1, len(log) + 1))  # seq gapless, each once
    for index, ids in enumerate(acked):
        mine = [entry[2]["n"] for entry in log if entry[0] == "WS" and entry[2]["p"] == index]
        assert mine == list(range(per_socket))  # folded in the order of its acks
        seqs = dict(Request.objects.filter(uuid__in=ids).values_list("uuid", "seq"))
        assert [seqs[uuid.UUID(i)] for i in ids] == sorted(seqs.values())


def test_read_frames_follow_the_room_and_a_foreign_read_key_is_refused(stack, make_hook) -> None:
    hook = make_hook(RECORDER)
    other = make_hook(RECORDER, name="other")
    with opened(socket_url(stack[0], hook, room="r", read=read_key(hook))) as ws:
        first = recv_type(ws, "state")
        assert first["seq"] == 0 and first["body"] is None
        ws.send(json.dumps({"type": "write", "ref": "a", "body": {"x": 1}}))
        httpx.post(f"{stack[1]}/write/{write_key(hook)}?room=elsewhere", json={"y": 1}, timeout=30)
        deadline = time.monotonic() + 30
        seen = []
        while not seen or seen[-1]["body"] is None or not seen[-1]["body"]["log"]:
            seen.append(recv_type(ws, "state", timeout=max(0.1, deadline - time.monotonic())))
        assert seen[-1]["body"]["log"][0][2] == {"x": 1}
        assert [s["seq"] for s in seen] == sorted(s["seq"] for s in seen)
    ws = ws_connect(socket_url(stack[0], hook, read=read_key(other)), open_timeout=20)
    assert close_code(ws) == 4404


def test_broadcast_reaches_the_rooms_other_sockets_only_and_is_never_stored(
    stack, make_hook
) -> None:
    hook = make_hook(REDUCER + RESPONDER)
    with (
        opened(socket_url(stack[0], hook, room="b")) as sender,
        opened(socket_url(stack[1], hook, room="b")) as peer,
        opened(socket_url(stack[0], hook, room="b")) as local_peer,
        opened(socket_url(stack[1], hook, room="c")) as elsewhere,
    ):
        sender.send(json.dumps({"type": "broadcast", "body": {"cursor": [3, 4]}}))
        for ws in (peer, local_peer):
            frame = recv_type(ws, "broadcast")
            assert frame["body"] == {"cursor": [3, 4]} and isinstance(frame["from"], str)
        # The sender and another room get nothing: a ping answered proves the queue is empty.
        for ws in (sender, elsewhere):
            ws.send("ping")
            while (frame := recv(ws))["type"] == "presence":
                pass
            assert frame == {"type": "pong"}
    assert not Request.objects.filter(hook=hook).exists()


def test_presence_spans_servers_and_joins_and_leaves_are_folded(stack, make_hook) -> None:
    hook = make_hook(RECORDER)
    with opened(socket_url(stack[0], hook, room="table", name="ann")) as ann:
        with opened(socket_url(stack[1], hook, room="table", name="bob")) as bob:
            for ws in (ann, bob):
                deadline = time.monotonic() + 20
                names: list[Any] = []
                while sorted(names) != ["ann", "bob"]:
                    frame = recv_type(ws, "presence", timeout=max(0.1, deadline - time.monotonic()))
                    names = [c["name"] for c in frame["connections"]]
        deadline = time.monotonic() + 20
        while [
            c["name"]
            for c in recv_type(ann, "presence", timeout=max(0.1, deadline - time.monotonic()))[
                "connections"
            ]
        ] != ["ann"]:
            pass
    wait_for(lambda: not Connection.objects.filter(hook=hook).exists(), 20, "both to leave")
    state = settled(hook, "table")
    assert state["present"] == []
    methods = list(
        Request.objects.filter(hook=hook).order_by("seq").values_list("method", flat=True)
    )
    assert sorted(methods) == ["JOIN", "JOIN", "LEAVE", "LEAVE"]


def test_a_killed_servers_sockets_leave_and_are_folded_by_another(
    stack, make_hook, tmp_path
) -> None:
    hook = make_hook(RECORDER)
    with asgi_process(tmp_path, WR_PRESENCE_TTL_SECONDS=PRESENCE_TTL) as process:
        doomed = process.url
        with opened(socket_url(stack[0], hook, room="t", name="stays")) as stays:
            victims = [opened(socket_url(doomed, hook, room="t", name=f"v{n}")) for n in range(3)]
            wait_for(lambda: Connection.objects.filter(hook=hook).count() == 4, 20, "four joins")
            process.kill(signal.SIGKILL)
            # The survivor's server reaps the dead one's connections within TTL + TTL/3.
            wait_for(lambda: Connection.objects.filter(hook=hook).count() == 1, 30, "the leaves")
            deadline = time.monotonic() + 20
            while [
                c["name"]
                for c in recv_type(
                    stays, "presence", timeout=max(0.1, deadline - time.monotonic())
                )["connections"]
            ] != ["stays"]:
                pass
            for ws in victims:
                ws.close_socket()
            state = settled(hook, "t")
            assert state["present"] == ["stays"]
            assert Request.objects.filter(hook=hook, method="LEAVE").count() == 3  # each once
    wait_for(lambda: not Connection.objects.filter(hook=hook).exists(), 20, "the last leave")
    assert settled(hook, "t")["present"] == []


def test_bad_frames_are_answered_and_the_socket_and_others_go_on(stack, make_hook) -> None:
    hook = make_hook(REDUCER + RESPONDER)
    # A bucket that does not refill during the test (a slow machine would let one more in).
    hook.limits = {"rate_per_second": 0.01, "rate_burst": 5, "max_body_bytes": 1000}
    hook.save()
    with opened(socket_url(stack[0], hook)) as ws, opened(socket_url(stack[0], hook)) as other:
        ws.send("{not json")
        assert recv_type(ws, "ack")["body"]["error"]["code"] == "invalid_json"
        ws.send(b"\x00\x01")
        assert recv_type(ws, "ack")["body"]["error"]["code"] == "binary_frame"
        ws.send(json.dumps({"type": "teleport", "ref": 7}))
        unknown = recv_type(ws, "ack")
        assert unknown["status"] == 400 and unknown["ref"] == 7
        assert unknown["body"]["error"]["code"] == "unknown_type"
        ws.send(json.dumps([1, 2]))
        assert recv_type(ws, "ack")["body"]["error"]["code"] == "invalid_frame"
        ws.send(json.dumps({"type": "write", "ref": "big", "body": "x" * 5000}))
        big = recv_type(ws, "ack")
        assert big["status"] == 413 and big["ref"] == "big"
        ws.send('{"type": "write", "body": NaN}')
        assert recv_type(ws, "ack")["body"]["error"]["code"] == "invalid_json"
        ws.send(json.dumps({"type": "broadcast", "ref": "b", "body": "y" * 20000}))
        assert recv_type(ws, "ack")["status"] == 413
        for n in range(12):  # past the key's rate limit (burst 5)
            ws.send(json.dumps({"type": "write", "ref": n, "body": n}))
        statuses = [recv_type(ws, "ack")["status"] for _ in range(12)]
        assert statuses[:5] == [200] * 5 and 429 in statuses
        # Still open, and the other socket still works.
        ws.send("ping")
        assert recv_type(ws, "pong")
        other.send("ping")
        assert recv_type(other, "pong")
    # A frame over the server's message limit closes that socket only (1009), others go on.
    with opened(socket_url(stack[0], hook)) as ws, opened(socket_url(stack[0], hook)) as other:
        ws.send("x" * (settings.WR_MAX_BODY_BYTES + 200 * 1024))
        assert close_code(ws) == 1009
        other.send("ping")
        assert recv_type(other, "pong")
    # One count: two would race the worker moving rows from pending to applied between them.
    assert Request.objects.filter(hook=hook, outcome__in=["pending", "applied"]).count() == 5


def test_pausing_the_write_key_closes_its_sockets_at_once(stack, make_hook) -> None:
    from hooks.services import key_set_paused

    hook = make_hook(REDUCER + RESPONDER)
    with opened(socket_url(stack[1], hook)) as ws:
        key = Key.objects.get(hook=hook, kind=Key.Kind.WRITE)
        key_set_paused(key=key, paused=True)
        assert close_code(ws) == 4404
    ws = ws_connect(socket_url(stack[0], hook), open_timeout=20)
    assert close_code(ws) == 4404


def test_two_rooms_at_the_same_seq_each_get_their_own_state(stack, make_hook) -> None:
    # Without a query every subscriber of a state shares one delivery: it must be per room too
    # (two rooms at seq 1 are two states).
    hook = make_hook(REDUCER)
    sockets = {
        room: opened(socket_url(stack[0], hook, room=room, read=read_key(hook)))
        for room in ("left", "right")
    }
    try:
        for room, ws in sockets.items():
            assert recv_type(ws, "state")["seq"] == 0
            ws.send(json.dumps({"type": "write", "body": {"in": room}}))
        for room, ws in sockets.items():
            frame = recv_type(ws, "state")
            while frame["seq"] < 1:
                frame = recv_type(ws, "state")
            assert frame["seq"] == 1
            assert [entry[2] for entry in frame["body"]["log"]] == [{"in": room}], (room, frame)
    finally:
        for ws in sockets.values():
            ws.close()


def test_a_server_killed_mid_stream_of_trips_lost_no_acked_write(
    stack, make_hook, tmp_path
) -> None:
    # Four sockets send without waiting, so the server stores their writes in shared trips
    # (hooks.live.socket_writes); it is killed with writes in flight. Every write acked before
    # the kill is stored and folded exactly once; a write never acked may or may not be.
    # A responder that takes a millisecond or two, so the kill finds writes still unstored.
    hook = make_hook(
        REDUCER + "\ndef responder(request, secrets):\n    return sum(range(50_000))\n"
    )
    hook.limits = RAPID
    hook.save()
    per_socket = 200  # under WR_LIVE_WRITES_IN_FLIGHT: none refused 429
    with asgi_process(tmp_path) as process:
        urls = [socket_url(process.url, hook, room="k", name=f"p{i}") for i in range(4)]
        sockets = [opened(url) for url in urls]
        for index, ws in enumerate(sockets):
            for n in range(per_socket):
                ws.send(json.dumps({"type": "write", "ref": n, "body": {"p": index, "n": n}}))
        acked: list[list[str]] = [[] for _ in sockets]
        while sum(len(ids) for ids in acked) < 50:  # some acks, far from all of them
            for index, ws in enumerate(sockets):
                frame = recv(ws)
                if frame["type"] == "ack":
                    assert frame["status"] == 200, frame  # the responder's answer
                    assert frame["ref"] == len(acked[index])  # in the order sent
                    acked[index].append(frame["id"])
        process.kill(signal.SIGKILL)
        for index, ws in enumerate(sockets):  # what reached the clients before the kill
            try:
                while True:
                    frame = recv(ws, timeout=5)
                    if frame["type"] == "ack":
                        acked[index].append(frame["id"])
            except (ConnectionClosed, TimeoutError):
                pass
            ws.close_socket()
    ids = [i for one in acked for i in one]
    assert sum(len(one) for one in acked) < 4 * per_socket, "the kill came too late to test"
    assert Request.objects.filter(uuid__in=ids).count() == len(ids)  # every acked write stored
    log = settled(hook, "k")["log"]
    for index, one in enumerate(acked):
        mine = [entry[2]["n"] for entry in log if entry[0] == "WS" and entry[2]["p"] == index]
        assert mine[: len(one)] == list(range(len(one)))  # each once, in order
        assert mine == list(range(len(mine)))
