"""Sandbox-level benchmark: `.venv/bin/python bench/sandbox_bench.py [--quick]`.

Prints a table of
- reduce throughput at batch sizes 1, 100 and 1000 through the real sandbox (one fresh sandboxed
  child per session, as a worker batch uses) next to the same reducer called in-process;
- folding 100,000 requests of one hook from scratch, in batches of 1000;
- respond() and query() latency, p50/p99, with a warm child and with a cold one.
Runs without Django settings (the sandbox then uses its built-in default limits).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sandbox
from sandbox import Limits, session

COUNTER = """
def reducer(state, request, secrets):
    state = state or {"number": 0}
    state["number"] += request.body["number"]
    return state

def responder(request, secrets):
    return {"accepted": request.body["number"]}

def query(state, params, secrets):
    return {"number": (state or {}).get("number", 0), "page": params.get("page")}
"""


def make_request(number: int) -> dict[str, Any]:
    body = json.dumps({"number": number}).encode()
    return {
        "id": str(uuid.uuid4()),
        "seq": number,
        "method": "POST",
        "path": "",
        "headers": {"Content-Type": "application/json", "User-Agent": "bench"},
        "query": {},
        "content_type": "application/json",
        "body_b64": base64.b64encode(body).decode(),
        "received_at": "2026-11-27T20:00:00.000000Z",
    }


class _Request(dict):  # type: ignore[type-arg]
    def __getattr__(self, name: str) -> Any:
        return self[name]


def in_process(requests: list[dict[str, Any]]) -> float:
    """The same reducer as a plain function-call loop (what the sandbox costs is the difference).
    Bodies are parsed and the state copied per request, as the sandbox must do."""
    namespace: dict[str, Any] = {}
    exec(compile(COUNTER, "hook.py", "exec"), namespace)
    reducer = namespace["reducer"]
    started = time.perf_counter()
    state_json = "null"
    for data in requests:
        request = _Request(data, body=json.loads(base64.b64decode(data["body_b64"])))
        state_json = json.dumps(reducer(json.loads(state_json), request, {}), separators=(",", ":"))
    return time.perf_counter() - started


def sandboxed(requests: list[dict[str, Any]], limits: Limits) -> float:
    started = time.perf_counter()
    with session(code=COUNTER, secrets={}, limits=limits) as box:
        steps = box.reduce("null", requests)
    elapsed = time.perf_counter() - started
    assert all(step.ok for step in steps), steps[0]
    return elapsed


def best_of(runs: int, fn: Any, *args: Any) -> float:
    return min(fn(*args) for _ in range(runs))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency(kind: str, warm: bool, calls: int, limits: Limits) -> list[float]:
    hook_id = "bench-hook" if warm else ""
    timings = []
    for n in range(calls):
        started = time.perf_counter()
        with session(code=COUNTER, secrets={"k": "v"}, limits=limits, hook_id=hook_id) as box:
            if kind == "respond":
                result = box.respond(make_request(n))
            else:
                result = box.query('{"number":42}', {"page": ["2"]})
        timings.append((time.perf_counter() - started) * 1000)
        assert result.ok, result.error
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions and a 10,000-request fold"
    )
    args = parser.parse_args()
    runs = 3 if args.quick else 7
    fold_total = 10_000 if args.quick else 100_000
    calls = 100 if args.quick else 500
    limits = Limits()

    started = time.perf_counter()
    report = sandbox.isolation_report()  # starts the fork server
    print(
        f"fork server started in {(time.perf_counter() - started) * 1000:.0f} ms; layers: {report}"
    )
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    sandboxed([make_request(1)], limits)  # warm the code paths

    print(f"\nreduce throughput (best of {runs})")
    print(
        f"{'batch':>6} | {'sandbox ms':>10} | {'µs/request':>10} | {'req/s':>9} | {'in-process ms':>13} | {'µs/request':>10}"
    )
    print("-" * 74)
    for size in (1, 100, 1000):
        requests = [make_request(n) for n in range(size)]
        boxed = best_of(runs, sandboxed, requests, limits)
        local = best_of(runs, in_process, requests)
        print(
            f"{size:>6} | {boxed * 1000:>10.2f} | {boxed / size * 1e6:>10.1f} | {size / boxed:>9,.0f} |"
            f" {local * 1000:>13.3f} | {local / size * 1e6:>10.2f}"
        )

    print(f"\nfold {fold_total:,} requests of one hook from scratch, batches of 1000")
    requests = [make_request(n) for n in range(1000)]
    state = "null"
    started = time.perf_counter()
    for _ in range(fold_total // 1000):
        with session(code=COUNTER, secrets={}, limits=limits) as box:
            state = box.reduce(state, requests)[-1].state_json
    elapsed = time.perf_counter() - started
    assert json.loads(state)["number"] == (fold_total // 1000) * sum(range(1000))
    print(f"{elapsed:.2f} s, {fold_total / elapsed:,.0f} requests/s, final state {state}")

    print(f"\nlatency of one call including session setup ({calls} calls each)")
    print(f"{'call':>8} | {'child':>5} | {'p50 ms':>7} | {'p99 ms':>7} | {'mean ms':>7}")
    print("-" * 46)
    for kind in ("respond", "query"):
        for warm in (False, True):
            timings = latency(kind, warm, calls, limits)
            print(
                f"{kind:>8} | {'warm' if warm else 'cold':>5} | {percentile(timings, 0.5):>7.3f} |"
                f" {percentile(timings, 0.99):>7.3f} | {statistics.mean(timings):>7.3f}"
            )
    sandbox.shutdown()


if __name__ == "__main__":
    main()
