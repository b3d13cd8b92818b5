"""The sandboxed child's call loop: runs ONE hook's code over the calls its parent streams in.

This module is imported by the fork server before any isolation is applied, so that a child never
has to read a file. It must not import Django or anything the sandbox does not preload.

Wire format on the child's channel (fd 3), both ways: frames of a 4-byte big-endian length and a
UTF-8 JSON object. Parent -> child: `init` (code, secrets, limits) first, then one frame per call.
Child -> parent: `hello` (the isolation layers, before any job data is read), `init` (the module
was executed), then one result frame per call, in order. A reduce result carries the new state's
text only up to `log_state_bytes` or when its request is marked "full" (the batch's last), else
its size (docs/sandbox.md, "Big states"). The parent never trusts these frames.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import json
import linecache
import logging
import os
import random
import re
import signal
import sys
import time
import traceback
import types
from collections.abc import Callable, Mapping
from typing import Any

# Imported by name, not statically: inside the sandbox `webreducer` is runtime/webreducer.py,
# while type checkers running from the project root would see the Django project package.
webreducer: Any = importlib.import_module("webreducer")
# The request object (also imported by name: see above).
wr_request: Any = importlib.import_module("wr_request")
make_request = wr_request.make_request
MultiDict = wr_request.MultiDict

FILENAME = "hook.py"
CONTRACT = ("reducer", "responder", "idempotency_key", "query", "room")
CHANNEL_FD = 3

# What user code may import. Python-level restrictions are NOT the security boundary (the OS
# layers are); this list exists to give clear errors and to keep the module surface small.
ALLOWED_MODULES = frozenset(
    {
        "__future__",
        "abc",
        "array",
        "base64",
        "binascii",
        "bisect",
        "calendar",
        "cmath",
        "collections",
        "collections.abc",
        "contextlib",
        "copy",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "hashlib",
        "heapq",
        "hmac",
        "html",
        "io",
        "itertools",
        "json",
        "jsonschema",
        "logging",
        "math",
        "numbers",
        "operator",
        "pprint",
        "random",
        "re",
        "statistics",
        "string",
        "struct",
        "textwrap",
        "time",
        "traceback",
        "typing",
        "unicodedata",
        "urllib",
        "urllib.parse",
        "uuid",
        "webreducer",
        "webreducer_helpers",
        "zlib",
    }
)
# Packages whose already-loaded submodules may be imported too (e.g. json.decoder).
_SUBMODULES_OF = ("collections.", "html.", "json.", "jsonschema.")

# Imported by the fork server before it forks anything: the allow-list, what the runtime and the
# helpers use, and the codecs users reach through str.decode().
PRELOAD = (
    *sorted(ALLOWED_MODULES - {"webreducer", "webreducer_helpers"}),
    "codecs",
    "encodings.aliases",
    "encodings.ascii",
    "encodings.base64_codec",
    "encodings.cp1252",
    "encodings.hex_codec",
    "encodings.idna",
    "encodings.latin_1",
    "encodings.punycode",
    "encodings.raw_unicode_escape",
    "encodings.unicode_escape",
    "encodings.utf_16",
    "encodings.utf_16_be",
    "encodings.utf_16_le",
    "encodings.utf_32",
    "encodings.utf_8",
    "encodings.utf_8_sig",
    "html.entities",
    "html.parser",
    "json.decoder",
    "json.encoder",
    "json.scanner",
    "jsonschema.exceptions",
    "jsonschema.validators",
    "wr_cloudevents",
)
CODECS = (
    "ascii",
    "latin-1",
    "utf-8",
    "utf-8-sig",
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "utf-32",
    "cp1252",
    "idna",
    "punycode",
    "hex",
    "base64",
    "raw-unicode-escape",
    "unicode-escape",
)

# Made once: json.dumps() with options builds a new encoder on every call.
_FRAME_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_STATE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

MAX_MESSAGE_CHARS = 4096
MAX_TRACEBACK_CHARS = 16384
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class LimitExceeded(BaseException):
    """Raised into user code by the CPU timer. A BaseException so `except Exception` won't eat it."""


