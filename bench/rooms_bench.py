"""Rooms benchmark (issue 14): does one hook's work spread over rooms fold in parallel?

Run: `.venv/bin/python bench/rooms_bench.py [--requests 20000] [--workers 1,2,4]
[--parts fold,latency,replay,reads]`
(PostgreSQL and Redis on loopback; database WR_BENCH_DB, default `webreducer_bench`, and Redis
db WR_BENCH_REDIS_DB, default 8: both are wiped).

1. Fold rate: the same number of pending requests of one hook, all in one room or spread over
   1,000 rooms, folded by a Celery worker with 1, 2 and 4 processes; requests applied per second,
   side by side in one run. The hook's worker-time share (hooks/worktime.py) is lifted for this
   part (WR_WORKER_SHARE_SECONDS=0, no cap): with the default, one hook alone holds at most
   half a worker process however many rooms it has, which is the fairness rule, not the rooms'
   parallelism this part measures.
2. Replay: publishing a new version replays 100,000 requests (`--replay`) in one room and over
   1,000 rooms, folded by a Celery worker with `--latency-workers` processes (the publish's
   replay tasks); wall time from the publish to the switch, and the CPU time per 1,000.
   Beside it, the CPU time per 1,000 requests of the worker processes, their sandboxes (fork
   servers and children) and the PostgreSQL backends of the bench database (from /proc).
1b. Latency: writes stored at a steady total rate (`--rate`, `--seconds`), round-robin over
   1,000 rooms or all in one room, each room woken as the write path does, folded by
   `--latency-workers` processes; store-to-applied p50/p99, and the worst room's p99 against
   the one room's (target: at most 3x).
3. Reads: GET /read/<key>?room= p50/p99 on a hook with 1,000 rooms against a hook with one room,
   alternated, gunicorn gthread.

Every process it starts is in a process group of its own and is stopped on the way out.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    BODY,
    ENV,
    Stack,
    cpu_reference,
    figure,
    fresh_database,
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
    room), each with its `?room=` as the write path stores it (a publish routes the history
    by it again); returns the room names."""
    from django.utils import timezone

    from hooks.models import Request

    names = [""] if rooms == 1 else [f"room-{n:04d}" for n in range(rooms)]
    now = timezone.now()
    Request.objects.bulk_create(
        (
            Request(
                hook=hook,  # type: ignore[misc]
                room=names[n % rooms],
                query={"room": [names[n % rooms]]} if rooms > 1 else {},
                method="POST",
                content_type="application/json",
                body=BODY.encode(),
                received_at=now,
            )
            for n in range(count)
        ),
        batch_size=5000,
    )
    return names


def _ticks(pid: int) -> tuple[int, int, int]:
    """(parent pid, own CPU ticks, reaped children's CPU ticks) of a process, from /proc."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def cpu_sample(worker_pid: int) -> dict[str, float]:
    """CPU seconds so far of the worker's processes (the Celery main process and its pool),
    of its sandboxes (the fork servers and every child they forked, reaped or alive) and of
    the PostgreSQL backends connected to the bench database (not this process's own)."""
    import os

    from django.db import connection

    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, int, int]] = {}
    names: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                table[int(entry)] = _ticks(int(entry))
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    names[int(entry)] = cmdline.read(4096)
            except (OSError, IndexError, ValueError):
                continue
    totals = {"worker": 0.0, "sandbox": 0.0, "postgres": 0.0}
    for pid, (ppid, own, reaped) in table.items():
        chain, parent = [pid], ppid
        while parent in table and parent != worker_pid and parent > 1:
            chain.append(parent)
            parent = table[parent][0]
        if parent != worker_pid and pid != worker_pid:
            continue
        sandbox = any(b"wr_forkserver" in names.get(p, b"") for p in chain)
        totals["sandbox" if sandbox else "worker"] += own / tick
        if sandbox:
            totals["sandbox"] += reaped / tick  # sandbox children the fork server reaped
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        backends = [row[0] for row in cursor.fetchall()]
    for pid in backends:
        if pid in table:
            # Per backend: one that went away between two samples takes its CPU time with it
            # (a lower bound), and must not count as negative.
            totals[f"postgres:{pid}"] = table[pid][1] / tick
    return totals


def cpu_per_thousand(before: dict[str, float], after: dict[str, float], count: int) -> str:
    spent = {name: after[name] - before[name] for name in ("worker", "sandbox")}
    spent["postgres"] = sum(
        seconds - before.get(name, 0.0)
        for name, seconds in after.items()
        if name.startswith("postgres:")
    )
    return ", ".join(f"{name} {1e6 * seconds / count:.0f} ms" for name, seconds in spent.items())


