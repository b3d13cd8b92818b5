"""The parallel replay (hooks/replay.py, docs/pipeline.md "The parallel replay"): a publish
routes the history first, then replay tasks fold its rooms side by side, each holding its
rooms' state rows (a held room is skipped, never waited for), and the last one switches. The
result is the sequential fold's: every room the fold of its own requests in order, each once,
also when a task dies mid-step; a key in several rooms is applied where the history first
had it."""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from hooks import room_batch
from hooks.models import Hook, ReplayOutcome, Request, State, Version
from hooks.replay import version_replay
from hooks.rooms import state_row_ensure
from tests.hooks.test_rooms_guarantees import RECORDER, SLOW_RECORDER
from tests.servers import celery_worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# The new code: every room's "ns" also lists "v2" before each request's n.
V2_APPEND = 'state["ns"].append("v2");state["ns"].append'
V2 = RECORDER.replace('state["ns"].append', V2_APPEND)
SLOW_V2 = SLOW_RECORDER.replace('state["ns"].append', V2_APPEND)


def history(hook: Hook, rooms: list[str], count: int, **headers: str) -> None:
    """`count` requests per room, interleaved across rooms, stored (with their `?room=`, by
    which the new code routes them again) and folded by the live version."""
    now = timezone.now()
    Request.objects.bulk_create(
        Request(
            uuid=uuid.uuid4(),
            hook=hook,
            room=room,
            query={"room": [room]},
            method="POST",
            headers=headers,
            content_type="application/json",
            body=json.dumps({"n": n}).encode(),
            received_at=now,
        )
        for n in range(count)
        for room in rooms
    )
    while room_batch.rooms_reduce_slice(hook_id=hook.pk)[1]:
        pass


def building(hook: Hook, code: str) -> Version:
    """A published version waiting for its replay, as hook_publish makes it (without queueing
    its task: the test runs the replay)."""
    number = Version.objects.filter(hook=hook).count() + 1
    version = Version.objects.create(
        hook=hook,
        number=number,
        code=code,
        functions=["reducer"],
        status=Version.Status.BUILDING,
    )
    State.objects.create(version=version, hook=hook)
    return version


def assert_rebuilt(hook: Hook, version: Version, rooms: list[str], count: int) -> None:
    """Live, and every room the fold of its own requests in the order they were stored."""
    version.refresh_from_db()
    assert version.status == Version.Status.PUBLISHED, version.replay_error
    assert version.replay_done == count * len(rooms)
    states = {s.room: s for s in State.objects.filter(version=version)}
    for room in rooms:
        rows = list(Request.objects.filter(hook=hook, room=room).order_by("id"))
        assert [r.seq for r in rows] == list(range(1, count + 1)), room
        assert {r.outcome for r in rows} == {"applied"}, room
        assert json.loads(states[room].value) == {
            "ids": [str(r.uuid) for r in rows],
            "seqs": list(range(1, count + 1)),
            "ns": [x for n in range(count) for x in ("v2", n)],
        }, room
        assert states[room].seq == count


