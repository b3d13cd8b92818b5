"""Finding 3 of issue 13: no request can stop a hook, and no hook can stop the others.

On main, two writes with a 300-character Idempotency-Key wedged a hook for good (the repeat was
looked up under one form of the key and recorded under another, so its ledger insert failed
forever), the retries flooded the Celery queue, other tenants' hooks stopped being folded, and
deleting the wedged hook answered 500 (a deadlock with its worker). Each test here performs the
attack against a real Celery worker and fails if it works again.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from hooks import pipeline, replay
from hooks.fold import ledger_key
from hooks.models import Hook, Request, State
from tests.conftest import write_key
from tests.servers import batch_in_flight, celery_worker, wait_for, wsgi_server
from webreducer.redis import get_redis

pytestmark = pytest.mark.django_db(transaction=True)

COUNTER = """
def reducer(state, request, secrets):
    return (state or 0) + 1
"""


def live_seq(hook: Hook) -> int:
    hook.refresh_from_db()
    return State.objects.get(version_id=hook.live_version_id).seq


def rows_by_name(hook: Hook) -> dict[str, list[Request]]:
    rows: dict[str, list[Request]] = {}
    for row in Request.objects.filter(hook=hook).order_by("id"):
        body = json.loads(bytes(row.body))
        name = body.get("name") or body.get("data", {}).get("name")
        rows.setdefault(name, []).append(row)
    return rows


def assert_gapless_in_order(hook: Hook) -> None:
    """Every stored request has its seq, 1, 2, 3… in the order it was stored."""
    seqs = list(Request.objects.filter(hook=hook).order_by("id").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert live_seq(hook) == len(seqs)


def assert_other_tenant_is_folded(make_hook: Any, owner: Any, client: Client) -> None:
    """A new hook of another tenant is folded while the attacked one is (or was) misbehaving:
    a generous timeout, not a timing assertion."""
    other = make_hook(COUNTER, owner=owner, name="bystander")
    response = client.post(f"/write/{write_key(other)}", "{}", content_type="application/json")
    assert response.status_code == 202
    wait_for(lambda: live_seq(other) == 1, 60, "another tenant's hook to be folded")


@contextmanager
def database_refuses(table: str, name: str, check: str) -> Iterator[None]:
    """A CHECK constraint that makes PostgreSQL refuse rows, standing for whatever value it
    cannot store that nobody has thought of yet (the ones we know of are cleaned before the
    commit: see test_it_keeps_folding_past_the_values_postgresql_cannot_store). NOT VALID: only
    rows written from now on are checked. Added before a worker starts and dropped after it
    stops, as ALTER TABLE waits for every open transaction on the table."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({check}) NOT VALID")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")


def test_it_takes_a_repeated_long_idempotency_key_for_a_duplicate_and_other_hooks_keep_folding(
    make_hook: Any, bob: Any, tmp_path: Path
) -> None:
    default = make_hook("")
    keyed = make_hook(
        "def idempotency_key(request, secrets):\n    return request.body['key']\n" + COUNTER
    )
    header_key, event_id, user_key = "h" * 300, "e" * 300, "u" * 10_000

    with wsgi_server(tmp_path, workers=1) as url, celery_worker(tmp_path, concurrency=1):
        with httpx.Client(base_url=url, timeout=30) as http:
            header_answers = [
                http.post(
                    f"/write/{write_key(default)}",
                    json={"name": "header"},
                    headers={"Idempotency-Key": header_key},
                )
                for _ in range(2)
            ]
            event = {"specversion": "1.0", "id": event_id, "source": "/s", "type": "t"}
            for _ in range(2):
                response = http.post(
                    f"/write/{write_key(default)}",
                    json={**event, "data": {"name": "event"}},
                    headers={"Content-Type": "application/cloudevents+json"},
                )
                assert response.status_code == 202, response.text
            for _ in range(2):
                response = http.post(
                    f"/write/{write_key(keyed)}", json={"name": "user", "key": user_key}
                )
                assert response.status_code == 202, response.text

        # The header may instead be refused at write time (a documented header limit, with a
        # JSON error and nothing stored): either way it cannot wedge the hook.
        assert {a.status_code for a in header_answers} <= {202, 400}
        assert all(a.json()["error"] for a in header_answers if a.status_code == 400)
        stored = 2 + 2 * (header_answers[0].status_code == 202)
        wait_for(lambda: live_seq(default) == stored, 60, "the default hook to be folded")
        wait_for(lambda: live_seq(keyed) == 2, 60, "the keyed hook to be folded")
        assert_other_tenant_is_folded(make_hook, bob, Client())

    for hook, names in ((default, ["event", "header"]), (keyed, ["user"])):
        assert_gapless_in_order(hook)
        for name, (first, *repeats) in rows_by_name(hook).items():
            assert name in names
            assert first.outcome == Request.Outcome.APPLIED
            assert first.idempotency_key is not None and first.idempotency_key.startswith("sha256:")
            assert [(r.outcome, r.duplicate_of_id) for r in repeats] == [("duplicate", first.id)]
    assert json.loads(State.objects.get(version_id=keyed.live_version_id).value) == 1
    assert not Request.objects.filter(outcome=Request.Outcome.FAILED).exists()


