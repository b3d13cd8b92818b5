"""Big-state benchmark (issue 13, finding 4): the worker CPU that a hook with a ~0.9 MiB state
costs per request, through the real reduce pipeline (fetch, fold in the sandbox, commit).

Each shape folds 200 pending requests of one hook in one slice (`hook_reduce_slice`) after a
warm-up, and prints the worker process's own CPU per request (this process: the parent side of
the sandbox, Django and the database driver; the sandbox child's CPU is not in it), the
PostgreSQL backend's, and the wall time. The CPU reference `sum(range(20_000_000))` is printed
first: figures from machines of other speeds compare through it.

Run: `.venv/bin/python bench/bigstate_bench.py` (PostgreSQL; database WR_BENCH_DB, default
`webreducer_bigstate`, dropped and created again). `WR_BENCH_REQUESTS` changes the 200.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("WR_BENCH_DB", "webreducer_bigstate")

from bench.common import fresh_database, pending_requests
from bench.pipeline_bench import database_backend_pid, process_cpu

REQUESTS = int(os.environ.get("WR_BENCH_REQUESTS", "200"))

# The big-state hook of bench/abuse_bench.py: one long string.
BLOB = """
def reducer(state, request, secrets):
    state = state or {"blob": "x" * 900_000, "n": 0}
    state["n"] += 1
    return state
"""
# The same size as many small values: what a real state (a list of records) looks like.
RECORDS = """
def reducer(state, request, secrets):
    state = state or {"items": [{"id": i, "name": "item-%06d" % i, "ok": True} for i in range(21_000)], "n": 0}
    state["n"] += 1
    return state
"""
# A small state, for the per-request floor of the same pipeline.
SMALL = """
def reducer(state, request, secrets):
    state = state or {"n": 0}
    state["n"] += 1
    return state
"""


def cpu_reference() -> float:
    started = time.process_time()
    sum(range(20_000_000))
    return time.process_time() - started


def main() -> None:
    fresh_database()

    from accounts.models import User
    from hooks import pipeline
    from hooks.models import State
    from hooks.services import hook_create
    from webreducer.celery import tune_gc

    owner = User.objects.create_user(username="bench")
    tune_gc()  # as a Celery worker process does at start
    print(f"CPU reference sum(range(20_000_000)): {cpu_reference():.2f} s")
    print(f"{REQUESTS} requests folded in one slice, per request:")
    print(f"{'state':>10} | {'size':>9} | {'worker CPU':>10} | {'PG CPU':>7} | {'wall':>7}")
    backend = database_backend_pid()
    for name, code in (("blob", BLOB), ("records", RECORDS), ("small", SMALL)):
        hook = hook_create(owner=owner, name=name, code=code)
        pending_requests(hook, 20)
        pipeline.hook_reduce(hook_id=hook.pk)  # warm-up: fork server, connections
        pending_requests(hook, REQUESTS)
        cpu = time.process_time(), process_cpu(backend)
        started = time.perf_counter()
        count = 0
        while count < REQUESTS:
            done, _more = pipeline.hook_reduce_slice(hook_id=hook.pk, seconds=600)
            count += done
        elapsed = time.perf_counter() - started
        worker, database = time.process_time() - cpu[0], process_cpu(backend) - cpu[1]
        state = State.objects.get(version_id=hook.live_id)
        assert state.seq == 20 + REQUESTS, state.seq
        print(
            f"{name:>10} | {len(state.value.encode()) / 2**20:>5.2f} MiB | "
            f"{worker / count * 1000:>7.2f} ms | {database / count * 1000:>4.2f} ms | "
            f"{elapsed / count * 1000:>4.1f} ms"
        )


if __name__ == "__main__":
    main()
