"""Two-way socket writes stored in trips (hooks.live.socket_writes, hooks.writes.
socket_writes_ingest): the writes several sockets of a hook queued meanwhile are stored with one
commit, and each keeps every guarantee of a write of its own: in the database before its ack,
acked in the order its socket sent it, checked, limited and answered on its own, a refused one
(by a check, its responder or the database itself) leaving the others stored. The sockets
themselves, across real servers (and a server killed mid-stream): tests/hooks/test_two_way_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from hooks import pipeline, wakeup
from hooks.live import socket_writes
from hooks.models import Key, Request, State
from tests.conftest import write_key
from webreducer.redis import get_redis

pytestmark = pytest.mark.django_db(transaction=True)

CODE = """
from webreducer import Response

def responder(request, secrets):
    if request.body.get("refuse"):
        return Response({"refused": request.body["n"]}, status=422)
    return Response({"n": request.body["n"]}, status=202)

def reducer(state, request, secrets):
    return (state or []) + [request.body["n"]]
"""


def sender(hook: Any, name: str, room: str = "t") -> socket_writes.Sender:
    return socket_writes.Sender(write_key(hook), f"conn-{name}", name, {"room": [room]})


def writes(*numbers: int, **extra: Any) -> list[socket_writes.Write]:
    return [socket_writes.Write(ref=n, body={"n": n, **extra}) for n in numbers]


def stored_numbers(hook: Any, room: str = "t") -> list[int]:
    rows = Request.objects.filter(hook=hook, room=room).order_by("id")
    return [json.loads(bytes(row.body))["n"] for row in rows]


def second_connection_count(uuids: list[str]) -> int:
    """How many of these requests another connection sees (committed rows only)."""
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
    ) as other:
        row = other.execute(
            "SELECT count(*) FROM hooks_request WHERE uuid = ANY(%s::uuid[])", [uuids]
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_trip_of_several_sockets_is_committed_before_its_acks_in_each_sockets_order(
    make_hook,
) -> None:
    hook = make_hook(CODE)
    ann, bob = sender(hook, "ann"), sender(hook, "bob")
    acks = socket_writes.trip_store([(ann, writes(1, 2, 3)), (bob, writes(10, 11))])
    assert isinstance(acks[0], list) and isinstance(acks[1], list)
    assert [(a["ref"], a["status"], a["body"]) for a in acks[0]] == [
        (1, 202, {"n": 1}),
        (2, 202, {"n": 2}),
        (3, 202, {"n": 3}),
    ]
    assert [a["ref"] for a in acks[1]] == [10, 11]
    ids = [a["id"] for a in acks[0] + acks[1]]
    assert second_connection_count(ids) == 5  # every acked write is committed
    assert stored_numbers(hook) == [1, 2, 3, 10, 11]
    rows = Request.objects.filter(hook=hook)
    assert {str(r.uuid) for r in rows} == set(ids)
    assert len({r.received_at for r in rows}) == 1  # one trip
    pipeline.hook_reduce(hook_id=hook.pk, room="t")
    state = State.objects.get(version_id=hook.live_version_id, room="t")
    assert json.loads(state.value) == [1, 2, 3, 10, 11]


def test_refused_writes_in_a_trip_leave_the_others_stored(make_hook, settings) -> None:
    hook = make_hook(CODE)
    hook.limits = {"max_body_bytes": 64}
    hook.save()
    ann, bob = sender(hook, "ann"), sender(hook, "bob")
    long_key = "k" * (settings.WR_MAX_IDEMPOTENCY_KEY_BYTES + 1)
    acks = socket_writes.trip_store(
        [
            (
                ann,
                [
                    *writes(1),
                    *writes(2, refuse=True),  # its responder says 422: stored, rejected
                    *writes(3, pad="x" * 100),  # over the hook's body limit: not stored
                    socket_writes.Write(ref=4, body={"n": 4}, idempotency_key=long_key),
                    *writes(5),
                ],
            ),
            (bob, writes(6)),
        ]
    )
    assert isinstance(acks[0], list) and isinstance(acks[1], list)
    statuses = [(a["ref"], a["status"]) for a in acks[0] + acks[1]]
    assert statuses == [(1, 202), (2, 422), (3, 413), (4, 400), (5, 202), (6, 202)]
    assert acks[0][1]["body"] == {"refused": 2}
    assert acks[0][2]["body"]["error"]["code"] == "too_large"
    assert acks[0][3]["body"]["error"]["code"] == "idempotency_key_too_long"
    assert stored_numbers(hook) == [1, 2, 5, 6]
    outcomes = dict(Request.objects.filter(hook=hook).values_list("response_status", "outcome"))
    assert outcomes[422] == Request.Outcome.REJECTED
    pipeline.hook_reduce(hook_id=hook.pk, room="t")
    state = State.objects.get(version_id=hook.live_version_id, room="t")
    assert json.loads(state.value) == [1, 5, 6]


def test_a_row_the_database_refuses_is_answered_alone_and_the_trip_is_stored(make_hook) -> None:
    # PostgreSQL's jsonb has no \u0000: this write's headers make its INSERT fail, and with
    # it the trip's transaction. Nothing of the trip was committed; each of its writes is then
    # stored on its own, as an HTTP write: the others are stored once, the bad one refused.
    hook = make_hook(CODE)
    ann, bob = sender(hook, "ann"), sender(hook, "bob")
    bad = socket_writes.Write(ref=2, body={"n": 2}, idempotency_key="nul\u0000key")
    acks = socket_writes.trip_store([(ann, [*writes(1), bad, *writes(3)]), (bob, writes(4))])
    assert isinstance(acks[0], list) and isinstance(acks[1], list)
    assert [(a["ref"], a["status"]) for a in acks[0] + acks[1]] == [
        (1, 202),
        (2, 503),
        (3, 202),
        (4, 202),
    ]
    assert stored_numbers(hook) == [1, 3, 4]
    assert second_connection_count([a["id"] for a in (acks[0][0], acks[0][2], acks[1][0])]) == 3


def test_a_key_paused_before_the_commit_stores_nothing_and_closes_its_sockets(make_hook) -> None:
    hook = make_hook(CODE)
    ann = sender(hook, "ann")
    first = socket_writes.trip_store([(ann, writes(1))])  # the key row is now cached (2 s)
    assert isinstance(first[0], list) and first[0][0]["status"] == 202
    Key.objects.filter(token=write_key(hook)).update(is_paused=True)  # no cache clearing
    acks = socket_writes.trip_store([(ann, writes(2, 3))])
    assert isinstance(acks[0], socket_writes.KeyGone)
    assert acks[0].acks == []
    assert stored_numbers(hook) == [1]


@override_settings(WR_LIVE_WRITE_THREADS_PER_HOOK=1)
def test_writes_queued_during_a_trip_go_together_in_the_next(make_hook) -> None:
    hook = make_hook(CODE)
    senders = [sender(hook, f"p{n}") for n in range(6)]

    async def play() -> list[list[dict[str, Any]]]:
        try:
            # The first store starts a trip at once (the hook's one share); the five others
            # queue behind it and go in one trip when it ends.
            return await asyncio.gather(
                *(
                    socket_writes.store(str(hook.pk), one, writes(n * 10, n * 10 + 1))
                    for n, one in enumerate(senders)
                )
            )
        finally:
            socket_writes.shutdown()

    acks = asyncio.run(play())
    assert [[a["ref"] for a in one] for one in acks] == [[n * 10, n * 10 + 1] for n in range(6)]
    assert all(a["status"] == 202 for one in acks for a in one)
    rows = list(Request.objects.filter(hook=hook).order_by("id"))
    assert [json.loads(bytes(r.body))["n"] for r in rows] == [
        n * 10 + i for n in range(6) for i in range(2)
    ]
    trips = [r.received_at for r in rows]
    assert len(set(trips[:2])) == 1 and len(set(trips[2:])) == 1 and trips[0] != trips[2]


@pytest.mark.skipif(not settings.REDIS_URL, reason="the wake-up flags live in Redis")
def test_a_trip_wakes_its_hook_once_at_its_first_room_to_fold(make_hook) -> None:
    from tests.hooks.test_deferred import queued_tasks
    from webreducer.celery import app as celery_app

    hook = make_hook(CODE)
    client = get_redis()
    assert client is not None
    socket_writes.trip_store(
        [
            (sender(hook, "cy", "r3"), writes(4, refuse=True)),  # rejected: nothing to fold
            (sender(hook, "ann", "r1"), writes(1, 2)),
            (sender(hook, "bob", "r2"), writes(3)),
        ]
    )
    tasks = queued_tasks(hook)
    try:
        assert client.get(wakeup._flag(str(hook.pk))) == wakeup.QUEUED
        # One task folds the hook's every room (hooks.wakeup), from the trip's first to fold.
        assert [str(t["kwargs"]) for t in tasks] == ["{'room': 'r1'}"]
    finally:
        for task in tasks:
            client.lrem(celery_app.conf.task_default_queue, 0, task["raw"])
        client.delete(wakeup._flag(str(hook.pk)))
