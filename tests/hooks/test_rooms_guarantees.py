"""SPEC §3 per room, with real processes: rooms of one hook folded side by side on two Celery
workers, a worker killed mid-batch with several rooms pending, one idempotency key sent to two
rooms at once."""

from __future__ import annotations

import json
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from hooks import pipeline
from hooks.models import Hook, Request, State
from hooks.tasks import reduce_hook
from tests.conftest import write_key
from tests.servers import batch_in_flight, celery_worker, wait_for, wsgi_server
from webreducer.redis import get_redis

pytestmark = pytest.mark.django_db(transaction=True)

RECORDER = """
def reducer(state, request, secrets):
    state = state or {"ids": [], "seqs": [], "ns": []}
    state["ids"].append(request.id)
    state["seqs"].append(request.seq)
    state["ns"].append((request.body or {}).get("n"))
    return state
"""

SLOW_RECORDER = RECORDER.replace(
    "    return state", "    x = 0\n    for i in range(150000):\n        x += i\n    return state"
)


def rooms_state(hook: Hook) -> dict[str, State]:
    hook.refresh_from_db()
    return {s.room: s for s in State.objects.filter(version_id=hook.live_version_id)}


def applied(hook: Hook, rooms: list[str], count: int) -> bool:
    states = rooms_state(hook)
    return all(room in states and states[room].seq == count for room in rooms)


def assert_each_room_applied_exactly_once_in_order(hook: Hook, rooms: list[str], count: int):
    states = rooms_state(hook)
    for room in rooms:
        rows = list(Request.objects.filter(hook=hook, room=room).order_by("seq"))
        assert [r.seq for r in rows] == list(range(1, count + 1)), room
        assert {r.outcome for r in rows} == {"applied"}, room
        state = json.loads(states[room].value)
        assert state["seqs"] == list(range(1, count + 1)), room
        assert state["ids"] == [str(r.uuid) for r in rows], room
        assert states[room].seq == count


def folded_counts(log: str) -> list[int]:
    """What each reduce task of a worker returned (requests numbered), from its log."""
    return [int(n) for n in re.findall(r"reduce_hook\[[^\]]+\] succeeded in [\d.]+s: (\d+)", log)]


def test_40_rooms_of_100_writes_from_20_clients_fold_in_parallel_gapless_and_in_order(
    make_hook, tmp_path: Path
) -> None:
    hook = make_hook(RECORDER)
    hook.limits = {"rate_per_second": 100000, "rate_burst": 100000}
    hook.save()
    rooms = [f"room-{n}" for n in range(40)]

    with (
        wsgi_server(tmp_path, workers=2) as url,
        celery_worker(tmp_path, concurrency=1, name="one") as one,
        celery_worker(tmp_path, concurrency=1, name="two") as two,
    ):
        target = f"{url}/write/{write_key(hook)}"

        def send(client_number: int) -> list[int]:
            # Each client writes two rooms, alternating: a room's writes come from one client,
            # in order, so its state must list them in the order they were sent.
            mine = rooms[2 * client_number : 2 * client_number + 2]
            with httpx.Client(timeout=30) as client:
                return [
                    client.post(f"{target}?room={room}", json={"n": i}).status_code
                    for i in range(100)
                    for room in mine
                ]

        with ThreadPoolExecutor(20) as pool:
            statuses = [s for batch in pool.map(send, range(20)) for s in batch]
        assert statuses == [202] * 4000

        wait_for(lambda: applied(hook, rooms, 100), 240, "every room to apply its 100 writes")
        # A task logs what it folded just after its commit: wait for the last lines.
        wait_for(
            lambda: sum(folded_counts(one.output()) + folded_counts(two.output())) == 4000,
            30,
            "the workers to log every fold",
        )
        logs = one.output(), two.output()

    assert_each_room_applied_exactly_once_in_order(hook, rooms, 100)
    states = rooms_state(hook)
    for room in rooms:
        assert json.loads(states[room].value)["ns"] == list(range(100)), room
    assert all(sum(folded_counts(log)) > 0 for log in logs)  # both workers folded rooms


def _pending(hook: Hook, rooms: list[str], count: int) -> None:
    now = timezone.now()
    Request.objects.bulk_create(
        Request(
            uuid=uuid.uuid4(),
            hook=hook,
            room=room,
            method="POST",
            content_type="application/json",
            body=json.dumps({"n": n}).encode(),
            received_at=now,
        )
        for n in range(count)
        for room in rooms
    )


