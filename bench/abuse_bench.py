"""Fairness benchmark (issue 13, finding 4): does one tenant starve the others?

Run: `.venv/bin/python bench/abuse_bench.py [--server gthread] [--seconds 30]`
(PostgreSQL and Redis on loopback; uses the database WR_BENCH_DB, default `webreducer_abuse`
when unset, and Redis db WR_BENCH_REDIS_DB, default 8; both are wiped).

It starts the stack as docker-compose.yml runs it (the web server chosen by --server for HTTP, a
Celery worker with 2 processes, beat with the reconciler; PostgreSQL and Redis are the machine's)
and measures a well-behaved hook (a counter reducer, a trivial responder and a trivial query) at a
steady rate: its read p50/p99, write p50/p99 and fold lag (write received to applied), first
without abuse, then during each of finding 4's scenarios:

  slow-query      50 clients reading a hook whose `query` spins ~0.9 s of CPU
  slow-responder  50 clients writing to a hook whose `responder` spins ~0.9 s of CPU
  big-state       a hook with a ~0.9 MiB state written 40 times a second (under its rate limit)

Abusive clients honour Retry-After when refused (429/503), as HTTP clients do; `--impatient`
makes them retry after 0.1 s instead. Every process it starts is in a process group of its own
and is killed on exit, Ctrl-C or a crash; every loop is bounded in time; loopback only. The
abusive clients run in a process of their own, apart from the measuring one (`abuse_group`).

Each abuse phase is compared with the run's two no-abuse phases (before and after), pooled: on
a shared machine the load of other jobs drifts over a run, and one quiet or noisy baseline of
~200 samples made the ratio swing by 2x. The p99 of a phase of N samples is its N/100-th worst
sample: phases of 30 s or more (~300 samples of each kind) keep one onset spike from being the
figure. Each phase also prints the web server's own CPU (its processes, not the sandboxed
children): what the abusive requests cost it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("WR_BENCH_DB", "webreducer_abuse")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    DB,
    ENV,
    Stack,
    cpu_reference,
    figure,
    fresh_database,
    server_args,
    wait_until,
)

PY = sys.executable
PORT = 8791

GOOD = """
def reducer(state, request, secrets):
    state = state or {"n": 0}
    state["n"] += 1
    return state

def responder(request, secrets):
    return {"ok": True}

def query(state, params, secrets):
    return {"n": state["n"] if state else 0}
"""
SPIN = """
import time

def _spin(seconds):
    started = time.process_time()
    while time.process_time() - started < seconds:
        pass
"""
SLOW_QUERY = (
    SPIN
    + """
def query(state, params, secrets):
    _spin(0.9)
    return {"slow": True}
"""
)
SLOW_RESPONDER = (
    SPIN
    + """
def responder(request, secrets):
    _spin(0.9)
    return {"slow": True}
"""
)
BIG_STATE = """
def reducer(state, request, secrets):
    state = state or {"blob": "x" * 900_000, "n": 0}
    state["n"] += 1
    return state