class _Failed(Exception):
    """A call failed for a reason the runtime detected (not an exception in user code)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.error = {"type": kind, "message": message, "traceback": ""}


# ---- the CPU timer -------------------------------------------------------------------------------
# ITIMER_PROF ticks every 10 ms of this process's CPU time; while a call is running the tick raises
# LimitExceeded (between bytecodes) once the call has used its CPU budget, and again on every later
# tick in case user code catches it. Code that never returns to the interpreter (one huge C-level
# computation), or that disarms the timer through an escape, is still stopped by the parent's
# wall-clock SIGKILL: this timer gives a precise, clean error; it is not the boundary.
CPU_TICK = 0.01
CPU_GRACE = 0.1  # CPU seconds user code gets to unwind after the error before the child gives up
_armed = False
_overrun: Callable[[], None] | None = None
_hit = False
_cpu_deadline = 0.0
# A call that has spun this much CPU drops its child to the lowest priority for the rest of the
# child's life (it cannot raise it back: that needs a privilege it has not got, and the seccomp
# filter lets it ask for SCHED_IDLE only). Quick calls of
# other hooks then get the CPU before a hostile hook's spinning ones (docs/security.md).
DEMOTE_AFTER_CPU = 0.05
LOWEST_PRIORITY = 19
_call_cpu_start = 0.0
_demoted = False


_channel: Channel | None = None


def _demote() -> None:
    global _demoted
    _demoted = True
    # SCHED_IDLE: the child runs only on a CPU that nothing else wants, and any other process
    # that wakes up takes the CPU from it at once (a nice-19 process keeps running for its
    # slice, which the quick calls of other hooks waited for). Nice 19 as well, for a kernel or
    # filter without SCHED_IDLE. On failure the child just keeps its priority.
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, LOWEST_PRIORITY)


def _on_cpu_tick(signum: int, frame: Any) -> None:
    global _hit
    channel = _channel
    if channel is not None and channel.out and not channel.writing:
        # Replies queued before a long call leave now, not when that call ends: the parent's
        # per-call deadline must see them in time.
        try:
            channel.flush()
        except OSError:
            os._exit(0)  # the parent has gone
    if _armed:
        used = time.process_time()
        if not _demoted and used - _call_cpu_start >= DEMOTE_AFTER_CPU:
            _demote()
        if used >= _cpu_deadline:
            _hit = True
            if (
                used >= _cpu_deadline + CPU_GRACE
                and _overrun is not None
                and channel
                and not channel.writing
            ):
                _overrun()  # user code keeps catching the error: report the limit and exit now
            raise LimitExceeded


# ---- framing -------------------------------------------------------------------------------------
class Channel:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.out = bytearray()
        self.oldest = 0.0  # when the oldest unsent frame in `out` was queued
        self.writing = False

    def recv(self) -> dict[str, Any] | None:
        while len(self.buffer) < 4:
            if not self._fill():
                return None
        size = int.from_bytes(self.buffer[:4], "big")
        while len(self.buffer) < 4 + size:
            if not self._fill():
                return None
        payload = bytes(self.buffer[4 : 4 + size])
        del self.buffer[: 4 + size]
        message: dict[str, Any] = json.loads(payload.decode("utf-8", "surrogatepass"))
        return message

    def _fill(self) -> bool:
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def has_frame(self) -> bool:
        """Whether the next request is already here (so a reply may wait to share a write)."""
        if len(self.buffer) < 4:
            return False
        return len(self.buffer) >= 4 + int.from_bytes(self.buffer[:4], "big")

    def send(self, message: dict[str, Any], *, flush: bool = True) -> None:
        data = _FRAME_ENCODER.encode(message).encode("utf-8", "replace")
        if not self.out:
            self.oldest = time.perf_counter()
        self.out += len(data).to_bytes(4, "big")
        self.out += data
        if flush or len(self.out) >= 65536 or time.perf_counter() - self.oldest >= 0.002:
            self.flush()

    def flush(self) -> None:
        self.writing = True
        try:
            view = memoryview(bytes(self.out))
            self.out.clear()
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        finally:
            self.writing = False


# ---- console -------------------------------------------------------------------------------------
class Console:
    """sys.stdout/sys.stderr/logging for user code: keeps the first `limit` bytes of each call."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self) -> None:
        self.reset(64 * 1024)

    def reset(self, limit: int) -> None:
        self.parts: list[bytes] = []
        self.used = 0
        self.limit = limit
        self.truncated = False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self.truncated:
            return len(text)
        room = self.limit - self.used
        # A character is at least one byte: never encode more than `room` characters, so a
        # 100 MB print costs no more than the limit.
        piece = text[:room].encode("utf-8", "replace")
        if len(piece) > room:
            piece = piece[:room]
            self.truncated = True
        elif len(text) > room:
            self.truncated = True
        self.parts.append(piece)
        self.used += len(piece)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def getvalue(self) -> str:
        text = b"".join(self.parts).decode("utf-8", "ignore")
        if self.truncated:
            if text and not text.endswith("\n"):
                text += "\n"
            text += f"[output truncated: limit of {self.limit} bytes]\n"
        return text


