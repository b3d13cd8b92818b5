"""The sandbox when the server does not run as root (a developer's `make run`, a container with a
non-root user): each child then enters a user namespace of its own instead of dropping to
`nobody`, and must hold no capabilities in it. This runs the whole escape suite again in a
process started as uid 65534.

That process needs an interpreter `nobody` can run: the suite's own often lives under /root, so
it uses the system's `pythonX.Y` of the same version with this checkout's packages on its path.
The test skips, saying why, where the machine cannot do this; it never passes without running.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
ESCAPES = "tests/sandbox/test_escapes.py"


SYSTEM_PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"


def _as_nobody(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    python = shutil.which(SYSTEM_PYTHON, path="/usr/bin")
    assert python is not None
    return subprocess.run(
        [python, *args],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": "/tmp",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}",
        },
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _skip_unless_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("the suite already runs without root: test_escapes.py covers this path")
    if shutil.which(SYSTEM_PYTHON, path="/usr/bin") is None:
        pytest.skip(f"no /usr/bin/{SYSTEM_PYTHON} for a process started as nobody")
    probe = _as_nobody(
        "-c", "import json, sandbox; print(json.dumps(sandbox.isolation_report()))", timeout=60
    )
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot import this checkout: {probe.stderr.strip()[-300:]}")
    layers = json.loads(probe.stdout.strip().splitlines()[-1])
    if not layers["namespaces"]:
        pytest.skip("this kernel refuses unprivileged user namespaces (a documented requirement)")
    # Every other layer must hold without root: a missing one is this test's failure, not a skip.
    assert all(layers.values()), layers


def test_the_escape_suite_holds_when_the_server_is_not_root() -> None:
    _skip_unless_possible()
    expected = len(re.findall(r"^def test_", (ROOT / ESCAPES).read_text(), flags=re.MULTILINE))

    result = _as_nobody(
        *(
            "-m",
            "pytest",
            ESCAPES,
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:django",
            "--noconftest",
        ),
        timeout=600,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"{expected} passed" in output, output[-2000:]
    assert "skipped" not in output, output[-2000:]