def test_it_loses_and_repeats_nothing_in_any_room_when_a_worker_is_killed_mid_batch(
    make_hook, tmp_path: Path
) -> None:
    hook = make_hook(SLOW_RECORDER)
    rooms = ["a", "b", "c", "d"]
    _pending(hook, rooms, 80)

    with celery_worker(tmp_path, concurrency=2, name="doomed") as worker:
        for room in rooms:
            reduce_hook.delay(str(hook.pk), room=room)
        wait_for(lambda: any(s.seq > 0 for s in rooms_state(hook).values()), 60, "a commit")
        wait_for(batch_in_flight, 60, "a batch to be in flight")
        worker.kill()

    done = {room: s.seq for room, s in rooms_state(hook).items()}
    assert 0 < sum(done.values()) < 320
    for room in rooms:
        numbered = Request.objects.filter(hook=hook, room=room, seq__isnull=False).count()
        assert numbered == done.get(room, 0)

    with celery_worker(
        tmp_path,
        concurrency=2,
        beat=True,
        name="rescuer",
        WR_RECONCILE_EVERY="1",
        WR_RECONCILE_AFTER="0",
    ):
        wait_for(lambda: applied(hook, rooms, 80), 180, "the rest of every room")

    assert_each_room_applied_exactly_once_in_order(hook, rooms, 80)
    # The killed worker's reserved messages would stay unacknowledged in Redis for an hour
    # (the visibility timeout), and tests that wait for an idle queue would wait for them.
    client = get_redis()
    assert client is not None
    client.delete("unacked", "unacked_index")


def test_one_idempotency_key_sent_to_two_rooms_folding_at_once_is_applied_once(
    make_hook,
) -> None:
    # Slow enough that both rooms' batches are open at the same time.
    hook = make_hook(SLOW_RECORDER.replace("150000", "3000000"))
    now = timezone.now()
    for room in ["left", "right"]:
        Request.objects.create(
            hook=hook,
            room=room,
            method="POST",
            headers={"Idempotency-Key": "order-42"},
            content_type="application/json",
            body=b"{}",
            received_at=now,
        )
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def fold(room: str) -> None:
        try:
            start.wait()
            pipeline.hook_reduce(hook_id=hook.pk, room=room)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=fold, args=(room,)) for room in ["left", "right"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []

    outcomes = sorted(Request.objects.filter(hook=hook).values_list("outcome", flat=True))
    assert outcomes == ["applied", "duplicate"]
    duplicate = Request.objects.get(hook=hook, outcome="duplicate")
    original = Request.objects.get(hook=hook, outcome="applied")
    assert duplicate.duplicate_of_id == original.pk
    states = rooms_state(hook)
    assert sorted(s.seq for room, s in states.items() if room) == [1, 1]
    # The duplicate took its room's next seq and left that room's state as it was.
    values = [json.loads(s.value) for room, s in states.items() if room]
    assert sorted(value is None for value in values) == [False, True]


def test_a_backlog_over_many_rooms_woken_once_is_folded_by_both_workers(
    make_hook, tmp_path: Path
) -> None:
    # One task per hook (hooks.wakeup): the first task queues one more when it leaves rooms
    # waiting, so a backlog no write wakes again still folds on every worker.
    from hooks import wakeup

    hook = make_hook(SLOW_RECORDER)
    rooms = [f"room-{n:03d}" for n in range(200)]
    _pending(hook, rooms, 5)

    with (
        celery_worker(tmp_path, concurrency=1, name="one") as one,
        celery_worker(tmp_path, concurrency=1, name="two") as two,
    ):
        assert wakeup.wake(str(hook.pk), room=rooms[0])
        wait_for(lambda: applied(hook, rooms, 5), 240, "every room to apply its 5 requests")
        wait_for(
            lambda: sum(folded_counts(one.output()) + folded_counts(two.output())) == 1000,
            30,
            "the workers to log every fold",
        )
        logs = one.output(), two.output()

    assert_each_room_applied_exactly_once_in_order(hook, rooms, 5)
    assert all(sum(folded_counts(log)) > 0 for log in logs), [folded_counts(log) for log in logs]