def test_a_room_another_task_holds_is_skipped_and_the_last_task_switches(make_hook: Any) -> None:
    hook = make_hook(RECORDER)
    rooms = [f"room-{n}" for n in range(12)]
    history(hook, rooms, 10)
    version = building(hook, V2)
    state_row_ensure(hook_id=str(hook.pk), version_id=version.pk, room="room-3")
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(State.objects.select_for_update().filter(version=version, room="room-3"))
                locked.set()
                release.wait(60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(30)
    with override_settings(WR_BATCH_SIZE=30):
        try:
            # Routes the history and folds every other room, then leaves the held one to
            # its holder's task (which would switch after it).
            assert version_replay(version_id=version.pk, seconds=60) is False
            seqs = dict(State.objects.filter(version=version).values_list("room", "seq"))
            staged = ReplayOutcome.objects.filter(version=version)
            assert seqs["room-3"] == 0
            assert staged.filter(room="room-3", outcome="pending").exists()
            for room in rooms:
                if room != "room-3":  # what was routed of it is folded (the rest: the switch's)
                    assert not staged.filter(room=room, outcome="pending").exists(), room
                    assert 0 < seqs[room] == staged.filter(room=room).count(), room
            assert Version.objects.get(pk=version.pk).status == Version.Status.BUILDING
        finally:
            release.set()
            holder.join()
        assert version_replay(version_id=version.pk, seconds=60) is False
    assert_rebuilt(hook, version, rooms, 10)


def test_a_task_killed_mid_step_loses_and_repeats_nothing(make_hook: Any) -> None:
    hook = make_hook(RECORDER)
    rooms = [f"room-{n}" for n in range(8)]
    history(hook, rooms, 40)
    version = building(hook, SLOW_V2)
    backend: list[int] = []
    died: list[BaseException] = []

    def doomed() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backend.append(cursor.fetchone()[0])
            with override_settings(WR_BATCH_SIZE=20):
                version_replay(version_id=version.pk, seconds=120)
        except Exception as error:  # the connection's end, wherever the task was
            died.append(error)
        finally:
            connection.close()

    task = threading.Thread(target=doomed)
    task.start()
    # Once it has committed some folds, its connection goes as a killed worker's does.
    wait_for(
        lambda: State.objects.filter(version=version, seq__gt=0).count() >= 2,
        60,
        "the first task to fold some rooms",
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", backend)
    task.join(60)
    assert died, "the task finished before it was killed"
    assert Version.objects.get(pk=version.pk).status == Version.Status.BUILDING

    with override_settings(WR_BATCH_SIZE=20):
        while version_replay(version_id=version.pk, seconds=60):
            pass
    assert_rebuilt(hook, version, rooms, 40)


def test_a_key_in_two_rooms_is_applied_where_the_history_first_had_it(make_hook: Any) -> None:
    hook = make_hook(RECORDER)
    now = timezone.now()
    for room in ["b", "a", "b"]:
        Request.objects.create(
            hook=hook,
            room=room,
            query={"room": [room]},
            method="POST",
            headers={"Idempotency-Key": "k-1"},
            content_type="application/json",
            body=b'{"n": 1}',
            received_at=now,
        )
    while room_batch.rooms_reduce_slice(hook_id=hook.pk)[1]:
        pass
    rows = list(Request.objects.filter(hook=hook).order_by("id"))
    # Live: the first request with the key applied, the others are its duplicates.
    assert [r.outcome for r in rows] == ["applied", "duplicate", "duplicate"]
    version = building(hook, V2)
    while version_replay(version_id=version.pk, seconds=30):
        pass
    version.refresh_from_db()
    assert version.status == Version.Status.PUBLISHED
    rows = list(Request.objects.filter(hook=hook).order_by("id"))
    assert [r.outcome for r in rows] == ["applied", "duplicate", "duplicate"]
    assert rows[1].duplicate_of_id == rows[0].id and rows[2].duplicate_of_id == rows[0].id


def test_the_last_batch_before_the_switch_folds_its_rooms_in_one_piece(
    make_hook: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A history within one batch goes straight to the switch's step: routed, then folded under
    # every live room's lock. Its rooms fold together (one exchange with the child, one
    # statement for the outcomes), not one round of statements per room, with the same result.
    from hooks import replay

    hook = make_hook(RECORDER)
    rooms = [f"room-{n}" for n in range(8)]
    history(hook, rooms, 5)
    version = building(hook, V2)
    pieces: list[int] = []
    original = replay.fold_rooms

    def counted(**kwargs: Any) -> Any:
        pieces.append(len(kwargs["rooms"]))
        return original(**kwargs)

    monkeypatch.setattr(replay, "fold_rooms", counted)
    monkeypatch.setattr(replay, "_room_fold", None)  # a room folded alone would fail here
    with override_settings(WR_BATCH_SIZE=1000):
        assert version_replay(version_id=version.pk, seconds=60) is False
    assert pieces == [len(rooms)]
    assert_rebuilt(hook, version, rooms, 5)


def test_a_key_in_two_rooms_only_in_the_last_batch_still_folds_in_the_historys_order(
    make_hook: Any,
) -> None:
    # The rooms folded side by side while the history routed so far had no shared key; the
    # switch's step routes the rest, where one key is in two rooms, and must then fold in the
    # history's order: room b had the key first, though room a's part starts earlier.
    hook = make_hook(RECORDER)
    now = timezone.now()
    plain = [("abc"[n % 3], {}) for n in range(25)]
    keyed = [("a", {}), ("b", {"Idempotency-Key": "k-1"}), ("a", {"Idempotency-Key": "k-1"})]
    for room, headers in plain + keyed:
        Request.objects.create(
            hook=hook,
            room=room,
            query={"room": [room]},
            method="POST",
            headers=headers,
            content_type="application/json",
            body=b'{"n": 1}',
            received_at=now,
        )
    while room_batch.rooms_reduce_slice(hook_id=hook.pk)[1]:
        pass  # live, rooms fold side by side: either may have applied the key
    version = building(hook, V2)
    with override_settings(WR_BATCH_SIZE=10):
        while version_replay(version_id=version.pk, seconds=30):
            pass
    version.refresh_from_db()
    assert version.status == Version.Status.PUBLISHED
    rows = list(Request.objects.filter(hook=hook).order_by("id"))
    assert {r.outcome for r in rows[:-2]} == {"applied"}
    b_key, a_key = rows[-2:]
    assert (b_key.outcome, a_key.outcome, a_key.duplicate_of_id) == (
        "applied",
        "duplicate",
        b_key.id,
    )


def replay_folds(log: str) -> int:
    """How many requests a worker's replay tasks folded side by side, from its log."""
    return sum(int(n) for n in re.findall(r"replay of version \d+: (\d+) requests folded", log))


@pytest.mark.slow
def test_two_workers_replay_rooms_side_by_side_with_the_sequential_result(
    make_hook: Any, tmp_path: Path
) -> None:
    from hooks.replay import hook_publish

    hook = make_hook(RECORDER)
    rooms = [f"room-{n}" for n in range(30)]
    history(hook, rooms, 40)
    hook.draft_code = SLOW_V2
    hook.save()
    with (
        celery_worker(tmp_path, concurrency=1, name="one", WR_BATCH_SIZE="100") as one,
        celery_worker(tmp_path, concurrency=1, name="two", WR_BATCH_SIZE="100") as two,
    ):
        version = hook_publish(hook=hook, author=None)
        built = Version.objects.filter(pk=version.pk, status=Version.Status.PUBLISHED)
        try:
            wait_for(built.exists, 180, "the replay to go live")
        except AssertionError as error:
            raise AssertionError(
                f"{error}\n{one.output()[-3000:]}\n{two.output()[-3000:]}"
            ) from None
        logs = one.output(), two.output()
    assert_rebuilt(hook, version, rooms, 40)
    assert all(replay_folds(log) > 0 for log in logs), "both workers folded rooms"
