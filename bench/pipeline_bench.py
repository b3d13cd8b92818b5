"""Pipeline benchmark (issues 3 and 18): the real reduce pipeline — fetch pending requests from
PostgreSQL, fold, commit state and outcomes — with the sandbox, against the same pipeline with
the same reducer called in process (no sandbox), side by side; then a fold from scratch of
`--replay` pending requests of one hook (the cost of a replay), with the worker's RSS along the
way and the same fold in process for the ratio.

Run: `.venv/bin/python bench/pipeline_bench.py [--parts batch,replay] [--replay 100000]
[--in-process-replay N] [--rss-every N]` (PostgreSQL; database `WR_BENCH_DB`, default
`webreducer_bench`). `WR_BENCH_REPLAY=20000` sets the default of `--replay` (a quick look);
`WR_BENCH_READ_AHEAD=0` turns the pipeline's read-ahead off for an A/B. The million of issue 18:
`--parts replay --replay 1000000 --in-process-replay 0`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from typing import Any

from bench.common import figure, fresh_database, pending_requests

REPLAY = int(os.environ.get("WR_BENCH_REPLAY", "100000"))
PARTS = ("batch", "replay")

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


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: batch,replay")
    parser.add_argument("--replay", type=int, default=REPLAY, metavar="N",
                        help="pending requests folded from scratch (WR_BENCH_REPLAY)")  # fmt: skip
    parser.add_argument("--in-process-replay", type=int, default=None, metavar="N",
                        help="the same fold with the reducer in process, for the ratio "
                        "(default: --replay; 0 skips it)")  # fmt: skip
    parser.add_argument("--rss-every", type=int, default=None, metavar="N",
                        help="print the worker's RSS every N folded requests "
                        "(default: a tenth of --replay)")  # fmt: skip
    args = parser.parse_args()
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}: one of {', '.join(PARTS)}")
    if args.in_process_replay is None:
        args.in_process_replay = args.replay
    if args.rss_every is None:
        args.rss_every = max(1, args.replay // 10)
    return args


def main() -> None:
    args = arguments()
    fresh_database()

    from accounts.models import User
    from webreducer.celery import tune_gc

    owner = User.objects.create_user(username="bench")
    tune_gc()  # as a Celery worker process does at start
    if "batch" in args.parts:
        batch_table(owner)
    if "replay" in args.parts:
        replay(owner, args)


def batch_table(owner: Any) -> None:
    from hooks import fold, pipeline
    from hooks.services import hook_create

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


@dataclass
class Fold:
    count: int
    seconds: float
    worker_cpu: float  # this process (the worker), seconds
    database_cpu: float  # its PostgreSQL backend, seconds
    sandbox_cpu: float  # the fork server and the sandbox children, seconds
    rss: list[tuple[int, int]]  # (requests folded, this process's RSS in bytes)

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def replay(owner: Any, args: argparse.Namespace) -> None:
    from hooks import pipeline

    if os.environ.get("WR_BENCH_READ_AHEAD") == "0":  # A/B: each batch folds after the last
        batch = pipeline._reduce_batch
        pipeline._reduce_batch = lambda *a, **k: batch(*a, **{**k, "read_ahead": False})  # type: ignore[assignment]

    boxed = fold_from_scratch(owner, "replay", args.replay, args.rss_every, sandboxed=True)
    elapsed, count = boxed.seconds, boxed.count
    print(
        f"\nFold {args.replay:,} pending requests of one hook from scratch: {elapsed:.2f} s "
        f"({boxed.rate:,.0f} requests/s)\n"
        f"  CPU per 1,000 requests: worker {boxed.worker_cpu / count * 1e6:.0f} ms, "
        f"PostgreSQL backend {boxed.database_cpu / count * 1e6:.0f} ms, "
        f"sandbox {boxed.sandbox_cpu / count * 1e6:.0f} ms\n"
        f"  worker RSS: {mib(boxed.rss[0][1])} at the start, {mib(boxed.rss[-1][1])} at the end, "
        f"{mib(max(r for _, r in boxed.rss))} at most"
    )
    scaled = elapsed * 100_000 / max(1, count)
    figure(f"{count:,} pending folded from scratch (per 100,000)", scaled, "s",
           target="< 10 s", met=scaled < 10)  # fmt: skip
    figure("  requests/s", boxed.rate, "req/s")
    figure("  CPU per 1,000 requests: worker", boxed.worker_cpu / count * 1e6, "ms")
    figure("  CPU per 1,000 requests: PostgreSQL", boxed.database_cpu / count * 1e6, "ms")
    figure("  CPU per 1,000 requests: sandbox", boxed.sandbox_cpu / count * 1e6, "ms")
    figure("  worker RSS growth", (boxed.rss[-1][1] - boxed.rss[0][1]) / 2**20, "MiB")
    if args.in_process_replay:
        plain = fold_from_scratch(
            owner, "replay-in-process", args.in_process_replay, 0, sandboxed=False
        )
        print(
            f"  in process ({plain.count:,} requests): {plain.seconds:.2f} s "
            f"({plain.rate:,.0f} requests/s; worker {plain.worker_cpu / plain.count * 1e6:.0f} ms,"
            f" PostgreSQL {plain.database_cpu / plain.count * 1e6:.0f} ms per 1,000): sandboxed "
            f"at {boxed.rate / plain.rate:.0%} of in process"
        )
        figure("  from scratch: sandboxed vs in-process", 100 * boxed.rate / plain.rate, "%")


def fold_from_scratch(
    owner: Any, name: str, count: int, rss_every: int, *, sandboxed: bool
) -> Fold:
    """Store `count` pending requests of a new hook and fold them all (pipeline.hook_reduce, as
    a task does, slice after slice); with `rss_every`, print this process's RSS every that many
    folded requests."""
    from hooks import fold, pipeline
    from hooks.services import hook_create

    hook = hook_create(owner=owner, name=name, code=CODE)
    stored = time.perf_counter()
    pending_requests(hook, count)
    print(
        f"\n{count:,} pending requests stored in {time.perf_counter() - stored:.1f} s", flush=True
    )
    rss = [(0, rss_bytes())]
    folded = 0
    batch = pipeline._reduce_batch

    def counted(*a: Any, **k: Any) -> Any:
        nonlocal folded
        result = batch(*a, **k)
        before, folded = folded, folded + result[0]
        if rss_every and folded // rss_every > before // rss_every:
            rss.append((folded, rss_bytes()))
            print(f"  {folded:>10,} folded: worker RSS {mib(rss[-1][1])}", flush=True)
        return result

    original = fold.session, pipeline.session
    if not sandboxed:
        fold.session = pipeline.session = in_process  # type: ignore[assignment]
    pipeline._reduce_batch = counted  # type: ignore[assignment]
    try:
        backend = database_backend_pid()
        cpu = time.process_time(), process_cpu(backend), descendants_cpu()
        started = time.perf_counter()
        done = pipeline.hook_reduce(hook_id=hook.pk)
        elapsed = time.perf_counter() - started
        worker, database = time.process_time() - cpu[0], process_cpu(backend) - cpu[1]
        sandbox = descendants_cpu() - cpu[2]
    finally:
        pipeline._reduce_batch = batch  # type: ignore[assignment]
        fold.session, pipeline.session = original
    rss.append((done, rss_bytes()))
    if done != count:
        raise SystemExit(f"folded {done:,} of {count:,} pending requests")
    return Fold(done, elapsed, worker, database, sandbox, rss)


def descendants_cpu() -> float:
    """User + system CPU seconds of this process's descendants (the fork server, the sandbox
    children it forked), alive or reaped by their parent."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            own = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
            table[int(entry)] = (int(fields[1]), own)
    me, total = os.getpid(), 0
    for pid, (parent, own) in table.items():
        while parent in table and parent != me and parent > 1:
            parent = table[parent][0]
        if parent == me and pid != me:
            total += own
    return total / tick


def rss_bytes() -> int:
    """This process's resident set size (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


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
