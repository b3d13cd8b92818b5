"""Finding 10 of issue 13: a hook that escapes the sandbox child's JSON encoder (user code runs in
the child's interpreter: a traceback's frames lead to the runtime's globals) sends `NaN`,
`Infinity`, `1e999999`, U+0000 or a lone surrogate as its state, response or idempotency key.
The parent parses everything from the child strictly, so the call fails with a clear error, the
state stays as it was, the read URL keeps serving valid JSON and the owner's request log keeps
answering."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from hooks import pipeline
from hooks.models import Hook, Request, State
from tests.conftest import read_key, write_key

pytestmark = pytest.mark.django_db

# How a hook takes over the child's encoder: find the runtime's module globals through the
# frames of a traceback and replace `dump_json` and `dump_sized`, which the runtime calls on
# every state, response and key it sends, with ones that answer the forged text.
ESCAPE = """
def forge(text):
    try:
        raise RuntimeError
    except RuntimeError as error:
        frame = error.__traceback__.tb_frame
    while frame is not None and "dump_json" not in frame.f_globals:
        frame = frame.f_back
    frame.f_globals["dump_json"] = lambda value, **options: text
    frame.f_globals["dump_sized"] = lambda value, **options: (text, len(text))
"""

FORGED_STATES = {
    "nan": '{"count":NaN}',
    "infinity": '{"count":Infinity}',
    "minus-infinity": '{"count":-Infinity}',
    "overflow": '{"count":1e999999}',
    "nul": '{"count":"\\u0000"}',
    "surrogate": '{"count":"\\ud800"}',
}

HOSTILE_REDUCER = (
    ESCAPE
    + f"""
FORGED = {FORGED_STATES!r}

def reducer(state, request, secrets):
    name = request.body["name"]
    if name in FORGED:
        forge(FORGED[name])
        return None
    state = state or {{"count": 0, "names": []}}
    state["count"] += 1
    state["names"].append(name)
    return state
"""
)


def strict(text: str | bytes) -> Any:
    """Parse as a strict JSON reader (a browser's JSON.parse) would: no NaN or Infinity."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in what was served: {text[:200]!r}")

    return json.loads(text, parse_constant=refuse)


def send(client: Client, hook: Hook, name: str, **headers: str) -> Any:
    return client.post(
        f"/write/{write_key(hook)}",
        json.dumps({"name": name}),
        content_type="application/json",
        headers=headers,
    )


def test_it_fails_a_forged_non_json_state_and_keeps_serving_valid_json(
    make_hook: Any, client: Client, alice: Any, client_for: Any
) -> None:
    hook = make_hook(HOSTILE_REDUCER)
    names = ["first", *FORGED_STATES, "last"]
    for name in names:
        assert send(client, hook, name).status_code == 202

    pipeline.hook_reduce(hook_id=hook.pk)

    rows = {json.loads(bytes(r.body))["name"]: r for r in Request.objects.filter(hook=hook)}
    assert [rows[n].seq for n in names] == list(range(1, len(names) + 1))
    assert rows["first"].outcome == rows["last"].outcome == Request.Outcome.APPLIED
    for name in FORGED_STATES:
        row = rows[name]
        assert row.outcome == Request.Outcome.FAILED, name
        assert row.error["type"] == "StateNotSerializable", (name, row.error)
        assert row.state_after == '{"count":1,"names":["first"]}', name  # unchanged by it

    state = State.objects.get(version_id=hook.live_version_id)
    assert strict(state.value) == {"count": 2, "names": ["first", "last"]}

    read = client.get(f"/read/{read_key(hook)}")
    assert read.status_code == 200
    assert strict(read.content) == {"count": 2, "names": ["first", "last"]}
    assert read["X-WebReducer-Seq"] == str(len(names))

    log = client_for(alice).get(f"/api/hooks/{hook.pk}/requests/")
    assert log.status_code == 200
    entries = strict(log.content)["results"]
    assert {e["outcome"] for e in entries} == {"applied", "failed"}


def test_a_forged_query_answer_is_a_json_500_not_invalid_json(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook(
        ESCAPE
        + """
def query(state, params, secrets):
    forge('{"status":200,"headers":{},"body":NaN}')
    return None
"""
    )
    read = client.get(f"/read/{read_key(hook)}")
    assert read.status_code == 500
    error = strict(read.content)["error"]
    assert error["code"] == "query_error"
    assert "ResponseNotSerializable" in error["message"]


def test_a_forged_responder_answer_rejects_the_request_with_a_json_500(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook(
        ESCAPE
        + """
def responder(request, secrets):
    forge('{"status":200,"headers":{},"body":{"n":Infinity}}')
    return None
"""
    )
    response = send(client, hook, "x")
    assert response.status_code == 500
    assert strict(response.content)["error"]["code"] == "responder_error"
    row = Request.objects.get(hook=hook)
    assert row.outcome == Request.Outcome.REJECTED
    assert row.error["type"] == "ResponseNotSerializable"


def test_a_forged_idempotency_key_fails_its_request_and_the_next_one_is_applied(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook(
        ESCAPE
        + """
FORGED = {"nul": '"a\\\\u0000b"', "nan": "NaN", "surrogate": '"\\\\udc00"'}

def idempotency_key(request, secrets):
    name = request.body["name"]
    if name in FORGED:
        forge(FORGED[name])
    return name

def reducer(state, request, secrets):
    return (state or []) + [request.body["name"]]
"""
    )
    names = ["first", "nul", "nan", "surrogate", "last"]
    for name in names:
        assert send(client, hook, name).status_code == 202

    pipeline.hook_reduce(hook_id=hook.pk)

    rows = {json.loads(bytes(r.body))["name"]: r for r in Request.objects.filter(hook=hook)}
    assert [rows[n].seq for n in names] == [1, 2, 3, 4, 5]
    for name in ("nul", "nan", "surrogate"):
        assert rows[name].outcome == Request.Outcome.FAILED, name
        assert rows[name].error["type"] == "IdempotencyKeyNotSerializable", rows[name].error
    assert rows["last"].outcome == Request.Outcome.APPLIED
    assert rows["last"].idempotency_key == "last"
    state = State.objects.get(version_id=hook.live_version_id)
    assert strict(state.value) == ["first", "last"]


@pytest.mark.parametrize(
    "body", [b'{"n": NaN}', b'{"n": Infinity}', b"[-Infinity]", b'{"n": 1e999999}']
)
def test_a_write_whose_json_body_is_not_json_is_refused_and_not_stored(
    make_hook: Any, body: bytes
) -> None:
    # Python's json takes these; a reducer that kept such a value could never be served.
    hook = make_hook("def reducer(state, request, secrets):\n    return request.body\n")
    response = Client().post(f"/write/{write_key(hook)}", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert not Request.objects.filter(hook=hook).exists()
