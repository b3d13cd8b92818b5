"""Parent side of the sandbox processes: the fork server, its children, and the warm pool.

Nothing here trusts a child: frames are length-checked before they are read, parsed as JSON only,
and a child that is late is SIGKILLed through its pidfd (never by pid number, which may be reused).
"""

from __future__ import annotations

import array
import atexit
import contextlib
import importlib.util
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

from sandbox import strict_json
from sandbox.errors import SandboxUnavailable
from sandbox.limits import setting

log = logging.getLogger("sandbox")

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
LAYERS = ("namespaces", "rlimits", "unprivileged_uid", "no_new_privs", "landlock", "seccomp")
LAYER_HELP = {
    "namespaces": "network and IPC namespaces (unshare; needs root or unprivileged user namespaces)",
    "rlimits": "resource limits (setrlimit)",
    "unprivileged_uid": "an unprivileged uid (setresuid to nobody when started as root)",
    "no_new_privs": "PR_SET_NO_NEW_PRIVS",
    "landlock": "Landlock (Linux 5.13+, enabled in the kernel's lsm= list)",
    "seccomp": "a seccomp-BPF system-call allow-list",
}
SERVER_START_TIMEOUT = 60.0
HELLO_TIMEOUT = 10.0  # fork + isolation, generous for a loaded machine
_SEND_CHUNK = 64 * 1024

# Test hook: layers the children skip, to exercise the "layer missing" paths. Never set it in
# production code.
TEST_DISABLED_LAYERS: frozenset[str] = frozenset()


class ChildTimeout(Exception):
    pass


class ChildGone(Exception):
    pass


class ChildProtocolError(Exception):
    pass


def frame_text(text: str) -> bytes:
    """A frame of JSON text that is already encoded as JSON."""
    data = text.encode("utf-8", "surrogatepass")
    return len(data).to_bytes(4, "big") + data


def _frame(message: dict[str, Any]) -> bytes:
    return frame_text(json.dumps(message, ensure_ascii=False, separators=(",", ":")))


encode_frame = _frame