"""


# ---- processes ----------------------------------------------------------------------------------
# ---- clients ------------------------------------------------------------------------------------
@dataclass
class Samples:
    read_ms: list[float] = field(default_factory=list)
    write_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    # (seconds into the phase, "read"/"write", ms) of every sample: where the slow ones fall.
    timeline: list[tuple[float, str, float]] = field(default_factory=list)


def good_client(base: str, read: str, write: str, rate: float, stop: float, out: Samples) -> None:
    """The well-behaved tenant: one read and one write every 1/rate s, each timed."""
    import httpx

    with httpx.Client(timeout=30) as client:
        next_at = began = time.monotonic()
        while next_at < stop:
            for url, bucket, method in (
                (f"{base}/read/{read}", out.read_ms, "GET"),
                (f"{base}/write/{write}", out.write_ms, "POST"),
            ):
                started = time.perf_counter()
                try:
                    response = client.request(
                        method, url, json={"n": 1} if method == "POST" else None
                    )
                    status = response.status_code
                except httpx.HTTPError:
                    status = 599
                bucket.append((time.perf_counter() - started) * 1000)
                out.statuses[status] += 1
                out.timeline.append((time.monotonic() - began, method, bucket[-1]))
            next_at += 1 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))


def abuser(
    client: Any, method: str, url: str, stop: float, impatient: bool, statuses: Counter[int],
    pace: float = 0,
) -> None:  # fmt: skip
    import httpx

    with client:
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                response = client.request(method, url, json={"n": 1} if method == "POST" else None)
                status = response.status_code
                wait = (
                    float(response.headers.get("Retry-After", 0) or 0)
                    if status in (429, 503)
                    else 0
                )
            except httpx.HTTPError:
                status, wait = 599, 1.0
            statuses[status] += 1
            if wait:
                time.sleep(0.1 if impatient else wait)
            elif pace:
                time.sleep(max(0.0, pace - (time.monotonic() - started)))


def abuse_group(
    abusers: list[tuple[str, str, float]], seconds: float, impatient: bool, results: Any
) -> None:
    """The abusive clients, in a process of their own: fifty client threads in the measuring
    process would make the well-behaved client wait for the GIL, and its p99 would measure the
    benchmark rather than the server. Their HTTP clients are made before the phase starts (50
    httpx clients cost ~1 s of CPU to make: inside the phase, that was the benchmark's own load
    on the machine, and it set the well-behaved hook's p99). Sends its stop time first, its
    answers' statuses last."""
    import httpx

    statuses: Counter[int] = Counter()
    clients = [httpx.Client(timeout=30) for _ in abusers]
    stop = time.monotonic() + seconds  # CLOCK_MONOTONIC: the same clock in every process
    results.put(stop)
    threads = [
        threading.Thread(target=abuser, args=(client, method, url, stop, impatient, statuses, pace))
        for client, (method, url, pace) in zip(clients, abusers, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    results.put(dict(statuses))


def web_cpu_seconds(web_pid: int) -> float:
    """CPU used so far by the web server's processes (its process group), without the sandbox
    fork server and its children: the server's own work, apart from the user code it runs."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) != web_pid or b"wr_forkserver" in cmdline:  # fields[2]: pgrp
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def connections_sampler(stop: threading.Event, peak: list[int]) -> None:
    import psycopg

    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=DB, autocommit=True) as conn:
        while not stop.wait(0.25):
            (count,) = conn.execute(  # type: ignore[misc]
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [DB],
            ).fetchone()
            peak.append(int(count))


# ---- one phase ----------------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    samples: Samples
    lag_ms: list[float]
    pending: int
    abuse: Counter[int]
    peak_connections: int
    web_cpu: float = 0.0  # the web server's CPU per second of the phase


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def run_phase(name: str, options: argparse.Namespace, base: str, good: dict[str, str],
              abusers: list[tuple[str, str, float]], web_pid: int) -> Phase:  # fmt: skip
    from django.utils import timezone

    from hooks.models import Request

    samples, abuse = Samples(), Counter[int]()
    window_start = timezone.now()
    group = None
    if abusers:
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        group = context.Process(
            target=abuse_group, args=(abusers, options.seconds, options.impatient, results)
        )
        group.start()
        stop = float(results.get(timeout=60))
    else:
        stop = time.monotonic() + options.seconds
    cpu_before, began = web_cpu_seconds(web_pid), time.monotonic()
    threads = [
        threading.Thread(
            target=good_client,
            args=(base, good["read"], good["write"], options.rate, stop, samples),
        )
    ]
    done, peak = threading.Event(), [0]
    sampler = threading.Thread(target=connections_sampler, args=(done, peak), daemon=True)
    sampler.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=options.seconds + 60)
    web_cpu = (web_cpu_seconds(web_pid) - cpu_before) / max(0.001, time.monotonic() - began)
    if group is not None:
        abuse.update(results.get(timeout=90))
        group.join(timeout=30)
    done.set()
    sampler.join(timeout=5)
    # Give the good hook's last writes time to be applied (bounded), then read their lag.
    deadline = time.monotonic() + 15
    rows: list[tuple[object, object]] = []
    while time.monotonic() < deadline:
        rows = list(
            Request.objects.filter(hook_id=good["id"], received_at__gte=window_start).values_list(
                "received_at", "applied_at"
            )
        )
        if all(applied is not None for _, applied in rows):
            break
        time.sleep(0.5)
    lags = [(a - r).total_seconds() * 1000 for r, a in rows if a is not None]  # type: ignore[operator]
    pending = sum(1 for _, a in rows if a is None)
    return Phase(name, samples, lags, pending, abuse, max(peak), web_cpu)


def settle(options: argparse.Namespace) -> None:
    """Let the last phase's backlog drain (bounded), so phases do not bleed into each other."""
    from hooks.models import Request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not Request.objects.filter(outcome=Request.Outcome.PENDING).exists():
            break
        time.sleep(0.5)
    time.sleep(2)


def report(phases: list[Phase], options: argparse.Namespace) -> None:
    quiet = [phase for phase in phases if phase.name.startswith("no abuse")]
    base = Phase(
        "no abuse, both",
        Samples(
            read_ms=[ms for phase in quiet for ms in phase.samples.read_ms],
            write_ms=[ms for phase in quiet for ms in phase.samples.write_ms],
        ),
        [lag for phase in quiet for lag in phase.lag_ms],
        0,
        Counter(),
        0,
    )
    print(
        f"\nThe well-behaved hook, {options.rate:g} reads + {options.rate:g} writes/s, "
        f"{options.seconds:g} s per phase, server {options.server}:"
    )
    print(
        f"{'phase':<16}{'read p50':>10}{'p99':>9}{'write p50':>11}{'p99':>9}"
        f"{'lag p50':>10}{'p99':>9}{'max':>9}  {'peak DB conns':>13}  {'web CPU':>8}  "
        "abusive answers"
    )
    for phase in [*phases, base]:
        s = phase.samples
        row = (
            f"{phase.name:<16}{percentile(s.read_ms, 0.5):>8.1f}ms{percentile(s.read_ms, 0.99):>7.1f}ms"
            f"{percentile(s.write_ms, 0.5):>9.1f}ms{percentile(s.write_ms, 0.99):>7.1f}ms"
            f"{percentile(phase.lag_ms, 0.5):>8.0f}ms{percentile(phase.lag_ms, 0.99):>7.0f}ms"
            f"{max(phase.lag_ms, default=float('nan')):>7.0f}ms  {phase.peak_connections:>13}  "
            f"{phase.web_cpu:>8.2f}  "
            + ", ".join(f"{k}: {v}" for k, v in sorted(phase.abuse.items()))
        )
        print(row)
        if phase is base:
            break
        worst = sorted(s.timeline, key=lambda sample: -sample[2])[:3]
        print(f"{'':<16}slowest: " + ", ".join(
            f"{'read' if method == 'GET' else 'write'} {ms:.0f} ms at {at:.1f} s"
            for at, method, ms in worst))  # fmt: skip
        bad = {k: v for k, v in s.statuses.items() if k >= 400}
        if bad or phase.pending:
            print(f"{'':<16}well-behaved errors: {bad or 'none'}; still pending: {phase.pending}")
    print(
        f"\nDuring abuse vs without ({len(base.samples.read_ms)} reads and "
        f"{len(base.samples.write_ms)} writes of both no-abuse phases; targets: read and write "
        "p99 < 3x, fold lag p99 < 1 s):"
    )
    for phase in phases:
        ratio_r = percentile(phase.samples.read_ms, 0.99) / percentile(base.samples.read_ms, 0.99)
        ratio_w = percentile(phase.samples.write_ms, 0.99) / percentile(base.samples.write_ms, 0.99)
        lag = percentile(phase.lag_ms, 0.99)
        ok = ratio_r < 3 and ratio_w < 3 and lag < 1000 and not phase.pending
        if not phase.name.startswith("no abuse"):
            figure(f"{phase.name}: read p99 vs no abuse", ratio_r, "x", target="< 3 x",
                   met=ratio_r < 3)  # fmt: skip
            figure(f"{phase.name}: write p99 vs no abuse", ratio_w, "x", target="< 3 x",
                   met=ratio_w < 3)  # fmt: skip
            figure(f"{phase.name}: fold lag p99", lag, "ms", target="< 1,000 ms",
                   met=lag < 1000 and not phase.pending)  # fmt: skip
        print(
            f"  {phase.name:<16} read p99 x{ratio_r:.2f}  write p99 x{ratio_w:.2f}  "
            f"lag p99 {lag:.0f} ms  {'met' if ok else 'NOT met'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="gthread", help="sync, gthread, granian, uvicorn[:WxT]")
    parser.add_argument("--seconds", type=float, default=30, help="length of each phase")
    parser.add_argument("--rate", type=float, default=10, help="the good hook's reads and writes/s")
    parser.add_argument("--clients", type=int, default=50, help="abusive clients per scenario")
    parser.add_argument("--big-rate", type=float, default=40, help="big-state writes/s")
    parser.add_argument("--impatient", action="store_true", help="abusers ignore Retry-After")
    parser.add_argument(
        "--scenarios", default="slow-query,slow-responder,big-state", help="comma-separated"
    )
    options = parser.parse_args()
    if options.seconds > 120 or options.clients > 200:
        raise SystemExit("bounded: --seconds <= 120, --clients <= 200")
    reference_before = cpu_reference()
    print(f"CPU reference sum(range(20_000_000)): {reference_before:.2f} s")

    # The bench's own settings; the rate limit stays at its default (the big-state hook writes
    # under it, as in the finding).
    ENV.pop("WR_RATE_PER_SECOND", None)
    ENV.pop("WR_RATE_BURST", None)
    fresh_database()

    from accounts.models import User
    from hooks.models import Key
    from hooks.services import hook_create

    owner = User.objects.create_user(username="abuse-bench")

    def make(name: str, code: str) -> dict[str, str]:
        hook = hook_create(owner=owner, name=name, code=code)
        keys = dict(Key.objects.filter(hook=hook).values_list("kind", "token"))
        return {"id": str(hook.pk), "read": keys["read"], "write": keys["write"]}

    good = make("well-behaved", GOOD)
    slow_query = make("slow query", SLOW_QUERY)
    slow_responder = make("slow responder", SLOW_RESPONDER)
    big_state = make("big state", BIG_STATE)

    logs = Path(tempfile.mkdtemp(prefix="wr-abuse-"))
    stack = Stack(logs)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = f"http://127.0.0.1:{PORT}"
    try:
        web = stack.start("web", server_args(options.server, PORT))
        celery = [PY, "-m", "celery", "-A", "webreducer"]
        stack.start("worker", [*celery, "worker", "-c", "2", "-l", "info"])
        stack.start("beat", [*celery, "beat", "-l", "warning", "-s", str(logs / "beat")])
        import httpx

        wait_until(lambda: httpx.get(f"{base}/read/{good['read']}").status_code == 200, 60, "web")
        # Warm every process: a first call per process starts its sandbox children.
        for _ in range(20):
            httpx.get(f"{base}/read/{good['read']}")
            httpx.post(f"{base}/write/{good['write']}", json={"n": 1})
        settle(options)

        scenarios = {
            "slow-query": [("GET", f"{base}/read/{slow_query['read']}", 0.0)] * options.clients,
            "slow-responder": [("POST", f"{base}/write/{slow_responder['write']}", 0.0)]
            * options.clients,
            # 4 clients, each pacing its writes: options.big_rate writes/s in all.
            "big-state": [("POST", f"{base}/write/{big_state['write']}", 4 / options.big_rate)] * 4,
        }
        phases = [run_phase("no abuse", options, base, good, [], web.pid)]
        for name in options.scenarios.split(","):
            settle(options)
            phases.append(run_phase(name, options, base, good, scenarios[name], web.pid))
        settle(options)
        phases.append(run_phase("no abuse again", options, base, good, [], web.pid))
        report(phases, options)
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)
    print(f"\nCPU reference sum(range(20_000_000)): {reference_before:.2f} s before, "
          f"{cpu_reference():.2f} s after; logs in {logs}")  # fmt: skip


if __name__ == "__main__":
    main()
