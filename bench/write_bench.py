"""Write-path benchmark (issue 2). Run: `.venv/bin/python bench/write_bench.py` (needs wrk,
PostgreSQL and Redis; uses the database `webreducer_bench` and Redis db 8).

1. Writes/s accepted by gunicorn (sync, 4 workers) for: a bare Django view doing one equivalent
   INSERT, /write/<key> of a hook without a responder, and of a hook with a trivial responder,
   side by side in one run (wrk, 32 connections, POST of a 325-byte JSON body).
2. Fold throughput: 20,000 pending requests into one hook, applied by one Celery worker.
3. Write-to-applied latency (p50/p99) at a steady write rate with a worker running.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    BODY,
    ENV,
    ROOT,
    cpu_reference,
    figure,
    fresh_database,
    pending_requests,
    server_args,
)

PY = sys.executable


def sh(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env={**os.environ, **ENV}, text=True, capture_output=True, **kwargs
    )  # type: ignore[call-overload]


def wrk(url: str, seconds: int, connections: int) -> tuple[float, str, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
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


def start(args: list[str], log: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **ENV}, stdout=open(log, "wb"), stderr=subprocess.STDOUT
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=300, help="steady writes/s for the latency run")
    parser.add_argument(
        "--server",
        default="sync",
        help="web server: sync, gthread, granian or uvicorn [:WORKERSxTHREADS] (bench/common.py)",
    )
    parser.add_argument("--throughput-only", action="store_true", help="skip the fold runs")
    options = parser.parse_args()
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

    def write_url(hook: object) -> str:
        return f"/write/{Key.objects.get(hook=hook, kind='write').token}"

    port = 8765
    base = f"http://127.0.0.1:{port}"
    logs = Path(tempfile.mkdtemp(prefix="wr-bench-"))
    server = start(server_args(options.server, port), str(logs / "server.log"))
    try:
        time.sleep(3)
        print(
            f"Write throughput, {' '.join(server_args(options.server, port)[2:4])} "
            f"({options.server}), wrk {options.connections} connections, {options.seconds}s each"
        )
        print(
            f"{'endpoint (median of rounds)':<34}{'req/s':>10}{'p50':>10}{'p99':>10}{'vs bare':>9}"
        )
        targets = [
            ("bare Django view + INSERT", f"{base}/bench/bare/{plain.pk}"),
            ("/write/<key>, no responder", base + write_url(plain)),
            ("/write/<key>, trivial responder", base + write_url(responding)),
        ]
        for _, url in targets:  # warm up every worker's connections and sandbox
            wrk(url, 2, options.connections)
        # Interleaved rounds (A B C, B C A, C A B): this machine's speed drifts, and a ratio of
        # medians over interleaved runs is what holds.
        runs: dict[str, list[tuple[float, str, str]]] = {label: [] for label, _ in targets}
        for round_ in range(options.rounds):
            order = targets[round_ % len(targets) :] + targets[: round_ % len(targets)]
            for label, url in order:
                runs[label].append(wrk(url, options.seconds, options.connections))
        bare = statistics.median(r[0] for r in runs[targets[0][0]])
        for label, _ in targets:
            rps = statistics.median(r[0] for r in runs[label])
            _, p50, p99 = sorted(runs[label])[len(runs[label]) // 2]
            each = " ".join(f"{r[0]:.0f}" for r in runs[label])
            print(f"{label:<34}{rps:>10.0f}{p50:>10}{p99:>10}{rps / bare:>8.0%}   ({each})")
            if label != targets[0][0]:
                least = 1.0 if "no responder" in label else 0.85
                figure(f"{label} vs bare view", 100 * rps / bare, "%",
                       target=f">= {least:.0%}", met=rps / bare >= least)  # fmt: skip

        if options.throughput_only:
            return
        # Fold throughput: 20,000 pending requests, one worker.
        from django.utils import timezone

        Request.objects.filter(hook__in=[plain, responding]).delete()
        now = timezone.now()
        count = 20000
        pending_requests(counter, count)
        state = State.objects.get(version=counter.live_version)
        worker = start(
            [PY, "-m", "celery", "-A", "webreducer", "worker", "-c", "1", "-l", "warning"],
            str(logs / "worker.log"),
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
        url = base + write_url(counter)
        Request.objects.filter(hook=counter).update(received_at=now)  # exclude from the window
        import httpx

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
        worker.terminate()
        worker.wait()
    finally:
        server.terminate()
        server.wait()
    print(f"\nlogs in {logs}")


if __name__ == "__main__":
    main()
