"""Publishing replays the history, blue/green (docs/api.md, "Publishing"), through the management API."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from hooks.models import Request, State, Version
from hooks.replay import version_replay
from tests.conftest import read_key, write_key
from tests.hooks.api import read, url, write

ADD = """
def reducer(state, request, secrets):
    state = state or {"number": 0}
    state["number"] += request.body["number"]
    return state
"""
COUNT = """
def reducer(state, request, secrets):
    return (state or 0) + 1
"""
THROWS = """
def reducer(state, request, secrets):
    raise ValueError("no way")
"""
FAILS_ON_ODD = """
def reducer(state, request, secrets):
    if request.body["number"] % 2:
        raise ValueError("odd")
    return (state or 0) + request.body["number"]
"""


@pytest.fixture
def api(alice, client_for):  # type: ignore[no-untyped-def]
    return client_for(alice)


def publish(api: Any, hook: Any, **body: Any) -> Any:
    return api.post(url(hook, "publish"), body, format="json")


@pytest.mark.usefixtures("eager_tasks")
class TestTheOriginalProductsChecks:
    def test_it_folds_two_requests_with_the_published_reducer(
        self, make_hook, client: Client
    ) -> None:
        hook = make_hook(ADD)
        write(client, write_key(hook), {"number": 5})
        write(client, write_key(hook), {"number": 3})

        assert read(client, read_key(hook)).json() == {"number": 8}

    def test_it_serves_the_old_state_until_the_publish_completes(
        self, make_hook, api, client: Client, django_capture_on_commit_callbacks
    ) -> None:
        hook = make_hook(ADD)
        write(client, write_key(hook), {"number": 5})
        write(client, write_key(hook), {"number": 3})

        assert api.put(url(hook, "draft"), {"code": COUNT}, format="json").status_code == 200
        assert read(client, read_key(hook)).json() == {"number": 8}

        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = publish(api, hook)
        assert response.status_code == 202
        assert response.json()["version"]["number"] == 2
        assert response.json()["progress"]["status"] == "running"
        # The replay has not run yet: the old version still serves.
        assert read(client, read_key(hook)).json() == {"number": 8}

        for callback in callbacks:
            callback()

        assert read(client, read_key(hook)).json() == 2
        detail = api.get(url(hook)).json()
        assert detail["live_version"] == 2
        assert detail["seq"] == 2
        assert detail["replay"] is None

    def test_it_serves_null_and_logs_the_errors_when_the_new_reducer_throws(
        self, make_hook, api, client: Client, django_capture_on_commit_callbacks
    ) -> None:
        hook = make_hook(ADD)
        write(client, write_key(hook), {"number": 5})
        write(client, write_key(hook), {"number": 3})
        api.put(url(hook, "draft"), {"code": THROWS}, format="json")

        with django_capture_on_commit_callbacks(execute=True):
            publish(api, hook)

        response = read(client, read_key(hook))
        assert response.content == b"null"
        assert response["X-WebReducer-Seq"] == "2"
        rows = api.get(url(hook, "requests")).json()["results"]
        assert [row["outcome"] for row in rows] == ["failed", "failed"]
        assert all(row["error"]["type"] == "ValueError" for row in rows)
        assert all("no way" in row["error"]["message"] for row in rows)
        assert all(row["state_after"] is None for row in rows)
        version = api.get(url(hook, "versions", 2)).json()
        assert version["status"] == "published"
        assert version["failures"] == 2

    def test_it_leaves_the_draft_equal_to_the_published_code(
        self, make_hook, api, django_capture_on_commit_callbacks
    ) -> None:
        hook = make_hook(ADD)
        api.put(url(hook, "draft"), {"code": COUNT}, format="json")
        with django_capture_on_commit_callbacks(execute=True):
            publish(api, hook)

        draft = api.get(url(hook, "draft")).json()
        assert draft == {"code": COUNT, "changed": False, "live_version": 2}
        assert api.get(url(hook, "versions", 2)).json()["code"] == COUNT


@pytest.mark.usefixtures("eager_tasks")
def test_it_refuses_to_publish_code_with_a_syntax_error(make_hook, api) -> None:
    hook = make_hook(ADD)
    hook.draft_code = "def reducer(:\n"  # saved around the API's check
    hook.save()

    response = publish(api, hook)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "syntax_error"
    assert response.json()["error"]["line"] == 1
    assert Version.objects.filter(hook=hook).count() == 1


def test_a_second_publish_during_a_rebuild_supersedes_the_first(
    make_hook, api, client: Client, django_capture_on_commit_callbacks, eager_tasks
) -> None:
    hook = make_hook(ADD)
    for number in (1, 2, 3):
        write(client, write_key(hook), {"number": number})

    api.put(url(hook, "draft"), {"code": THROWS}, format="json")
    with django_capture_on_commit_callbacks(execute=False):
        first = publish(api, hook).json()["version"]["number"]  # its replay never starts
    api.put(url(hook, "draft"), {"code": COUNT}, format="json")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        second = publish(api, hook).json()["version"]["number"]

    superseded = api.get(url(hook, "versions", first)).json()
    assert superseded["status"] == "failed"
    assert superseded["error"] == f"Superseded by version {second}."
    # The first one's task, running late, notices and stops without touching anything.
    assert version_replay(version_id=Version.objects.get(hook=hook, number=first).pk) is False
    assert not State.objects.filter(version__number=first, hook=hook).exclude(seq=0).exists()

    for callback in callbacks:
        callback()
    assert read(client, read_key(hook)).json() == 3
    versions = api.get(url(hook, "versions")).json()["results"]
    assert [(v["number"], v["status"]) for v in versions] == [
        (3, "published"),
        (2, "failed"),
        (1, "archived"),
    ]


@pytest.mark.usefixtures("eager_tasks")
def test_a_strict_publish_with_a_failing_request_refuses_to_switch_and_names_the_seq(
    make_hook, api, client: Client, django_capture_on_commit_callbacks
) -> None:
    hook = make_hook(ADD)
    for number in (2, 4, 5, 6):
        write(client, write_key(hook), {"number": number})
    api.put(url(hook, "draft"), {"code": FAILS_ON_ODD}, format="json")

    with django_capture_on_commit_callbacks(execute=True):
        response = publish(api, hook, strict=True)

    assert response.status_code == 202
    assert read(client, read_key(hook)).json() == {"number": 17}
    detail = api.get(url(hook)).json()
    assert detail["live_version"] == 1
    assert detail["replay"]["status"] == "failed"
    assert detail["replay"]["failures"] == 1
    assert "seq 3" in detail["replay"]["error"]
    version = api.get(url(hook, "versions", 2)).json()
    assert version["status"] == "failed"
    assert version["strict"] is True
    # The live log keeps the live version's outcomes.
    assert set(Request.objects.filter(hook=hook).values_list("outcome", flat=True)) == {"applied"}


@pytest.mark.usefixtures("eager_tasks")
def test_a_rollback_restores_the_earlier_codes_state_exactly(
    make_hook, api, client: Client, django_capture_on_commit_callbacks
) -> None:
    hook = make_hook(ADD)
    for number in (1, 2, 3):
        write(client, write_key(hook), {"number": number}, **{"Idempotency-Key": f"k{number}"})
    write(client, write_key(hook), {"number": 3}, **{"Idempotency-Key": "k3"})  # a duplicate
    before = api.get(url(hook, "state")).json()
    log_before = [
        (r["seq"], r["outcome"], r["state_after"])
        for r in api.get(url(hook, "requests")).json()["results"]
    ]

    api.put(url(hook, "draft"), {"code": COUNT}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        publish(api, hook)
    assert read(client, read_key(hook)).json() == 3

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(url(hook, "versions", 1, "rollback"), format="json")

    assert response.status_code == 202
    assert response.json()["version"]["rolled_back_from"] == 1
    assert api.get(url(hook, "state")).json() == {**before, "version": 3}
    assert before == {"seq": 4, "state": {"number": 6}, "version": 1}
    log_after = [
        (r["seq"], r["outcome"], r["state_after"])
        for r in api.get(url(hook, "requests")).json()["results"]
    ]
    assert log_after == log_before
    # A rollback puts the earlier code back in the editor.
    assert api.get(url(hook, "draft")).json()["code"] == ADD


def test_a_rollback_to_a_missing_version_answers_404(make_hook, api) -> None:
    hook = make_hook(ADD)
    assert api.post(url(hook, "versions", 7, "rollback")).status_code == 404
    assert api.post(url(hook, "versions", "x", "rollback")).status_code == 404


CHAIN = """
def reducer(state, request, secrets):
    state = state or {"count": 0, "sum": 0, "chain": 0}
    i = request.body["i"]
    state["count"] += 1
    state["sum"] += i
    # Order-sensitive: any request applied twice, skipped or out of order changes it.
    state["chain"] = (state["chain"] * 31 + i) % 1000000007
    return state
