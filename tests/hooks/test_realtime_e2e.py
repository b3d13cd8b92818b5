"""Live state end to end: real uvicorn processes, a real Celery worker, Redis, and real client
libraries (websockets, httpx-sse). Two ASGI servers share the module, so every test can
subscribe on one and write on the other."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client
from httpx_sse import connect_sse
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from hooks import broadcast
from hooks.models import Hook, Key, State
from tests.conftest import read_key, write_key
from tests.hooks.realtime_helpers import COUNTER, QUERYING, RAPID, live_slots_clean  # noqa: F401
from tests.servers import asgi_server, celery_worker, worker_settle

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("live_slots_clean"),
    pytest.mark.skipif(not settings.REDIS_URL, reason="several processes need Redis"),
]


@pytest.fixture(scope="module")
def stack(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[tuple[str, str]]:
    """Two uvicorn servers (A, B) and one Celery worker against the test database."""
    logs = tmp_path_factory.mktemp("realtime")
    with django_db_blocker.unblock(), ExitStack() as stack:
        first = stack.enter_context(asgi_server(logs))
        second = stack.enter_context(asgi_server(logs))
        stack.enter_context(celery_worker(logs, concurrency=2, name="realtime"))
        yield first, second


@pytest.fixture(autouse=True)
def quiet_worker(stack: tuple[str, str]) -> Iterator[None]:
    """After each test, let the worker finish its queued wake-ups and busy retries."""
    yield
    worker_settle()


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://") + path


def post(base: str, hook: Hook | str, body: Any) -> int:
    token = hook if isinstance(hook, str) else write_key(hook)
    return httpx.post(f"{base}/write/{token}", json=body, timeout=30).status_code


def recv_json(ws: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def close_code(ws: ClientConnection, timeout: float = 10) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=timeout)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


class SseReader(threading.Thread):
    """Collects a stream's events in a thread until it holds `until` seq (or the stream ends)."""

    def __init__(self, url: str, until: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(daemon=True)
        self.url, self.until, self.headers = url, until, headers or {}
        self.events: list[Any] = []
        self.status: int | None = None
        self.opened = threading.Event()

    def run(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(30, read=30)) as client,
            connect_sse(client, "GET", self.url, headers=self.headers) as source,
        ):
            self.status = source.response.status_code
            self.opened.set()
            for event in source.iter_sse():
                self.events.append(event)
                if (
                    self.until is not None
                    and event.event == "state"
                    and json.loads(event.data)["seq"] >= self.until
                ):
                    return

    def seqs(self) -> list[int]:
        return [json.loads(e.data)["seq"] for e in self.events if e.event == "state"]


def collect_until(ws: ClientConnection, seq: int, timeout: float = 60) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not messages or messages[-1]["seq"] < seq:
        messages.append(recv_json(ws, timeout=max(0.1, deadline - time.monotonic())))
    return messages


def test_it_delivers_a_write_on_one_server_to_subscribers_on_another(stack, make_hook) -> None:
    a, b = stack
    hook = make_hook(QUERYING)
    token = read_key(hook)
    sse = SseReader(f"{b}/read/{token}/events?scale=sse", until=2)
    sse.start()
    assert sse.opened.wait(20) and sse.status == 200
    with ws_connect(ws_url(a, f"/read/{token}/live?scale=ws")) as ws:
        first = recv_json(ws)
        assert first == {
            "type": "state",
            "seq": 0,
            "body": {"count": 0, "params": {"scale": ["ws"]}, "scale": "ws"},
        }
        assert post(b, hook, {"n": 1}) == 202
        assert recv_json(ws) == {
            "type": "state",
            "seq": 1,
            "body": {"count": 1, "params": {"scale": ["ws"]}, "scale": "ws"},
        }
        # A later change arrives with a new body (the original product served the first forever).
        assert post(a, hook, {"n": 2}) == 202
        assert recv_json(ws)["body"]["count"] == 2
    sse.join(30)
    assert sse.seqs() == [0, 1, 2]
    assert [json.loads(e.data)["body"]["count"] for e in sse.events if e.event == "state"] == [
        0,
        1,
        2,
    ]
    assert [e.id for e in sse.events if e.event == "state"] == ["0", "1", "2"]
    assert json.loads(sse.events[-1].data)["body"]["scale"] == "sse"