POISONED = """
def reducer(state, request, secrets):
    name = request.body.get("name") or request.body["data"]["name"]
    if name == "refused":
        print("refuse-this-row")
    elif name == "nul-console":
        print("a\\x00b")
    elif name == "nul-error":
        raise ValueError("a\\x00b")
    state = state or {"names": [], "seqs": []}
    state["names"].append(name)
    state["seqs"].append(request.seq)
    return state
"""


def test_it_keeps_folding_past_the_values_postgresql_cannot_store(
    make_hook: Any, bob: Any, tmp_path: Path
) -> None:
    """A NUL in console output, in an exception's message or in a CloudEvent id (its default
    idempotency key) made the batch's commit fail on main: PostgreSQL's text and jsonb refuse
    U+0000. And a request the database refuses for a reason nobody foresaw (here a CHECK
    constraint) is isolated: recorded as failed with a CommitError while the rest is applied."""
    hook = make_hook(POISONED)
    client = Client()

    def send(name: str) -> None:
        response = client.post(
            f"/write/{write_key(hook)}", json.dumps({"name": name}), content_type="application/json"
        )
        assert response.status_code == 202

    send("a")
    send("refused")
    send("b")
    send("nul-console")
    send("nul-error")
    for _ in range(2):
        # 400 once CloudEvent ids are validated at write time (finding 11): nothing stored then.
        response = client.post(
            f"/write/{write_key(hook)}",
            json.dumps(
                {
                    "specversion": "1.0",
                    "id": "x\u0000y",
                    "source": "/s",
                    "type": "t",
                    "data": {"name": "nul-event-id"},
                }
            ),
            content_type="application/cloudevents+json",
        )
        assert response.status_code in (202, 400), response.content
    send("c")
    stored = Request.objects.filter(hook=hook).count()

    check = "console NOT LIKE '%refuse-this-row%'"
    with (
        database_refuses("hooks_request", "test_poison_refused_row", check),
        celery_worker(tmp_path, concurrency=1, name="poison"),
    ):
        wait_for(lambda: live_seq(hook) == stored, 60, "every request to get its seq")
        assert_other_tenant_is_folded(make_hook, bob, client)

    assert_gapless_in_order(hook)
    rows = rows_by_name(hook)
    (refused,) = rows["refused"]
    assert refused.outcome == Request.Outcome.FAILED
    assert refused.error["type"] == "CommitError"
    assert "test_poison_refused_row" in refused.error["message"]
    assert refused.state_after == rows["a"][0].state_after  # the state is unchanged by it
    (nul_console,) = rows["nul-console"]
    assert nul_console.outcome == Request.Outcome.APPLIED
    assert nul_console.console == "a\ufffdb\n"
    (nul_error,) = rows["nul-error"]
    assert nul_error.outcome == Request.Outcome.FAILED
    assert (nul_error.error["type"], nul_error.error["message"]) == ("ValueError", "a\ufffdb")
    expected = ["a", "b", "nul-console", "c"]
    if "nul-event-id" in rows:
        first, repeat = rows["nul-event-id"]
        assert first.outcome == Request.Outcome.APPLIED
        assert first.idempotency_key == ledger_key("/s x\u0000y")
        assert (repeat.outcome, repeat.duplicate_of_id) == ("duplicate", first.id)
        expected.insert(3, "nul-event-id")
    state = json.loads(State.objects.get(version_id=hook.live_version_id).value)
    assert state["names"] == expected
    applied = Request.objects.filter(hook=hook, outcome="applied").order_by("seq")
    assert state["seqs"] == [r.seq for r in applied]