"""


def chain_fold(bodies: list[bytes]) -> dict[str, int]:
    state = {"count": 0, "sum": 0, "chain": 0}
    for body in bodies:
        i = json.loads(body)["i"]
        state["count"] += 1
        state["sum"] += i
        state["chain"] = (state["chain"] * 31 + i) % 1000000007
    return state


def history_insert(hook: Any, count: int) -> None:
    """`count` requests stored and applied by the live version, fast: one INSERT, one fold."""
    from django.utils import timezone

    from hooks.pipeline import hook_reduce

    now = timezone.now()
    Request.objects.bulk_create(
        Request(
            hook=hook,
            method="POST",
            headers={"Content-Type": "application/json"},
            content_type="application/json",
            body=json.dumps({"i": i}).encode(),
            received_at=now,
        )
        for i in range(count)
    )
    hook_reduce(hook_id=hook.pk)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_loses_nothing_when_500_writes_arrive_during_a_5000_request_replay(
    make_hook, api, tmp_path
) -> None:
    import httpx

    from tests.servers import celery_worker, wait_for, wsgi_server

    hook = make_hook("")  # the live version keeps the default reducer: cheap to apply
    history_insert(hook, 5000)
    assert State.objects.get(version=hook.live_version).seq == 5000
    api.put(url(hook, "draft"), {"code": CHAIN}, format="json")
    token = write_key(hook)

    # With beat, as in production: the reconciler picks up work whose task gave up while the
    # switch held the live state.
    with (
        celery_worker(tmp_path, concurrency=2, beat=True) as worker,
        wsgi_server(tmp_path, workers=3) as base,
    ):
        statuses: list[int] = []
        acknowledged_while_building: list[int] = []

        def writer(start: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as http:
                for i in range(start, 5500, 4):
                    response = http.post(f"/write/{token}", json={"i": i})
                    statuses.append(response.status_code)

        started = time.monotonic()
        response = publish(api, hook)
        assert response.status_code == 202
        number = response.json()["version"]["number"]
        threads = [threading.Thread(target=writer, args=(5000 + n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            building = Version.objects.get(hook=hook, number=number).status == "building"
            if building:
                acknowledged_while_building.append(len(statuses))
            time.sleep(0.05)
        for thread in threads:
            thread.join()
        assert statuses == [202] * 500

        def switched() -> bool:
            version = Version.objects.get(hook=hook, number=number)
            live = State.objects.get(version=version)
            return version.status == "published" and live.seq == 5500

        try:
            wait_for(switched, 90, "the new version to go live with every request")
        except AssertionError as error:
            version = Version.objects.get(hook=hook, number=number)
            pending = Request.objects.filter(hook=hook, outcome="pending").count()
            seqs = {s.version.number: s.seq for s in State.objects.filter(hook=hook)}
            raise AssertionError(
                f"{error}: v{number} {version.status} {version.replay_error!r}, states {seqs}, "
                f"{pending} pending\n{worker.output()[-4000:]}"
            ) from None
        elapsed = time.monotonic() - started

    # Writes were acknowledged while the replay was still running.
    assert any(0 < count < 500 for count in acknowledged_while_building), (
        acknowledged_while_building,
        elapsed,
    )
    seqs = sorted(Request.objects.filter(hook=hook).values_list("seq", flat=True))
    assert seqs == list(range(1, 5501))
    assert not Request.objects.filter(hook=hook).exclude(outcome="applied").exists()
    bodies = [
        bytes(b)
        for b in Request.objects.filter(hook=hook).order_by("seq").values_list("body", flat=True)
    ]
    expected = chain_fold(bodies)
    assert expected["count"] == 5500
    assert expected["sum"] == sum(range(5500))
    state = api.get(url(hook, "state")).json()
    assert state == {"seq": 5500, "state": expected, "version": number}
    with connection.cursor() as cursor:  # the old version's ledger and staged outcomes are gone
        cursor.execute("SELECT count(*) FROM hooks_replayoutcome")
        assert cursor.fetchone()[0] == 0
