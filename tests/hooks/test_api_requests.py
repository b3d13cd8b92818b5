"""The request log (docs/api.md): newest first, cursor pagination, filters, each entry in full."""

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


# --- Request inspection (issue 16): the responder's answer, one entry, resend, NDJSON -----

SIGNED = """
from webreducer import Response

def responder(request, secrets):
    if request.headers.get("X-Token") != secrets.get("TOKEN"):
        # A careless check that echoes what it expected: the log must not show the secret.
        return Response(
            {"error": "bad token", "expected": secrets.get("TOKEN")},
            status=401,
            headers={"X-Expected": secrets.get("TOKEN", "")},
        )
    return Response("welcome", status=200, headers={"Content-Type": "text/plain"})
"""


def test_it_stores_the_responders_answer_with_every_write_secrets_masked(
    api, make_hook, client: Client
) -> None:
    from hooks.services import secret_set

    hook = make_hook(SIGNED)
    secret_set(hook=hook, name="TOKEN", value="s3cret-value-42")
    write(client, write_key(hook), {"a": 1}, **{"X-Token": "wrong"})
    write(client, write_key(hook), {"a": 2}, **{"X-Token": "s3cret-value-42"})

    accepted, rejected = log(api, hook)["results"]

    assert rejected["outcome"] == "rejected"
    assert rejected["response"] == {
        "status": 401,
        "headers": {"X-Expected": "[secret TOKEN]"},
        "body": {"error": "bad token", "expected": "[secret TOKEN]"},
        "truncated": False,
    }
    assert accepted["response"]["status"] == 200
    assert accepted["response"]["body"] == "welcome"
    assert "s3cret-value-42" not in json.dumps([e["response"] for e in log(api, hook)["results"]])
    # The stored row has it masked too, not only the API's rendering of it.
    assert "s3cret-value-42" not in json.dumps(list(Request.objects.values_list("response")))


def test_it_stores_the_default_responders_answer(api, make_hook, client: Client) -> None:
    hook = make_hook("def reducer(state, request, secrets):\n    return 1\n")
    answer = write(client, write_key(hook), {"a": 1}).json()

    entry = log(api, hook)["results"][0]

    assert entry["response"] == {
        "status": 202,
        "headers": {},
        "body": {"id": answer["id"]},
        "truncated": False,
    }


def test_it_bounds_a_huge_responder_answer(api, make_hook, client: Client, settings) -> None:
    settings.WR_LOG_RESPONSE_MAX_BYTES = 1000
    hook = make_hook("def responder(request, secrets):\n    return {'junk': 'x' * 200000}\n")
    response = write(client, write_key(hook), {})
    assert len(response.content) > 200000  # the producer gets all of it

    stored = log(api, hook)["results"][0]["response"]

    assert stored["truncated"] is True
    assert isinstance(stored["body"], str) and len(stored["body"].encode()) <= 1000


def test_it_reads_one_entry_by_its_id(api, make_hook, client: Client, bob, client_for) -> None:
    hook = make_hook(CODE)
    answer = write(client, write_key(hook), {"item": "a"}).json()
    entry_id = log(api, hook)["results"][0]["id"]

    response = api.get(url(hook, "requests", entry_id))

    assert response.status_code == 200
    entry = response.json()
    assert entry["id"] == entry_id and entry["seq"] == 1
    assert entry["response"]["body"] == answer == {"ok": True}
    assert entry["resent_from"] is None
    for wrong in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        assert api.get(url(hook, "requests", wrong)).status_code == 404
    assert client_for(bob).get(url(hook, "requests", entry_id)).status_code == 404


def test_it_resends_an_entry_as_a_new_request_and_leaves_the_original_untouched(
    api, make_hook, client: Client
) -> None:
    hook = make_hook(CODE)
    client.post(
        f"/write/{write_key(hook)}/orders?x=1",
        json.dumps({"item": "a"}),
        content_type="application/json",
        headers={"X-Source": "shop"},
    )
    original = Request.objects.get()
    before = {f.attname: getattr(original, f.attname) for f in Request._meta.concrete_fields}

    response = api.post(url(hook, "requests", original.uuid, "resend"))

    assert response.status_code == 201, response.content
    copy = response.json()
    assert copy["resent_from"] == str(original.uuid)
    assert copy["id"] != str(original.uuid)
    assert (copy["method"], copy["path"], copy["query"]) == ("POST", "orders", {"x": ["1"]})
    assert copy["headers"]["X-Source"] == "shop"
    assert json.loads(copy["body"]) == {"item": "a"}
    assert copy["response"]["status"] == 200  # the live responder answered the copy
    assert copy["seq"] == 2 and copy["state_after"]["n"] == 2  # and it was folded
    original.refresh_from_db()
    after = {f.attname: getattr(original, f.attname) for f in Request._meta.concrete_fields}
    assert after == before