RECEIVED = re.compile(r"Task hooks\.tasks\.reduce_hook\[[^\]]+\] received")


def broker_messages(hook_id: str) -> int:
    """The reduce tasks of this hook waiting in the Redis broker list."""
    redis = get_redis()
    assert redis is not None
    return sum(hook_id.encode() in message for message in redis.lrange("celery", 0, -1))


def test_a_hook_whose_commits_keep_failing_backs_off_and_never_floods_the_queue(
    make_hook: Any, alice: Any, bob: Any, client_for: Any, tmp_path: Path
) -> None:
    """The database refuses the hook's state itself: not one request's fault, so even recording
    a request as failed is refused. Its task backs off (0.5 s, 1, 2, 4, 4…) while writes keep
    coming and the reconciler runs every second; meanwhile other hooks are folded, and the
    wedged hook can be deleted."""
    wedged = make_hook(COUNTER, name="wedged")
    hook_id = str(wedged.pk)
    client = Client()
    with (
        database_refuses("hooks_state", "test_poison_wedged_state", f"hook_id <> '{hook_id}'"),
        celery_worker(
            tmp_path,
            concurrency=1,
            beat=True,
            name="backoff",
            WR_RECONCILE_EVERY="1",
            WR_RECONCILE_AFTER="0",
            WR_REDUCE_BACKOFF_SECONDS="0.5",
            WR_REDUCE_BACKOFF_MAX_SECONDS="4",
        ) as worker,
    ):
        received_before = len(RECEIVED.findall(worker.output()))
        writes, most_queued = 0, 0
        end = time.monotonic() + 15
        while time.monotonic() < end:
            response = client.post(
                f"/write/{write_key(wedged)}", "{}", content_type="application/json"
            )
            assert response.status_code == 202
            writes += 1
            most_queued = max(most_queued, broker_messages(hook_id))
            time.sleep(0.02)
        log = worker.output()
        failures = log.count(f"reducing hook {hook_id} failed")
        wakeups = len(RECEIVED.findall(log)) - received_before
        print(
            f"\n{writes} writes in 15 s to a hook that cannot commit: {wakeups} reduce tasks "
            f"received, {failures} failed runs, at most {most_queued} queued at once"
        )
        assert most_queued <= 1
        assert 2 <= failures <= 9  # pauses of 0.5 + 1 + 2 + 4 + 4 + 4 s fill the 15 s
        assert wakeups <= 2 * failures + 4  # the retry after each pause, a write's during a run
        assert live_seq(wedged) == 0
        assert not Request.objects.filter(hook=wedged).exclude(outcome="pending").exists()

        assert_other_tenant_is_folded(make_hook, bob, client)

        response = client_for(alice).delete(f"/api/hooks/{hook_id}/")
        assert response.status_code == 204, response.content
        assert not Hook.objects.filter(pk=hook_id).exists()


SLOW_COUNTER = COUNTER.replace(
    "    return", "    x = 0\n    for i in range(300000):\n        x += i\n    return"
)


