"""The processing guarantees (docs/pipeline.md) with real processes: concurrent writers over HTTP, several Celery workers,
a worker killed mid-batch, Redis flushed with work pending."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from hooks.models import Hook, Request, State
from hooks.tasks import reduce_hook
from tests.conftest import read_key, write_key
from tests.servers import batch_in_flight, celery_worker, child_env, wait_for, wsgi_server
from webreducer.redis import get_redis

pytestmark = pytest.mark.django_db(transaction=True)

# Records the order it saw requests in, so the test can compare it with the seqs.
RECORDER = """
def reducer(state, request, secrets):
    state = state or {"ids": [], "seqs": []}
    state["ids"].append(request.id)
    state["seqs"].append(request.seq)
    return state
"""

SLOW_RECORDER = RECORDER.replace(
    "    return state", "    x = 0\n    for i in range(150000):\n        x += i\n    return state"
)


def live_state(hook: Hook) -> State:
    hook.refresh_from_db()
    return State.objects.get(version_id=hook.live_version_id)


def assert_applied_exactly_once_in_order(hook: Hook, count: int) -> None:
    rows = list(Request.objects.filter(hook=hook).order_by("seq"))
    assert len(rows) == count
    assert [r.seq for r in rows] == list(range(1, count + 1))
    assert {r.outcome for r in rows} == {"applied"}
    state = json.loads(live_state(hook).value)
    assert state["seqs"] == list(range(1, count + 1))
    assert state["ids"] == [str(r.uuid) for r in rows]
    assert live_state(hook).seq == count


def test_it_applies_2000_concurrent_writes_exactly_once_in_order(make_hook, tmp_path: Path) -> None:
    hook = make_hook(RECORDER)
    hook.limits = {"rate_per_second": 100000, "rate_burst": 100000}
    hook.save()

    with (
        wsgi_server(tmp_path, workers=2) as url,
        celery_worker(tmp_path, concurrency=1, name="one"),
        celery_worker(tmp_path, concurrency=1, name="two"),
    ):
        target = f"{url}/write/{write_key(hook)}"

        def send(n: int) -> list[int]:
            with httpx.Client(timeout=30) as client:
                return [
                    client.post(target, json={"n": n * 100 + i}).status_code for i in range(100)
                ]

        with ThreadPoolExecutor(20) as pool:
            statuses = [s for batch in pool.map(send, range(20)) for s in batch]
        assert statuses == [202] * 2000

        wait_for(lambda: live_state(hook).seq == 2000, 180, "2000 requests to be applied")

    assert_applied_exactly_once_in_order(hook, 2000)


def _pending(hook: Hook, count: int) -> None:
    now = timezone.now()
    Request.objects.bulk_create(
        Request(
            uuid=uuid.uuid4(),
            hook=hook,
            method="POST",
            content_type="application/json",
            body=b"{}",
            received_at=now,
        )
        for _ in range(count)
    )


def test_it_loses_nothing_and_repeats_nothing_when_a_worker_is_killed_mid_batch(
    make_hook, tmp_path: Path
) -> None:
    hook = make_hook(SLOW_RECORDER)
    _pending(hook, 300)

    with celery_worker(tmp_path, concurrency=1, name="doomed") as worker:
        reduce_hook.delay(str(hook.pk))
        wait_for(lambda: live_state(hook).seq > 0, 60, "the first batches to commit")
        wait_for(batch_in_flight, 60, "a batch to be in flight")
        worker.kill()

    applied_before = live_state(hook).seq
    assert 0 < applied_before < 300
    assert Request.objects.filter(hook=hook, seq__isnull=False).count() == applied_before

    with celery_worker(
        tmp_path,
        concurrency=1,
        beat=True,
        name="rescuer",
        WR_RECONCILE_EVERY="1",
        WR_RECONCILE_AFTER="0",
    ):
        wait_for(lambda: live_state(hook).seq == 300, 120, "the rest to be applied")

    assert_applied_exactly_once_in_order(hook, 300)


def test_it_applies_pending_work_after_redis_loses_the_queue(make_hook, tmp_path: Path) -> None:
    hook = make_hook(RECORDER)
    client = Client()
    for n in range(20):
        response = client.post(
            f"/write/{write_key(hook)}", {"n": n}, content_type="application/json"
        )
        assert response.status_code == 202
    redis = get_redis()
    assert redis is not None
    assert redis.llen("celery") > 0  # the wake-up was queued…
    redis.flushdb()  # …and is lost, with the wake-up flags

    with celery_worker(
        tmp_path,
        concurrency=1,
        beat=True,
        name="after-flush",
        WR_RECONCILE_EVERY="1",
        WR_RECONCILE_AFTER="0",
    ):
        wait_for(lambda: live_state(hook).seq == 20, 60, "the reconciler to recover the work")

    assert_applied_exactly_once_in_order(hook, 20)
    response = client.get(f"/read/{read_key(hook)}")
    assert response["X-WebReducer-Seq"] == "20"


def test_it_acknowledges_only_committed_writes(make_hook) -> None:
    """Durable before acknowledged: the row is visible to another connection when the answer
    arrives."""
    hook = make_hook("")
    response = Client().post(f"/write/{write_key(hook)}", b"{}", content_type="application/json")
    request_id = response.json()["id"]

    import psycopg

    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]
    ) as other:
        row = other.execute(
            "SELECT outcome FROM hooks_request WHERE uuid = %s", [request_id]
        ).fetchone()
    assert row is not None


def test_a_worker_keeps_its_database_connection_and_replaces_a_cut_one(
    make_hook, tmp_path: Path
) -> None:
    """Reduce tasks reuse the worker's connection (a new one per task costs ~4 ms of a ~10 ms
    slice); when PostgreSQL cuts it between tasks, the next task reconnects and applies."""
    hook = make_hook(RECORDER)
    client = Client()

    def write_and_wait(seq: int) -> None:
        response = client.post(f"/write/{write_key(hook)}", {}, content_type="application/json")
        assert response.status_code == 202
        wait_for(lambda: live_state(hook).seq == seq, 30, f"seq {seq}")

    def worker_backends() -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [application]
            )
            return {pid for (pid,) in cursor.fetchall()}

    application = f"wr-reuse-{uuid.uuid4().hex[:8]}"  # tells the worker's connections apart
    database = f"{child_env()['DATABASE_URL']}?application_name={application}"
    with celery_worker(tmp_path, concurrency=1, name="reuse", DATABASE_URL=database):
        write_and_wait(1)
        first = worker_backends()
        write_and_wait(2)
        assert first and worker_backends() == first  # the same backend served both tasks

        with connection.cursor() as cursor:
            for pid in first:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        write_and_wait(3)
        write_and_wait(4)

    assert_applied_exactly_once_in_order(hook, 4)