def fold_rate(
    owner: object, count: int, rooms: int, worker_pid: int
) -> tuple[float, str, tuple[object, list[str]]]:
    """Requests applied per second: `count` pending over `rooms` rooms, woken at once; and
    the CPU time per 1,000 requests of the worker, its sandboxes and PostgreSQL."""
    from hooks import wakeup
    from hooks.models import Request
    from hooks.services import hook_create

    hook = hook_create(owner=owner, name=f"fold {rooms} rooms", code=CODE)  # type: ignore[arg-type]
    names = store_pending(hook, count, rooms)
    cpu = cpu_sample(worker_pid)
    started = time.monotonic()
    for name in names:
        wakeup.wake(str(hook.pk), room=name)
    pending = Request.objects.filter(hook=hook, outcome=Request.Outcome.PENDING)
    deadline = started + 600
    while pending.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{rooms} rooms: not folded within 600 s")
        time.sleep(0.05)
    rate = count / (time.monotonic() - started)
    return rate, cpu_per_thousand(cpu, cpu_sample(worker_pid), count), (hook, names)


def idle_wakes(hook: object, names: list[str], worker_pid: int) -> str:
    """The worker's CPU time per 1,000 wake-ups of rooms already folded (each of the 1,000
    rooms woken once: one task per hook since wake-ups are the hook's, one per room before)."""
    from hooks import wakeup
    from webreducer.redis import get_redis

    client = get_redis()
    assert client is not None
    cpu = cpu_sample(worker_pid)
    for name in names:
        wakeup.wake(str(hook.pk), room=name)  # type: ignore[attr-defined]
    # Claimed (the flag cleared) and the queue empty: every task ran.
    wait_until(
        lambda: not client.keys(f"wr:wake:{hook.pk}*") and not client.llen("celery"),  # type: ignore[attr-defined]
        60,
        "the idle tasks to run",
    )
    time.sleep(0.5)  # the last task's return
    return cpu_per_thousand(cpu, cpu_sample(worker_pid), len(names))


def applied_latency(
    owner: object, rate: int, seconds: float, rooms: int
) -> tuple[list[float], dict[str, list[float]]]:
    """Writes stored at a steady total `rate` per second for `seconds`, round-robin over
    `rooms` rooms, each room woken as the write path does; returns every write's store-to-
    applied latency (ms) and the same per room."""
    from django.db.models import F
    from django.utils import timezone

    from hooks import wakeup
    from hooks.models import Request
    from hooks.services import hook_create

    hook = hook_create(owner=owner, name=f"latency {rooms} rooms", code=CODE)  # type: ignore[arg-type]
    names = [""] if rooms == 1 else [f"room-{n:04d}" for n in range(rooms)]
    stored, tick, started = 0, 0.01, time.monotonic()
    while (now := time.monotonic()) < started + seconds:
        due = int((now - started) * rate) - stored
        if due > 0:
            at = timezone.now()
            batch = [names[(stored + n) % rooms] for n in range(due)]
            Request.objects.bulk_create(
                Request(hook=hook, room=name, method="POST", content_type="application/json",
                        body=BODY.encode(), received_at=at)
                for name in batch
            )  # fmt: skip
            for name in dict.fromkeys(batch):
                wakeup.wake(str(hook.pk), room=name)
            stored += due
        time.sleep(max(0.0, tick - (time.monotonic() - now)))
    pending = Request.objects.filter(hook=hook, outcome=Request.Outcome.PENDING)
    wait_until(lambda: not pending.exists(), 120, f"the writes over {rooms} rooms to be applied")
    rows = (
        Request.objects.filter(hook=hook)
        .annotate(delay=F("applied_at") - F("received_at"))
        .values_list("room", "delay")
    )
    every: list[float] = []
    by_room: dict[str, list[float]] = {}
    for name, delay in rows:
        ms = delay.total_seconds() * 1000
        every.append(ms)
        by_room.setdefault(name, []).append(ms)
    return every, by_room


def replay_seconds(owner: object, count: int, rooms: int, worker_pid: int) -> tuple[float, str]:
    """Wall time of a publish's rebuild of `count` applied requests over `rooms` rooms, by
    the worker's replay tasks; and the CPU time per 1,000 requests replayed."""
    from hooks import room_batch
    from hooks.models import Version
    from hooks.replay import hook_publish
    from hooks.services import draft_save, hook_create

    hook = hook_create(owner=owner, name=f"replay {rooms} rooms", code=CODE)  # type: ignore[arg-type]
    store_pending(hook, count, rooms)
    while room_batch.rooms_reduce_slice(hook_id=hook.pk)[1]:  # fold the history first
        pass
    draft_save(hook=hook, code=CODE + "\n# v2\n")
    cpu = cpu_sample(worker_pid)
    started = time.monotonic()
    version = hook_publish(hook=hook, author=None)
    building = Version.objects.filter(pk=version.pk, status=Version.Status.BUILDING)
    wait_until(lambda: not building.exists(), 900, f"the replay over {rooms} rooms")
    elapsed = time.monotonic() - started
    status = Version.objects.get(pk=version.pk).status
    if status != Version.Status.PUBLISHED:
        raise SystemExit(f"replay over {rooms} rooms ended {status}")
    return elapsed, cpu_per_thousand(cpu, cpu_sample(worker_pid), count)


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


