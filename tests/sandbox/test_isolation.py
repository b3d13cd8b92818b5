"""The isolation layers, weak mode, warm children and process lifecycle."""

from __future__ import annotations

import os
import textwrap
import threading
from typing import Any

import pytest

import sandbox
from sandbox import Limits, SandboxUnavailable, isolation_report, session
from tests.sandbox.conftest import COUNTER, FAST, assert_sandbox_works, make_request
from tests.sandbox.test_escapes import ESCAPE

LAYERS = {"namespaces", "rlimits", "unprivileged_uid", "no_new_privs", "landlock", "seccomp"}


def test_it_reports_every_layer_working_on_this_machine() -> None:
    report = isolation_report()
    assert set(report) == LAYERS
    assert all(report.values()), report


def test_it_refuses_to_run_user_code_when_a_layer_is_missing(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.WR_SANDBOX_ALLOW_WEAK = False
    monkeypatch.setattr(sandbox.process, "TEST_DISABLED_LAYERS", frozenset({"landlock"}))
    assert isolation_report()["landlock"] is False
    with (
        pytest.raises(SandboxUnavailable) as caught,
        session(code=COUNTER, secrets={}, limits=FAST) as box,
    ):
        box.reduce("null", [make_request({"number": 1})])
    assert "landlock" in str(caught.value)
    assert caught.value.missing == ("landlock",)


def test_it_runs_with_the_remaining_layers_in_weak_mode(
    monkeypatch: pytest.MonkeyPatch, settings: Any, caplog: Any
) -> None:
    settings.WR_SANDBOX_ALLOW_WEAK = True
    monkeypatch.setattr(sandbox.process, "TEST_DISABLED_LAYERS", frozenset({"seccomp"}))
    monkeypatch.setattr(sandbox.process, "_warned_weak", False)
    with session(code=COUNTER, secrets={}, limits=FAST) as box:
        steps = box.reduce("null", [make_request({"number": 2})])
    assert steps[0].state_json == '{"number":2}'
    assert "WITHOUT seccomp" in caplog.text


def hostile_without(
    layer: str, body: str, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> dict[str, Any]:
    settings.WR_SANDBOX_ALLOW_WEAK = True
    monkeypatch.setattr(sandbox.process, "TEST_DISABLED_LAYERS", frozenset({layer}))
    code = (
        ESCAPE
        + "\ndef responder(request, secrets):\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
    )
    with session(code=code, secrets={}, limits=FAST) as box:
        result = box.respond(make_request({}))
    assert result.ok, result.error
    got: dict[str, Any] = result.value["body"]
    return got


PROBES = """
socket = sys.modules["socket"]
def connect():
    s = socket.socket()
    s.settimeout(1)
    s.connect(("127.0.0.1", 5432))
return {
    "read": attempt(lambda: sys.modules["_io"].open("/etc/passwd").read()),
    "connect": attempt(connect),
    "fork": attempt(lambda: os.fork()),
    "write": attempt(lambda: sys.modules["_io"].open("/tmp/wr-layer-test", "w").write("x")),
}
"""


def test_it_still_blocks_files_network_and_fork_without_seccomp(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    # Defence in depth: with the syscall filter gone, Landlock refuses the files, the empty network
    # namespace (and Landlock) the connection, and RLIMIT_NPROC the fork.
    got = hostile_without("seccomp", PROBES, monkeypatch, settings)
    assert got["read"]["errno"] == 13  # EACCES from Landlock, not seccomp's EPERM
    assert got["write"]["ok"] is False
    assert got["connect"]["ok"] is False
    assert got["fork"]["ok"] is False
    assert not os.path.exists("/tmp/wr-layer-test")


def test_it_still_blocks_files_network_and_fork_without_landlock(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    got = hostile_without("landlock", PROBES, monkeypatch, settings)
    assert {name: outcome["errno"] for name, outcome in got.items()} == {
        "read": 1,
        "connect": 1,
        "fork": 1,
        "write": 1,
    }


def test_it_still_blocks_the_network_without_the_namespaces(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    got = hostile_without("namespaces", PROBES, monkeypatch, settings)
    assert got["connect"]["ok"] is False


def test_it_reuses_a_warm_child_for_the_same_hook() -> None:
    code = (
        "CALLS = []\ndef responder(request, secrets):\n    CALLS.append(1)\n    return len(CALLS)\n"
    )
    seen = []
    for _ in range(3):
        with session(code=code, secrets={"s": "1"}, limits=FAST, hook_id="warm-1") as box:
            seen.append(box.respond(make_request({})).value["body"])
    assert seen == [1, 2, 3]


def test_it_never_shares_a_warm_child_between_hooks_or_secrets() -> None:
    code = (
        "CALLS = []\ndef responder(request, secrets):\n    CALLS.append(1)\n    return len(CALLS)\n"
    )
    with session(code=code, secrets={"s": "1"}, limits=FAST, hook_id="warm-a") as box:
        assert box.respond(make_request({})).value["body"] == 1
    with session(code=code, secrets={"s": "1"}, limits=FAST, hook_id="warm-b") as box:
        assert box.respond(make_request({})).value["body"] == 1
    with session(code=code, secrets={"s": "2"}, limits=FAST, hook_id="warm-a") as box:
        assert box.respond(make_request({})).value["body"] == 1
    with session(code=code, secrets={"s": "1"}, limits=FAST, hook_id="") as box:
        assert box.respond(make_request({})).value["body"] == 1


def test_it_reuses_a_child_after_an_ordinary_exception_of_the_users_code() -> None:
    # A hook that raises on every call must not cost a fork per request (docs/sandbox.md).
    code = (
        "CALLS = []\ndef responder(request, secrets):\n    CALLS.append(1)\n"
        "    if request.body == 'fail':\n        raise ValueError\n    return len(CALLS)\n"
    )
    results = []
    for body in ({}, "fail", {}, {}):
        with session(code=code, secrets={}, limits=FAST, hook_id="warm-err") as box:
            result = box.respond(make_request(body))
            results.append(result.value["body"] if result.ok else result.error["type"])
    assert results == [1, "ValueError", 3, 4]


def test_it_does_not_reuse_a_child_after_a_limit_or_a_recursion_error() -> None:
    code = (
        "import time\nCALLS = []\ndef responder(request, secrets):\n    CALLS.append(1)\n"
        "    if request.body == 'spin':\n        while True:\n            pass\n"
        "    if request.body == 'deep':\n        def f():\n            return f()\n"
        "        return f()\n    return len(CALLS)\n"
    )
    results = []
    for body in ({}, "spin", {}, "deep", {}):
        with session(code=code, secrets={}, limits=FAST, hook_id="warm-limit") as box:
            result = box.respond(make_request(body))
            results.append(result.value["body"] if result.ok else result.error["type"])
    assert results == [1, "CpuLimitExceeded", 1, "RecursionError", 1]


def test_it_does_not_reuse_a_warm_child_after_the_ttl(settings: Any) -> None:
    settings.WR_SANDBOX_WARM_SECONDS = 0
    code = "CALLS = []\ndef query(state, params, secrets):\n    CALLS.append(1)\n    return len(CALLS)\n"
    for _ in range(2):
        with session(code=code, secrets={}, limits=FAST, hook_id="warm-ttl") as box:
            assert box.query("null", {}).value["body"] == 1


def test_it_serves_several_threads_at_once() -> None:
    code = "def query(state, params, secrets):\n    return state['n'] * int(params.get('k'))\n"
    results: dict[int, list[int]] = {}

    def worker(n: int) -> None:
        out = []
        for k in range(15):
            with session(code=code, secrets={}, limits=FAST, hook_id=f"thread-{n % 2}") as box:
                out.append(box.query(f'{{"n":{n}}}', {"k": [str(k)]}).value["body"])
        results[n] = out

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {n: [n * k for k in range(15)] for n in range(4)}


def test_it_starts_a_new_fork_server_in_a_forked_process() -> None:
    assert_sandbox_works()
    parent_server = sandbox.process.fork_server()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        status = 1
        try:
            os.close(read_end)
            assert_sandbox_works()
            server = sandbox.process.fork_server()
            ok = server is not parent_server and server.owner == os.getpid()
            os.write(write_end, b"ok" if ok else b"same server")
            sandbox.shutdown()
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    answer = os.read(read_end, 100)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert answer == b"ok" and status == 0
    assert parent_server.alive()
    assert_sandbox_works()


def test_it_restarts_a_fork_server_that_died() -> None:
    server = sandbox.process.fork_server()
    server.process.kill()
    server.process.wait()
    assert_sandbox_works()
    assert sandbox.process.fork_server() is not server


def test_it_uses_the_default_limits() -> None:
    with session(code=COUNTER, secrets={}, limits=Limits()) as box:
        assert box.reduce("null", [make_request({"number": 1})])[0].ok
