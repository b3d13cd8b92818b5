"""Responder and query latency at the endpoints (issue 3). Run:
`.venv/bin/python bench/endpoint_bench.py [--requests N]` (needs PostgreSQL and Redis; uses the
database `webreducer_bench` and Redis db 8).

What a `responder` adds to a write and a `query` adds to a read, end to end over HTTP: one
keep-alive client sends requests one at a time to gunicorn (sync, -w 2), round-robin over four
endpoints so that the machine's drift touches all of them alike:

- /write/<key> of a hook without a responder, and of one whose responder returns a small body;
- /read/<key> of a hook without a query (the stored state as is), and of one whose query
  builds its answer from the state and the request's params (a new `n` each time, so no cache
  could answer).

It prints p50/p99 per endpoint and the difference each function makes (the target: under 2 ms
added at p50 with a warm child). The first 200 rounds warm up connections and sandbox children
and are not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BODY, ENV, ROOT, figure, fresh_database

PY = sys.executable
WARM_UP = 200
STATE_CODE = """
def reducer(state, request, secrets):
    state = state or {"count": 0, "readings": []}
    state["count"] += 1
    state["readings"] = (state["readings"] + [request.body["number"]])[-20:]
    return state
"""
QUERY_CODE = (
    STATE_CODE
    + """
def query(state, params, secrets):
    return {"count": state["count"], "last": state["readings"][-5:], "n": params.get("n")}
"""
)
RESPONDER_CODE = """
def responder(request, secrets):
    return {"ok": True, "device": request.body.get("device")}
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per endpoint")
    parser.add_argument("--port", type=int, default=8766)
    options = parser.parse_args()

    fresh_database()

    from accounts.models import User
    from hooks.models import Key, State
    from hooks.services import hook_create

    owner = User.objects.create_user(username="bench")
    hooks = {
        "write": hook_create(owner=owner, name="no responder", code=""),
        "write+responder": hook_create(owner=owner, name="responder", code=RESPONDER_CODE),
        "read": hook_create(owner=owner, name="no query", code=STATE_CODE),
        "read+query": hook_create(owner=owner, name="query", code=QUERY_CODE),
    }
    state = '{"count":20,"readings":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}'
    for name in ("read", "read+query"):
        State.objects.filter(version=hooks[name].live_version).update(value=state, seq=20)

    def url(name: str) -> str:
        kind = "write" if name.startswith("write") else "read"
        return f"/{kind}/{Key.objects.get(hook=hooks[name], kind=kind).token}"

    urls = {name: url(name) for name in hooks}
    logs = Path(tempfile.mkdtemp(prefix="wr-endpoint-bench-"))
    bind = f"127.0.0.1:{options.port}"
    server = subprocess.Popen(
        [*(PY, "-m", "gunicorn", "webreducer.wsgi:application", "-w", "2"), "-b", bind],
        cwd=ROOT,
        env={**os.environ, **ENV},
        stdout=(logs / "gunicorn.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    timings: dict[str, list[float]] = {name: [] for name in hooks}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{options.port}", timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.get(urls["read"])
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            headers = {"Content-Type": "application/json"}
            for round_ in range(WARM_UP + options.requests):
                for name, path in urls.items():
                    started = time.perf_counter()
                    if name.startswith("write"):
                        response = client.post(path, content=BODY, headers=headers)
                    else:
                        response = client.get(path, params={"n": str(round_)})
                    elapsed = (time.perf_counter() - started) * 1000
                    if not response.is_success:
                        raise SystemExit(f"{name}: {response.status_code} {response.text}")
                    if round_ >= WARM_UP:
                        timings[name].append(elapsed)
    finally:
        server.terminate()
        server.wait()

    print(
        f"Endpoint latency, gunicorn sync -w 2, one keep-alive client, {options.requests} "
        "requests per endpoint, round-robin"
    )
    print(f"{'endpoint':<18}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for name, values in timings.items():
        print(
            f"{name:<18}{percentile(values, 0.5):>9.2f}{percentile(values, 0.99):>9.2f}"
            f"{statistics.fmean(values):>9.2f}"
        )
    print("\nadded by the function (with minus without)")
    for plain, with_function in (("write", "write+responder"), ("read", "read+query")):
        added_p50 = percentile(timings[with_function], 0.5) - percentile(timings[plain], 0.5)
        added_p99 = percentile(timings[with_function], 0.99) - percentile(timings[plain], 0.99)
        label = with_function.split("+")[1]
        print(f"{label:<18}{added_p50:>9.2f}{added_p99:>9.2f}   (p50, p99; target p50 < 2 ms)")
        figure(f"{label} adds at p50 (warm child)", added_p50, "ms", target="< 2 ms",
               met=added_p50 < 2)  # fmt: skip
    print(f"\nlogs in {logs}")


if __name__ == "__main__":
    main()