def start_worker(stack: Stack, workers: int, logs: Path) -> subprocess.Popen[bytes]:
    worker = stack.start(
        f"worker-{workers}",
        [PY, "-m", "celery", "-A", "webreducer", "worker", "-c", str(workers),
         "-l", "warning", "-n", f"rooms-bench-{workers}@%h"],
    )  # fmt: skip
    time.sleep(4)
    if worker.poll() is not None:
        raise SystemExit(f"the worker did not start (see {logs})")
    return worker


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="pending requests per run")
    parser.add_argument("--workers", default="1,2,4", help="worker processes to compare")
    parser.add_argument("--replay", type=int, default=100_000, help="requests replayed (0: skip)")
    parser.add_argument("--reads", type=int, default=1000, help="reads per hook")
    parser.add_argument("--parts", default="fold,latency,replay,reads", help="what to run")
    parser.add_argument("--rate", type=int, default=1000, help="latency part: writes/s in all")
    parser.add_argument("--seconds", type=float, default=10, help="latency part: how long")
    parser.add_argument("--latency-workers", type=int, default=2, help="latency part: workers")
    options = parser.parse_args()
    parts = set(options.parts.split(","))
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
        if "fold" in parts:
            print(f"\n1. Fold rate, {options.requests:,} pending requests of one hook (requests/s)")
            print(f"{'worker processes':>17}{'one room':>12}{f'{ROOMS:,} rooms':>14}{'ratio':>8}")
            cpu_lines = []
            for workers in (int(w) for w in options.workers.split(",")):
                worker = start_worker(stack, workers, logs)
                one, one_cpu, _ = fold_rate(owner, options.requests, 1, worker.pid)
                many, many_cpu, (hook, names) = fold_rate(
                    owner, options.requests, ROOMS, worker.pid
                )
                idle = idle_wakes(hook, names, worker.pid)
                print(f"{workers:>17}{one:>12,.0f}{many:>14,.0f}{many / one:>7.2f}x")
                cpu_lines.append(f"  {workers} process(es), one room: {one_cpu}")
                cpu_lines.append(f"  {workers} process(es), {ROOMS:,} rooms: {many_cpu}")
                cpu_lines.append(f"  {workers} process(es), per 1,000 idle wake-ups: {idle}")
                figure(f"{workers} worker process(es): {ROOMS:,} rooms vs one room", many / one,
                       "x", target=">= 1.6 x" if workers == 2 else "",
                       met=(many / one >= 1.6) if workers == 2 else None)  # fmt: skip
                stack.stop()
            print("CPU time per 1,000 requests applied (worker processes, sandboxes, PostgreSQL):")
            print("\n".join(cpu_lines))

        if "latency" in parts:
            workers = options.latency_workers
            print(f"\n1b. Write-to-applied latency, {options.rate:,} writes/s for "
                  f"{options.seconds:g} s, {workers} worker process(es) (ms)")  # fmt: skip
            worker = start_worker(stack, workers, logs)
            alone, _ = applied_latency(owner, options.rate, options.seconds, 1)
            every, by_room = applied_latency(owner, options.rate, options.seconds, ROOMS)
            stack.stop()
            one_p99 = percentile(alone, 0.99)
            room_p99 = {name: percentile(values, 0.99) for name, values in by_room.items()}
            worst = max(room_p99.values())
            print(f"  one room: p50 {percentile(alone, 0.5):.1f}, p99 {one_p99:.1f}")
            print(f"  {ROOMS:,} rooms: p50 {percentile(every, 0.5):.1f}, p99 "
                  f"{percentile(every, 0.99):.1f} over all writes; the worst room's p99 "
                  f"{worst:.1f} ({len(by_room):,} rooms, "
                  f"~{len(every) // max(1, len(by_room))} writes each)")  # fmt: skip
            figure(f"worst room's write-to-applied p99, {ROOMS:,} rooms vs one room's p99",
                   worst / one_p99, "x", target="<= 3 x", met=worst <= 3 * one_p99)  # fmt: skip

        if options.replay and "replay" in parts:
            workers = options.latency_workers
            print(f"\n2. Replay of {options.replay:,} requests (a publish's rebuild, wall time), "
                  f"{workers} worker process(es)")  # fmt: skip
            worker = start_worker(stack, workers, logs)
            one, one_cpu = replay_seconds(owner, options.replay, 1, worker.pid)
            many, many_cpu = replay_seconds(owner, options.replay, ROOMS, worker.pid)
            stack.stop()
            print(f"  one room {one:.1f} s, {ROOMS:,} rooms {many:.1f} s: {one / many:.2f}x")
            print(f"  CPU per 1,000 requests: one room {one_cpu}; {ROOMS:,} rooms {many_cpu}")
            figure(f"replay over {ROOMS:,} rooms vs one room (speed)", one / many, "x",
                   target=">= 1.5 x", met=one / many >= 1.5)  # fmt: skip

        if "reads" not in parts:
            return
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
