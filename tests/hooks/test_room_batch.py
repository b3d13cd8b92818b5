"""The multi-room batch (hooks/room_batch.py): one reduce task folds every pending room of its
hook, many rooms per transaction, skipping (never waiting for) a room another worker holds;
keys, refusals and seqs stay exactly-once and in order per room."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from hooks import ledger, room_batch, wakeup
from hooks.models import Hook, Request, State
from hooks.rooms import state_row_ensure
from hooks.tasks import reduce_hook
from tests.security.test_poison import database_refuses

pytestmark = pytest.mark.django_db(transaction=True)

RECORDER = """
def reducer(state, request, secrets):
    if request.body.get("refused"):
        print("refuse-this-row")
    state = state or {"seqs": [], "ns": []}
    state["seqs"].append(request.seq)
    state["ns"].append(request.body["n"])
    return state
"""


def store(hook: Hook, rooms: list[str], count: int, **body: Any) -> None:
    """`count` pending requests per room, interleaved across rooms, as the write path stores
    them (without the named rooms' state rows: the batch must create those)."""
    now = timezone.now()
    Request.objects.bulk_create(
        Request(
            uuid=uuid.uuid4(),
            hook=hook,
            room=room,
            method="POST",
            content_type="application/json",
            body=json.dumps({"n": n, **body}).encode(),
            received_at=now,
        )
        for n in range(count)
        for room in rooms
    )


def states(hook: Hook) -> dict[str, State]:
    hook.refresh_from_db()
    return {s.room: s for s in State.objects.filter(version_id=hook.live_version_id)}


def assert_folded_in_order(hook: Hook, room: str, count: int) -> None:
    rows = list(Request.objects.filter(hook=hook, room=room).order_by("id"))
    assert [r.seq for r in rows] == list(range(1, count + 1)), room
    assert {r.outcome for r in rows} == {Request.Outcome.APPLIED}, room
    state = states(hook)[room]
    assert state.seq == count
    assert json.loads(state.value) == {
        "seqs": list(range(1, count + 1)),
        "ns": list(range(count)),
    }


@contextmanager
def held_by_another_worker(hook: Hook, room: str) -> Iterator[None]:
    """The room's state row locked in another connection, as a worker folding it holds it."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(
                    State.objects.select_for_update().filter(
                        version_id=hook.live_version_id, room=room
                    )
                )
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(30)
    try:
        yield
    finally:
        release.set()
        thread.join()


def test_one_task_folds_every_pending_room_of_its_hook_in_order(make_hook: Any) -> None:
    hook = make_hook(RECORDER)
    rooms = [f"room-{n}" for n in range(70)]  # more than one batch's ROOMS_PER_BATCH
    store(hook, rooms, 30)

    # The task of one room: it folds the others too, batches of many rooms each.
    assert reduce_hook.apply(args=[str(hook.pk)], kwargs={"room": "room-5"}).get() == 70 * 30

    for room in rooms:
        assert_folded_in_order(hook, room, 30)
    # The other rooms' tasks, queued by their writes, then find nothing to do.
    assert reduce_hook.apply(args=[str(hook.pk)], kwargs={"room": "room-6"}).get() == 0


def test_a_room_another_worker_holds_is_skipped_not_waited_for(make_hook: Any) -> None:
    hook = make_hook(RECORDER)
    store(hook, ["a", "b", "c"], 5)
    state_row_ensure(hook_id=str(hook.pk), version_id=hook.live_version_id, room="b")

    with held_by_another_worker(hook, "b"):
        room_batch.rooms_reduce_slice(hook_id=hook.pk, room="a")
        assert states(hook)["b"].seq == 0  # untouched while held
        assert states(hook)["a"].seq == states(hook)["c"].seq == 5
        # Only the held room is left: the task's busy retry (hooks.tasks) will look again.
        with pytest.raises(ledger.HookBusy):
            room_batch.rooms_reduce_slice(hook_id=hook.pk, room="b")

    room_batch.rooms_reduce_slice(hook_id=hook.pk, room="b")
    for room in ["a", "b", "c"]:
        assert_folded_in_order(hook, room, 5)


def test_one_key_in_two_rooms_of_one_batch_is_applied_once(make_hook: Any) -> None:
    hook = make_hook(RECORDER)
    now = timezone.now()
    for room in ["left", "right", "other"]:
        Request.objects.create(
            hook=hook,
            room=room,
            method="POST",
            headers={"Idempotency-Key": "order-42" if room != "other" else "order-43"},
            content_type="application/json",
            body=b'{"n": 0}',
            received_at=now,
        )

    assert room_batch.rooms_reduce_slice(hook_id=hook.pk) == (3, False)

    rows = {r.room: r for r in Request.objects.filter(hook=hook)}
    assert rows["left"].outcome == Request.Outcome.APPLIED  # stored first: folded first
    assert rows["right"].outcome == Request.Outcome.DUPLICATE
    assert rows["right"].duplicate_of_id == rows["left"].id
    assert rows["other"].outcome == Request.Outcome.APPLIED
    assert json.loads(states(hook)["right"].value) is None  # a duplicate does not fold


def test_a_request_the_database_refuses_fails_alone_and_its_batch_of_rooms_is_applied(
    make_hook: Any,
) -> None:
    hook = make_hook(RECORDER)
    store(hook, ["a", "b", "c"], 4)
    store(hook, ["b"], 1, refused=True)
    store(hook, ["a", "b", "c"], 2)

    check = "console NOT LIKE '%refuse-this-row%'"
    with database_refuses("hooks_request", "test_room_batch_refused_row", check):
        while room_batch.rooms_reduce_slice(hook_id=hook.pk)[1]:
            pass

    assert not Request.objects.filter(hook=hook, outcome=Request.Outcome.PENDING).exists()
    for room in ["a", "b", "c"]:
        rows = list(Request.objects.filter(hook=hook, room=room).order_by("id"))
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1)), room
    refused = Request.objects.filter(hook=hook, room="b").order_by("id")[4]  # the 5th of b
    assert json.loads(bytes(refused.body)) == {"n": 0, "refused": True}
    assert refused.outcome == Request.Outcome.FAILED
    assert refused.error is not None and refused.error["type"] == "CommitError"
    assert json.loads(states(hook)["b"].value)["ns"] == [0, 1, 2, 3, 0, 1]
    assert json.loads(states(hook)["a"].value)["ns"] == [0, 1, 2, 3, 0, 1]


def test_rooms_folded_in_one_batch_keep_the_order_of_their_activity(make_hook: Any) -> None:
    hook = make_hook(RECORDER)
    store(hook, ["first", "second", "third"], 1)  # stored in that order

    assert room_batch.rooms_reduce_slice(hook_id=hook.pk) == (3, False)

    by_activity = State.objects.filter(version_id=hook.live_version_id).order_by("-updated_at")
    assert [s.room for s in by_activity if s.room] == ["third", "second", "first"]


ELSEWHERE = (
    RECORDER
    + """
def room(request, secrets):
    return "new"
"""
)


def test_rooms_picked_before_a_publish_switched_leave_no_empty_room_in_the_new_version(
    make_hook: Any,
) -> None:
    from hooks.models import Version
    from hooks.pipeline import Sandboxes
    from hooks.replay import version_replay

    hook = make_hook(RECORDER)
    store(hook, ["old-0", "old-1"], 3)
    # A reduce task picks its rooms under the live version...
    picked = room_batch.rooms_pending(hook.pk, hook.live_version_id, 10)
    assert picked == ["old-0", "old-1"]
    # ...then a publish routes their requests to another room and goes live.
    version = Version.objects.create(
        hook=hook, number=2, code=ELSEWHERE, functions=["reducer", "room"],
        status=Version.Status.BUILDING,
    )  # fmt: skip
    State.objects.create(version=version, hook=hook)
    assert version_replay(version_id=version.pk, seconds=60) is False
    version.refresh_from_db()
    assert version.status == Version.Status.PUBLISHED, version.replay_error

    # The task's next batch, over the rooms it picked: nothing of theirs is left to fold.
    with Sandboxes() as sandboxes:
        assert room_batch._rooms_batch(hook.pk, picked, 100, sandboxes)[:2] == (0, 0)
    assert set(states(hook)) == {"", "new"}  # the old rooms are not listed as empty rooms
    assert states(hook)["new"].seq == 6


@pytest.fixture
def no_wake_up(make_hook: Any) -> Iterator[Any]:
    """The hook's wake-up flag clear before and after; the tasks it queued taken off the broker."""
    from tests.hooks.test_deferred import queued_tasks
    from webreducer.celery import app as celery_app
    from webreducer.redis import get_redis

    hooks: list[Hook] = []

    def make(code: str) -> Hook:
        hook = make_hook(code)
        get_redis().delete(wakeup._flag(str(hook.pk)))
        hooks.append(hook)
        return hook

    yield make
    client = get_redis()
    for hook in hooks:
        for task in queued_tasks(hook):
            client.lrem(celery_app.conf.task_default_queue, 0, task["raw"])
        client.delete(wakeup._flag(str(hook.pk)))


def test_a_slice_that_leaves_rooms_waiting_queues_its_hook_once_more(no_wake_up: Any) -> None:
    from tests.hooks.test_deferred import queued_tasks

    hook = no_wake_up(RECORDER)
    rooms = [f"room-{n:02d}" for n in range(3 * room_batch.ROOMS_PER_BATCH)]
    store(hook, rooms, 2)
    room_batch.rooms_reduce_slice(hook_id=hook.pk, room="room-00")
    # After its first batch more rooms waited: one more task, for another worker to take the
    # rooms this one did not hold (the flag keeps it to one however many batches followed).
    tasks = queued_tasks(hook)
    assert len(tasks) == 1
    assert tasks[0]["kwargs"] not in (None, "{}", "{'room': 'room-00'}")  # a room left waiting
    for room in rooms:
        assert_folded_in_order(hook, room, 2)


def test_a_slice_that_takes_every_waiting_room_at_once_queues_nothing(no_wake_up: Any) -> None:
    from tests.hooks.test_deferred import queued_tasks

    hook = no_wake_up(RECORDER)
    store(hook, ["a", "b", "c"], 5)
    room_batch.rooms_reduce_slice(hook_id=hook.pk, room="a")
    assert queued_tasks(hook) == []
