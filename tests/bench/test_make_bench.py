"""`make bench` (bench/all.py): its table is read from the benchmarks' `#figure` lines, a failing
benchmark fails the run, and whatever a benchmark started is stopped even when it crashed.
The figures themselves are the benchmarks' business, not these tests'."""

from __future__ import annotations

import os
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from bench import all as bench_all
from bench.common import FIGURE_PREFIX

# A benchmark that leaves a server behind in a session of its own, reports a figure, then crashes.
CRASHING = """
import json, subprocess, sys
server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                          start_new_session=True)
open(sys.argv[1], "w").write(str(server.pid))
print("#figure " + json.dumps({"name": "writes", "value": 12.5, "unit": "x",
                               "target": "< 3 x", "met": False}), flush=True)
raise SystemExit("the benchmark crashed")
"""
HANGING = """
import subprocess, sys, time
server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                          start_new_session=True)
open(sys.argv[1], "w").write(str(server.pid))
time.sleep(300)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"


def fake_bench(
    tmp_path: Path, name: str, code: str, timeout: float
) -> tuple[bench_all.Bench, Path]:
    script, pid_file = tmp_path / f"{name}.py", tmp_path / f"{name}.pid"
    script.write_text(textwrap.dedent(code))
    return bench_all.Bench(name, [str(script), str(pid_file)], timeout), pid_file


def test_it_reads_figures_and_ignores_every_other_line() -> None:
    good = {
        "name": "query adds at p50",
        "value": 0.3,
        "unit": "ms",
        "target": "< 2 ms",
        "met": True,
    }
    lines = [
        "CPU reference sum(range(20_000_000)): 0.21 s",
        FIGURE_PREFIX + '{"name": "broken",',
        FIGURE_PREFIX + '{"name": "no value"}',
        FIGURE_PREFIX + __import__("json").dumps(good),
        "  #figure indented is not a figure",
    ]
    assert bench_all.parse_figures(lines) == [good]


def test_a_crashed_benchmark_fails_the_run_and_leaves_no_process_behind(tmp_path: Path) -> None:
    bench, pid_file = fake_bench(tmp_path, "crashing", CRASHING, timeout=60)
    run_id = uuid.uuid4().hex
    outcome = bench_all.run_bench(bench, run_id, tmp_path)
    assert outcome.status == "failed (exit 1)"
    assert outcome.figures[0]["name"] == "writes"
    server = int(pid_file.read_text())
    assert not alive(server), "the benchmark's server outlived it"
    assert bench_all.marked_processes(run_id) == []
    text = bench_all.table([outcome], (0.2, 0.3))
    assert "crashing   failed (exit 1)" in text
    (row,) = [line for line in text.splitlines() if " writes " in line]
    assert "12.5 x" in row and "< 3 x" in row and row.endswith("NO")


def test_a_benchmark_over_its_time_limit_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    bench, pid_file = fake_bench(tmp_path, "hanging", HANGING, timeout=3)
    started = time.monotonic()
    outcome = bench_all.run_bench(bench, uuid.uuid4().hex, tmp_path)
    assert outcome.status.startswith("timed out")
    assert time.monotonic() - started < 60
    assert not alive(int(pid_file.read_text()))


def test_make_bench_exits_non_zero_when_a_benchmark_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench, _ = fake_bench(tmp_path, "crashing", CRASHING, timeout=60)
    monkeypatch.setattr(bench_all, "BENCHES", [bench])
    monkeypatch.setattr(bench_all, "cpu_reference", lambda: 0.25)
    monkeypatch.delenv(bench_all.MARKER, raising=False)
    try:
        assert bench_all.main(["--only", "crashing"]) == 1
    finally:
        os.environ.pop(bench_all.MARKER, None)
    out = capsys.readouterr().out
    assert "CPU reference sum(range(20_000_000)): 0.25 s before" in out
    assert "writes" in out