def test_it_ends_every_subscriber_on_the_last_of_200_rapid_writes(stack, make_hook) -> None:
    a, b = stack
    hook = make_hook(COUNTER)
    hook.limits = RAPID
    hook.save()
    token, writer = read_key(hook), write_key(hook)
    sse = SseReader(f"{a}/read/{token}/events", until=200)
    sse.start()
    assert sse.opened.wait(20)
    with (
        ws_connect(ws_url(a, f"/read/{token}/live")) as on_a,
        ws_connect(ws_url(b, f"/read/{token}/live")) as on_b,
        ws_connect(ws_url(b, f"/read/{token}/live?view=other")) as other_params,
    ):
        sockets = [on_a, on_b, other_params]
        for ws in sockets:
            assert recv_json(ws)["seq"] == 0

        def send(batch: int) -> list[int]:
            with httpx.Client(timeout=30) as client:
                target = f"{(a, b)[batch % 2]}/write/{writer}"
                return [
                    client.post(target, json={"n": batch * 100 + i}).status_code for i in range(20)
                ]

        with ThreadPoolExecutor(4) as pool:
            assert [s for batch in pool.map(send, range(10)) for s in batch] == [202] * 200

        for ws in sockets:
            messages = collect_until(ws, 200)
            seqs = [m["seq"] for m in messages]
            assert seqs == sorted(set(seqs)), seqs  # strictly increasing
            assert seqs[-1] == 200
            assert messages[-1]["body"]["count"] == 200
    sse.join(60)
    seqs = sse.seqs()
    assert seqs == sorted(set(seqs)) and seqs[-1] == 200


def test_it_delivers_states_carried_by_notifications_from_sync_code(stack, make_hook) -> None:
    # What the pipeline does after a commit, from a plain sync process (as a Celery worker):
    # the broadcast goes through the process's broadcast loop and Redis, and every server
    # delivers the state the message carries (the database holds another text here, so the
    # body shows where it came from).
    a, b = stack
    hook = make_hook(COUNTER)
    token = read_key(hook)
    version_id = hook.live_version_id
    assert version_id is not None
    sse = SseReader(f"{b}/read/{token}/events", until=3)
    sse.start()
    assert sse.opened.wait(20)
    with (
        ws_connect(ws_url(a, f"/read/{token}/live")) as on_a,
        ws_connect(ws_url(b, f"/read/{token}/live")) as on_b,
    ):
        for ws in (on_a, on_b):
            assert recv_json(ws)["seq"] == 0
        assert post(a, hook, {"n": 1}) == 202  # the hubs read the hook once
        for ws in (on_a, on_b):
            assert recv_json(ws)["seq"] == 1
        for seq in (2, 3):
            State.objects.filter(version_id=version_id).update(seq=seq, value='"database"')
            broadcast.state_changed(
                hook_id=str(hook.pk), seq=seq, version_id=version_id, value=f'{{"carried": {seq}}}'
            )
        for ws in (on_a, on_b):
            messages = collect_until(ws, 3, timeout=20)
            assert messages[-1] == {"type": "state", "seq": 3, "body": {"carried": 3}}
            assert all(m["body"] != "database" for m in messages)
    sse.join(30)
    assert sse.seqs()[-1] == 3
    assert json.loads(sse.events[-1].data)["body"] == {"carried": 3}


def test_it_catches_up_with_since_and_last_event_id(stack, make_hook) -> None:
    a, b = stack
    hook = make_hook(COUNTER)
    token = read_key(hook)
    for n in range(3):
        assert post(a, hook, {"n": n}) == 202
    deadline = time.monotonic() + 30
    while httpx.get(f"{a}/read/{token}").headers.get("X-WebReducer-Seq") != "3":
        assert time.monotonic() < deadline, "the writes were not applied"
        time.sleep(0.1)

    with ws_connect(ws_url(b, f"/read/{token}/live?since=3")) as current:
        with pytest.raises(TimeoutError):
            current.recv(timeout=1)  # up to date: nothing at connect
        with ws_connect(ws_url(a, f"/read/{token}/live?since=1")) as behind:
            assert recv_json(behind)["seq"] == 3  # behind: the current state at once
            assert post(b, hook, {"n": 3}) == 202
            assert recv_json(current)["seq"] == 4
            assert recv_json(behind)["seq"] == 4

    resumed = SseReader(f"{b}/read/{token}/events", until=5, headers={"Last-Event-ID": "4"})
    resumed.start()
    assert resumed.opened.wait(20)
    time.sleep(1)
    assert resumed.seqs() == []  # up to date
    assert post(a, hook, {"n": 4}) == 202
    resumed.join(30)
    assert resumed.seqs() == [5]
    behind = SseReader(f"{a}/read/{token}/events", until=5, headers={"Last-Event-ID": "2"})
    behind.start()
    behind.join(30)
    assert behind.seqs() == [5]


