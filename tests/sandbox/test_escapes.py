"""Real hostile code through the real sandbox (docs/sandbox.md).

Python-level restrictions are not the boundary: most attempts here first climb out of them by
object introspection (to the real `sys`, `os`, `posix`, `_io`, `socket`, `ctypes`), then call the
operating system directly, so that what stops them is the OS layers: namespaces, an unprivileged
uid, rlimits, Landlock and seccomp. After each attempt a well-behaved hook must still work.
"""

from __future__ import annotations

import os
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import sandbox
from sandbox import CallResult, Limits, session
from tests.sandbox.conftest import FAST, assert_sandbox_works, make_request, respond

# Reaches the real `sys` without importing anything: walk object's subclasses to a function whose
# globals hold `sys`, then take any already-loaded module out of sys.modules.
ESCAPE = """
def _find_sys():
    for cls in ().__class__.__base__.__subclasses__():
        init = getattr(cls, "__init__", None)
        g = getattr(init, "__globals__", None)
        if isinstance(g, dict) and "sys" in g and hasattr(g["sys"], "modules"):
            return g["sys"]
    raise AssertionError("no sys")

sys = _find_sys()
os = sys.modules["os"]
posix = sys.modules["posix"]

def attempt(fn):
    try:
        return {"ok": True, "value": repr(fn())[:300]}
    except BaseException as error:
        return {"ok": False, "type": type(error).__name__, "errno": getattr(error, "errno", None), "message": str(error)[:300]}

def libc():
    importlib = sys.modules["importlib"]
    ctypes = sys.modules.get("ctypes") or importlib.import_module("ctypes")
    return ctypes, ctypes.CDLL(None, use_errno=True)

def raw_syscall(*args):
    ctypes, c = libc()
    c.syscall.restype = ctypes.c_long
    result = c.syscall(*args)
    return [result, ctypes.get_errno()]
"""

EPERM, EACCES = 1, 13
SYS_SOCKET, SYS_PTRACE, SYS_UNSHARE, SYS_SETUID, SYS_CLONE, SYS_OPENAT, SYS_MMAP = (
    41,
    101,
    272,
    105,
    56,
    257,
    9,
)


def hostile(
    body: str, *, secrets: dict[str, str] | None = None, limits: Limits = FAST
) -> CallResult:
    """Run `body` as a responder (with ESCAPE's helpers at module level) and return the result."""
    code = (
        ESCAPE
        + "\ndef responder(request, secrets):\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
    )
    with session(code=code, secrets=secrets or {}, limits=limits) as box:
        return box.respond(make_request({}))


def attempts(body: str, **kwargs: Any) -> Any:
    result = hostile(body, **kwargs)
    assert result.ok, result.error
    return result.value["body"]


def denied(outcome: dict[str, Any]) -> bool:
    return outcome["ok"] is False and outcome["type"] in (
        "PermissionError",
        "OSError",
        "BlockingIOError",
    )


@pytest.fixture(autouse=True)
def _still_works_afterwards() -> Any:
    yield
    assert_sandbox_works()


def test_it_reaches_the_real_os_module_so_the_layers_below_are_what_is_tested() -> None:
    got = attempts("return [os.__name__, posix.__name__, os.getuid(), os.getpid() != os.getppid()]")
    assert got[:2] == ["os", "posix"]
    if os.geteuid() == 0:
        assert got[2] == 65534  # nobody


def test_it_cannot_read_files() -> None:
    got = attempts(
        """
        io = sys.modules["_io"]
        return {
            "passwd os.open": attempt(lambda: os.open("/etc/passwd", os.O_RDONLY)),
            "passwd _io.open": attempt(lambda: io.open("/etc/passwd").read()),
            "settings": attempt(lambda: io.open("/work/main/webreducer/settings.py").read()),
            "code of the sandbox": attempt(lambda: io.open(sys.modules["wr_child"].__file__).read()),
            "builtins open": attempt(lambda: open("/etc/passwd").read()),
            "stat": attempt(lambda: os.stat("/etc/passwd")),
            "listdir": attempt(lambda: os.listdir("/")),
            "raw openat": attempt(lambda: raw_syscall(257, -100, b"/etc/passwd", 0)),
        }
        """
    )
    for name, outcome in got.items():
        if name == "raw openat":
            assert outcome["ok"] and outcome["value"] == f"[-1, {EPERM}]", outcome
        else:
            assert denied(outcome), (name, outcome)


