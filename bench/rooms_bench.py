"""Rooms benchmark (issue 14): does one hook's work spread over rooms fold in parallel?

Run: `.venv/bin/python bench/rooms_bench.py [--requests 20000] [--workers 1,2,4]`
(PostgreSQL and Redis on loopback; database WR_BENCH_DB, default `webreducer_bench`, and Redis
db WR_BENCH_REDIS_DB, default 8: both are wiped).

1. Fold rate: the same number of pending requests of one hook, all in one room or spread over
   1,000 rooms, folded by a Celery worker with 1, 2 and 4 processes; requests applied per second,
   side by side in one run. The hook's worker-time share (hooks/worktime.py) is lifted for this
   part (WR_WORKER_SHARE_SECONDS=0, no cap): with the default, one hook alone holds at most
   half a worker process however many rooms it has, which is the fairness rule, not the rooms'
   parallelism this part measures.
2. Replay: publishing a new version replays 100,000 requests (`--replay`) in one room and over
   1,000 rooms; wall time of the rebuild.
3. Reads: GET /read/<key>?room= p50/p99 on a hook with 1,000 rooms against a hook with one room,
   alternated, gunicorn gthread.

Every process it starts is in a process group of its own and is stopped on the way out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    ENV,
    Stack,
    cpu_reference,
    figure,
    fresh_database,
    pending_requests,
    server_args,
    wait_until,
)

PY = sys.executable
ROOMS = 1000
PORT = 8793
CODE = """
def reducer(state, request, secrets):
    state = state or {"number": 0, "count": 0}
    state["number"] += request.body["number"]
    state["count"] += 1
    return state

def query(state, params, secrets):
    return state
"""


def store_pending(hook: object, count: int, rooms: int) -> list[str]:
    """`count` pending requests of the hook, round-robin over `rooms` rooms (one: the main
    room); returns the room names."""
    names = [""] if rooms == 1 else [f"room-{n:04d}" for n in range(rooms)]
    pending_requests(hook, count, names)
    return names


def fold_rate(owner: object, count: int, rooms: int) -> float:
    """Requests applied per second: `count` pending over `rooms` rooms, woken at once."""
    from hooks import wakeup
    from hooks.models import Request
    from hooks.services import hook_create

    hook = hook_create(owner=owner, name=f"fold {rooms} rooms", code=CODE)  # type: ignore[arg-type]
    names = store_pending(hook, count, rooms)
    started = time.monotonic()
    for name in names:
        wakeup.wake(str(hook.pk), room=name)
    pending = Request.objects.filter(hook=hook, outcome=Request.Outcome.PENDING)
    deadline = started + 600
    while pending.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{rooms} rooms: not folded within 600 s")
        time.sleep(0.05)
    return count / (time.monotonic() - started)


def replay_seconds(owner: object, count: int, rooms: int) -> float:
    """Wall time of a publish's rebuild of `count` applied requests over `rooms` rooms."""
    from hooks import pipeline
    from hooks.models import Version
    from hooks.replay import hook_publish, version_replay
    from hooks.services import draft_save, hook_create

    hook = hook_create(owner=owner, name=f"replay {rooms} rooms", code=CODE)  # type: ignore[arg-type]
    names = store_pending(hook, count, rooms)
    for name in names:  # fold the history first, in process
        pipeline.hook_reduce(hook_id=hook.pk, room=name)
    draft_save(hook=hook, code=CODE + "\n# v2\n")
    version = hook_publish(hook=hook, author=None)
    started = time.monotonic()
    while Version.objects.filter(pk=version.pk, status=Version.Status.BUILDING).exists():
        version_replay(version_id=version.pk, seconds=5)
        if time.monotonic() - started > 900:
            raise SystemExit(f"replay over {rooms} rooms: not done within 900 s")
    elapsed = time.monotonic() - started
    status = Version.objects.get(pk=version.pk).status
    if status != Version.Status.PUBLISHED:
        raise SystemExit(f"replay over {rooms} rooms ended {status}")
    return elapsed


