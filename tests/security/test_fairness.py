"""Finding 4 of issue 13: one tenant's slow code or heavy traffic must not starve the others.

Attacks against real servers: a hostile hook's slow responder under concurrent requests, in one
web process, while another tenant's request comes in; a burst of concurrent requests against
the database connection count; and, at unit level, the worker-time share of a costly hook.
Whether the figures hold under load is bench/abuse_bench.py's job, not these tests'.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from hooks import worktime
from hooks.models import Hook, Request
from hooks.tasks import reduce_hook
from tests.conftest import read_key, write_key
from tests.servers import asgi_server, child_env, wsgi_server

pytestmark = pytest.mark.django_db(transaction=True)

# ~0.8 s of CPU per call, under the 1 s CPU limit: a responder/query that holds its call.
SPIN = """
import time

def _spin(seconds=0.8):
    started = time.process_time()
    while time.process_time() - started < seconds:
        pass
"""
SLOW_RESPONDER = (
    SPIN + "\ndef responder(request, secrets):\n    _spin()\n    return {'slow': True}\n"
)
# Short enough that a dozen at once stay under the wall-time limit on two cores.
BUSY_QUERY = (
    SPIN + "\ndef query(state, params, secrets):\n    _spin(0.1)\n    return {'busy': True}\n"
)
QUICK = "def responder(request, secrets):\n    return {'quick': True}\n"

Server = Callable[..., AbstractContextManager[str]]


def one_process_gthread(tmp_path: Path, **env: str) -> AbstractContextManager[str]:
    return wsgi_server(tmp_path, workers=1, threads=8, **env)


def one_process_uvicorn(tmp_path: Path, **env: str) -> AbstractContextManager[str]:
    return asgi_server(tmp_path, **env)


SERVERS = [
    pytest.param(one_process_gthread, id="gunicorn-gthread"),
    pytest.param(one_process_uvicorn, id="uvicorn"),
]


def concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.parametrize("server", SERVERS)
def test_it_refuses_a_hooks_excess_calls_with_429_while_another_hooks_write_is_served(
    make_hook: Callable[..., Hook], tmp_path: Path, server: Server
) -> None:
    hostile = make_hook(SLOW_RESPONDER, name="hostile")
    victim = make_hook(QUICK, name="victim")
    finished: list[str] = []
    lock = threading.Lock()

    urls = {hook.pk: f"/write/{write_key(hook)}" for hook in (hostile, victim)}

    # A generous wall-time limit: the hostile calls must run to the end on a loaded machine.
    with server(tmp_path, WR_SANDBOX_CALLS_PER_HOOK="2", WR_WALL_SECONDS="20") as base:
        # Warm the victim's child, so its request below pays for no start.
        assert httpx.post(base + urls[victim.pk], json={}).status_code == 200

        def post(hook: Hook, label: str) -> httpx.Response:
            response = httpx.post(base + urls[hook.pk], json={}, timeout=60)
            with lock:
                finished.append(f"{label}:{response.status_code}")
            return response

        hostile_started = threading.Event()

        def hostile_post() -> httpx.Response:
            hostile_started.set()
            return post(hostile, "hostile")

        def victim_post() -> httpx.Response:
            hostile_started.wait(10)
            return post(victim, "victim")

        results = concurrently([hostile_post] * 6 + [victim_post])

    hostile_answers, victim_answer = results[:6], results[6]
    assert all(isinstance(r, httpx.Response) for r in results), results
    statuses = sorted(r.status_code for r in hostile_answers)
    # Two calls ran (the slow responder's answer); the rest were refused at once, as JSON.
    assert statuses.count(200) == 2 and statuses.count(429) == 4, statuses
    refused = next(r for r in hostile_answers if r.status_code == 429)
    assert refused.json()["error"]["code"] == "hook_busy"
    assert int(refused.headers["Retry-After"]) >= 1
    # The other tenant's write was served while the hostile calls were still running.
    assert victim_answer.status_code == 200
    assert victim_answer.json() == {"quick": True}
    assert finished.index("victim:200") < finished.index("hostile:200"), finished
    # Refused writes were never stored; the served ones were.
    assert Request.objects.filter(hook=hostile).count() == 2


@pytest.mark.parametrize("server", SERVERS)
def test_it_keeps_a_web_process_to_its_pool_of_database_connections_under_a_burst(
    make_hook: Callable[..., Hook], tmp_path: Path, server: Server
) -> None:
    slow = make_hook(BUSY_QUERY, name="busy reads")
    application = f"wr-pool-{uuid.uuid4().hex[:8]}"
    database = f"{child_env()['DATABASE_URL']}?application_name={application}"
    counts: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        try:
            while not stop.wait(0.05):
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                        [application],
                    )
                    counts.append(cursor.fetchone()[0])
        finally:
            connection.close()  # this thread's connection, back to the test process's pool

    with server(
        tmp_path,
        DATABASE_URL=database,
        WR_DB_POOL_MAX_SIZE="2",
        WR_SANDBOX_CALLS_PER_HOOK="100",  # every request of the burst runs: the pool is the bound
        WR_ASGI_PUBLIC_THREADS="8",
        WR_WALL_SECONDS="20",
    ) as base:
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            url = f"{base}/read/{read_key(slow)}"
            results = concurrently([lambda: httpx.get(url, timeout=60)] * 12)
        finally:
            stop.set()
            sampler.join()
        after = counts[-1] if counts else None

    assert all(isinstance(r, httpx.Response) for r in results), results
    assert [r.status_code for r in results] == [200] * 12
    assert counts and max(counts) <= 2, counts
    assert after is not None and after <= 2


@pytest.mark.parametrize("server", SERVERS)
def test_every_refusal_of_a_flooded_hook_is_the_same_json_429_with_the_public_headers(
    make_hook: Callable[..., Hook], tmp_path: Path, server: Server
) -> None:
    # The first refusal comes from the view, the next ones from the input layer before Django
    # (hooks.serving, "Early refusals"): a client cannot tell them apart, and none of them
    # loses the headers every public answer carries.
    hostile = make_hook(SLOW_RESPONDER, name="hostile")
    url = f"/write/{write_key(hostile)}"
    with server(tmp_path, WR_SANDBOX_CALLS_PER_HOOK="1", WR_WALL_SECONDS="20") as base:
        held: list[httpx.Response] = []
        holder = threading.Thread(
            target=lambda: held.append(httpx.post(base + url, json={}, timeout=60))
        )
        holder.start()
        time.sleep(0.2)  # a head start; if another write takes the slot first, that one holds it
        try:
            # At once: with one slot for the hook, one call runs and the others are refused,
            # whichever of them (the holder included) got there first.
            answers = concurrently([lambda: httpx.post(base + url, json={}, timeout=60)] * 8)
        finally:
            holder.join(60)
    assert all(isinstance(r, httpx.Response) for r in answers + held), answers
    refused = [r for r in answers if r.status_code == 429]
    served = [r for r in answers if r.status_code != 429]
    assert len(refused) >= 3, [r.status_code for r in answers]
    for response in refused:
        assert response.json()["error"]["code"] == "hook_busy"
        assert response.headers["content-type"] == "application/json"
        assert response.headers["content-security-policy"] == "sandbox"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["x-frame-options"] == refused[0].headers["x-frame-options"]
        assert int(response.headers["retry-after"]) in (1, 2)
    # Every served write is stored, no refused one.
    holder_served = 1 if held and held[0].status_code == 200 else 0
    assert Request.objects.filter(hook=hostile).count() == holder_served + len(served)


def wsgi_call(
    app: Any, path: str, method: str = "GET", host: str = "testserver"
) -> tuple[str, bytes]:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "HTTP_HOST": host, "QUERY_STRING": ""}
    answer: list[str] = []
    body = b"".join(app(environ, lambda status, headers: answer.append(status)))
    return answer[0], body


def test_the_input_layer_refuses_a_key_the_view_refused_while_its_hook_stays_full(
    settings: Any,
) -> None:
    from hooks import serving
    from webreducer.inputs.wsgi import InputLimits

    settings.WR_SANDBOX_CALLS_PER_HOOK = 1
    settings.ALLOWED_HOSTS = ["testserver"]
    reached: list[str] = []

    def view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        # Stands for Django: a request for the full hook "h" is refused as the view refuses it.
        reached.append(environ["PATH_INFO"])
        try:
            with serving.sandbox_slot(hook_id="h"):
                pass
        except serving.HookSaturated:
            start_response("429 Too Many Requests", [])
            return [b"view"]
        start_response("200 OK", [])
        return [b"ran"]

    app = InputLimits(view)
    release = threading.Event()
    holder = threading.Thread(target=lambda: serving_hold(serving, "h", release))
    holder.start()
    try:
        deadline = time.monotonic() + 10
        while serving.running_calls("h") < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # the held call is no longer a young one: no wait is worth it
        assert wsgi_call(app, "/write/k1") == ("429 Too Many Requests", b"view")
        status, body = wsgi_call(app, "/write/k1/some/path", method="POST")
        assert status.startswith("429") and b"hook_busy" in body
        # Only the key the view refused; another key of any hook still reaches Django, and so
        # does the same token on the other kind of URL or a host Django would refuse.
        assert wsgi_call(app, "/write/k2")[1] == b"view"
        assert wsgi_call(app, "/read/k1")[1] == b"view"
        assert wsgi_call(app, "/write/k1", host="evil.example")[1] == b"view"
        assert wsgi_call(app, "/write/k1", method="OPTIONS")[1] == b"view"
    finally:
        release.set()
        holder.join(10)
    # The hook has a free slot again: the key's request reaches the view.
    assert wsgi_call(app, "/write/k1") == ("200 OK", b"ran")
    assert reached == ["/write/k1", "/write/k2", "/read/k1", "/write/k1", "/write/k1", "/write/k1"]


def test_past_its_trust_one_request_of_the_key_probes_the_view_and_the_others_are_refused_meanwhile(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hooks import serving
    from webreducer.inputs.wsgi import InputLimits

    settings.WR_SANDBOX_CALLS_PER_HOOK = 1
    settings.ALLOWED_HOSTS = ["testserver"]
    during_probe: list[tuple[str, bytes]] = []

    def view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/read/probed" and not during_probe and probing.is_set():
            # The crowd that comes back while the probe is in the view.
            during_probe.append(("", b""))
            during_probe[0] = wsgi_call(app, "/read/probed")
        try:
            with serving.sandbox_slot(hook_id="p"):
                pass
        except serving.HookSaturated:
            start_response("429 Too Many Requests", [])
            return [b"view"]
        start_response("404 Not Found", [])
        return [b"gone"]

    app = InputLimits(view)
    probing = threading.Event()
    release = threading.Event()
    holder = threading.Thread(target=lambda: serving_hold(serving, "p", release))
    holder.start()
    try:
        deadline = time.monotonic() + 10
        while serving.running_calls("p") < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)
        assert wsgi_call(app, "/read/probed")[1] == b"view"  # noted
        monkeypatch.setattr(serving, "REFUSED_TRUST_SECONDS", 0.0)  # the trust has run out
        probing.set()
        assert wsgi_call(app, "/read/probed")[1] == b"view"  # the probe, refused again
        assert during_probe and during_probe[0][0].startswith("429")
        assert b"hook_busy" in during_probe[0][1]
    finally:
        release.set()
        holder.join(10)


def serving_hold(serving: Any, hook_id: str, release: threading.Event) -> None:
    with serving.sandbox_slot(hook_id=hook_id):
        release.wait(10)


# ---- worker time (unit level) ---------------------------------------------------------------------
COUNTER = "def reducer(state, request, secrets):\n    return (state or 0) + 1\n"


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, float]]]:
    """The tasks reduce_hook re-queues for later, instead of sending them to the broker."""
    calls: list[tuple[Any, float]] = []

    def apply_async(args: Any = None, kwargs: Any = None, countdown: float | None = None) -> None:
        if countdown is not None:  # the writes' own wake-ups (delay()) have none
            calls.append((args, countdown))

    monkeypatch.setattr(reduce_hook, "apply_async", apply_async)
    yield calls


def pending_write(hook: Hook) -> None:
    from django.test import Client

    response = Client().post(f"/write/{write_key(hook)}", {}, content_type="application/json")
    assert response.status_code == 202


def test_it_defers_a_hook_over_its_share_of_worker_time_and_runs_another_hooks_task(
    make_hook: Callable[..., Hook], deferred: list[tuple[Any, float]], settings: Any
) -> None:
    settings.WR_WORKER_SHARE_SECONDS = 2.0
    settings.WR_WORKER_WINDOW_SECONDS = 3600.0
    costly, cheap = make_hook(COUNTER, name="costly"), make_hook(COUNTER, name="cheap")
    pending_write(costly)
    pending_write(cheap)
    worktime.charge(str(costly.pk), 2.5)  # a huge state's slices spent more than its share

    assert reduce_hook.apply(args=[str(costly.pk)]).get() == 0
    assert reduce_hook.apply(args=[str(cheap.pk)]).get() == 1

    assert Request.objects.get(hook=cheap).outcome == Request.Outcome.APPLIED
    assert Request.objects.get(hook=costly).outcome == Request.Outcome.PENDING
    ((args, countdown),) = deferred
    assert args == (str(costly.pk),) and 0 < countdown <= 3600
    # The cheap hook was charged its slice, the costly one nothing more for being deferred.
    assert 0 < worktime.spent(str(cheap.pk)) < 2.0
    assert worktime.spent(str(costly.pk)) == pytest.approx(2.5)


def test_a_hook_over_its_share_folds_on_while_no_other_hook_has_work_waiting(
    make_hook: Callable[..., Hook], deferred: list[tuple[Any, float]], settings: Any
) -> None:
    """The share is work-conserving: it binds only while another hook's work waits."""
    settings.WR_WORKER_SHARE_SECONDS = 2.0
    settings.WR_WORKER_WINDOW_SECONDS = 3600.0
    costly, other = make_hook(COUNTER, name="costly"), make_hook(COUNTER, name="other")
    worktime.charge(str(costly.pk), 2.5)
    pending_write(costly)

    # Alone with work: a short slice, not a deferral.
    assert worktime.slice_for(str(costly.pk)) == (worktime.OVER_SHARE_SLICE_SECONDS, 0.0)
    assert reduce_hook.apply(args=[str(costly.pk)]).get() == 1
    assert deferred == []

    # Another hook's write waits: the share binds again.
    pending_write(costly)
    pending_write(other)
    seconds, defer = worktime.slice_for(str(costly.pk))
    assert seconds is None and 0 < defer <= 3600
    assert reduce_hook.apply(args=[str(costly.pk)]).get() == 0
    assert Request.objects.filter(hook=costly, outcome=Request.Outcome.PENDING).count() == 1


def test_it_gives_a_hook_near_its_share_a_shorter_slice(
    make_hook: Callable[..., Hook], settings: Any
) -> None:
    settings.WR_WORKER_SHARE_SECONDS = 2.0
    settings.WR_WORKER_WINDOW_SECONDS = 3600.0
    settings.WR_REDUCE_SLICE_SECONDS = 5.0
    hook = make_hook(COUNTER)
    assert worktime.slice_for(str(hook.pk)) == (2.0, 0.0)
    worktime.charge(str(hook.pk), 1.5)
    seconds, defer = worktime.slice_for(str(hook.pk))
    assert seconds == pytest.approx(0.5) and defer == 0.0
