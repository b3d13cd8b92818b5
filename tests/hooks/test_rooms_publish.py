"""A publish whose `room` re-partitions the history while writes go on (SPEC §1 "Rooms", §3.5):
the new rooms are the fold of their requests, nothing is lost, and the switch is atomic."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from hooks.models import Request, State, Version
from hooks.pipeline import hook_reduce
from tests.conftest import write_key
from tests.hooks.api import url
from tests.hooks.test_guarantees import RECORDER
from tests.servers import celery_worker, wait_for, wsgi_server

pytestmark = pytest.mark.django_db(transaction=True)

BY_PLAYER = (
    RECORDER + '\ndef room(request, secrets):\n    return "p" + str(request.body["player"])\n'
)


@pytest.fixture
def api(alice, client_for):  # type: ignore[no-untyped-def]
    return client_for(alice)


def test_a_repartitioning_publish_while_writes_continue_loses_nothing_and_switches_at_once(
    make_hook, api, tmp_path: Path
) -> None:
    hook = make_hook(RECORDER)  # rooms by ?room=: "old-0" … "old-4"
    hook.limits = {"rate_per_second": 100000, "rate_burst": 100000}
    hook.save()
    now = timezone.now()
    Request.objects.bulk_create(
        Request(
            hook=hook,
            room=f"old-{i % 5}",
            routed_by=hook.live_version_id,
            method="POST",
            content_type="application/json",
            body=json.dumps({"player": i % 7, "i": i}).encode(),
            received_at=now,
        )
        for i in range(1500)
    )
    for n in range(5):
        hook_reduce(hook_id=hook.pk, room=f"old-{n}")
    api.put(url(hook, "draft"), {"code": BY_PLAYER}, format="json")
    token = write_key(hook)

    with (
        celery_worker(tmp_path, concurrency=2, beat=True) as worker,
        wsgi_server(tmp_path, workers=2) as base,
    ):
        statuses: list[int] = []
        listings: list[set[str]] = []
        done = threading.Event()

        def writer(start: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as http:
                for i in range(start, 1900, 4):
                    response = http.post(
                        f"/write/{token}?room=old-{i % 5}", json={"player": i % 7, "i": i}
                    )
                    statuses.append(response.status_code)

        def lister() -> None:
            while not done.is_set():
                rows = api.get(url(hook, "rooms")).json()["results"]
                listings.append({r["room"] for r in rows if r["room"] is not None})
                time.sleep(0.02)

        response = api.post(url(hook, "publish"), {}, format="json")
        assert response.status_code == 202
        number = response.json()["version"]["number"]
        threads = [threading.Thread(target=writer, args=(1500 + n,)) for n in range(4)]
        watcher = threading.Thread(target=lister)
        for thread in [*threads, watcher]:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [202] * 400

        def drained() -> bool:
            version = Version.objects.get(hook=hook, number=number)
            return (
                version.status == "published"
                and not Request.objects.filter(hook=hook, outcome="pending").exists()
            )

        try:
            wait_for(drained, 120, "the new version to go live and apply every write")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{worker.output()[-4000:]}") from None
        done.set()
        watcher.join()

    # Every listing saw the old rooms or the new ones, never both.
    olds = {f"old-{n}" for n in range(5)}
    news = {f"p{n}" for n in range(7)}
    assert listings and all(seen <= olds or seen <= news for seen in listings), [
        s for s in listings if not (s <= olds or s <= news)
    ]
    requests = list(Request.objects.filter(hook=hook).order_by("id"))
    assert len(requests) == 1900
    assert {r.outcome for r in requests} == {"applied"}
    for r in requests:
        assert r.room == f"p{json.loads(bytes(r.body))['player']}"
    hook.refresh_from_db()
    states = {s.room: s for s in State.objects.filter(version_id=hook.live_version_id)}
    assert set(states) - {""} == news
    for room in news:
        mine = sorted((r for r in requests if r.room == room), key=lambda r: r.seq)
        assert [r.seq for r in mine] == list(range(1, len(mine) + 1)), room
        state = json.loads(states[room].value)
        assert state["ids"] == [str(r.uuid) for r in mine], room
        assert state["seqs"] == list(range(1, len(mine) + 1)), room
        assert states[room].seq == len(mine)