def read_latency(base: str, urls: dict[str, list[str]], rounds: int) -> dict[str, list[float]]:
    import httpx

    timings: dict[str, list[float]] = {name: [] for name in urls}
    with httpx.Client(timeout=30) as client:
        for round_ in range(rounds):
            for name, choices in urls.items():
                url = choices[round_ % len(choices)]
                started = time.perf_counter()
                response = client.get(base + url)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{url}: {response.status_code} {response.text[:200]}")
                if round_ >= 50:  # warm-up
                    timings[name].append(elapsed)
    return timings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="pending requests per run")
    parser.add_argument("--workers", default="1,2,4", help="worker processes to compare")
    parser.add_argument("--replay", type=int, default=100_000, help="requests replayed (0: skip)")
    parser.add_argument("--reads", type=int, default=1000, help="reads per hook")
    options = parser.parse_args()
    reference = cpu_reference()
    print(f"CPU reference sum(range(20_000_000)): {reference:.2f} s")
    ENV["WR_WORKER_SHARE_SECONDS"] = "0"  # no cap: part 1 measures parallelism, not fairness
    fresh_database()

    from accounts.models import User
    from hooks.models import Key

    owner = User.objects.create_user(username="rooms-bench")
    logs = Path(tempfile.mkdtemp(prefix="wr-rooms-"))
    stack = Stack(logs)
    try:
        print(f"\n1. Fold rate, {options.requests:,} pending requests of one hook (requests/s)")
        print(f"{'worker processes':>17}{'one room':>12}{f'{ROOMS:,} rooms':>14}{'ratio':>8}")
        for workers in (int(w) for w in options.workers.split(",")):
            worker = stack.start(
                f"worker-{workers}",
                [PY, "-m", "celery", "-A", "webreducer", "worker", "-c", str(workers),
                 "-l", "warning", "-n", f"rooms-bench-{workers}@%h"],
            )  # fmt: skip
            time.sleep(4)
            if worker.poll() is not None:
                raise SystemExit(f"the worker did not start (see {logs})")
            one = fold_rate(owner, options.requests, 1)
            many = fold_rate(owner, options.requests, ROOMS)
            print(f"{workers:>17}{one:>12,.0f}{many:>14,.0f}{many / one:>7.2f}x")
            figure(f"{workers} worker process(es): {ROOMS:,} rooms vs one room", many / one, "x",
                   target=">= 1.6 x" if workers == 2 else "",
                   met=(many / one >= 1.6) if workers == 2 else None)  # fmt: skip
            stack.stop()

        if options.replay:
            print(f"\n2. Replay of {options.replay:,} requests (a publish's rebuild, wall time)")
            one = replay_seconds(owner, options.replay, 1)
            many = replay_seconds(owner, options.replay, ROOMS)
            print(f"  one room {one:.1f} s, {ROOMS:,} rooms {many:.1f} s: {one / many:.2f}x")
            figure(f"replay over {ROOMS:,} rooms vs one room (speed)", one / many, "x",
                   target=">= 1.5 x", met=one / many >= 1.5)  # fmt: skip

        print(f"\n3. Reads, GET /read/<key>?room=, gthread, {options.reads} each, alternated")
        from hooks.services import hook_create

        single = hook_create(owner=owner, name="reads one room", code=CODE)
        spread = hook_create(owner=owner, name="reads many rooms", code=CODE)
        for hook, rooms in ((single, 1), (spread, ROOMS)):
            from hooks import pipeline

            for name in store_pending(hook, max(rooms, 10), rooms):
                pipeline.hook_reduce(hook_id=hook.pk, room=name)
        read = {h.pk: Key.objects.get(hook=h, kind="read").token for h in (single, spread)}
        urls = {
            "one room": [f"/read/{read[single.pk]}"],
            f"{ROOMS:,} rooms": [
                f"/read/{read[spread.pk]}?room=room-{n:04d}" for n in range(ROOMS)
            ],
        }
        stack.start("web", server_args("gthread", PORT))
        base = f"http://127.0.0.1:{PORT}"
        import httpx

        wait_until(lambda: httpx.get(base + urls["one room"][0]).status_code == 200, 60, "web")
        timings = read_latency(base, urls, options.reads + 50)
        for name, values in timings.items():
            print(f"  {name:<12} p50 {percentile(values, 0.5):.2f} ms, "
                  f"p99 {percentile(values, 0.99):.2f} ms")  # fmt: skip
        one_p50 = statistics.median(timings["one room"])
        many_p50 = statistics.median(timings[f"{ROOMS:,} rooms"])
        figure(f"read p50 with {ROOMS:,} rooms vs one room", 100 * many_p50 / one_p50, "%",
               target="<= 110 %", met=many_p50 <= 1.1 * one_p50)  # fmt: skip
    finally:
        stack.stop()
    print(f"\nCPU reference sum(range(20_000_000)): {reference:.2f} s before, "
          f"{cpu_reference():.2f} s after; logs in {logs}")  # fmt: skip


if __name__ == "__main__":
    main()