# ---- what user code sees -------------------------------------------------------------------------
def _module_allowed(name: str) -> bool:
    if name in ALLOWED_MODULES:
        return True
    return name.startswith(_SUBMODULES_OF) and name in sys.modules


def _make_builtins() -> dict[str, Any]:
    real_import = builtins.__import__

    def sandbox_import(
        name: str,
        globals: Any = None,
        locals: Any = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        if level:
            raise ImportError("relative imports are not available in the sandbox")
        if not isinstance(name, str) or not _module_allowed(name):
            raise ImportError(f"module '{name}' is not available in the sandbox", name=str(name))
        module = real_import(name, globals, locals, fromlist, 0)
        for item in fromlist or ():
            if item != "*" and not hasattr(module, item):
                sub = f"{name}.{item}"
                raise ImportError(f"module '{sub}' is not available in the sandbox", name=sub)
        return module

    def no_open(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError("open() is not available in the sandbox: hooks have no file system")

    def no_input(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("input() is not available in the sandbox")

    safe = dict(vars(builtins))
    for name in ("breakpoint", "help", "exit", "quit", "copyright", "credits", "license"):
        safe.pop(name, None)
    safe["__import__"] = sandbox_import
    safe["open"] = no_open
    safe["input"] = no_input
    return safe


def _no_sleep(seconds: float = 0) -> None:
    raise RuntimeError("time.sleep() is not available in the sandbox: hooks cannot wait")


def _clean(text: str, limit: int) -> str:
    if len(text) > limit:
        text = text[:limit] + "…"
    return text.encode("utf-8", "replace").decode("utf-8")


def describe(exc: BaseException) -> dict[str, str]:
    """type, message and a traceback of the user's own frames (File "hook.py") only."""
    try:
        kind = type(exc).__name__
        if not isinstance(kind, str):
            kind = "Exception"
        try:
            message = str(exc)
        except (LimitExceeded, MemoryError):
            raise
        except BaseException:
            message = "<exception str() failed>"
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == FILENAME]
        lines = ["Traceback (most recent call last):\n"] if frames else []
        lines += traceback.StackSummary.from_list(frames).format()
        lines += traceback.format_exception_only(type(exc), exc)
        text = "".join(lines)
        if len(text) > MAX_TRACEBACK_CHARS:
            text = "…\n" + text[-MAX_TRACEBACK_CHARS:]
        return {
            "type": _clean(kind, 200),
            "message": _clean(message, MAX_MESSAGE_CHARS),
            "traceback": _clean(text, MAX_TRACEBACK_CHARS + 10),
        }
    except (LimitExceeded, MemoryError):
        raise
    except BaseException:
        return {"type": "Exception", "message": "<unprintable exception>", "traceback": ""}


def dump_json(value: Any, *, what: str, limit: int) -> str:
    """Compact JSON text of `value`, or _Failed: not JSON, not UTF-8, a NUL character, too big."""
    return dump_sized(value, what=what, limit=limit)[0]


def dump_sized(value: Any, *, what: str, limit: int) -> tuple[str, int]:
    """`dump_json` and the text's size in UTF-8 bytes (measured once, for the limit)."""
    try:
        text = _STATE_ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as error:
        kind = "StateNotSerializable" if what == "state" else "ResponseNotSerializable"
        raise _Failed(kind, f"{what} must be JSON-serialisable: {error}") from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        kind = "StateNotSerializable" if what == "state" else "ResponseNotSerializable"
        raise _Failed(
            kind, f"{what} contains text that is not valid Unicode (lone surrogates)"
        ) from None
    if size > limit:
        kind = "StateTooLarge" if what == "state" else "ResponseTooLarge"
        raise _Failed(kind, f"{what} is {size} bytes serialised; the limit is {limit} bytes")
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        # PostgreSQL's jsonb cannot store U+0000: refuse it here rather than fail the commit.
        kind = "StateNotSerializable" if what == "state" else "ResponseNotSerializable"
        raise _Failed(kind, f"{what} contains a NUL character (\\u0000), which cannot be stored")
    return text, size


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def response_json(result: Any, *, limit: int) -> str:
    if isinstance(result, webreducer.Response):
        status, headers, body = result.status, result.headers, result.body
    else:
        status, headers, body = 200, {}, result
    # 1xx are interim answers: a server would send the real one after them, from this body.
    if type(status) is not int or not 200 <= status <= 599:
        raise TypeError(f"Response status must be an int from 200 to 599, not {status!r}")
    if not isinstance(headers, Mapping):
        raise TypeError(f"Response headers must be a dict, not {type(headers).__name__}")
    clean: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValueError(f"invalid response header name {name!r}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
            raise ValueError(f"invalid value for response header {name!r}")
        clean[name] = value
    return dump_json(
        {"status": status, "headers": clean, "body": body}, what="response", limit=limit
    )


class MissingSecret(KeyError):
    """`secrets["NAME"]` for a secret the hook does not have: says which, and where to set it.
    A KeyError still, so `except KeyError` and `secrets.get("NAME")` work as on a dict."""

    def __str__(self) -> str:
        return (
            f"the secret {self.args[0]} is not set: add it under Secrets on the hook's page "
            f"(or `wr secrets set {self.args[0]}`), or use secrets.get({self.args[0]!r})"
        )


class Secrets(dict):  # type: ignore[type-arg]
    """The `secrets` argument: a plain dict of the hook's secrets, a copy per call."""

    def __missing__(self, name: Any) -> Any:
        raise MissingSecret(name)


# ---- the call loop -------------------------------------------------------------------------------
class Runtime:
    def __init__(self, channel: Channel, init: dict[str, Any]) -> None:
        self.channel = channel
        self.code: str = init["code"]
        self.secrets: dict[str, str] = dict(init.get("secrets") or {})
        self.cpu_seconds = float(init["cpu_seconds"])
        self.output_bytes = int(init["output_bytes"])
        self.state_bytes = int(init["state_bytes"])
        self.value_bytes = int(init["value_bytes"])
        self.memory_bytes = int(init["memory_bytes"])
        # A state up to this size goes back with each reduce result (the request log keeps it);
        # a bigger one only as its size, unless the parent asks for it ("full"): parsing a big
        # state per request would cost the worker more than the reducer call (docs/sandbox.md).
        self.log_state_bytes = int(init.get("log_state_bytes", self.state_bytes))
        # Fields a fatal result carries (a reduce's state: the parent restarts from it).
        self.fatal_extra: dict[str, Any] = {}
        # Replies normally share writes (fewer wake-ups for the parent); after a failure the
        # parent asks for one write per reply, so that it can tell exactly which call failed.
        self.flush_each = bool(init.get("flush_each"))
        self.functions: dict[str, Callable[..., Any]] = {}
        self.state_json = "null"
        self.console = Console()
        self.builtins = _make_builtins()

    # One call under the CPU timer, with console capture. Returns (ok, payload or error, fatal).
    def _limit_result(self, kind: str, elapsed: float) -> dict[str, Any]:
        if kind == "limit":
            error = {
                "type": "CpuLimitExceeded",
                "message": f"CPU time limit of {self.cpu_seconds:g} s per call exceeded",
                "traceback": "",
            }
        else:
            mib = f"{self.memory_bytes / 2**20:g}"
            error = {
                "type": "MemoryLimitExceeded",
                "message": f"memory limit of {mib} MiB exceeded",
                "traceback": "",
            }
        console = self.console.getvalue()
        return {
            "t": "r",
            "ms": round(elapsed, 3),
            "console": console,
            "ok": False,
            "fatal": True,
            "error": error,
            **self.fatal_extra,
        }

    def _give_up(self, start: float) -> None:
        global _armed
        _armed = False
        result = self._limit_result("limit", (time.perf_counter() - start) * 1000)
        try:
            self.channel.send(result)
        finally:
            os._exit(0)

    def run(self, fn: Callable[[], Any]) -> dict[str, Any]:
        global _armed, _hit, _cpu_deadline, _overrun, _call_cpu_start
        self.console.reset(self.output_bytes)
        _hit = False
        outcome: tuple[str, Any] = ("limit", None)
        start = time.perf_counter()
        _call_cpu_start = time.process_time()
        _cpu_deadline = _call_cpu_start + self.cpu_seconds
        _overrun = lambda: self._give_up(start)  # noqa: E731
        _armed = True
        try:
            try:
                outcome = self._guarded(fn)
            finally:
                _armed = False
        except LimitExceeded:
            _armed = False
            outcome = ("limit", None)
        except MemoryError:
            _armed = False
            outcome = ("memory", None)
        elapsed = (time.perf_counter() - start) * 1000
        if not _demoted and time.process_time() - _call_cpu_start >= DEMOTE_AFTER_CPU:
            _demote()  # a call shorter than a tick's resolution may have slipped past the tick
        if _hit:
            outcome = ("limit", None)
        kind, payload = outcome
        if kind in ("limit", "memory"):
            return self._limit_result(kind, elapsed)
        result: dict[str, Any] = {
            "t": "r",
            "ms": round(elapsed, 3),
            "console": self.console.getvalue(),
        }
        if kind == "ok":
            result.update(ok=True, value=payload)
        else:
            result.update(ok=False, error=payload)
        return result

    @staticmethod
    def _guarded(fn: Callable[[], Any]) -> tuple[str, Any]:
        try:
            return ("ok", fn())
        except (LimitExceeded, MemoryError):
            raise
        except _Failed as failed:
            return ("error", failed.error)
        except BaseException as exc:
            return ("error", describe(exc))

    def load(self) -> dict[str, Any]:
        linecache.cache[FILENAME] = (len(self.code), None, self.code.splitlines(True), FILENAME)
        module = types.ModuleType("hook")
        module.__file__ = FILENAME
        module.__dict__["__builtins__"] = self.builtins
        sys.modules["hook"] = module

        def execute() -> list[str]:
            compiled = compile(self.code, FILENAME, "exec", dont_inherit=True)
            exec(compiled, module.__dict__)
            for name in CONTRACT:
                fn = module.__dict__.get(name)
                if callable(fn):
                    self.functions[name] = fn
            return sorted(self.functions)

        result = self.run(execute)
        result["t"] = "init"
        return result

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "reduce":
            return self.reduce(message["request"], full=message.get("full") is True)
        if op == "idem":
            return self.idempotency_key(message["request"])
        if op == "respond":
            return self.respond(message["request"])
        if op == "room":
            return self.room(message["request"])
        if op == "query":
            return self.query(message["state"], message.get("params") or {})
        raise ValueError(f"unknown op {op!r}")

    def reduce(self, data: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
        """One reducer call. Every new state is checked against the state limit here; the result
        carries it as "state" (JSON text) when it is at most log_state_bytes or the parent asked
        for it (`full`: the batch's last request), else only as "state_bytes" (its size). A
        failed call leaves the state as it was and carries it only when `full` or fatal."""
        reducer = self.functions.get("reducer")
        previous = self.state_json

        def call() -> tuple[str, int]:
            # A fresh copy of the last good state: a reducer that mutates it and then raises
            # must leave the state unchanged.
            state = json.loads(previous)
            if reducer is None:
                return previous, len(previous.encode("utf-8"))
            new_state = reducer(state, make_request(data), Secrets(self.secrets))
            return dump_sized(new_state, what="state", limit=self.state_bytes)

        # After a CPU or memory limit this child exits: the parent restarts from this state.
        self.fatal_extra = {"state": previous}
        try:
            result = self.run(call)
        finally:
            self.fatal_extra = {}
        if result["ok"]:
            self.state_json, size = result.pop("value")
            if full or size <= self.log_state_bytes:
                result["state"] = self.state_json
            else:
                result["state_bytes"] = size
        elif full:
            result["state"] = previous
        return result

    def idempotency_key(self, data: dict[str, Any]) -> dict[str, Any]:
        fn = self.functions.get("idempotency_key")

        def call() -> str:
            request = make_request(data)
            if fn is None:
                key = request["headers"].get("idempotency-key") or None
            else:
                key = fn(request, Secrets(self.secrets))
            if key is not None and not isinstance(key, str):
                raise _Failed(
                    "TypeError",
                    f"idempotency_key must return a str or None, not {type(key).__name__}",
                )
            return dump_json(key, what="idempotency key", limit=self.value_bytes)

        return self.run(call)

    def room(self, data: dict[str, Any]) -> dict[str, Any]:
        fn = self.functions.get("room")

        def call() -> str:
            request = make_request(data)
            if fn is None:
                name = request["query"].get("room") or None
            else:
                name = fn(request, dict(self.secrets))
            if name is not None and not isinstance(name, str):
                raise _Failed(
                    "TypeError", f"room must return a str or None, not {type(name).__name__}"
                )
            return dump_json(name, what="room", limit=self.value_bytes)

        return self.run(call)

    def respond(self, data: dict[str, Any]) -> dict[str, Any]:
        fn = self.functions.get("responder")

        def call() -> str:
            request = make_request(data)
            if fn is None:
                return response_json(
                    webreducer.Response({"id": request.get("id")}, status=202),
                    limit=self.value_bytes,
                )
            return response_json(fn(request, Secrets(self.secrets)), limit=self.value_bytes)

        return self.run(call)

    def query(self, state_json: str, params: dict[str, Any]) -> dict[str, Any]:
        fn = self.functions.get("query")

        def call() -> str:
            state = json.loads(state_json)
            if fn is None:
                return response_json(state, limit=self.value_bytes)
            return response_json(
                fn(state, MultiDict(params), Secrets(self.secrets)), limit=self.value_bytes
            )

        return self.run(call)


def prepare_process() -> None:
    """In the child, after isolation and before any job data: patch what user code will see."""
    signal.signal(signal.SIGPROF, _on_cpu_tick)
    signal.setitimer(signal.ITIMER_PROF, CPU_TICK, CPU_TICK)
    time.sleep = _no_sleep
    random.seed()  # every child forks the fork server's generator: reseed from the kernel


def serve(hello: dict[str, Any], *, proceed: bool) -> None:
    """The child's main loop. Returns when the parent closes the channel or after a fatal call."""
    global _channel
    channel = _channel = Channel(CHANNEL_FD)
    channel.send({"t": "hello", **hello})
    if not proceed:
        return  # a required isolation layer is missing: never read the job data
    prepare_process()
    init = channel.recv()
    if init is None:
        return
    runtime = Runtime(channel, init)
    console = runtime.console
    sys.stdout = sys.stderr = console  # type: ignore[assignment]
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(console)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    loaded = runtime.load()
    channel.send(loaded)
    if loaded.get("fatal"):
        return
    while True:
        if channel.out and not channel.has_frame():
            channel.flush()
        message = channel.recv()
        if message is None:
            return
        if message.get("op") == "state":
            runtime.state_json = message["state"]
            continue
        result = runtime.handle(message)
        fatal = bool(result.get("fatal"))
        channel.send(result, flush=fatal or runtime.flush_each or not channel.has_frame())
        if fatal:
            return  # after a CPU or memory limit this interpreter is not trusted to be sane