def test_deleting_a_hook_while_its_worker_folds_answers_204(
    make_hook: Any, alice: Any, bob: Any, client_for: Any, tmp_path: Path
) -> None:
    """On main the delete took the hook's requests and then waited for its state, while the
    worker held the state and then wrote the requests: a deadlock, answered 500."""
    hook = make_hook(SLOW_COUNTER)
    now = timezone.now()
    Request.objects.bulk_create(
        Request(uuid=uuid.uuid4(), hook=hook, method="POST", body=b"{}", received_at=now)
        for _ in range(200)
    )
    client = Client()
    with celery_worker(tmp_path, concurrency=1, name="busy") as worker:
        response = client.post(f"/write/{write_key(hook)}", "{}", content_type="application/json")
        assert response.status_code == 202
        wait_for(lambda: live_seq(hook) > 0, 60, "the first batch to commit")
        wait_for(batch_in_flight, 60, "a batch to be in flight")

        response = client_for(alice).delete(f"/api/hooks/{hook.pk}/")
        assert response.status_code == 204, response.content
        assert not Hook.objects.filter(pk=hook.pk).exists()
        assert not Request.objects.filter(hook_id=hook.pk).exists()

        assert_other_tenant_is_folded(make_hook, bob, client)
    assert "DeadlockDetected" not in worker.output()


REFUSED_NAMES = """
def reducer(state, request, secrets):
    name = request.body["name"]
    if name.startswith("refused"):
        print("refuse-this-row")
    return (state or []) + [name]
"""


@pytest.mark.django_db(transaction=False)
def test_it_isolates_each_refused_request_of_a_long_batch_and_applies_the_rest_in_order(
    make_hook: Any,
) -> None:
    """In-process (the constraint lives and dies with the test's transaction): three refused
    requests among 60, two of them adjacent; each costs a few smaller batches, not a wedge."""
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE hooks_request ADD CONSTRAINT test_poison_refused_rows "
            "CHECK (console NOT LIKE '%refuse-this-row%') NOT VALID"
        )
    hook = make_hook(REFUSED_NAMES)
    names = [f"r{i}" for i in range(60)]
    for i in (5, 23, 24):
        names[i] = f"refused{i}"
    client = Client()
    for name in names:
        response = client.post(
            f"/write/{write_key(hook)}", json.dumps({"name": name}), content_type="application/json"
        )
        assert response.status_code == 202

    pipeline.hook_reduce(hook_id=hook.pk)

    assert_gapless_in_order(hook)
    outcomes = list(Request.objects.filter(hook=hook).order_by("seq").values_list("outcome"))
    assert [o for (o,) in outcomes] == [
        "failed" if n.startswith("refused") else "applied" for n in names
    ]
    state = json.loads(State.objects.get(version_id=hook.live_version_id).value)
    assert state == [n for n in names if not n.startswith("refused")]


@pytest.mark.django_db(transaction=False)
def test_a_publish_replays_past_a_request_the_database_refuses(make_hook: Any) -> None:
    hook = make_hook("def reducer(state, request, secrets):\n    return (state or 0) + 1\n")
    client = Client()
    for name in ("a", "refused", "b"):
        response = client.post(
            f"/write/{write_key(hook)}", json.dumps({"name": name}), content_type="application/json"
        )
        assert response.status_code == 202
    pipeline.hook_reduce(hook_id=hook.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE hooks_replayoutcome ADD CONSTRAINT test_poison_refused_replay "
            "CHECK (console NOT LIKE '%refuse-this-row%') NOT VALID"
        )
    hook.draft_code = REFUSED_NAMES
    hook.save()

    version = replay.hook_publish(hook=hook, author=None)
    while replay.version_replay(version_id=version.pk):
        pass

    version.refresh_from_db()
    assert version.status == "published", version.replay_error
    assert version.replay_failures == 1
    rows = rows_by_name(hook)
    assert rows["refused"][0].outcome == Request.Outcome.FAILED
    assert rows["refused"][0].error["type"] == "CommitError"
    assert json.loads(State.objects.get(version=version).value) == ["a", "b"]
