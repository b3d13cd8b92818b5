"""Finding 8: a client-chosen X-Forwarded-For must not buy a fresh allowance of any per-IP limit.

Each test is the attack: one client sends a new forged X-Forwarded-For with every request and
must still be counted as one address, with TRUSTED_PROXY_COUNT 0 (it connects straight to the
app, the header is ignored) and 1 (behind one proxy, which appends the address it saw: only
that entry is believed). The live-connection cap is attacked on a real uvicorn started the
production way (webreducer.asgiserver), over WebSocket and Server-Sent Events.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from django.conf import settings
from rest_framework.test import APIClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from accounts import ratelimit
from hooks.live.subscription import CLOSE_TOO_MANY
from tests.conftest import read_key
from tests.hooks.realtime_helpers import live_slots_clean  # noqa: F401
from tests.servers import asgi_server
from webreducer.clientip import client_address

PROXY = "10.0.0.2"  # the proxy's own address, the TCP peer behind it


def forged(n: int) -> str:
    return f"203.0.113.{n}"


def attacker() -> str:
    # A fresh real address per test: counters of earlier tests never meet this one.
    return f"198.51.100.{random.randint(1, 254)}"


def via(trusted: int, real: str, spoof: str) -> dict[str, str]:
    """What the app receives from the attacker at `real` who forged `spoof`."""
    if trusted == 0:
        return {"REMOTE_ADDR": real, "HTTP_X_FORWARDED_FOR": spoof}
    # nginx with $proxy_add_x_forwarded_for appends the address it saw to the forged list.
    return {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"{spoof}, {real}"}


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    ratelimit.reset()
    yield
    ratelimit.reset()


@pytest.mark.parametrize(
    ("trusted", "peer", "header", "expected"),
    [
        (0, "198.51.100.9", ["203.0.113.1"], "198.51.100.9"),
        (1, PROXY, ["203.0.113.1, 198.51.100.9"], "198.51.100.9"),
        (1, PROXY, ["203.0.113.1", "198.51.100.9"], "198.51.100.9"),  # two header lines
        (2, PROXY, ["203.0.113.1, 198.51.100.9, 10.0.0.1"], "198.51.100.9"),
        (1, "198.51.100.9", [], "198.51.100.9"),  # reached the app without the proxy
        (1, PROXY, ["not-an-address"], PROXY),
    ],
)
def test_it_believes_exactly_the_trusted_hops(
    trusted: int, peer: str, header: list[str], expected: str
) -> None:
    assert client_address(peer=peer, forwarded_for=header, trusted_proxies=trusted) == expected


@pytest.mark.parametrize("trusted", [0, 1])
def test_it_counts_forged_visitors_against_the_real_address(
    db: Any, settings: Any, trusted: int
) -> None:
    settings.TRUSTED_PROXY_COUNT = trusted
    settings.WR_VISITORS_PER_IP_PER_HOUR = 2
    real = attacker()
    statuses = [
        APIClient().post("/api/visitors/", **via(trusted, real, forged(n))).status_code  # type: ignore[arg-type]
        for n in range(4)
    ]
    assert statuses == [201, 201, 429, 429]


@pytest.mark.parametrize("trusted", [0, 1])
def test_it_counts_forged_sign_in_link_requests_against_the_real_address(
    db: Any, settings: Any, trusted: int
) -> None:
    settings.TRUSTED_PROXY_COUNT = trusted
    settings.WR_MAGIC_LINKS_PER_IP_PER_HOUR = 2
    real = attacker()
    statuses = [
        APIClient()
        .post(
            "/api/auth/magic-link/",
            {"email": f"victim{n}@example.com"},
            format="json",
            **via(trusted, real, forged(n)),  # type: ignore[arg-type]
        )
        .status_code
        for n in range(4)
    ]
    assert statuses == [202, 202, 429, 429]


@pytest.mark.parametrize("trusted", [0, 1])
def test_it_counts_forged_link_confirmations_against_the_real_address(
    db: Any, settings: Any, trusted: int
) -> None:
    settings.TRUSTED_PROXY_COUNT = trusted
    settings.WR_MAGIC_LINK_CONFIRMS_PER_IP_PER_HOUR = 2
    real = attacker()
    statuses = [
        APIClient()
        .post(
            "/api/auth/magic-link/confirm/",
            {"token": f"guess-{n}"},
            format="json",
            **via(trusted, real, forged(n)),  # type: ignore[arg-type]
        )
        .status_code
        for n in range(4)
    ]
    # Guessed tokens are refused (400) until the address is out of attempts (429).
    assert statuses == [400, 400, 429, 429]


def test_it_gives_each_client_behind_the_proxy_its_own_allowance(db: Any, settings: Any) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    settings.WR_VISITORS_PER_IP_PER_HOUR = 1
    first, second = "198.51.100.21", "198.51.100.22"
    assert APIClient().post("/api/visitors/", **via(1, first, forged(1))).status_code == 201  # type: ignore[arg-type]
    assert APIClient().post("/api/visitors/", **via(1, first, forged(2))).status_code == 429  # type: ignore[arg-type]
    assert APIClient().post("/api/visitors/", **via(1, second, forged(3))).status_code == 201  # type: ignore[arg-type]


# --- The live-connection cap, on a real uvicorn ------------------------------------------------

LIVE_CAP = 2


@pytest.fixture(scope="module", params=[0, 1], ids=["no-proxy", "one-proxy"])
def uvicorn_server(
    request: Any, django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[tuple[str, int]]:
    trusted = int(request.param)
    logs = tmp_path_factory.mktemp(f"proxy-trust-{trusted}")
    with django_db_blocker.unblock(), ExitStack() as stack:
        url = stack.enter_context(
            asgi_server(logs, TRUSTED_PROXY_COUNT=str(trusted), WR_LIVE_MAX_PER_IP=str(LIVE_CAP))
        )
        yield url, trusted


def live_headers(trusted: int, real: str, spoof: str) -> dict[str, str]:
    # Over loopback the TCP peer is 127.0.0.1: with no proxy that is the attacker's address,
    # with one it plays the proxy, which appended the attacker's real address.
    if trusted == 0:
        return {"X-Forwarded-For": spoof}
    return {"X-Forwarded-For": f"{spoof}, {real}"}


def ws_open(base: str, token: str, headers: dict[str, str]) -> Any:
    ws = ws_connect(
        base.replace("http://", "ws://") + f"/read/{token}/live", additional_headers=headers
    )
    return ws


def first_frame_or_close(ws: Any) -> dict[str, Any] | int:
    try:
        return json.loads(ws.recv(timeout=20))  # type: ignore[no-any-return]
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_slots_clean")
@pytest.mark.skipif(not settings.REDIS_URL, reason="the live caps are shared through Redis")
def test_it_caps_live_connections_of_one_client_whatever_it_forges(
    uvicorn_server: tuple[str, int], make_hook: Any
) -> None:
    base, trusted = uvicorn_server
    token = read_key(make_hook(""))
    real = attacker()
    with ExitStack() as held:
        for n in range(LIVE_CAP):
            ws = held.enter_context(ws_open(base, token, live_headers(trusted, real, forged(n))))
            frame = first_frame_or_close(ws)
            assert isinstance(frame, dict) and frame["type"] == "state", frame
        # The cap is full: a new forged address changes nothing, on either transport.
        ws = held.enter_context(ws_open(base, token, live_headers(trusted, real, forged(50))))
        assert first_frame_or_close(ws) == CLOSE_TOO_MANY
        sse = httpx.get(
            f"{base}/read/{token}/events",
            headers=live_headers(trusted, real, forged(51)),
            timeout=20,
        )
        assert sse.status_code == 429, sse.text
        assert sse.json()["error"]["code"] == "too_many_connections"
        if trusted:
            # Another client behind the same proxy is not lumped in with the attacker.
            other = held.enter_context(
                ws_open(base, token, live_headers(trusted, "192.0.2.77", forged(52)))
            )
            frame = first_frame_or_close(other)
            assert isinstance(frame, dict) and frame["type"] == "state", frame