def test_it_cannot_see_the_servers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh fork server started while this process has a secret in its environment.
    monkeypatch.setenv("WR_CANARY_SECRET", "canary-4f1d")
    sandbox.shutdown()
    got = attempts(
        """
        return {
            "environ": dict(os.environ),
            "via import": dict(__import__("random")._os.environ),
            "proc self": attempt(lambda: sys.modules["_io"].open("/proc/self/environ", "rb").read()),
            "proc parent": attempt(lambda: sys.modules["_io"].open(f"/proc/{os.getppid()}/environ", "rb").read()),
            "proc server": attempt(lambda: sys.modules["_io"].open(f"/proc/{secrets['pid']}/environ", "rb").read()),
        }
        """,
        secrets={"pid": str(os.getpid())},
    )
    assert got["environ"] == {} and got["via import"] == {}
    for name in ("proc self", "proc parent", "proc server"):
        assert denied(got[name]), got[name]
    assert "canary-4f1d" not in repr(got)


def test_it_cannot_connect_to_postgres_or_redis_or_open_any_socket() -> None:
    got = attempts(
        """
        socket = sys.modules["socket"]
        def connect(port):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(1)
            s.connect(("127.0.0.1", port))
            return "connected"
        return {
            "postgres": attempt(lambda: connect(5432)),
            "redis": attempt(lambda: connect(6379)),
            "udp": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)),
            "unix": attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)),
            "socketpair": attempt(lambda: socket.socketpair()),
            "raw socket syscall": attempt(lambda: raw_syscall(41, 2, 1, 0)),
        }
        """
    )
    for name, outcome in got.items():
        if name == "raw socket syscall":
            assert outcome["value"] == f"[-1, {EPERM}]", outcome
        else:
            assert denied(outcome), (name, outcome)


