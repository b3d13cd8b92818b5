"""Issue 13, finding 5: a hook answers with a status from 200 to 599, never an interim 1xx.

On uvicorn `Response(text, status=100)` sent the body after the 100, and Chromium took the
"response" in that body, Set-Cookie and all. The sandboxed child refuses such a status, the
parent refuses it again (a hostile child can patch its own checks), and so does the renderer.
The server tests read the raw bytes off a socket: no 1xx line may ever be sent.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from hooks.models import Request
from hooks.responses import render
from tests.conftest import read_key, write_key
from tests.servers import asgi_server, wsgi_server

# The body is a whole HTTP response, as the attack sent it: a client that reads past a 1xx
# would take this as the answer and store its cookie.
SMUGGLED = (
    "HTTP/1.1 200 OK\\r\\nSet-Cookie: sessionid=attacker; Path=/\\r\\n"
    "Content-Type: text/html\\r\\nContent-Length: 9\\r\\n\\r\\n<b>pwn</b>"
)

INTERIM = f"""
from webreducer import Response

def responder(request, secrets):
    return Response("{SMUGGLED}", status=request.body["status"], headers={{"Content-Type": "text/plain"}})

def query(state, params, secrets):
    return Response("{SMUGGLED}", status=int(params["status"]), headers={{"Content-Type": "text/plain"}})
"""

# A child that gets around its own check: it reaches the real `sys` by introspection (nothing
# is imported), then wraps the runtime's JSON encoder so that its answer says status 100.
PATCHED_CHILD = f"""
def _find_sys():
    for cls in ().__class__.__base__.__subclasses__():
        g = getattr(getattr(cls, "__init__", None), "__globals__", None)
        if isinstance(g, dict) and "sys" in g and hasattr(g["sys"], "modules"):
            return g["sys"]

def _forge():
    child = _find_sys().modules["wr_child"]
    original = child.dump_json
    def dump_json(value, *, what, limit):
        if what == "response":
            value = {{"status": 100, "headers": {{"Set-Cookie": "sessionid=attacker"}}, "body": "{SMUGGLED}"}}
        return original(value, what=what, limit=limit)
    child.dump_json = dump_json

def responder(request, secrets):
    _forge()
    return "fine"

def query(state, params, secrets):
    _forge()
    return "fine"
"""

BAD_STATUSES = [100, 101, 102, 103, 199, 0, 99, 600, 1000, -200]


@pytest.mark.usefixtures("eager_tasks")
@pytest.mark.parametrize("status", BAD_STATUSES)
def test_it_answers_500_when_a_responder_or_query_returns_a_status_outside_200_599(
    make_hook: Any, client: Client, status: int
) -> None:
    hook = make_hook(INTERIM)

    wrote = client.post(
        f"/write/{write_key(hook)}", json.dumps({"status": status}), content_type="application/json"
    )
    read = client.get(f"/read/{read_key(hook)}", {"status": str(status)})

    assert wrote.status_code == 500
    assert wrote.json()["error"]["code"] == "responder_error"
    assert read.status_code == 500
    assert read.json()["error"]["code"] == "query_error"
    assert not wrote.cookies and not read.cookies
    logged = Request.objects.get(hook=hook)
    assert logged.outcome == Request.Outcome.REJECTED
    assert "200 to 599" in logged.error["message"]


@pytest.mark.usefixtures("eager_tasks")
def test_it_refuses_a_1xx_from_a_child_that_patched_its_own_check(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook(PATCHED_CHILD)

    wrote = client.post(f"/write/{write_key(hook)}", "{}", content_type="application/json")
    read = client.get(f"/read/{read_key(hook)}")

    assert (wrote.status_code, read.status_code) == (500, 500)
    assert b"attacker" not in wrote.content + read.content
    assert not wrote.cookies and not read.cookies
    assert Request.objects.get(hook=hook).outcome == Request.Outcome.REJECTED


def test_it_renders_no_1xx_whatever_it_is_given() -> None:
    # The last guard, for a caller that forgot to check (a new endpoint, a future refactor).
    response = render(100, {"Set-Cookie": "sessionid=attacker"}, "x")

    assert response.status_code == 500
    assert json.loads(response.content)["error"]["code"] == "invalid_response"
    assert not response.cookies


def raw_exchange(base: str, request: bytes) -> bytes:
    """Everything the server sends on one connection, as bytes (no HTTP client in between:
    a client library would hide interim responses)."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


SERVERS: dict[str, Callable[..., AbstractContextManager[str]]] = {
    "uvicorn": asgi_server,
    "gunicorn": wsgi_server,
}


@pytest.fixture(params=list(SERVERS))
def server(request: Any, tmp_path: Path) -> Iterator[str]:
    with SERVERS[request.param](tmp_path) as base:
        yield base


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("code", [INTERIM, PATCHED_CHILD], ids=["returned", "patched-child"])
def test_no_server_ever_sends_an_interim_response_for_a_hook(
    make_hook: Any, server: str, code: str
) -> None:
    hook = make_hook(code)
    host = urlsplit(server).netloc
    body = json.dumps({"status": 100}).encode()
    write = (
        f"POST /write/{write_key(hook)} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    read = (
        f"GET /read/{read_key(hook)}?status=100 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    ).encode()

    for request in (write, read):
        sent = raw_exchange(server, request)

        assert sent.startswith(b"HTTP/1.1 500 "), sent[:200]
        status_lines = [line for line in sent.split(b"\r\n") if line.startswith(b"HTTP/")]
        assert len(status_lines) == 1, sent[:500]
        assert b"set-cookie" not in sent.lower()
        assert b"attacker" not in sent
