"""The write and read endpoints (docs/pipeline.md), with tasks run in process."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from hooks.models import Key, Request, State
from tests.conftest import read_key, write_key
from tests.hooks.api import write

pytestmark = pytest.mark.usefixtures("eager_tasks")

COUNTER = """
def reducer(state, request, secrets):
    state = state or {"number": 0}
    state["number"] += request.body["number"]
    return state
"""


def read(client: Client, token: str, query: str = "") -> Any:
    return client.get(f"/read/{token}" + (f"?{query}" if query else ""))


def test_it_folds_the_original_counter_case(make_hook, client: Client) -> None:
    hook = make_hook(COUNTER)
    assert write(client, write_key(hook), {"number": 4}).status_code == 202
    assert write(client, write_key(hook), {"number": 3}).status_code == 202

    response = read(client, read_key(hook))

    assert response.status_code == 200
    assert response.json() == {"number": 7}
    assert response["X-WebReducer-Seq"] == "2"
    assert response["Access-Control-Allow-Origin"] == "*"


def test_it_answers_with_the_request_id_by_default(make_hook, client: Client) -> None:
    hook = make_hook("")
    response = write(client, write_key(hook), {"a": 1})

    assert response.status_code == 202
    stored = Request.objects.get()
    assert response.json() == {"id": str(stored.uuid)}
    assert stored.seq == 1
    assert stored.outcome == "applied"


def test_it_stores_every_field_of_the_request(make_hook, client: Client) -> None:
    hook = make_hook("")
    client.put(
        f"/write/{write_key(hook)}/github/push?page=2&tag=a&tag=b",
        b"hello",
        content_type="text/plain",
        headers={"X-GitHub-Event": "push"},
    )

    stored = Request.objects.get()
    assert stored.method == "PUT"
    assert stored.path == "github/push"
    assert stored.query == {"page": ["2"], "tag": ["a", "b"]}
    assert stored.headers["X-Github-Event"] == "push"
    assert stored.content_type == "text/plain"
    assert bytes(stored.body) == b"hello"


def test_it_keeps_falsy_states_as_themselves(make_hook, client: Client) -> None:
    for value in ("0", "False", '""', "[]", "None"):
        hook = make_hook(f"def reducer(state, request, secrets):\n    return {value}\n")
        write(client, write_key(hook), {})
        body = read(client, read_key(hook)).content
        assert json.loads(body) == eval(value)


def test_it_serves_null_before_the_first_request(make_hook, client: Client) -> None:
    hook = make_hook(COUNTER)
    response = read(client, read_key(hook))
    assert response.content == b"null"
    assert response["X-WebReducer-Seq"] == "0"


def test_it_uses_the_responders_status_headers_and_body(make_hook, client: Client) -> None:
    hook = make_hook(
        "from webreducer import Response\n"
        "def responder(request, secrets):\n"
        "    return Response({'got': request.body}, status=201, headers={'X-Thing': 'yes'})\n"
    )
    response = write(client, write_key(hook), {"a": 1})

    assert response.status_code == 201
    assert response["X-Thing"] == "yes"
    assert response.json() == {"got": {"a": 1}}
    assert Request.objects.get().outcome == "applied"


def test_it_rejects_when_the_responder_answers_an_error(make_hook, client: Client) -> None:
    hook = make_hook(
        COUNTER + "from webreducer import Response\n"
        "def responder(request, secrets):\n"
        "    if request.body['number'] < 0:\n"
        "        return Response({'error': 'negative'}, status=422)\n"
        "    return {'ok': True}\n"
    )
    assert write(client, write_key(hook), {"number": 5}).status_code == 200
    rejected = write(client, write_key(hook), {"number": -1})

    assert rejected.status_code == 422
    assert rejected.json() == {"error": "negative"}
    assert read(client, read_key(hook)).json() == {"number": 5}
    row = Request.objects.get(outcome="rejected")
    assert row.seq is None
    assert row.response_status == 422


def test_it_answers_500_and_rejects_when_the_responder_raises(make_hook, client: Client) -> None:
    hook = make_hook(COUNTER + "def responder(request, secrets):\n    return 1 / 0\n")
    response = write(client, write_key(hook), {"number": 5})

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "responder_error"
    row = Request.objects.get()
    assert row.outcome == "rejected"
    assert row.error["type"] == "ZeroDivisionError"
    assert read(client, read_key(hook)).content == b"null"


def test_it_honours_the_querys_status_and_headers(make_hook, client: Client) -> None:
    hook = make_hook(
        COUNTER + "from webreducer import Response\n"
        "def query(state, params, secrets):\n"
        "    if params.get('fmt') == 'text':\n"
        "        return Response(str(state['number']), headers={'Content-Type': 'text/plain'})\n"
        "    return Response({'n': state['number'], 'tags': params.getlist('t')}, status=203,\n"
        "                    headers={'Cache-Control': 'no-store'})\n"
    )
    write(client, write_key(hook), {"number": 4})

    response = read(client, read_key(hook), "t=a&t=b")
    assert response.status_code == 203
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {"n": 4, "tags": ["a", "b"]}
    assert response["X-WebReducer-Seq"] == "1"

    text = read(client, read_key(hook), "fmt=text")
    assert text["Content-Type"] == "text/plain"
    assert text.content == b"4"


def test_it_records_reducer_errors_and_goes_on(make_hook, client: Client) -> None:
    hook = make_hook(COUNTER)
    write(client, write_key(hook), {"number": 1})
    write(client, write_key(hook), {"nope": 1})
    write(client, write_key(hook), {"number": 2})

    assert read(client, read_key(hook)).json() == {"number": 3}
    failed = Request.objects.get(outcome="failed")
    assert failed.seq == 2
    assert failed.error["type"] == "KeyError"
    assert 'File "hook.py", line 4' in failed.error["traceback"]
    assert "pipeline" not in failed.error["traceback"]
    assert json.loads(failed.state_after) == {"number": 1}


def test_it_captures_print_output_per_request(make_hook, client: Client) -> None:
    hook = make_hook("def reducer(state, request, secrets):\n    print('seen', request.seq)\n")
    write(client, write_key(hook), {})
    assert Request.objects.get().console == "seen 1\n"


def test_it_applies_an_idempotency_key_once(make_hook, client: Client) -> None:
    hook = make_hook(COUNTER)
    for _ in range(3):
        write(client, write_key(hook), {"number": 2}, **{"Idempotency-Key": "abc"})

    assert read(client, read_key(hook)).json() == {"number": 2}
    rows = list(Request.objects.order_by("seq"))
    assert [r.outcome for r in rows] == ["applied", "duplicate", "duplicate"]
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[1].duplicate_of_id == rows[0].id
    assert rows[2].duplicate_of_id == rows[0].id


def test_it_uses_a_custom_idempotency_key(make_hook, client: Client) -> None:
    hook = make_hook(
        COUNTER + "def idempotency_key(request, secrets):\n    return request.body.get('event')\n"
    )
    for event in ("e1", "e2", "e1"):
        write(client, write_key(hook), {"number": 1, "event": event})

    assert read(client, read_key(hook)).json() == {"number": 2}


def test_it_applies_a_retry_of_a_request_that_failed(make_hook, client: Client) -> None:
    """A failed request was never applied: its key is not in the ledger."""
    hook = make_hook(COUNTER)
    write(client, write_key(hook), {"bad": 1}, **{"Idempotency-Key": "k"})
    write(client, write_key(hook), {"number": 9}, **{"Idempotency-Key": "k"})

    assert read(client, read_key(hook)).json() == {"number": 9}


@pytest.mark.parametrize(
    "token_state",
    ["unknown", "paused", "revoked", "read-key-on-write"],
)
def test_it_answers_404_and_stores_nothing_for_unusable_write_keys(
    make_hook, client: Client, token_state: str
) -> None:
    from django.utils import timezone

    hook = make_hook(COUNTER)
    key = hook.keys.get(kind=Key.Kind.WRITE)
    token = key.token
    if token_state == "unknown":
        token = "x" * 43
    elif token_state == "paused":
        Key.objects.filter(pk=key.pk).update(is_paused=True)
    elif token_state == "revoked":
        Key.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    else:
        token = read_key(hook)

    response = write(client, token, {"number": 1})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Request.objects.count() == 0


def test_it_does_not_run_the_responder_of_a_paused_key(make_hook, client: Client) -> None:
    hook = make_hook("def responder(request, secrets):\n    print('ran')\n    return 1\n")
    Key.objects.filter(hook=hook, kind="write").update(is_paused=True)
    assert write(client, write_key(hook), {}).status_code == 404


def test_it_answers_404_for_a_paused_read_key(make_hook, client: Client) -> None:
    hook = make_hook(COUNTER)
    Key.objects.filter(hook=hook, kind="read").update(is_paused=True)
    response = read(client, read_key(hook))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_it_refuses_invalid_json_with_400(make_hook, client: Client) -> None:
    hook = make_hook(COUNTER)
    response = client.post(
        f"/write/{write_key(hook)}", b'{"number": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert Request.objects.count() == 0


def test_it_refuses_a_2mb_body_with_413(make_hook, client: Client) -> None:
    hook = make_hook("")
    response = client.post(
        f"/write/{write_key(hook)}", b"x" * (2 * 1024 * 1024), content_type="text/plain"
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert Request.objects.count() == 0


def test_it_keeps_binary_bodies_byte_exact(make_hook, client: Client) -> None:
    hook = make_hook(
        "def reducer(state, request, secrets):\n"
        "    return {'body': request.body, 'n': len(request.raw_bytes),\n"
        "            'same': request.raw_body.encode('utf-8', 'surrogateescape') == request.raw_bytes}\n"
    )
    payload = bytes(range(256))
    client.post(f"/write/{write_key(hook)}", payload, content_type="application/octet-stream")

    assert bytes(Request.objects.get().body) == payload
    assert read(client, read_key(hook)).json() == {"body": None, "n": 256, "same": True}


def test_it_parses_form_and_text_bodies(make_hook, client: Client) -> None:
    hook = make_hook(
        "def reducer(state, request, secrets):\n    return (state or []) + [request.body]\n"
    )
    client.post(
        f"/write/{write_key(hook)}", "a=1&b=2", content_type="application/x-www-form-urlencoded"
    )
    client.post(f"/write/{write_key(hook)}", "just text", content_type="text/plain")

    assert read(client, read_key(hook)).json() == [{"a": "1", "b": "2"}, "just text"]


def test_it_fails_a_request_whose_state_is_not_json(make_hook, client: Client) -> None:
    hook = make_hook(
        COUNTER.replace("return state", "return state if state['number'] < 5 else {1, 2}")
    )
    write(client, write_key(hook), {"number": 4})
    write(client, write_key(hook), {"number": 4})

    assert read(client, read_key(hook)).json() == {"number": 4}
    failed = Request.objects.get(outcome="failed")
    assert failed.error["type"]
    assert State.objects.get(version=hook.live_version).seq == 2


def test_it_fails_a_request_whose_state_is_too_large(make_hook, client: Client) -> None:
    hook = make_hook(
        "def reducer(state, request, secrets):\n    return 'x' * request.body['size']\n"
    )
    write(client, write_key(hook), {"size": 10})
    write(client, write_key(hook), {"size": 2 * 1024 * 1024})

    assert read(client, read_key(hook)).json() == "x" * 10
    assert Request.objects.get(outcome="failed").seq == 2


def test_it_answers_cors_preflights_without_storing(make_hook, client: Client) -> None:
    hook = make_hook("")
    response = client.options(
        f"/write/{write_key(hook)}",
        headers={
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Access-Control-Allow-Headers"] == "content-type"
    assert Request.objects.count() == 0


def test_it_rate_limits_per_key_with_retry_after(make_hook, client: Client) -> None:
    hook = make_hook("")
    hook.limits = {"rate_per_second": 1, "rate_burst": 3}
    hook.save()

    statuses = [write(client, write_key(hook), {}).status_code for _ in range(5)]

    assert statuses[:3] == [202, 202, 202]
    assert 429 in statuses[3:]
    limited = write(client, write_key(hook), {})
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"
    assert Request.objects.count() == 3


def test_it_answers_503_with_retry_after_when_the_database_is_down(
    make_hook, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    from hooks import writes

    hook = make_hook("")
    token = write_key(hook)

    def down(*args: object, **kwargs: object) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(writes, "_insert", down)
    response = write(client, token, {"a": 1})

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert int(response["Retry-After"]) >= 1


def test_it_masks_secret_values_in_console_and_errors(make_hook, client: Client) -> None:
    from hooks.services import secret_set

    hook = make_hook(
        "def responder(request, secrets):\n"
        "    print('responder sees', secrets['TOKEN'])\n"
        "    return {'ok': True}\n"
        "def reducer(state, request, secrets):\n"
        "    print('reducer sees', secrets['TOKEN'])\n"
        "    raise ValueError('bad ' + secrets['TOKEN'])\n"
    )
    secret_set(hook=hook, name="TOKEN", value="tok-12345-very-secret")
    write(client, write_key(hook), {})

    row = Request.objects.get()
    assert "tok-12345-very-secret" not in row.console
    assert "tok-12345-very-secret" not in json.dumps(row.error)
    assert "responder sees [secret TOKEN]" in row.console
    assert "reducer sees [secret TOKEN]" in row.console
    assert row.error["message"] == "bad [secret TOKEN]"


def test_it_does_not_store_the_cookie_header(make_hook, client: Client) -> None:
    hook = make_hook("")
    client.cookies["sessionid"] = "someone-s-session"
    write(client, write_key(hook), {}, **{"X-Other": "kept"})

    headers = Request.objects.get().headers
    assert "Cookie" not in headers
    assert headers["X-Other"] == "kept"


def test_it_uses_a_changed_secret_at_once(make_hook, client: Client) -> None:
    from hooks.services import secret_delete, secret_set

    hook = make_hook(
        "def responder(request, secrets):\n    return {'token': secrets.get('TOKEN')}\n"
    )
    answers = []
    for step in ("first-value", "second-value", None):
        if step is None:
            secret_delete(hook=hook, name="TOKEN")
        else:
            secret_set(hook=hook, name="TOKEN", value=step)
        answers.append(write(client, write_key(hook), {}).json()["token"])

    assert answers == ["first-value", "second-value", None]