def test_it_refuses_to_resend_without_an_active_write_key(api, make_hook, client: Client) -> None:
    from hooks.services import key_revoke

    hook = make_hook(CODE)
    write(client, write_key(hook), {"item": "a"})
    key_revoke(key=hook.keys.get(kind="write"))

    response = api.post(url(hook, "requests", Request.objects.get().uuid, "resend"))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_write_key"
    assert Request.objects.count() == 1


def test_it_applies_the_rate_limit_to_resends(api, make_hook, client: Client) -> None:
    hook = make_hook(CODE)
    hook.limits = {"rate_per_second": 0.001, "rate_burst": 1}
    hook.save()
    write(client, write_key(hook), {"item": "a"})

    response = api.post(url(hook, "requests", Request.objects.get().uuid, "resend"))

    assert response.status_code == 429
    assert response["Retry-After"]
    assert Request.objects.count() == 1


def ndjson(api, hook, query: str = "") -> list[dict]:  # type: ignore[type-arg]
    response = api.get(url(hook, "requests") + "?format=ndjson" + query)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    text = b"".join(response.streaming_content).decode()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_it_exports_every_entry_once_oldest_first_as_ndjson(
    api, make_hook, client: Client, monkeypatch
) -> None:
    from hooks.apis import requests as requests_api

    monkeypatch.setattr(requests_api, "NDJSON_CHUNK", 7)  # many chunks
    hook = make_hook(CODE)
    for i in range(30):
        write(client, write_key(hook), {"item": i, "reject": i == 3})

    entries = ndjson(api, hook)

    assert len(entries) == 30
    assert len({e["id"] for e in entries}) == 30
    assert [e["seq"] for e in entries if e["seq"]] == list(range(1, 30))
    assert entries[3]["outcome"] == "rejected"
    # The same shape as the list's entries.
    assert entries[-1] == log(api, hook)["results"][0]
    assert [e["seq"] for e in ndjson(api, hook, "&since=25")] == [26, 27, 28, 29]
    assert [e["outcome"] for e in ndjson(api, hook, "&status=rejected")] == ["rejected"]
    refused = api.get(url(hook, "requests") + "?format=ndjson&since=-1")
    assert refused.status_code == 400
    assert refused["Content-Type"] == "application/json"
    assert "since" in refused.json()["error"]["fields"]


def test_it_exports_each_entry_once_while_a_burst_of_writes_goes_on(
    api, make_hook, client: Client, monkeypatch
) -> None:
    from hooks.apis import requests as requests_api

    monkeypatch.setattr(requests_api, "NDJSON_CHUNK", 5)
    hook = make_hook("")
    for i in range(20):
        write(client, write_key(hook), {"i": i})
    response = api.get(url(hook, "requests") + "?format=ndjson")
    stream = iter(response.streaming_content)
    lines = next(stream).decode().splitlines()
    for i in range(20, 40):  # a burst between the chunks of one export
        write(client, write_key(hook), {"i": i})
    for chunk in stream:
        lines += chunk.decode().splitlines()

    numbers = [json.loads(json.loads(line)["body"])["i"] for line in lines]

    # Everything stored when the export began, once each and in storage order; the burst
    # stored during it is for the next export (`since=`).
    assert numbers == list(range(20))
    assert len(ndjson(api, hook)) == 40


def test_it_refuses_the_ndjson_export_to_outsiders(make_hook, bob, client_for) -> None:
    hook = make_hook(CODE)
    response = client_for(bob).get(url(hook, "requests") + "?format=ndjson")
    assert response.status_code == 404


def test_it_filters_by_path_prefix(api, make_hook, client: Client) -> None:
    hook = make_hook("")
    for path in ("github/push", "github/issues", "stripe", ""):
        client.post(f"/write/{write_key(hook)}/{path}", "{}", content_type="application/json")

    paths = [e["path"] for e in log(api, hook, path="github")["results"]]

    assert paths == ["github/issues", "github/push"]
