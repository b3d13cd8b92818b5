"""The request log (SPEC §4): newest first, cursor pagination, filters, each entry in full."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from hooks.models import Request
from tests.conftest import write_key
from tests.hooks.api import url, write

pytestmark = pytest.mark.usefixtures("eager_tasks")

CODE = """
from webreducer import Response

def reducer(state, request, secrets):
    print("folding", request.seq)
    if request.body.get("fail"):
        raise ValueError("asked to fail")
    state = state or {"n": 0, "items": []}
    state["n"] += 1
    state["items"].append(request.body.get("item"))
    return state

def responder(request, secrets):
    if isinstance(request.body, dict) and request.body.get("reject"):
        return Response({"error": "rejected"}, status=422)
    return {"ok": True}
"""


@pytest.fixture
def api(alice, client_for):  # type: ignore[no-untyped-def]
    return client_for(alice)


def log(api, hook, **params: str):  # type: ignore[no-untyped-def]
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = api.get(url(hook, "requests") + (f"?{query}" if query else ""))
    assert response.status_code == 200, response.content
    return response.json()


def test_it_shows_every_field_of_an_entry(api, make_hook, client: Client) -> None:
    hook = make_hook(CODE)
    write(client, write_key(hook), {"item": "a"}, **{"Idempotency-Key": "first"})
    client.post(
        f"/write/{write_key(hook)}/github/push?page=2&tag=x&tag=y",
        json.dumps({"item": "b"}),
        content_type="application/json",
        headers={"X-GitHub-Event": "push"},
    )

    entries = log(api, hook)["results"]

    assert [e["seq"] for e in entries] == [2, 1]
    entry = entries[0]
    stored = Request.objects.get(seq=2)
    assert entry["id"] == str(stored.uuid)
    assert entry["method"] == "POST"
    assert entry["path"] == "github/push"
    assert entry["query"] == {"page": ["2"], "tag": ["x", "y"]}
    assert entry["headers"]["X-Github-Event"] == "push"
    assert entry["content_type"] == "application/json"
    assert json.loads(entry["body"]) == {"item": "b"}
    assert entry["body_encoding"] == "utf-8"
    assert entry["outcome"] == "applied"
    assert entry["response_status"] == 200
    assert entry["error"] is None
    assert "folding 2" in entry["console"]
    assert entry["duration_ms"] >= 0
    assert entry["received_at"]
    assert entry["idempotency_key"] is None
    assert entry["duplicate_of"] is None
    assert entry["state_after"] == {"n": 2, "items": ["a", "b"]}
    assert entry["state_diff"] == [
        {"op": "replace", "path": "/n", "value": 2, "old": 1},
        {"op": "add", "path": "/items/1", "value": "b"},
    ]
    first = entries[1]
    assert first["idempotency_key"] == "first"
    assert first["state_diff"] == [
        {"op": "replace", "path": "", "value": {"n": 1, "items": ["a"]}, "old": None}
    ]


def test_it_shows_failed_rejected_and_duplicate_requests(api, make_hook, client: Client) -> None:
    hook = make_hook(CODE)
    write(client, write_key(hook), {"item": "a"}, **{"Idempotency-Key": "k"})
    write(client, write_key(hook), {"item": "a"}, **{"Idempotency-Key": "k"})
    write(client, write_key(hook), {"fail": True})
    write(client, write_key(hook), {"reject": True})

    rejected, failed, duplicate, original = log(api, hook)["results"]

    assert rejected["outcome"] == "rejected"
    assert rejected["seq"] is None
    assert rejected["response_status"] == 422
    assert rejected["state_after"] is None
    assert rejected["state_diff"] is None
    assert failed["outcome"] == "failed"
    assert failed["error"]["type"] == "ValueError"
    assert "asked to fail" in failed["error"]["message"]
    assert "line 7" in failed["error"]["traceback"]  # the user's own line
    assert failed["state_after"] == {"n": 1, "items": ["a"]}
    assert failed["state_diff"] == []
    assert duplicate["outcome"] == "duplicate"
    assert duplicate["duplicate_of"] == original["id"]
    assert duplicate["state_diff"] == []


def test_it_shows_a_binary_body_as_base64(api, make_hook, client: Client) -> None:
    hook = make_hook("")
    payload = bytes(range(256))
    client.post(f"/write/{write_key(hook)}", payload, content_type="application/octet-stream")

    entry = log(api, hook)["results"][0]

    assert entry["body_encoding"] == "base64"
    assert base64.b64decode(entry["body"]) == payload


def test_it_filters_by_outcome(api, make_hook, client: Client) -> None:
    hook = make_hook(CODE)
    write(client, write_key(hook), {"item": "a"})
    write(client, write_key(hook), {"fail": True})
    write(client, write_key(hook), {"item": "b"})
    write(client, write_key(hook), {"reject": True})

    assert [e["seq"] for e in log(api, hook, status="applied")["results"]] == [3, 1]
    assert [e["seq"] for e in log(api, hook, status="failed")["results"]] == [2]
    assert len(log(api, hook, status="rejected")["results"]) == 1
    assert log(api, hook, status="pending")["results"] == []
    response = api.get(url(hook, "requests") + "?status=bogus")
    assert response.status_code == 400
    assert "status" in response.json()["error"]["fields"]


def test_it_fetches_the_states_before_a_page_in_one_query(api, make_hook, client: Client) -> None:
    hook = make_hook(CODE)
    for i in range(6):
        write(client, write_key(hook), {"item": i, "fail": i % 2 == 1})

    with CaptureQueriesContext(connection) as queries:
        entries = log(api, hook, status="applied")["results"]

    # The page, and the states before the page's rows (which are not on it).
    assert len([q for q in queries if 'FROM "hooks_request"' in q["sql"]]) == 2

    assert [e["seq"] for e in entries] == [5, 3, 1]
    assert [e["state_diff"] for e in entries[:2]] == [
        [
            {"op": "replace", "path": "/n", "value": 3, "old": 2},
            {"op": "add", "path": "/items/2", "value": 4},
        ],
        [
            {"op": "replace", "path": "/n", "value": 2, "old": 1},
            {"op": "add", "path": "/items/1", "value": 2},
        ],
    ]


def test_it_pages_42_requests_by_40_without_repeats_or_gaps_while_writes_arrive(
    api, make_hook, client: Client
) -> None:
    hook = make_hook("")
    for i in range(42):
        write(client, write_key(hook), {"i": i})

    first = log(api, hook)
    for i in range(42, 47):  # new writes between the pages
        write(client, write_key(hook), {"i": i})
    cursor = parse_qs(urlparse(first["next"]).query)["cursor"][0]
    second = log(api, hook, cursor=cursor)

    assert len(first["results"]) == 40
    assert len(second["results"]) == 2
    assert second["next"] is None
    seqs = [e["seq"] for e in first["results"] + second["results"]]
    assert seqs == list(range(42, 0, -1))
    # The newer writes are on a fresh first page, or before the first page's start.
    newest = log(api, hook)["results"]
    assert [e["seq"] for e in newest[:5]] == [47, 46, 45, 44, 43]
    previous = api.get(second["previous"]).json()
    assert [e["seq"] for e in previous["results"]][-1] == 3


def test_it_answers_404_for_a_forged_cursor(api, make_hook) -> None:
    hook = make_hook()
    forged = base64.b64encode(b"p=abc").decode()
    for cursor in ("garbage", forged):
        response = api.get(url(hook, "requests") + f"?cursor={cursor}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
