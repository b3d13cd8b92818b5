"""Rooms (SPEC §1 "Rooms"): routing when a request is stored, one state and seq per room,
reads per room, and the bad input that rejects a request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from hooks import pipeline
from hooks.models import MAIN_ROOM, Hook, Request, State
from tests.conftest import read_key, write_key

pytestmark = pytest.mark.django_db(transaction=True)

COUNTER = """
def reducer(state, request, secrets):
    state = state or {"n": 0, "rooms": [], "seqs": []}
    state["n"] += 1
    state["rooms"].append(request.room)
    state["seqs"].append(request.seq)
    return state
"""

ROUTED = (
    COUNTER
    + """
def room(request, secrets):
    return (request.body or {}).get("match")

def responder(request, secrets):
    return {"room": request.room, "seq": request.seq}

def idempotency_key(request, secrets):
    print("key in", request.room)
    return None
"""
)


def write(hook: Hook, body: Any = None, query: str = "") -> Any:
    return Client().post(
        f"/write/{write_key(hook)}{query}", json.dumps(body or {}), content_type="application/json"
    )


def read(hook: Hook, query: str = "") -> Any:
    return Client().get(f"/read/{read_key(hook)}{query}")


def fold_all(hook: Hook) -> None:
    for room in Request.objects.filter(hook=hook).values_list("room", flat=True).distinct():
        pipeline.hook_reduce(hook_id=hook.pk, room=room)


def room_state(hook: Hook, room: str) -> tuple[Any, int]:
    hook.refresh_from_db()
    state = State.objects.get(version_id=hook.live_version_id, room=room)
    return json.loads(state.value), state.seq


def test_it_folds_each_query_room_into_its_own_state_with_its_own_seq(make_hook) -> None:
    hook = make_hook(COUNTER)
    for query in ["?room=a", "?room=b", "?room=a", "", "?room=a"]:
        assert write(hook, query=query).status_code == 202
    fold_all(hook)

    assert room_state(hook, "a") == ({"n": 3, "rooms": ["a"] * 3, "seqs": [1, 2, 3]}, 3)
    assert room_state(hook, "b") == ({"n": 1, "rooms": ["b"], "seqs": [1]}, 1)
    assert room_state(hook, MAIN_ROOM) == ({"n": 1, "rooms": [None], "seqs": [1]}, 1)
    logged = Request.objects.filter(hook=hook).order_by("id").values_list("room", "seq")
    assert list(logged) == [("a", 1), ("b", 1), ("a", 2), ("", 1), ("a", 3)]


def test_it_reads_a_room_with_its_own_seq_and_an_unknown_room_as_null_at_zero(
    make_hook,
) -> None:
    hook = make_hook(COUNTER)
    write(hook, query="?room=a")
    write(hook, query="?room=a")
    fold_all(hook)

    response = read(hook, "?room=a")
    assert response["X-WebReducer-Seq"] == "2"
    assert response.json()["n"] == 2
    main = read(hook)
    assert (main["X-WebReducer-Seq"], main.json()) == ("0", None)
    unknown = read(hook, "?room=nobody-yet")
    assert (unknown["X-WebReducer-Seq"], unknown.json()) == ("0", None)


def test_the_room_function_routes_before_the_responder_and_every_function_sees_the_room(
    make_hook,
) -> None:
    hook = make_hook(ROUTED)
    first = write(hook, {"match": "m1"})
    assert first.status_code == 200
    assert first.json() == {"room": "m1", "seq": None}
    write(hook, {"match": "m2"})
    write(hook, {"match": "m1"})
    write(hook, {})  # no match: the main room
    fold_all(hook)

    assert room_state(hook, "m1") == ({"n": 2, "rooms": ["m1", "m1"], "seqs": [1, 2]}, 2)
    assert room_state(hook, "m2")[1] == 1
    assert room_state(hook, MAIN_ROOM)[0]["rooms"] == [None]
    consoles = Request.objects.filter(hook=hook, room="m1").values_list("console", flat=True)
    assert all("key in m1" in console for console in consoles)


def test_the_query_reaches_query_params_and_a_room_read_runs_the_query_on_that_room(
    make_hook,
) -> None:
    hook = make_hook(
        COUNTER + "\ndef query(state, params, secrets):\n    return [params.get('room'), state]\n"
    )
    write(hook, query="?room=q")
    fold_all(hook)
    body = read(hook, "?room=q").json()
    assert body[0] == "q" and body[1]["n"] == 1


@pytest.mark.parametrize(
    "name",
    ["has space", "x" * 201, "slash/inside", "ünïcode", "semi;colon"],
)
def test_it_refuses_an_invalid_room_name_with_400_and_stores_nothing(make_hook, name) -> None:
    hook = make_hook(COUNTER)
    from urllib.parse import quote

    response = write(hook, query=f"?room={quote(name)}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_room"
    assert "A-Z a-z 0-9 . _ : -" in error["message"]
    assert not Request.objects.filter(hook=hook).exists()
    assert read(hook, f"?room={quote(name)}").status_code == 400


def test_the_longest_and_the_oddest_valid_names_are_rooms(make_hook) -> None:
    hook = make_hook(COUNTER)
    for name in ["x" * 200, "a.b_c:d-E9"]:
        assert write(hook, query=f"?room={name}").status_code == 202
    fold_all(hook)
    assert room_state(hook, "x" * 200)[1] == 1
    assert room_state(hook, "a.b_c:d-E9")[1] == 1


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("raise ValueError('no match field')", "ValueError: no match field"),
        ("return 5", "TypeError: room must return a str or None, not int"),
        ("return 'two words'", "invalid room name 'two words'"),
        ("return ''", "invalid room name ''"),
    ],
)
def test_a_room_function_that_fails_rejects_the_request_with_400_naming_the_cause(
    make_hook, body, named
) -> None:
    hook = make_hook(COUNTER + f"\ndef room(request, secrets):\n    {body}\n")
    response = write(hook, {"n": 1})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "room_error"
    assert named in error["message"]
    stored = Request.objects.get(hook=hook)
    assert stored.outcome == Request.Outcome.REJECTED
    assert stored.response_status == 400
    assert stored.error is not None
    fold_all(hook)
    assert room_state(hook, MAIN_ROOM) == (None, 0)


def test_a_room_error_never_shows_the_producer_a_secret(make_hook) -> None:
    hook = make_hook(COUNTER + "\ndef room(request, secrets):\n    raise KeyError(secrets['K'])\n")
    from hooks.services import secret_set

    secret_set(hook=hook, name="K", value="s3cr3t-value")
    response = write(hook, {})
    assert response.status_code == 400
    assert "s3cr3t-value" not in response.content.decode()


def test_over_the_rooms_limit_a_write_to_a_new_room_is_refused_with_429(make_hook) -> None:
    hook = make_hook(COUNTER)
    hook.limits = {"max_rooms": 3}  # the main room and two named ones
    hook.save()
    assert write(hook, query="?room=a").status_code == 202
    assert write(hook, query="?room=b").status_code == 202
    refused = write(hook, query="?room=c")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_rooms"
    assert not Request.objects.filter(hook=hook, room="c").exists()
    # The rooms it has still take writes, the main room too.
    assert write(hook, query="?room=a").status_code == 202
    assert write(hook).status_code == 202


def test_a_hook_without_rooms_keeps_one_state_and_ignores_no_one(make_hook) -> None:
    hook = make_hook(COUNTER)
    for _ in range(3):
        write(hook)
    pipeline.hook_reduce(hook_id=hook.pk)
    assert room_state(hook, MAIN_ROOM)[1] == 3
    assert State.objects.filter(hook=hook).count() == 1
    assert read(hook)["X-WebReducer-Seq"] == "3"
