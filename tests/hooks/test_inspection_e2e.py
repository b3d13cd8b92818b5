"""Issue 16 against a real uvicorn (ASGI, as production runs): the NDJSON export streams in
chunks there too, and the owners' feed takes an API token with no Origin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings
from websockets.sync.client import connect as ws_connect

from accounts.services import api_token_create
from hooks.apis import requests as requests_api
from tests.conftest import write_key
from tests.servers import asgi_server

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="the server is another process"),
]


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("inspection")
    with django_db_blocker.unblock(), asgi_server(logs) as url:
        yield url


def test_it_streams_the_ndjson_export_from_the_asgi_server_while_writes_go_on(
    server: str, make_hook, alice
) -> None:
    hook = make_hook("")
    _, token = api_token_create(user=alice, name="pull")
    auth = {"Authorization": f"Bearer {token}"}
    stored = 2 * requests_api.NDJSON_CHUNK + 50  # three chunks
    with httpx.Client(base_url=server, timeout=30) as client:
        for i in range(stored):
            response = client.post(f"/write/{write_key(hook)}", json={"i": i})
            assert response.status_code == 202
        lines: list[str] = []
        url = f"/api/hooks/{hook.pk}/requests/?format=ndjson"
        with client.stream("GET", url, headers=auth) as export:
            assert export.status_code == 200
            assert export.headers["content-type"] == "application/x-ndjson"
            chunks = export.iter_lines()
            lines.append(next(chunks))
            for i in range(stored, stored + 30):  # writes while the export streams
                client.post(f"/write/{write_key(hook)}", json={"i": i})
            lines.extend(chunks)

    numbers = [json.loads(json.loads(line)["body"])["i"] for line in lines if line]

    assert numbers == list(range(stored))


def test_it_opens_the_owners_feed_over_a_real_server_with_a_token_and_no_origin(
    server: str, make_hook, alice
) -> None:
    hook = make_hook("")
    _, token = api_token_create(user=alice, name="follow")
    url = server.replace("http://", "ws://") + f"/ws/hooks/{hook.pk}/"

    with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as feed:
        assert json.loads(feed.recv(timeout=20)) == {"type": "hello", "hook": str(hook.pk)}
        httpx.post(f"{server}/write/{write_key(hook)}", json={"n": 1}, timeout=10)
        message = json.loads(feed.recv(timeout=20))
        assert message["type"] == "requests"
        assert message["requests"][0]["status"] == 202
