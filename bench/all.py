"""`make bench`: every benchmark behind a target of docs/performance.md, one table at the end.

Run: `make bench` (or `.venv/bin/python bench/all.py [--only NAME,...]`). Each benchmark runs as
a child process with a time limit, its output kept in a log; it reports its figures as
`#figure {json}` lines (bench/common.py, `figure()`), and this prints them all in one table with
their targets, the CPU reference and the date. Exit status: non-zero if a benchmark itself
failed (crashed, timed out, or reported no figure), never because a target was missed.

Whatever a benchmark starts is stopped when it ends, even if it crashed: every process that
carries this run's WR_BENCH_RUN marker in its environment (servers and workers started in
sessions of their own included) is killed. Each benchmark gets a database of its own, created
fresh and dropped after it (`WR_BENCH_DB`), and this run's Redis db (`WR_BENCH_REDIS_DB`, 8).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import FIGURE_PREFIX, cpu_reference  # noqa: E402

PY = sys.executable
MARKER = "WR_BENCH_RUN"


@dataclass(frozen=True)
class Bench:
    name: str
    args: list[str]
    timeout: float  # seconds


# Sized so that the whole run stays under 10 minutes on this 2-core machine.
BENCHES = [
    Bench("write", ["bench/write_bench.py", "--seconds", "5", "--throughput-only"], 180),
    Bench("pipeline", ["bench/pipeline_bench.py"], 240),
    Bench("endpoint", ["bench/endpoint_bench.py", "--requests", "1000"], 180),
    Bench(
        "realtime",
        ["bench/realtime_bench.py", "--subscribers", "1000", "--seconds", "10", "--idle", "-1"],
        180,
    ),
    Bench(
        "rooms",
        [
            "bench/rooms_bench.py",
            "--requests",
            "10000",
            "--workers",
            "2",
            "--replay",
            "20000",
            "--reads",
            "500",
        ],
        240,
    ),
    Bench(
        "play", ["bench/play_bench.py", "--rooms", "100", "--players", "10", "--seconds", "15"], 300
    ),
    Bench("fairness", ["bench/abuse_bench.py", "--server", "gthread", "--seconds", "15"], 300),
]


@dataclass
class Outcome:
    bench: Bench
    status: str  # "ok", "failed (exit N)", "timed out", "no figures"
    seconds: float
    log: Path
    figures: list[dict[str, object]] = field(default_factory=list)


def ensure_tools() -> None:
    """write_bench drives the server with wrk (Debian's package), installed here when missing,
    as .ci/run installs Chromium."""
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False,
                       capture_output=True)  # fmt: skip


def parse_figures(lines: Iterable[str]) -> list[dict[str, object]]:
    """The `#figure` lines of a benchmark's output; anything else (or a broken line) is not one."""
    figures = []
    for line in lines:
        if not line.startswith(FIGURE_PREFIX):
            continue
        try:
            value = json.loads(line[len(FIGURE_PREFIX) :])
        except ValueError:
            continue
        if isinstance(value, dict) and {"name", "value", "unit", "target", "met"} <= value.keys():
            figures.append(value)
    return figures


def marked_processes(run_id: str) -> list[int]:
    """Pids of the processes whose environment carries this run's marker (not this one)."""
    needle = f"{MARKER}={run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
    return pids


def stop_marked(run_id: str, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process of this run; returns those that had to be stopped."""
    found = marked_processes(run_id)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and marked_processes(run_id):
        time.sleep(0.1)
    for pid in marked_processes(run_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # Zombies of ours (a bench's children re-parented here are not; ours are the benches).
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    return found


def drop_database(name: str) -> None:
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force",
                    name], check=False, capture_output=True)  # fmt: skip


def run_bench(bench: Bench, run_id: str, logs: Path, *, python: str = PY) -> Outcome:
    log = logs / f"{bench.name}.log"
    database = f"wr_bench_{bench.name}_{run_id[:8]}"
    env = {**os.environ, MARKER: run_id, "WR_BENCH_DB": database, "PYTHONUNBUFFERED": "1"}
    env.setdefault("WR_BENCH_REDIS_DB", "8")
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen([python, *bench.args], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            code = process.wait(timeout=bench.timeout)
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {bench.timeout:g} s"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            stop_marked(run_id)
            drop_database(database)
    figures = parse_figures(log.read_text(errors="replace").splitlines())
    if status == "ok" and not figures:
        status = "no figures"
    return Outcome(bench, status, time.monotonic() - started, log, figures)


def table(outcomes: list[Outcome], reference: tuple[float, float]) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        f"WebReducer benchmarks, {today}; CPU reference sum(range(20_000_000)): "
        f"{reference[0]:.2f} s before, {reference[1]:.2f} s after (docs/performance.md)",
        "",
        f"{'benchmark':<10} {'figure':<52} {'measured':>14}  {'target':<22} met",
    ]
    for outcome in outcomes:
        if outcome.status != "ok":
            lines.append(f"{outcome.bench.name:<10} {outcome.status} — see {outcome.log}")
        for item in outcome.figures:
            measured = f"{item['value']:g} {item['unit']}"
            mark = {True: "yes", False: "NO", None: "-"}.get(item["met"], "?")
            lines.append(
                f"{outcome.bench.name:<10} {item['name']!s:<52} {measured:>14}  "
                f"{item['target'] or '-'!s:<22} {mark}"
            )
    total = sum(outcome.seconds for outcome in outcomes)
    lines.append(f"\n{len(outcomes)} benchmark(s) in {total:.0f} s; logs in {outcomes[0].log.parent}"
                 if outcomes else "\nno benchmark ran")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated names: " + ", ".join(
        bench.name for bench in BENCHES))  # fmt: skip
    options = parser.parse_args(argv)
    chosen = [b for b in BENCHES if not options.only or b.name in options.only.split(",")]
    if not chosen:
        parser.error(f"no benchmark named {options.only!r}")
    run_id = uuid.uuid4().hex
    logs = Path(tempfile.mkdtemp(prefix="wr-bench-all-"))
    os.environ[MARKER] = run_id  # so that nothing this process starts escapes the clean-up
    if any(bench.name == "write" for bench in chosen):
        ensure_tools()
    before = cpu_reference()
    outcomes: list[Outcome] = []
    try:
        for bench in chosen:
            print(f"running {bench.name} (up to {bench.timeout:g} s) ...", flush=True)
            outcomes.append(run_bench(bench, run_id, logs))
            print(f"  {outcomes[-1].status} in {outcomes[-1].seconds:.0f} s", flush=True)
    finally:
        stop_marked(run_id)
    print()
    print(table(outcomes, (before, cpu_reference())))
    return 0 if all(outcome.status == "ok" for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