def test_it_cannot_write_a_file(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    os.chmod(tmp_path, 0o777)
    got = attempts(
        """
        path = secrets["path"]
        return {
            "os.open": attempt(lambda: os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)),
            "_io": attempt(lambda: sys.modules["_io"].open(path, "w").write("x")),
            "mkdir": attempt(lambda: os.mkdir(path + ".d")),
            "tmp": attempt(lambda: sys.modules["_io"].open("/tmp/wr-sandbox-pwned", "w").write("x")),
        }
        """,
        secrets={"path": str(target)},
    )
    assert all(denied(outcome) for outcome in got.values()), got
    assert not target.exists() and not Path(str(target) + ".d").exists()
    assert not Path("/tmp/wr-sandbox-pwned").exists()


def test_a_spinning_call_drops_its_child_to_sched_idle_and_it_cannot_climb_back() -> None:
    # docs/security.md: a call past 50 ms of CPU gives the CPU to everyone else's quick calls.
    code = ESCAPE + textwrap.dedent(
        """
            def responder(request, secrets):
                if request["query"].get("spin"):
                    t = sys.modules["time"].process_time()
                    while sys.modules["time"].process_time() - t < 0.12:
                        pass
                return {
                    "raise": attempt(lambda: os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))),
                    "renice": attempt(lambda: os.setpriority(os.PRIO_PROCESS, 0, 0)),
                    "neighbour": attempt(lambda: os.setpriority(os.PRIO_PROCESS, int(secrets["pid"]), 19)),
                    "neighbour idle": attempt(
                        lambda: os.sched_setscheduler(int(secrets["pid"]), os.SCHED_IDLE, os.sched_param(0))
                    ),
                }
            """
    )
    with session(code=code, secrets={"pid": str(os.getpid())}, limits=FAST) as box:
        quick = box.respond(make_request({}))
        assert quick.ok, quick.error
        child = box._child
        assert child is not None
        assert os.sched_getscheduler(child.pid) == os.SCHED_OTHER  # quick calls keep their place
        spun = box.respond(make_request({}, query={"spin": ["1"]}))
        assert spun.ok, spun.error
        assert box._child is child
        assert os.sched_getscheduler(child.pid) == os.SCHED_IDLE
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 19
        for name, outcome in spun.value["body"].items():
            assert denied(outcome), (name, outcome)
        assert os.sched_getscheduler(child.pid) == os.SCHED_IDLE  # still, after its attempts
        assert os.sched_getscheduler(os.getpid()) == os.SCHED_OTHER


def test_it_cannot_fork_exec_or_run_a_subprocess() -> None:
    got = attempts(
        """
        importlib = sys.modules["importlib"]
        return {
            "fork": attempt(lambda: os.fork()),
            "execv": attempt(lambda: os.execv("/bin/sh", ["sh", "-c", "id"])),
            "posix_spawn": attempt(lambda: os.posix_spawn("/bin/true", ["true"], {})),
            "subprocess": attempt(lambda: importlib.import_module("subprocess").run(["/bin/true"])),
            "raw clone": attempt(lambda: raw_syscall(56, 17, 0, 0, 0, 0)),
        }
        """
    )
    assert got["raw clone"]["value"] == f"[-1, {EPERM}]"
    for name in ("fork", "execv", "posix_spawn", "subprocess"):
        assert got[name]["ok"] is False, (name, got[name])


def test_it_cannot_make_dangerous_raw_syscalls_through_ctypes() -> None:
    got = attempts(
        f"""
        return {{
            "ptrace attach parent": raw_syscall({SYS_PTRACE}, 16, os.getppid(), 0, 0),
            "unshare user ns": raw_syscall({SYS_UNSHARE}, 0x10000000),
            "setuid root": raw_syscall({SYS_SETUID}, 0),
            "executable memory": raw_syscall({SYS_MMAP}, 0, 4096, 7, 0x22, -1, 0),
        }}
        """
    )
    assert got == {name: [-1, EPERM] for name in got}


def test_it_cannot_kill_the_parent_or_the_fork_server() -> None:
    server = sandbox.process.fork_server()
    got = attempts(
        """
        return {
            "fork server": attempt(lambda: os.kill(os.getppid(), 9)),
            "django process": attempt(lambda: os.kill(int(secrets["pid"]), 9)),
            "init": attempt(lambda: os.kill(1, 0)),
            "process group": attempt(lambda: os.killpg(0, 9)),
        }
        """,
        secrets={"pid": str(os.getpid())},
    )
    assert all(denied(outcome) for outcome in got.values()), got
    assert server.alive() and sandbox.process.fork_server() is server


def test_it_refuses_imports_outside_the_allow_list() -> None:
    for module in (
        "os",
        "socket",
        "ctypes",
        "subprocess",
        "sys",
        "importlib",
        "urllib.request",
        "gc",
    ):
        result = respond(f"def responder(request, secrets):\n    import {module}\n")
        assert result.error["type"] == "ImportError"
        assert result.error["message"] == f"module '{module}' is not available in the sandbox"
    result = respond("def responder(request, secrets):\n    from urllib import request\n")
    assert result.error["message"] == "module 'urllib.request' is not available in the sandbox"


STOPPED = ("CpuLimitExceeded", "TimeLimitExceeded")


def test_it_stops_an_infinite_loop_at_the_cpu_limit() -> None:
    result = hostile("while True:\n    pass")
    # Under load the wall limit can come first; either way the loop is stopped.
    assert not result.ok and result.error["type"] in STOPPED


def test_it_stops_a_loop_that_swallows_the_cpu_limit_error() -> None:
    result = hostile(
        """
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
        """
    )
    # On a loaded machine the loop may get less than its CPU second within the wall limit:
    # either limit stopping it is the behaviour under test.
    assert not result.ok and result.error["type"] in STOPPED


def test_it_kills_code_that_disables_the_cpu_timer_at_the_wall_limit() -> None:
    result = hostile(
        """
        signal = sys.modules["signal"]
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_IGN)
        while True:
            pass
        """
    )
    assert not result.ok and result.error["type"] == "TimeLimitExceeded"


def test_it_kills_a_c_level_busy_loop_at_the_wall_limit() -> None:
    # any() over an endless C iterator never returns to the interpreter, so no Python-level
    # timer can interrupt it: only the parent's SIGKILL can.
    result = hostile("import itertools\nreturn any(itertools.repeat(False))")
    assert not result.ok and result.error["type"] == "TimeLimitExceeded"


def test_it_cannot_sleep() -> None:
    got = attempts(
        """
        import time
        select = sys.modules.get("select") or sys.modules["importlib"].import_module("select")
        return {
            "time.sleep": attempt(lambda: time.sleep(1000)),
            "select": attempt(lambda: select.select([], [], [], 1000)),
            "raw nanosleep": attempt(lambda: raw_syscall(35, 0, 0)),
        }
        """
    )
    assert got["time.sleep"]["type"] == "RuntimeError"
    assert denied(got["select"]), got["select"]
    assert got["raw nanosleep"]["value"] == f"[-1, {EPERM}]"


def test_it_kills_a_call_blocked_on_its_own_channel_at_the_wall_limit() -> None:
    result = hostile("return os.read(3, 1)")
    assert not result.ok and result.error["type"] == "TimeLimitExceeded"


def test_it_stops_a_4_gb_allocation() -> None:
    result = hostile("return len(bytearray(4 * 2**30))")
    assert not result.ok and result.error["type"] == "MemoryLimitExceeded"


def test_it_stops_memory_growing_step_by_step() -> None:
    result = hostile("chunks = []\nwhile True:\n    chunks.append(bytearray(2**20))")
    assert not result.ok
    assert result.error["type"] in ("MemoryLimitExceeded", "SandboxCrash")


def test_it_stops_a_recursion_bomb() -> None:
    result = respond(
        "def f(n):\n    return f(n + 1)\n\ndef responder(request, secrets):\n    return f(0)\n"
    )
    assert not result.ok and result.error["type"] == "RecursionError"
    assert "Previous line repeated" in result.error["traceback"]


def test_it_survives_a_recursion_bomb_that_overflows_the_c_stack() -> None:
    result = hostile(
        """
        import json
        sys.setrecursionlimit(10**8)
        nested = []
        for _ in range(10**6):
            nested = [nested]
        return json.dumps(nested)
        """
    )
    assert not result.ok
    # The C stack overflow kills the child; on a loaded machine building the list may run out
    # of CPU time first. Either way the call fails cleanly and the next one works.
    assert result.error["type"] in ("SandboxCrash", "CpuLimitExceeded", "TimeLimitExceeded")
    assert hostile("return 'after'").value["body"] == "after"


def test_it_bounds_100_mb_of_print() -> None:
    result = hostile("for _ in range(100):\n    print('x' * 2**20)\nreturn 'done'")
    assert result.ok and result.value["body"] == "done"
    limit = FAST.output_bytes
    assert result.console.endswith(f"[output truncated: limit of {limit} bytes]\n")
    assert len(result.console.encode()) < limit + 100


def test_it_fails_a_1_gb_state_and_keeps_folding() -> None:
    code = """
    def reducer(state, request, secrets):
        if request.body == "huge":
            return "x" * 2**30
        return (state or 0) + 1
    """
    with session(code=textwrap.dedent(code), secrets={}, limits=FAST) as box:
        steps = box.reduce("null", [make_request(1), make_request("huge"), make_request(2)])
    assert [step.ok for step in steps] == [True, False, True]
    assert [step.state_json for step in steps] == ["1", "1", "2"]
    assert steps[1].error["type"] in ("MemoryLimitExceeded", "StateTooLarge")


def test_it_keeps_folding_after_the_child_is_killed_mid_batch() -> None:
    code = """
    def reducer(state, request, secrets):
        if request.body == "spin":
            import itertools
            any(itertools.repeat(False))
        return (state or 0) + 1
    """
    requests = [
        make_request(1),
        make_request(2),
        make_request("spin"),
        make_request(3),
        make_request(4),
    ]
    with session(
        code=textwrap.dedent(code), secrets={}, limits=Limits(cpu_seconds=0.3, wall_seconds=0.8)
    ) as box:
        steps = box.reduce("null", requests)
    assert [step.ok for step in steps] == [True, True, False, True, True]
    assert [step.state_json for step in steps] == ["1", "2", "2", "3", "4"]
    assert steps[2].error["type"] == "TimeLimitExceeded"


def test_one_hook_cannot_read_another_hooks_secrets() -> None:
    stash = """
    STASH = []
    def responder(request, secrets):
        STASH.append(secrets["token"])
        return "stored"
    """
    with session(
        code=textwrap.dedent(stash),
        secrets={"token": "alpha-secret-9c2"},
        limits=FAST,
        hook_id="hook-a",
    ) as box:
        assert box.respond(make_request({})).ok
        victim_pid = box._child.pid if box._child else 0
    search = """
    gc = sys.modules["importlib"].import_module("gc")
    needle = "-".join(["alpha", "secret", "9c2"])
    found = [o for o in gc.get_objects() if isinstance(o, (list, dict, tuple)) and needle in repr(o)[:100000]]
    io = sys.modules["_io"]
    return {
        "found": len(found),
        "mem": attempt(lambda: io.open(f"/proc/{secrets['victim']}/mem", "rb").read(10)),
        "environ": attempt(lambda: io.open(f"/proc/{secrets['victim']}/environ", "rb").read()),
        "own secrets": sorted(secrets),
    }
    """
    result = hostile(search, secrets={"victim": str(victim_pid)})
    assert result.ok, result.error
    got = result.value["body"]
    assert got["found"] == 0
    assert denied(got["mem"]) and denied(got["environ"])
    assert got["own secrets"] == ["victim"]
    assert "alpha-secret-9c2" not in result.console


def test_a_hostile_hook_does_not_break_a_well_behaved_one() -> None:
    spin = ESCAPE + "\ndef responder(request, secrets):\n    while True:\n        pass\n"
    outcomes: dict[str, Any] = {}

    def hostile_hook() -> None:
        with session(code=spin, secrets={}, limits=FAST, hook_id="hostile") as box:
            outcomes["hostile"] = [box.respond(make_request({})).error["type"] for _ in range(2)]

    def good_hook() -> None:
        code = "def responder(request, secrets):\n    return request.body['n'] * 2\n"
        results = []
        for n in range(20):
            with session(code=code, secrets={}, limits=FAST, hook_id="good") as box:
                results.append(box.respond(make_request({"n": n})).value["body"])
        outcomes["good"] = results

    threads = [threading.Thread(target=hostile_hook), threading.Thread(target=good_hook)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes["hostile"]) == 2 and set(outcomes["hostile"]) <= set(STOPPED)
    assert outcomes["good"] == [n * 2 for n in range(20)]


def test_it_does_not_trust_a_child_that_forges_its_replies() -> None:
    # Writes a reply frame of its own on the channel before returning: the parent reads frames
    # strictly in order and checks each one, so at worst this hook's own call fails.
    forge = """
    import json
    frame = json.dumps({"t": "r", "ok": True, "value": "not json {", "console": "", "ms": 0}).encode()
    os.write(3, len(frame).to_bytes(4, "big") + frame)
    return 1
    """
    result = hostile(forge)
    # Refused as a frame or, when it parses as one, as a value that is not JSON (strict_json).
    assert not result.ok and result.error["type"] in ("SandboxError", "ResponseNotSerializable")
    huge = "os.write(3, (2**31).to_bytes(4, 'big'))\nreturn 1"
    result = hostile(huge)
    assert not result.ok and result.error["type"] == "SandboxError"


def test_it_times_out_generously_but_surely() -> None:
    started = time.monotonic()
    result = hostile("while True:\n    pass", limits=Limits(cpu_seconds=5, wall_seconds=0.5))
    assert result.error["type"] == "TimeLimitExceeded"
    assert time.monotonic() - started < 30
