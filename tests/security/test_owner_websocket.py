"""Issue 13, finding 12: the owners' feed (`/ws/hooks/<id>/`) is authenticated by the session
cookie, so only pages of the app's own origin may open it, whatever DEBUG and ALLOWED_HOSTS say.

A real uvicorn and the `websockets` client, which sends any Origin and Cookie we like: what a
hostile page in the victim's browser would send (browsers set Origin themselves).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from accounts.models import User
from hooks.models import Hook
from tests.servers import asgi_server, free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[str]:
    # DEBUG on and every host allowed, as a careless development setup: the check must hold.
    port = free_port()
    with (
        django_db_blocker.unblock(),
        asgi_server(
            tmp_path_factory.mktemp("owner-ws"),
            port=port,
            DEBUG="true",
            ALLOWED_HOSTS="*",
            SITE_ROOT=f"http://127.0.0.1:{port}",
        ) as url,
    ):
        yield url


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def feed(server: str, hook: Hook, *, origin: str | None, cookie: str) -> Any:
    return ws_connect(
        server.replace("http://", "ws://") + f"/ws/hooks/{hook.pk}/",
        origin=origin,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        open_timeout=10,
    )


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.test",
        "http://127.0.0.1.evil.test",
        "http://localhost:8000",  # another port of a host the app answers on
        "https://127.0.0.1",  # the right host, the wrong scheme
        "null",  # a sandboxed page or a file:// one
        None,  # no Origin at all
    ],
)
def test_it_refuses_the_owners_feed_to_a_foreign_origin_with_a_valid_session(
    server: str, make_hook: Any, alice: User, origin: str | None
) -> None:
    hook = make_hook("")

    with (
        pytest.raises(InvalidStatus) as refused,
        feed(server, hook, origin=origin, cookie=session_cookie(alice)) as socket,
    ):
        socket.recv(timeout=5)

    assert refused.value.response.status_code == 403


def test_it_opens_the_owners_feed_to_the_apps_own_origin(
    server: str, make_hook: Any, alice: User
) -> None:
    hook = make_hook("")

    with feed(server, hook, origin=server, cookie=session_cookie(alice)) as socket:
        assert '"hello"' in str(socket.recv(timeout=10))


def test_it_allows_only_the_origins_hosts_and_loopback_by_default_in_debug(
    tmp_path: Path,
) -> None:
    port = free_port()
    with asgi_server(
        tmp_path,
        port=port,
        DEBUG="true",
        ALLOWED_HOSTS="",
        SITE_ROOT=f"http://127.0.0.1:{port}",
        WR_PUBLIC_ORIGIN=f"http://hooks.localhost:{port}",
    ) as url:
        evil = httpx.get(url + "/read/none", headers={"Host": "evil.test"})
        public = httpx.get(url + "/read/none", headers={"Host": f"hooks.localhost:{port}"})
        app = httpx.get(url + "/docs/", headers={"Host": f"localhost:{port}"})

    assert evil.status_code == 400
    assert public.status_code == 404 and public.json()["error"]["code"] == "not_found"
    assert app.status_code == 200
