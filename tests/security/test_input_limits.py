"""Finding 9: every oversized, malformed or slow input is refused before it is read whole, on
both servers, with a JSON error, and nothing of it is stored.

Each test sends the input for real, over a raw socket, to a real uvicorn (started the
production way, webreducer.asgiserver) and a real gunicorn (gunicorn.conf.py), then checks the
status, the JSON error and that the hook's log holds no request.
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from hooks.models import Hook, Request
from tests.conftest import read_key, write_key
from tests.servers import asgi_server, wsgi_server

pytestmark = pytest.mark.django_db(transaction=True)

KIB = 1024
MAX_BODY = 1024 * KIB  # WR_MAX_BODY_BYTES and WR_MAX_REQUEST_BODY_BYTES by default


@pytest.fixture(scope="module", params=["uvicorn", "gunicorn"])
def server(
    request: Any, django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[str]:
    logs = tmp_path_factory.mktemp(f"inputs-{request.param}")
    # A short body deadline so the slow-client tests end quickly; the status is what counts.
    start = asgi_server if request.param == "uvicorn" else wsgi_server
    with django_db_blocker.unblock(), start(logs, WR_BODY_READ_SECONDS="1") as url:
        yield url


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.body)["error"]  # type: ignore[no-any-return]


def connect(base: str) -> socket.socket:
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    return sock


def read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(status, headers, body)


def exchange(base: str, raw: bytes, parts: Iterable[bytes] = ()) -> Answer:
    with connect(base) as sock:
        sock.sendall(raw)
        for part in parts:
            sock.sendall(part)
        return read_answer(sock)


def head(
    method: str, target: str, headers: dict[str, str] | list[tuple[str, str]] | None = None
) -> bytes:
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in items)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def stored(hook: Hook) -> int:
    return Request.objects.filter(hook=hook).count()


def refused(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.error()["code"] == code, answer.body[:300]


def test_it_still_stores_an_ordinary_write(server: str, make_hook: Any) -> None:
    hook = make_hook("")
    body = b'{"n": 1}'
    raw = head(
        "POST",
        f"/write/{write_key(hook)}",
        {"Content-Type": "application/json", "Content-Length": str(len(body))},
    )
    assert exchange(server, raw + body).status == 202
    assert stored(hook) == 1


def test_it_stores_a_chunked_body_whole(server: str, make_hook: Any) -> None:
    hook = make_hook("")
    raw = head("POST", f"/write/{write_key(hook)}", {"Transfer-Encoding": "chunked"})
    assert exchange(server, raw + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").status == 202
    assert bytes(Request.objects.get(hook=hook).body) == b"hello world"


def test_it_refuses_one_header_over_the_limit(server: str, make_hook: Any) -> None:
    hook = make_hook("")
    raw = head("POST", f"/write/{write_key(hook)}", {"X-Big": "x" * (8 * KIB)})
    refused(exchange(server, raw), 431, "header_too_large")
    assert stored(hook) == 0


def test_it_refuses_headers_over_the_limit_in_all(server: str, make_hook: Any) -> None:
    hook = make_hook("")
    headers = [(f"X-Part-{n}", "x" * (6 * KIB)) for n in range(6)]  # each under 8 KiB
    refused(
        exchange(server, head("POST", f"/write/{write_key(hook)}", headers)),
        431,
        "headers_too_large",
    )
    assert stored(hook) == 0


def test_it_refuses_too_many_headers(server: str, make_hook: Any) -> None:
    hook = make_hook("")
    headers = [(f"X-H{n}", "1") for n in range(105)]
    refused(
        exchange(server, head("POST", f"/write/{write_key(hook)}", headers)),
        431,
        "too_many_headers",
    )
    assert stored(hook) == 0


def test_it_never_takes_a_five_megabyte_header(server: str, make_hook: Any) -> None:
    # Far over the app's limit: the server's own backstop refuses it before the app, in its
    # own words, or cuts the connection; either way nothing is stored and the server lives on.
    hook = make_hook("")
    raw = head("POST", f"/write/{write_key(hook)}", {"X-Huge": "x" * (5 * 1024 * KIB)})
    try:
        answer = exchange(server, raw)
        assert 400 <= answer.status < 500, answer.status
    except (ConnectionError, OSError):
        pass
    assert stored(hook) == 0
    test_it_still_stores_an_ordinary_write(server, make_hook)


def test_it_refuses_a_long_query_string(server: str, make_hook: Any) -> None:
    hook = make_hook("")
    refused(
        exchange(server, head("GET", f"/write/{write_key(hook)}?q={'x' * 5000}")),
        414,
        "query_too_long",
    )
    assert stored(hook) == 0


@pytest.mark.parametrize("endpoint", ["write", "read"])
def test_it_refuses_too_many_query_fields_with_json(
    server: str, make_hook: Any, endpoint: str
) -> None:
    # More than 1,000 fields was a bare 500 on uvicorn and an HTML 400 on gunicorn.
    hook = make_hook("")
    key = write_key(hook) if endpoint == "write" else read_key(hook)
    query = "&".join(["a"] * 1001)  # 2,001 bytes, under the length limit
    answer = exchange(server, head("GET", f"/{endpoint}/{key}?{query}"))
    refused(answer, 400, "too_many_query_fields")
    assert answer.headers.get("access-control-allow-origin") == "*"  # a page may read why
    assert stored(hook) == 0


def test_it_refuses_a_long_path(server: str, make_hook: Any) -> None:
    hook = make_hook("")
    raw = head("POST", f"/write/{write_key(hook)}/{'p' * 3000}", {"Content-Length": "0"})
    refused(exchange(server, raw), 414, "path_too_long")
    assert stored(hook) == 0


def test_it_refuses_a_declared_huge_body_without_reading_it(server: str, make_hook: Any) -> None:
    # Only the head is sent: the answer comes without a byte of the 100 MiB being read.
    hook = make_hook("")
    raw = head("POST", f"/write/{write_key(hook)}", {"Content-Length": str(100 * 1024 * KIB)})
    refused(exchange(server, raw), 413, "too_large")
    assert stored(hook) == 0


def test_it_refuses_a_chunked_body_over_the_limit(server: str, make_hook: Any) -> None:
    hook = make_hook("")
    piece = b"x" * (64 * KIB)
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * (MAX_BODY // len(piece))
    chunks.append(b"1\r\nx\r\n0\r\n\r\n")  # one byte over
    raw = head("POST", f"/write/{write_key(hook)}", {"Transfer-Encoding": "chunked"})
    refused(exchange(server, raw, chunks), 413, "too_large")
    assert stored(hook) == 0


def test_it_answers_a_stalled_body_with_408(server: str, make_hook: Any) -> None:
    # Declares 5,000 bytes and sends 10: the answer used to wait for the rest for 20 s.
    hook = make_hook("")
    raw = head("POST", f"/write/{write_key(hook)}", {"Content-Length": "5000"})
    refused(exchange(server, raw + b"0123456789"), 408, "body_timeout")
    assert stored(hook) == 0


def test_it_answers_a_trickled_body_with_408(server: str, make_hook: Any) -> None:
    # A byte every 100 ms keeps each read busy: the deadline is for the whole body.
    hook = make_hook("")
    raw = head("POST", f"/write/{write_key(hook)}", {"Content-Length": "5000"})
    with connect(server) as sock:
        sock.sendall(raw)
        for _ in range(5000):
            if select.select([sock], [], [], 0.1)[0]:
                break
            try:
                sock.sendall(b"x")
            except OSError:
                break
        refused(read_answer(sock), 408, "body_timeout")
    assert stored(hook) == 0


def test_it_refuses_an_idempotency_key_over_the_limit(server: str, make_hook: Any) -> None:
    hook = make_hook("")
    for key, status in (("k" * 256, 400), ("k" * 255, 202)):
        raw = head(
            "POST", f"/write/{write_key(hook)}", {"Idempotency-Key": key, "Content-Length": "2"}
        )
        answer = exchange(server, raw + b"{}")
        assert answer.status == status, answer.body
        if status == 400:
            assert answer.error()["code"] == "idempotency_key_too_long"
            assert stored(hook) == 0
    assert stored(hook) == 1


@pytest.fixture(scope="module")
def uvicorn_only(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[str]:
    """Websockets are served by the ASGI server only."""
    logs = tmp_path_factory.mktemp("inputs-live")
    with django_db_blocker.unblock(), asgi_server(logs) as url:
        yield url


def test_it_refuses_a_live_socket_handshake_with_too_many_headers(
    uvicorn_only: str, make_hook: Any
) -> None:
    # (A single header line over 8 KiB never reaches the app here: the websockets library
    # refuses it while parsing the handshake.)
    token = read_key(make_hook(""))
    url = uvicorn_only.replace("http://", "ws://") + f"/read/{token}/live"
    headers = [(f"X-H{n}", "1") for n in range(105)]
    with pytest.raises(InvalidStatus) as refusal:
        ws_connect(url, additional_headers=headers, open_timeout=20)
    response = refusal.value.response
    assert response.status_code == 431
    assert json.loads(response.body)["error"]["code"] == "too_many_headers"


def test_it_keeps_live_socket_messages_bounded(uvicorn_only: str, make_hook: Any) -> None:
    token = read_key(make_hook(""))
    url = uvicorn_only.replace("http://", "ws://") + f"/read/{token}/live"
    with ws_connect(url, open_timeout=20, max_size=None) as ws:
        ws.recv(timeout=20)  # the state
        ws.send("x" * (MAX_BODY + 128 * KIB))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
    # 1009: message too big; the server read no more than its bound of it.
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
