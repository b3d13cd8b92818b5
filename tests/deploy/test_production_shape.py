"""The production shape end to end, without Docker (issue 17, item 15): Debian's nginx with
deploy/nginx.conf in front of gunicorn (web) and uvicorn (realtime), a Celery worker and beat,
each started with its docker-compose.yml command and environment (tests/deploy/stack.py).

What nginx must get right, attacked through it: websockets and Server-Sent Events reach the
realtime server and stream, the body limit holds (with a JSON error), and the client address
the app believes is the one nginx saw, whatever X-Forwarded-For a client sends
(TRUSTED_PROXY_COUNT=1, docs/deployment.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client, override_settings
from httpx_sse import connect_sse
from websockets.sync.client import connect as ws_connect

from accounts import ratelimit
from accounts.models import MagicLink, User
from hooks.models import Hook, Key
from tests.deploy.stack import ProductionStack, compose_config
from tests.hooks.realtime_helpers import COUNTER
from tests.servers import wait_for, worker_settle
from webreducer.log_redaction import redact

pytestmark = pytest.mark.django_db(transaction=True)  # rows the servers must see


@pytest.fixture(scope="module")
def stack(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[ProductionStack]:
    production = ProductionStack(tmp_path_factory.mktemp("production"))
    with django_db_blocker.unblock(), ExitStack() as processes:
        # Keys of its own: the production checks refuse the development ones.
        production.start(processes)
        yield production


@pytest.fixture(autouse=True)
def _settled(transactional_db: Any) -> Iterator[None]:
    ratelimit.reset()
    yield
    worker_settle()  # nothing of this test's still folding while the database is flushed
    ratelimit.reset()


@pytest.fixture
def counter(make_hook: Any) -> Hook:
    return make_hook(COUNTER)


def token(hook: Hook, kind: str) -> str:
    return str(hook.keys.get(kind=kind).token)


def write(stack: ProductionStack, write_token: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(f"{stack.public}/write/{write_token}", json=body, headers=headers, timeout=10)


def read_state(stack: ProductionStack, read_token: str) -> Any:
    return httpx.get(f"{stack.public}/read/{read_token}", timeout=10).json()


def test_the_compose_file_is_valid_and_names_what_an_operator_must_set() -> None:
    unset = compose_config({})
    assert unset.returncode != 0
    assert "set SECRET_KEY" in unset.stderr

    valid = compose_config({"SECRET_KEY": "k", "WR_SECRETS_KEYS": "f"})
    assert valid.returncode == 0, valid.stderr


def test_the_migrate_service_runs_its_command_against_the_database(stack: ProductionStack) -> None:
    assert (
        "Operations to perform" in stack.migrate_output or "No migrations" in stack.migrate_output
    )


def test_writes_go_through_nginx_to_gunicorn_and_the_worker_folds_them(
    stack: ProductionStack, counter: Hook
) -> None:
    write_token = token(counter, Key.Kind.WRITE)
    read_token = token(counter, Key.Kind.READ)
    before = read_state(stack, read_token)
    count = before["count"] if before else 0

    answer = write(stack, write_token, {"n": 1})

    assert answer.status_code == 202, answer.text
    assert "gunicorn" in stack.log("web") or redact(f"/write/{write_token}") in stack.log("web")
    wait_for(
        lambda: (read_state(stack, read_token) or {}).get("count") == count + 1, 30, "the fold"
    )


def test_nginx_proxies_the_live_websocket_to_the_realtime_server(
    stack: ProductionStack, counter: Hook
) -> None:
    write_token = token(counter, Key.Kind.WRITE)
    read_token = token(counter, Key.Kind.READ)
    live = stack.public.replace("http://", "ws://") + f"/read/{read_token}/live"

    with ws_connect(live, open_timeout=10) as socket:
        first = json.loads(socket.recv(timeout=10))
        assert write(stack, write_token, {"n": "ws"}).status_code == 202
        while (message := json.loads(socket.recv(timeout=30)))["seq"] <= first["seq"]:
            pass

    assert message["seq"] > first["seq"]
    assert message["body"]["last"] is not None
    # (Logged with the key redacted, webreducer.log_redaction.)
    assert redact(f"/read/{read_token}/live") in stack.log("realtime")


def test_nginx_proxies_the_two_way_socket_to_the_realtime_server(
    stack: ProductionStack, counter: Hook
) -> None:
    write_token = token(counter, Key.Kind.WRITE)
    read_token = token(counter, Key.Kind.READ)
    url = stack.public.replace("http://", "ws://") + f"/write/{write_token}/live?read={read_token}"

    with ws_connect(url, open_timeout=10) as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "hello"
        socket.send(json.dumps({"type": "write", "ref": "via-nginx", "body": {"n": 1}}))
        while (frame := json.loads(socket.recv(timeout=30)))["type"] != "ack":
            pass
    assert frame["ref"] == "via-nginx" and frame["status"] == 202
    assert redact(f"/write/{write_token}/live") in stack.log("realtime")


def test_nginx_streams_server_sent_events_as_they_come(
    stack: ProductionStack, counter: Hook
) -> None:
    write_token = token(counter, Key.Kind.WRITE)
    read_token = token(counter, Key.Kind.READ)
    seqs: list[int] = []

    with (
        httpx.Client(timeout=30) as client,
        connect_sse(client, "GET", f"{stack.public}/read/{read_token}/events") as source,
    ):
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for event in source.iter_sse():
            seqs.append(int(event.id))
            if len(seqs) == 1:  # the state at connect: now a change must stream through
                assert write(stack, write_token, {"n": "sse"}).status_code == 202
            else:
                break

    assert seqs[1] > seqs[0]


def test_nginx_proxies_the_owners_feed_on_the_apps_host(
    stack: ProductionStack, alice: User, counter: Hook
) -> None:
    browser = Client()
    with override_settings(SECRET_KEY=stack.secret_key):  # the session as the servers sign it
        browser.force_login(alice)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    feed = stack.app.replace("http://", "ws://") + f"/ws/hooks/{counter.pk}/"

    with ws_connect(
        feed, origin=stack.app, additional_headers={"Cookie": cookie}, open_timeout=10
    ) as socket:  # type: ignore[arg-type]
        hello = json.loads(socket.recv(timeout=10))

    assert hello == {"type": "hello", "hook": str(counter.pk)}


def test_nginx_refuses_a_body_over_its_limit_with_a_json_error(
    stack: ProductionStack, counter: Hook
) -> None:
    write_token = token(counter, Key.Kind.WRITE)

    refused = httpx.post(
        f"{stack.public}/write/{write_token}", content=b"x" * (3 * 1024 * 1024), timeout=30
    )

    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "too_large"
    assert "client intended to send too large body" in stack.log_file("error.log")


def test_the_app_refuses_a_body_over_its_own_limit_below_nginxs(
    stack: ProductionStack, counter: Hook
) -> None:
    write_token = token(counter, Key.Kind.WRITE)
    body = b"x" * (settings.WR_MAX_REQUEST_BODY_BYTES + 1)

    # Several times: a refusal sent while nginx still writes the body used to reach the client
    # as nginx's 502 about one time in two (the app now drains it behind a proxy).
    answers = [
        httpx.post(f"{stack.public}/write/{write_token}", content=body, timeout=30)
        for _ in range(5)
    ]

    assert [answer.status_code for answer in answers] == [413] * 5
    assert {answer.json()["error"]["code"] for answer in answers} == {"too_large"}
    assert redact(f"/write/{write_token}") in stack.log("web")  # the app's answer, not nginx's


def test_a_spoofed_x_forwarded_for_does_not_choose_the_clients_address(
    stack: ProductionStack,
) -> None:
    answer = httpx.post(
        f"{stack.app}/api/auth/magic-link/",
        json={"email": "spoofer@example.com"},
        headers={"X-Forwarded-For": "203.0.113.7"},
        timeout=10,
    )

    assert answer.status_code == 202, answer.text
    # The worker creates the link after the request's commit (accounts.tasks).
    wait_for(lambda: MagicLink.objects.filter(email="spoofer@example.com").exists(), 30, "the link")
    link = MagicLink.objects.get(email="spoofer@example.com")
    assert link.requested_ip == "127.0.0.1"  # the address nginx saw, not the forged one


def test_beat_sends_the_scheduled_tasks_to_the_worker(stack: ProductionStack) -> None:
    wait_for(lambda: "Sending due task reconcile" in stack.log("beat"), 30, "beat's first send")
    wait_for(lambda: "hooks.tasks.reconcile" in stack.log("worker"), 30, "the worker to run it")
