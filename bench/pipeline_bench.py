"""Pipeline benchmark (issue 3): the real reduce pipeline — fetch pending requests from
PostgreSQL, fold, commit state and outcomes — with the sandbox, against the same pipeline with
the same reducer called in process (no sandbox), side by side; then a 100,000-request fold
from scratch (the cost of a replay).

Run: `.venv/bin/python bench/pipeline_bench.py` (PostgreSQL; database `webreducer_bench`).
`WR_BENCH_REPLAY=20000` shortens the from-scratch fold for a quick look; `WR_BENCH_READ_AHEAD=0`
turns the pipeline's read-ahead off for an A/B.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from typing import Any

from bench.common import figure, fresh_database, pending_requests

REPLAY = int(os.environ.get("WR_BENCH_REPLAY", "100000"))

CODE = """
def reducer(state, request, secrets):
    state = state or {"number": 0, "count": 0}
    state["number"] += request.body["number"]
    state["count"] += 1
    return state
"""


class InProcessSession:
    """The baseline: the same contract as sandbox.Session, calling the code in this process.
    Benchmark only — user code never runs in process in the product."""

    def __init__(self, code: str):
        self.secrets: dict[str, str] = {}
        self.namespace: dict[str, Any] = {}
        exec(compile(code, "hook.py", "exec"), self.namespace)  # the baseline runs our own code

    def idempotency_keys(self, requests: list[str]) -> list[Any]:
        raise AssertionError("the bench code has no idempotency_key")

    def reduce(self, state_json: str, requests: list[str]) -> list[Any]:
        import base64

        from sandbox import ReduceStep

        class Request(dict):  # type: ignore[type-arg]
            __getattr__ = dict.get

        state = json.loads(state_json)
        steps = []
        for text in requests:
            payload = json.loads(text)
            request = Request(payload, body=json.loads(base64.b64decode(payload["body_b64"])))
            started = time.perf_counter()
            state = self.namespace["reducer"](state, request, {})
            state_text = json.dumps(state, separators=(",", ":"))
            steps.append(
                ReduceStep(True, state_text, None, "", (time.perf_counter() - started) * 1000)
            )
        return steps


@contextmanager
def in_process(**kwargs: Any) -> Iterator[InProcessSession]:
    yield InProcessSession(kwargs["code"])


def main() -> None:
    fresh_database()

    from accounts.models import User
    from hooks import fold, pipeline
    from hooks.services import hook_create
    from webreducer.celery import tune_gc

    owner = User.objects.create_user(username="bench")
    tune_gc()  # as a Celery worker process does at start

    def run(batch: int, batches: int, sandboxed: bool) -> float:
        hook = hook_create(owner=owner, name=f"b{batch}", code=CODE)
        pending_requests(hook, batch * batches)
        original = fold.session, pipeline.session
        if not sandboxed:
            fold.session = pipeline.session = in_process  # type: ignore[assignment]
        try:
            pipeline._reduce_batch(hook.pk, batch)  # warm-up: connections, fork server
            started = time.perf_counter()
            for _ in range(batches - 1):
                pipeline._reduce_batch(hook.pk, batch)
            return (batch * (batches - 1)) / (time.perf_counter() - started)
        finally:
            fold.session, pipeline.session = original

    print("Reduce pipeline for one hook (fetch pending, fold, commit outcomes and state)")
    print(f"{'batch':>6} | {'sandbox req/s':>14} | {'in-process req/s':>17} | {'ratio':>6}")
    for batch, batches in ((1, 200), (100, 20), (1000, 8)):
        boxed = run(batch, batches, sandboxed=True)
        plain = run(batch, batches, sandboxed=False)
        print(f"{batch:>6} | {boxed:>14,.0f} | {plain:>17,.0f} | {boxed / plain:>6.0%}")
        if batch == 1000:
            figure("sandboxed fold vs in-process, batch 1,000", 100 * boxed / plain, "%",
                   target=">= 50 %", met=boxed / plain >= 0.5)  # fmt: skip

    hook = hook_create(owner=owner, name="replay", code=CODE)
    pending_requests(hook, REPLAY)
    if os.environ.get("WR_BENCH_READ_AHEAD") == "0":  # A/B: each batch folds after the last
        batch = pipeline._reduce_batch
        pipeline._reduce_batch = lambda *a, **k: batch(*a, **{**k, "read_ahead": False})  # type: ignore[assignment]
    backend = database_backend_pid()
    cpu = time.process_time(), process_cpu(backend)
    started = time.perf_counter()
    count = pipeline.hook_reduce(hook_id=hook.pk)
    elapsed = time.perf_counter() - started
    worker, database = time.process_time() - cpu[0], process_cpu(backend) - cpu[1]
    print(
        f"\nFold {REPLAY:,} pending requests of one hook from scratch: {elapsed:.2f} s "
        f"({count / elapsed:,.0f} requests/s)\n"
        f"  CPU per 1,000 requests: worker {worker / count * 1e6:.0f} ms, "
        f"PostgreSQL backend {database / count * 1e6:.0f} ms (the sandbox child's is the rest)"
    )
    scaled = elapsed * 100_000 / max(1, count)
    figure(f"{count:,} pending folded from scratch (per 100,000)", scaled, "s",
           target="< 10 s", met=scaled < 10)  # fmt: skip
    figure("  CPU per 1,000 requests: worker", worker / count * 1e6, "ms")
    figure("  CPU per 1,000 requests: PostgreSQL", database / count * 1e6, "ms")


def database_backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process on this machine (PostgreSQL runs here)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
