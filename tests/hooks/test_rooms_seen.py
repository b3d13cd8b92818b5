"""A room this process has seen lately skips room_open's query (hooks.rooms.room_seen); the
write's INSERT still checks that the room's state row exists, so a room deleted since is opened
again, counted against the limit, exactly as when it was new. Over HTTP and in a socket trip."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hooks import pipeline
from hooks.live import socket_writes
from hooks.models import Request, State
from hooks.rooms import room_delete, room_seen
from tests.conftest import write_key
from tests.hooks.test_rooms import COUNTER, room_state, write

pytestmark = pytest.mark.django_db(transaction=True)


def state_queries(queries: CaptureQueriesContext) -> list[str]:
    """Statements on the state table, beside the write's INSERT (which checks the row itself)."""
    table = State._meta.db_table
    return [
        q["sql"]
        for q in queries.captured_queries
        if table in q["sql"] and "INSERT INTO hooks_request" not in q["sql"]
    ]


def test_a_second_write_to_a_room_looks_up_no_state_row(make_hook) -> None:
    hook = make_hook(COUNTER)
    with CaptureQueriesContext(connection) as first:
        assert write(hook, query="?room=a").status_code == 202
    assert state_queries(first)  # the room was new: looked up and created
    with CaptureQueriesContext(connection) as second:
        assert write(hook, query="?room=a").status_code == 202
    assert state_queries(second) == []
    pipeline.hook_reduce(hook_id=hook.pk, room="a")
    assert room_state(hook, "a")[0]["n"] == 2


def test_a_room_deleted_after_it_was_seen_is_opened_again_by_the_next_write(make_hook) -> None:
    hook = make_hook(COUNTER)
    assert write(hook, query="?room=a").status_code == 202
    pipeline.hook_reduce(hook_id=hook.pk, room="a")
    assert room_delete(hook=hook, room="a")
    assert room_seen(hook.live_version_id, "a")  # this process still thinks it exists
    assert write(hook, query="?room=a").status_code == 202
    assert State.objects.filter(version_id=hook.live_version_id, room="a").exists()
    pipeline.hook_reduce(hook_id=hook.pk, room="a")
    state, seq = room_state(hook, "a")
    assert (state["n"], seq) == (1, 1)  # a fresh room: only the write after the delete


def test_a_deleted_room_seen_lately_cannot_take_a_room_over_the_limit(make_hook) -> None:
    hook = make_hook(COUNTER)
    hook.limits = {"max_rooms": 2}  # the main room and one named one
    hook.save()
    assert write(hook, query="?room=a").status_code == 202
    assert room_delete(hook=hook, room="a")
    assert write(hook, query="?room=b").status_code == 202  # the free place, taken
    refused = write(hook, query="?room=a")  # seen, but gone: a new room, one too many
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_rooms"
    assert not Request.objects.filter(hook=hook, room="a").exists()
    assert not State.objects.filter(hook=hook, room="a").exists()


def test_a_socket_trip_to_a_deleted_room_seen_lately_opens_it_and_stores_every_write(
    make_hook,
) -> None:
    hook = make_hook(COUNTER)
    ann = socket_writes.Sender(write_key(hook), "conn-ann", "ann", {"room": ["t"]})
    bob = socket_writes.Sender(write_key(hook), "conn-bob", "bob", {"room": ["u"]})

    def trip(*numbers: int) -> list[Any]:
        acks = socket_writes.trip_store(
            [
                (ann, [socket_writes.Write(ref=n, body={"n": n}) for n in numbers]),
                (bob, [socket_writes.Write(ref=-n, body={"n": -n}) for n in numbers]),
            ]
        )
        return [a["status"] for side in acks for a in side]  # type: ignore[union-attr]

    assert trip(1, 2) == [202] * 4
    with CaptureQueriesContext(connection) as queries:
        assert trip(3) == [202] * 2
    assert state_queries(queries) == []  # both rooms seen: no lookup
    assert room_delete(hook=hook, room="t")
    assert trip(4) == [202] * 2  # t opened again; u's write stored once
    for room in ("t", "u"):
        pipeline.hook_reduce(hook_id=hook.pk, room=room)
    numbers = [json.loads(bytes(r.body))["n"] for r in Request.objects.filter(hook=hook)]
    assert sorted(numbers) == [-4, -3, -2, -1, 4]
    assert room_state(hook, "t") == (
        {"n": 1, "rooms": ["t"], "seqs": [1]},
        1,
    )
    assert room_state(hook, "u")[1] == 4