class Child:
    """One sandboxed child process and the parent's end of its channel."""

    def __init__(self, sock: socket.socket, pid: int, pidfd: int, max_frame: int) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self.pid = pid
        self.pidfd = pidfd
        self.max_frame = max_frame
        self.buffer = bytearray()
        self.alive = True
        self.in_sync = True  # False while an exchange is under way or after it was abandoned
        self.calls = 0
        self.created = time.monotonic()
        self.idle_since = self.created
        self.hello: dict[str, Any] = {}
        self.owner = os.getpid()

    def owner_changed(self) -> bool:
        return self.owner != os.getpid()

    def kill(self) -> None:
        if not self.alive:
            return
        self.alive = False
        with contextlib.suppress(OSError):  # ProcessLookupError: it already exited
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        self.close_fds()

    def close_fds(self) -> None:
        self.alive = False
        for close in (self.sock.close, lambda: os.close(self.pidfd)):
            with contextlib.suppress(OSError):
                close()

    def looks_idle(self) -> bool:
        """An idle child sends nothing: anything readable (data or EOF) means it is unusable."""
        if not self.alive or not self.in_sync:
            return False
        ready, _, _ = select.select([self.sock], [], [], 0)
        return not ready

    def _take_frame(self) -> dict[str, Any] | None:
        if len(self.buffer) < 4:
            return None
        size = int.from_bytes(self.buffer[:4], "big")
        if size > self.max_frame:
            raise ChildProtocolError(f"frame of {size} bytes exceeds {self.max_frame}")
        if len(self.buffer) < 4 + size:
            return None
        payload = bytes(self.buffer[4 : 4 + size])
        del self.buffer[: 4 + size]
        try:
            # Strict UTF-8 (json.loads(bytes) would sniff the encoding and pass surrogates).
            message = strict_json.loads(payload.decode("utf-8"))  # no NaN/Infinity either
        except (ValueError, RecursionError) as error:
            raise ChildProtocolError(f"frame is not JSON: {error}") from None
        if not isinstance(message, dict):
            raise ChildProtocolError("frame is not a JSON object")
        return message

    def _drain(self) -> bool:
        """Read whatever has already arrived; True if that completed a frame."""
        try:
            while data := self.sock.recv(1 << 20):
                self.buffer += data
        except (BlockingIOError, OSError):
            pass
        if len(self.buffer) < 4:
            return False
        return len(self.buffer) >= 4 + int.from_bytes(self.buffer[:4], "big")

    def exchange(
        self,
        frames: Iterable[bytes],
        count: int,
        *,
        timeout: float,
        first_timeout: float | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """Send `frames` (lazily, while reading) and yield `count` frames back, each of which must
        arrive within `timeout` seconds of the previous one. Raises ChildTimeout, ChildGone or
        ChildProtocolError; the caller kills the child then."""
        self.in_sync = False
        outgoing = iter(frames)
        pending = memoryview(b"")
        can_write = True
        deadline = time.monotonic() + (timeout if first_timeout is None else first_timeout)
        fd = self.sock.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        received = 0
        while received < count:
            frame = self._take_frame()
            if frame is not None:
                received += 1
                yield frame
                deadline = time.monotonic() + timeout
                continue
            if not pending and can_write:
                chunk = bytearray()
                for data in outgoing:
                    chunk += data
                    if len(chunk) >= _SEND_CHUNK:
                        break
                pending = memoryview(bytes(chunk))
            poller.modify(fd, select.POLLIN | (select.POLLOUT if pending else 0))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if self._drain():
                    continue  # a reply arrived just in time
                raise ChildTimeout
            for _fd, events in poller.poll(remaining * 1000):
                if events & select.POLLOUT and pending:
                    try:
                        sent = self.sock.send(pending, socket.MSG_NOSIGNAL)
                        pending = pending[sent:]
                    except BlockingIOError:
                        pass
                    except OSError:
                        pending, can_write = memoryview(b""), False  # child gone; read what is left
                if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    try:
                        data = self.sock.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        raise ChildGone
                    self.buffer += data
        if pending or next(iter(outgoing), None) is not None:
            raise ChildProtocolError("the child answered before it was asked")
        self.in_sync = True


class ForkServer:
    """The per-process fork server (see runtime/wr_forkserver.py)."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.lock = threading.Lock()
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        paths = [str(RUNTIME_DIR), *_library_paths()]
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-B",
                    str(RUNTIME_DIR / "wr_forkserver.py"),
                    str(child_end.fileno()),
                    json.dumps(paths),
                ],
                env={},
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(child_end.fileno(),),
                close_fds=True,
            )
        except OSError as error:
            parent_end.close()
            raise SandboxUnavailable(f"the sandbox fork server could not start: {error}") from error
        finally:
            child_end.close()
        self.sock = parent_end
        self.sock.settimeout(SERVER_START_TIMEOUT)
        try:
            ready = json.loads(self.sock.recv(1 << 20) or b"null")
        except (OSError, ValueError) as error:
            self.close()
            raise SandboxUnavailable(f"the sandbox fork server did not start: {error}") from error
        if not isinstance(ready, dict) or ready.get("t") != "ready":
            self.close()
            raise SandboxUnavailable("the sandbox fork server did not start (see its stderr)")
        self.sock.settimeout(HELLO_TIMEOUT)
        layers = ready.get("layers") or {}
        self.layers: dict[str, bool] = {name: layers.get(name) is True for name in LAYERS}
        self.errors: dict[str, str] = {
            str(k): str(v) for k, v in (ready.get("errors") or {}).items()
        }
        if ready.get("preload_errors"):
            log.warning("sandbox: some modules could not be preloaded: %s", ready["preload_errors"])

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

    def fork(self, params: dict[str, Any], channel_fd: int) -> tuple[int, int]:
        with self.lock:
            try:
                self.sock.sendmsg(
                    [json.dumps(params).encode()],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [channel_fd]))],
                )
                message, ancillary, _flags, _addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(4))
            except OSError as error:
                raise ChildGone(f"fork server: {error}") from error
        fds = [
            fd
            for level, kind, data in ancillary
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
            for fd in array.array("i", data[: len(data) - len(data) % 4])
        ]
        try:
            reply = json.loads(message or b"null")
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or reply.get("t") != "forked" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            detail = reply.get("message") if isinstance(reply, dict) else "no answer"
            raise ChildGone(f"fork server could not fork: {detail}")
        return int(reply["pid"]), fds[0]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()  # EOF: the server kills its children and exits
        if self.owner == os.getpid():
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def abandon(self) -> None:
        """In a forked copy of the owner: drop our copy of the socket, leave the server alone."""
        with contextlib.suppress(OSError):
            self.sock.close()


def _library_paths() -> list[str]:
    """Where the fork server finds the third-party packages it preloads (it runs with -I -S)."""
    paths: list[str] = []
    for name in ("jsonschema", "seccompy", "landlockpy"):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            parent = str(Path(location).resolve().parent)
            if parent not in paths:
                paths.append(parent)
    return paths


_server: ForkServer | None = None
_server_lock = threading.Lock()
_warned_weak = False


def fork_server() -> ForkServer:
    """This process's fork server, started on first use and restarted if it died or we forked."""
    global _server
    with _server_lock:
        server = _server
        if server is not None and server.owner != os.getpid():
            server.abandon()
            server = _server = None
        if server is not None and not server.alive():
            server.close()
            server = _server = None
        if server is None:
            server = _server = ForkServer()
        return server


def missing_layers(server: ForkServer) -> list[str]:
    return [name for name in LAYERS if not server.layers.get(name) or name in TEST_DISABLED_LAYERS]


def allow_weak() -> bool:
    return bool(setting("WR_SANDBOX_ALLOW_WEAK", False))


def require_layers(server: ForkServer) -> bool:
    """Raise SandboxUnavailable unless every layer works or weak mode is allowed; returns weak."""
    global _warned_weak
    missing = missing_layers(server)
    if not missing:
        return False
    details = "; ".join(
        f"{name}: {server.errors.get(name, 'disabled') if name not in TEST_DISABLED_LAYERS else 'disabled'}"
        for name in missing
    )
    if not allow_weak():
        raise SandboxUnavailable(
            "user code cannot run: missing sandbox isolation layer(s): "
            + ", ".join(missing)
            + f" ({details}). Set WR_SANDBOX_ALLOW_WEAK=true to run without them (development only).",
            missing=tuple(missing),
        )
    if not _warned_weak:
        _warned_weak = True
        log.warning(
            "sandbox: WR_SANDBOX_ALLOW_WEAK is on; running user code WITHOUT %s (%s)",
            ", ".join(missing),
            details,
        )
    return True


def isolation_report() -> dict[str, bool]:
    """Which isolation layers work on this machine (probed by the fork server at start)."""
    try:
        server = fork_server()
    except SandboxUnavailable:
        return dict.fromkeys(LAYERS, False)
    return {
        name: server.layers.get(name, False) and name not in TEST_DISABLED_LAYERS for name in LAYERS
    }


def spawn(*, memory_bytes: int, max_frame: int, weak: bool) -> Child:
    """Fork a sandboxed child. It isolates itself, then says hello (read by the caller)."""
    params = {
        "memory_bytes": memory_bytes,
        "weak": weak,
        "disable": sorted(TEST_DISABLED_LAYERS),
        # User code yields the CPU to web processes, workers and PostgreSQL (docs/security.md).
        "nice": max(0, min(19, int(setting("WR_SANDBOX_NICE", 10)))),
    }
    for attempt in (1, 2):
        server = fork_server()
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid, pidfd = server.fork(params, child_end.fileno())
        except ChildGone as error:
            parent_end.close()
            if attempt == 2:
                raise SandboxUnavailable(
                    f"the sandbox could not start a process: {error}"
                ) from error
            with _server_lock:  # the server died under us: start a fresh one and retry once
                global _server
                if _server is server:
                    server.close()
                    _server = None
            continue
        finally:
            child_end.close()
        return Child(parent_end, pid, pidfd, max_frame)
    raise AssertionError("unreachable")


# ---- warm children for responder/query ------------------------------------------------------------
class WarmPool:
    """Idle, already-sandboxed children keyed by (hook, code, secrets, limits). Never shared between
    keys; a child goes back only after calls that all succeeded."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: dict[Any, list[Child]] = {}

    @staticmethod
    def ttl() -> float:
        return float(setting("WR_SANDBOX_WARM_SECONDS", 30.0))

    @staticmethod
    def max_children() -> int:
        return int(setting("WR_SANDBOX_WARM_MAX", 32))

    @staticmethod
    def max_calls() -> int:
        return int(setting("WR_SANDBOX_WARM_MAX_CALLS", 1000))

    def take(self, key: Any) -> Child | None:
        with self.lock:
            self._evict_locked()
            children = self.idle.get(key)
            while children:
                child = children.pop()
                if not children:
                    del self.idle[key]
                if child.looks_idle():
                    return child
                child.kill()
                children = self.idle.get(key)
        return None

    def put(self, key: Any, child: Child) -> None:
        if self.ttl() <= 0 or child.calls >= self.max_calls() or not child.looks_idle():
            child.kill()
            return
        child.idle_since = time.monotonic()
        with self.lock:
            self.idle.setdefault(key, []).append(child)
            self._evict_locked()

    def _evict_locked(self) -> None:
        now = time.monotonic()
        ttl = self.ttl()
        everyone: list[tuple[float, Any, Child]] = []
        for key, children in list(self.idle.items()):
            keep = []
            for child in children:
                if now - child.idle_since > ttl or child.owner_changed():
                    child.kill()
                else:
                    keep.append(child)
                    everyone.append((child.idle_since, key, child))
            if keep:
                self.idle[key] = keep
            else:
                del self.idle[key]
        excess = len(everyone) - self.max_children()
        for _since, key, child in sorted(everyone, key=lambda item: item[0])[: max(0, excess)]:
            self.idle[key].remove(child)
            if not self.idle[key]:
                del self.idle[key]
            child.kill()

    def clear(self, *, kill: bool = True) -> None:
        with self.lock:
            for children in self.idle.values():
                for child in children:
                    if kill:
                        child.kill()
                    else:
                        child.close_fds()
            self.idle.clear()


warm_pool = WarmPool()


def shutdown() -> None:
    """Kill warm children and stop the fork server (tests, process exit)."""
    global _server
    warm_pool.clear()
    with _server_lock:
        if _server is not None:
            if _server.owner == os.getpid():
                _server.close()
            else:
                _server.abandon()
            _server = None


def _after_fork_in_child() -> None:
    # A forked copy (gunicorn/Celery worker) must not use, or kill, its parent's processes.
    global _server, _server_lock, _warned_weak
    _server_lock = threading.Lock()
    warm_pool.lock = threading.Lock()
    warm_pool.clear(kill=False)
    if _server is not None:
        _server.abandon()
        _server = None


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)
