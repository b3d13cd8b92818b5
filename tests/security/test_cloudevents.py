"""Finding 11: a request that declares CloudEvents but is not a valid CloudEvents 1.0 event is
refused with 400 and a JSON error naming the problem, and nothing of it is stored - in
structured, batch (one bad event refuses the whole batch) and binary mode alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from hooks.models import Hook, Request
from tests.conftest import write_key

pytestmark = pytest.mark.django_db

VALID = {
    "specversion": "1.0",
    "id": "E-1",
    "source": "https://shop.example/orders",
    "type": "com.example.order.created",
    "time": "2024-05-01T12:00:00Z",
    "datacontenttype": "application/json",
    "data": {"order": 1},
}


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in VALID.items() if k != name}


# (what is wrong, the event, a word the error must name)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    *[(f"missing {name}", without(name), name) for name in ("id", "source", "type", "specversion")],
    *[
        (f"empty {name}", {**VALID, name: ""}, name)
        for name in ("id", "source", "type", "specversion")
    ],
    ("unknown spec version", {**VALID, "specversion": "0.3"}, "specversion"),
    ("time not RFC 3339", {**VALID, "time": "yesterday at noon"}, "time"),
    ("time without offset", {**VALID, "time": "2024-05-01T12:00:00"}, "time"),
    ("upper-case attribute name", {**VALID, "Region": "eu"}, "Region"),
    ("attribute name with underscore", {**VALID, "trace_id": "t"}, "trace_id"),
    ("data and data_base64", {**VALID, "data_base64": "aGk="}, "data_base64"),
    (
        "datacontenttype not a media type",
        {**VALID, "datacontenttype": "json please"},
        "datacontenttype",
    ),
    ("extension that is an object", {**VALID, "meta": {"a": 1}}, "meta"),
]


def stored(hook: Hook) -> int:
    return Request.objects.filter(hook=hook).count()


def refused(response: Any, word: str) -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "invalid_cloudevents"
    assert word in error["message"], error["message"]


@pytest.mark.parametrize(("case", "event", "word"), INVALID, ids=[c[0] for c in INVALID])
def test_it_refuses_an_invalid_structured_event(
    client: Client, make_hook: Any, case: str, event: dict[str, Any], word: str
) -> None:
    hook = make_hook("")
    response = client.post(
        f"/write/{write_key(hook)}", json.dumps(event), content_type="application/cloudevents+json"
    )
    refused(response, word)
    assert stored(hook) == 0


@pytest.mark.parametrize(("case", "event", "word"), INVALID, ids=[c[0] for c in INVALID])
def test_it_refuses_a_whole_batch_for_one_invalid_event(
    client: Client, make_hook: Any, case: str, event: dict[str, Any], word: str
) -> None:
    hook = make_hook("")
    batch = [VALID, {**VALID, "id": "E-2"}, event]
    response = client.post(
        f"/write/{write_key(hook)}",
        json.dumps(batch),
        content_type="application/cloudevents-batch+json",
    )
    refused(response, word)
    assert "position 2" in response.json()["error"]["message"]
    assert stored(hook) == 0


BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "B-1",
    "ce-source": "https://shop.example/orders",
    "ce-type": "com.example.order.created",
    "ce-time": "2024-05-01T12:00:00Z",
}

INVALID_BINARY: list[tuple[str, dict[str, str], str, str]] = [
    *[
        (
            f"missing {name}",
            {k: v for k, v in BINARY.items() if k != f"ce-{name}"},
            "application/json",
            name,
        )
        for name in ("id", "source", "type", "specversion")
    ],
    *[
        (f"empty {name}", {**BINARY, f"ce-{name}": ""}, "application/json", name)
        for name in ("id", "source", "type", "specversion")
    ],
    (
        "unknown spec version",
        {**BINARY, "ce-specversion": "0.3"},
        "application/json",
        "specversion",
    ),
    ("time not RFC 3339", {**BINARY, "ce-time": "yesterday"}, "application/json", "time"),
    # (Servers drop header names with underscores: a dash is what gets through.)
    ("attribute name with a dash", {**BINARY, "ce-trace-id": "t"}, "application/json", "trace-id"),
    ("an empty attribute name", {**BINARY, "ce-": "x"}, "application/json", "''"),
    ("content type not a media type", BINARY, "json please", "datacontenttype"),
]


@pytest.mark.parametrize(
    ("case", "headers", "content_type", "word"), INVALID_BINARY, ids=[c[0] for c in INVALID_BINARY]
)
def test_it_refuses_an_invalid_binary_event(
    client: Client, make_hook: Any, case: str, headers: dict[str, str], content_type: str, word: str
) -> None:
    hook = make_hook("")
    response = client.post(
        f"/write/{write_key(hook)}", b'{"order": 1}', content_type=content_type, headers=headers
    )
    refused(response, word)
    assert stored(hook) == 0


def test_it_still_accepts_valid_events_in_every_mode(client: Client, make_hook: Any) -> None:
    hook = make_hook("")
    url = f"/write/{write_key(hook)}"
    extended = {**VALID, "id": "E-9", "region": "eu", "priority": 3, "sampled": True}
    assert (
        client.post(
            url, json.dumps(extended), content_type="application/cloudevents+json"
        ).status_code
        == 202
    )
    batch = json.dumps(
        [{**VALID, "id": "E-2"}, {**without("data"), "id": "E-3", "data_base64": "aGk="}]
    )
    assert (
        client.post(url, batch, content_type="application/cloudevents-batch+json").status_code
        == 202
    )
    response = client.post(
        url, b'{"order": 1}', content_type="application/json; charset=utf-8", headers=BINARY
    )
    assert response.status_code == 202
    assert stored(hook) == 4
