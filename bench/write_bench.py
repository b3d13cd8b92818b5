"""Write-path benchmark (issues 2 and 18). Run: `.venv/bin/python bench/write_bench.py` (needs
wrk, PostgreSQL and Redis; uses the database `webreducer_bench` and Redis db 8, bench/common.py).

1. Requests/s served (wrk, 32 connections, POST of a 325-byte JSON body) by: a bare Django view
   doing one equivalent INSERT, /write/<key> of a hook without a responder, and of a hook with a
   trivial responder, side by side in one run; with `--pages`, also a read (GET /read/<key>) and a
   UI page (GET /docs/, a page through the whole middleware chain; `/` would make a visitor per
   request and be throttled). `--servers a,b,...` runs
   every server arrangement at once on ports of their own and alternates them round by round, so
   their figures are comparable (docs/performance.md, "Web server"). Each row prints the CPU
   per request of the web server, PostgreSQL, Redis and wrk, read from /proc.
2. With `--profile`, where the web server's CPU goes for each write endpoint: py-spy samples of
   the first server, folded into the cost categories of bench/profiling.py.
3. Fold throughput: 20,000 pending requests into one hook, applied by one Celery worker.
4. Write-to-applied latency (p50/p99) at a steady write rate with a worker running.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    BODY,
    DB,
    ENV,
    ROOT,
    Stack,
    cpu_reference,
    figure,
    fresh_database,
    pending_requests,
    server_args,
    wait_until,
)
from bench.profiling import cpu_seconds, sampled, shares

PY = sys.executable
PROCESS_KINDS = ("web", "sandbox", "postgres", "redis", "wrk")


def sh(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env={**os.environ, **ENV}, text=True, capture_output=True, **kwargs
    )  # type: ignore[call-overload]


@dataclass
class Run:
    rps: float
    p50: str
    p99: str
    cpu_ms: dict[str, float]  # CPU per request, per process kind


def wrk(url: str, seconds: int, connections: int, method: str = "POST") -> tuple[float, str, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if method == "POST":
            script.write(
                'wrk.method = "POST"\n'
                f"wrk.body = {json.dumps(BODY)}\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
            )
    out = sh(
        "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        print(f"  warning: {non2xx.group(1)} non-2xx answers from {url}")
    return rps, p50, p99


def measured(url: str, method: str, seconds: int, connections: int, server_pid: int) -> Run:
    before = cpu_seconds([server_pid], DB)
    rps, p50, p99 = wrk(url, seconds, connections, method)
    after = cpu_seconds([server_pid], DB)
    served = max(1.0, rps * seconds)
    cpu = {k: 1000 * (after.get(k, 0.0) - before.get(k, 0.0)) / served for k in PROCESS_KINDS}
    return Run(rps, p50, p99, cpu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=300, help="steady writes/s for the latency run")
    parser.add_argument(
        "--server",
        "--servers",
        dest="servers",
        default="sync",
        help="web server(s), comma-separated and alternated: sync, gthread, granian or uvicorn "
        "[:WORKERSxTHREADS] (bench/common.py); SERVER@DIR serves another checkout's code "
        "(an A/B on one database)",
    )
    parser.add_argument("--pages", action="store_true", help="also a read and a UI page")
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                        help="py-spy the first server this long on each write endpoint")  # fmt: skip
    parser.add_argument("--throughput-only", action="store_true", help="skip the fold runs")
    options = parser.parse_args()
    # A SIGTERM (`timeout`, bench/all.py) ends the run through its cleanup, which stops the
    # servers: Python's default would die at once and leave them holding the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    servers = options.servers.split(",")
    print(f"CPU reference sum(range(20_000_000)): {cpu_reference():.2f} s")

    fresh_database()

    from accounts.models import User
    from hooks.models import Key, Request, State
    from hooks.services import hook_create

    owner = User.objects.create_user(username="bench")
    plain = hook_create(owner=owner, name="no responder", code="")
    responding = hook_create(
        owner=owner,
        name="trivial responder",
        code="def responder(request, secrets):\n    return {'ok': True}\n",
    )
    counter = hook_create(
        owner=owner,
        name="counter",
        code="def reducer(state, request, secrets):\n"
        "    state = state or {'number': 0}\n"
        "    state['number'] += request.body['number']\n"
        "    return state\n",
    )
    readable = hook_create(owner=owner, name="read", code=counter.live_version.code)
    State.objects.filter(version=readable.live_version).update(value='{"number": 20}', seq=20)

    def key_url(hook: object, kind: str = "write") -> str:
        return f"/{kind}/{Key.objects.get(hook=hook, kind=kind).token}"

    bare_label = "bare Django view + INSERT"
    # (label, path, method)
    targets = [
        (bare_label, f"/bench/bare/{plain.pk}", "POST"),
        ("/write/<key>, no responder", key_url(plain), "POST"),
        ("/write/<key>, trivial responder", key_url(responding), "POST"),
    ]
    if options.pages:
        targets += [
            ("GET /read/<key>", key_url(readable, "read"), "GET"),
            ("GET /docs/ (UI page)", "/docs/", "GET"),
        ]
    logs = Path(tempfile.mkdtemp(prefix="wr-bench-"))
    stack = Stack(logs)
    ports = {spec: 8765 + n for n, spec in enumerate(servers)}
    processes = {
        spec: stack.start(
            f"server-{n}",
            server_args(spec.partition("@")[0], ports[spec]),
            cwd=Path(spec.partition("@")[2] or ROOT),
        )
        for n, spec in enumerate(servers)
    }
    try:
        import httpx

        for spec, port in ports.items():
            wait_until(lambda port=port: httpx.get(f"http://127.0.0.1:{port}/").status_code < 500,
                       60, f"{spec} on port {port}")  # fmt: skip
        print(
            f"Throughput, wrk {options.connections} connections, {options.seconds}s each, "
            f"servers alternated round by round: {', '.join(servers)}"
        )
        for port in ports.values():  # warm up every worker's connections and sandbox
            for _, path, method in targets:
                wrk(f"http://127.0.0.1:{port}{path}", 2, options.connections, method)
        # Interleaved rounds (A B C, B C A, C A B), servers and endpoints alike: this machine's
        # speed drifts, and a ratio of medians over interleaved runs is what holds.
        runs: dict[tuple[str, str], list[Run]] = {}
        for round_ in range(options.rounds):
            order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
            for spec in order:
                shift = round_ % len(targets)
                for label, path, method in targets[shift:] + targets[:shift]:
                    url = f"http://127.0.0.1:{ports[spec]}{path}"
                    run = measured(url, method, options.seconds, options.connections,
                                   processes[spec].pid)  # fmt: skip
                    runs.setdefault((spec, label), []).append(run)
        print(f"\n{'server / endpoint (median of rounds)':<40}{'req/s':>8}{'p50':>10}{'p99':>10}"
              f"{'vs bare':>9}   CPU ms/request: web, sandbox, postgres, redis, wrk   (each round)")  # fmt: skip
        for spec in servers:
            bare = statistics.median(r.rps for r in runs[(spec, bare_label)])
            print(spec, " ".join(server_args(spec.partition("@")[0], ports[spec])[2:]))
            for label, _, _ in targets:
                done = runs[(spec, label)]
                rps = statistics.median(r.rps for r in done)
                middle = sorted(done, key=lambda r: r.rps)[len(done) // 2]
                cpu = ", ".join(f"{statistics.median(r.cpu_ms[k] for r in done):.2f}"
                                for k in PROCESS_KINDS)  # fmt: skip
                each = " ".join(f"{r.rps:.0f}" for r in done)
                print(f"  {label:<38}{rps:>8.0f}{middle.p50:>10}{middle.p99:>10}"
                      f"{rps / bare:>8.0%}   {cpu}   ({each})")  # fmt: skip
                if spec == servers[0] and label.startswith("/write"):
                    least = 1.0 if "no responder" in label else 0.85
                    figure(f"{label} vs bare view", 100 * rps / bare, "%",
                           target=f">= {least:.0%}", met=rps / bare >= least)  # fmt: skip

        if options.profile:
            spec = servers[0]
            print(f"\nWhere the web server's CPU goes ({spec}, py-spy, {options.profile}s each)")
            for label, path, method in targets[:3]:
                url = f"http://127.0.0.1:{ports[spec]}{path}"
                with sampled(processes[spec].pid, options.profile) as samples:
                    wrk(url, options.profile, options.connections, method)
                print(f"  {label}: {sum(samples.values())} samples")
                for name, share in shares(samples):
                    print(f"    {share:>6.1%}  {name}")

        if options.throughput_only:
            return
        # Fold throughput: 20,000 pending requests, one worker.
        from django.utils import timezone

        Request.objects.filter(hook__in=[plain, responding]).delete()
        now = timezone.now()
        count = 20000
        pending_requests(counter, count)
        state = State.objects.get(version=counter.live_version)
        stack.start(
            "worker", [PY, "-m", "celery", "-A", "webreducer", "worker", "-c", "1", "-l", "warning"]
        )
        time.sleep(4)
        from hooks.tasks import reduce_hook

        started = time.monotonic()
        reduce_hook.delay(str(counter.pk))
        while State.objects.get(pk=state.pk).seq < count:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        print(
            f"\nFold: {count} pending requests into one hook by one worker: {elapsed:.2f}s = {count / elapsed:.0f} requests/s"
        )

        # Latency from write to applied at a steady rate.
        url = f"http://127.0.0.1:{ports[servers[0]]}{key_url(counter)}"
        Request.objects.filter(hook=counter).update(received_at=now)  # exclude from the window
        stop = time.monotonic() + options.seconds
        per_thread = options.rate / 8

        def sender() -> None:
            with httpx.Client() as client:
                next_at = time.monotonic()
                while next_at < stop:
                    client.post(url, content=BODY, headers={"Content-Type": "application/json"})
                    next_at += 1 / per_thread
                    time.sleep(max(0.0, next_at - time.monotonic()))

        window_start = timezone.now()
        threads = [threading.Thread(target=sender) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(3)
        rows = Request.objects.filter(hook=counter, received_at__gte=window_start).values_list(
            "received_at", "applied_at"
        )
        lags = sorted((a - r).total_seconds() * 1000 for r, a in rows if a is not None)
        pending = sum(1 for _, a in rows if a is None)
        print(
            f"\nWrite-to-applied at ~{len(rows) / options.seconds:.0f} writes/s for {options.seconds}s: "
            f"p50 {statistics.median(lags):.1f} ms, p99 {lags[int(len(lags) * 0.99) - 1]:.1f} ms, "
            f"{pending} still pending"
        )
    finally:
        stack.stop()
    print(f"\nlogs in {logs}")


if __name__ == "__main__":
    main()