def test_it_refuses_unknown_keys_and_closes_connections_of_a_paused_key(stack, make_hook) -> None:
    a, b = stack
    hook = make_hook(COUNTER)
    token = read_key(hook)

    with ws_connect(ws_url(a, "/read/no-such-key/live")) as unknown:
        assert close_code(unknown) == 4404
    refused = httpx.get(f"{b}/read/no-such-key/events")
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"
    assert refused.headers["Access-Control-Allow-Origin"] == "*"

    sse = SseReader(f"{b}/read/{token}/events")
    sse.start()
    assert sse.opened.wait(20)
    with ws_connect(ws_url(a, f"/read/{token}/live")) as ws:
        assert recv_json(ws)["seq"] == 0
        # What the key management code does: update the key, then broadcast after commit.
        Key.objects.filter(token=token).update(is_paused=True)
        broadcast.key_changed(hook_id=str(hook.pk), key_id=Key.objects.get(token=token).pk)
        assert close_code(ws, timeout=5) == 4404
    sse.join(5)
    assert not sse.is_alive()
    assert sse.events[-1].event == "close"
    assert json.loads(sse.events[-1].data)["code"] == 4404
    with ws_connect(ws_url(b, f"/read/{token}/live")) as again:
        assert close_code(again) == 4404
    assert httpx.get(f"{a}/read/{token}/events").status_code == 404


def test_it_streams_the_request_log_to_the_owner_and_refuses_others(
    stack, make_hook, alice, bob
) -> None:
    a, b = stack
    hook = make_hook(COUNTER)

    def cookie(user: Any) -> dict[str, str]:
        client = Client()
        client.force_login(user)
        return {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}

    with ws_connect(
        ws_url(a, f"/ws/hooks/{hook.pk}/"), additional_headers=cookie(bob), origin=a
    ) as outsider:  # type: ignore[arg-type]
        assert close_code(outsider) == 4404
    with ws_connect(ws_url(a, f"/ws/hooks/{hook.pk}/"), origin=a) as anonymous:  # type: ignore[arg-type]
        assert close_code(anonymous) == 4403
    with ws_connect(
        ws_url(a, f"/ws/hooks/{hook.pk}/"), additional_headers=cookie(alice), origin=a
    ) as feed:  # type: ignore[arg-type]
        assert recv_json(feed)["type"] == "hello"
        assert post(b, hook, {"n": 1}) == 202
        rows: dict[str, Any] = {}
        state_seq = 0
        while rows.get("outcome") != "applied" or state_seq < 1:
            message = recv_json(feed)
            if message["type"] == "requests":
                rows.update(message["requests"][0])
            elif message["type"] == "state":
                state_seq = message["seq"]
        assert (rows["seq"], rows["method"], rows["status"]) == (1, "POST", 202)


def test_it_keeps_idle_connections_open_and_delivering(stack, make_hook, alice) -> None:
    # redis-py 8's default 5 s socket timeout broke idle channel-layer receives
    # (django/channels_redis#422): idle sockets were closed with 1011 every 5 s.
    a, b = stack
    hook = make_hook(COUNTER)
    client = Client()
    client.force_login(alice)
    cookie = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
    with (
        ws_connect(ws_url(a, f"/read/{read_key(hook)}/live")) as live,
        ws_connect(ws_url(a, f"/ws/hooks/{hook.pk}/"), additional_headers=cookie, origin=a) as feed,  # type: ignore[arg-type]
    ):
        assert recv_json(live)["seq"] == 0
        assert recv_json(feed)["type"] == "hello"
        time.sleep(7)
        assert post(b, hook, {"n": 1}) == 202
        assert recv_json(live, timeout=10)["seq"] == 1
        while (message := recv_json(feed, timeout=10))["type"] != "state":
            pass
        assert message["seq"] == 1
