"""The public API: `session(...)` runs one hook's code in a sandboxed child (docs/sandbox.md)."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sandbox import strict_json
from sandbox.check import check_code
from sandbox.errors import CodeError, SandboxUnavailable
from sandbox.limits import Limits, setting
from sandbox.process import (
    HELLO_TIMEOUT,
    LAYERS,
    Child,
    ChildGone,
    ChildProtocolError,
    ChildTimeout,
    encode_frame,
    fork_server,
    require_layers,
    spawn,
    warm_pool,
)
from sandbox.reduce_batch import Payload, ReduceBatch, ReduceStep, as_dict, request_frame

MAX_TYPE_CHARS = 200
MAX_MESSAGE_CHARS = 4096
MAX_TRACEBACK_CHARS = 16384

# Errors after which a responder/query child is not pooled again. An ordinary exception of user
# code leaves the child in sync and its interpreter sound, so it is reused like a successful call
# (a hook whose code raises on every call would otherwise cost a fork per request: ~7 ms of CPU
# a call that any tenant could make the machine pay, docs/sandbox.md "Warm children").
# Limits end the child (fatal); a reducer child is never reused after an error.
_DAMAGING_ERRORS = frozenset({"RecursionError", "SandboxError", "ProtocolError"})


def _reusable_after(error: dict[str, Any] | None) -> bool:
    return isinstance(error, dict) and error.get("type") not in _DAMAGING_ERRORS


@dataclass
class CallResult:
    ok: bool
    value: Any  # idempotency_key, room: str | None; responder/query: {"status", "headers", "body"}
    error: dict[str, str] | None  # {"type", "message", "traceback"}
    console: str
    duration_ms: float


def _error(kind: str, message: str, traceback: str = "") -> dict[str, str]:
    return {"type": kind, "message": message, "traceback": traceback}


def _storable_text(text: str) -> str:
    """Console output and error text as PostgreSQL can store it: a lone surrogate or a NUL
    (print("\\x00") is all it takes) would make the request's outcome impossible to commit."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


class ValueRefused(ChildProtocolError):
    """A value from the child that is not strict, storable JSON (NaN, Infinity, a number out of
    range, U+0000, a lone surrogate, too big): only a child whose encoder user code replaced
    sends one. The call fails with this error; the child is replaced."""

    KINDS = {
        "reduce": ("StateNotSerializable", "the new state"),
        "idem": ("IdempotencyKeyNotSerializable", "the idempotency key"),
        "respond": ("ResponseNotSerializable", "the response"),
        "room": ("RoomNotSerializable", "the room name"),
        "query": ("ResponseNotSerializable", "the response"),
    }

    def __init__(self, op: str, reason: str) -> None:
        self.kind, what = self.KINDS.get(op, ("SandboxError", "the value"))
        self.message = f"{what} is not valid JSON that can be stored: {reason}"
        super().__init__(self.message)


@functools.lru_cache(maxsize=256)
def _contract(code: str) -> frozenset[str]:
    return check_code(code, max_bytes=1 << 30)


def _header(headers: Any, name: str) -> str | None:
    if isinstance(headers, dict):
        for key, value in headers.items():
            if isinstance(key, str) and key.lower() == name and isinstance(value, str):
                return value or None
    return None


class Session:
    """One hook's code with its secrets and limits; calls run in one sandboxed child, which is
    replaced after a limit kills it. Use through `session()`; not shared between threads."""

    def __init__(
        self,
        *,
        code: str,
        secrets: dict[str, str],
        limits: Limits,
        hook_id: str = "",
        role: str = "serve",
        log_state_bytes: int | None = None,
    ) -> None:
        self.code = code
        self.secrets = {str(name): str(value) for name, value in secrets.items()}
        self.limits = limits
        self.hook_id = hook_id
        self._weak = require_layers(fork_server())
        self._child: Child | None = None
        self._tainted = False  # the current child saw an error or a batch: never pool it
        # After a timeout or crash in a pipelined exchange, replies the child had queued may be
        # lost with it: from then on children flush every reply, and that request runs again.
        self._careful = False
        self._pending_console = ""
        self._init_error: dict[str, str] | None = None
        try:
            self._functions = _contract(code)
        except CodeError as error:
            self._functions = frozenset()
            kind, _, message = error.message.partition(": ")
            detail = f"{message or kind}" + (f" (line {error.line})" if error.line else "")
            self._init_error = _error(kind if message else "CodeError", detail)
        self._value_bytes = 4 * limits.state_bytes
        # Intermediate states up to this size come back from the child (the request log keeps
        # them); bigger ones only as their size (docs/sandbox.md, "Big states").
        if log_state_bytes is None:
            log_state_bytes = int(setting("WR_LOG_STATE_MAX_BYTES", 64 * 1024))
        self.log_state_bytes = max(0, min(log_state_bytes, limits.state_bytes))
        # A frame carries at most one state/value (escaped: <= 2x) and two consoles (<= 6x each).
        self._max_frame = (
            2 * max(limits.state_bytes, self._value_bytes) + 12 * limits.output_bytes + 256 * 1024
        )
        self._key: tuple[Any, ...] | None = None
        if hook_id:
            secrets_digest = hashlib.sha256(
                json.dumps(self.secrets, sort_keys=True).encode("utf-8", "surrogatepass")
            )
            code_digest = hashlib.sha256(code.encode("utf-8", "surrogatepass"))
            self._key = (
                role,
                hook_id,
                code_digest.hexdigest(),
                secrets_digest.hexdigest(),
                limits,
                self.log_state_bytes,
            )
        # Reducer children are pooled apart from responder/query ones ("serve"): a reducer's
        # module-level globals never meet the functions on the request path.
        self._reducing = role == "reduce"

    # ---- public calls ---------------------------------------------------------------------------
    # A request is a dict, or the same as JSON text (hooks.request_rows builds it without parsing).
    def idempotency_keys(self, requests: Sequence[Payload]) -> list[CallResult]:
        if self._init_error is None and "idempotency_key" not in self._functions:
            return [
                CallResult(
                    True, _header(as_dict(r).get("headers"), "idempotency-key"), None, "", 0.0
                )
                for r in requests
            ]
        self._tainted |= not self._reducing
        frames = [request_frame("idem", r) for r in requests]
        results = self._run("idem", frames, warm=self._reducing)
        return [self._call_result(result) for _, result in results]

    def reduce(self, state_json: str, requests: Sequence[Payload]) -> list[ReduceStep]:
        """Fold `requests` into `state_json` in order: one step per request. A step's
        state_json is None when that state is over log_state_bytes; the last step's never is
        (it is the state to commit, parsed strictly here once)."""
        if self._init_error is None and "reducer" not in self._functions:
            return [ReduceStep(True, state_json, None, "", 0.0) for _ in requests]
        self._tainted |= not self._reducing
        batch = ReduceBatch(state_json, requests)
        for index, result in self._run(
            "reduce",
            batch.frames,
            prelude=batch.prelude,
            warm=self._reducing,
            resume=batch.resume,
            check=lambda frame, index: self._check_state(frame, index, batch),
        ):
            batch.record(index, result)
        return batch.steps

    def reduce_groups(
        self, groups: Sequence[tuple[str, Sequence[Payload]]]
    ) -> list[list[ReduceStep]]:
        """`reduce` for several states at once (a multi-room batch): each (state, requests)
        folds from its own state, all in one exchange with the child; one list of steps per
        group, each ending with its state to commit."""
        if self._init_error is None and "reducer" not in self._functions:
            return [
                [ReduceStep(True, state, None, "", 0.0) for _ in part] for state, part in groups
            ]
        self._tainted |= not self._reducing
        batch = ReduceBatch("null", [], groups=groups)
        for index, result in self._run(
            "reduce",
            batch.frames,
            prelude=batch.prelude,
            warm=self._reducing,
            resume=batch.resume,
            check=lambda frame, index: self._check_state(frame, index, batch),
        ):
            batch.record(index, result)
        return batch.split()

    def respond(self, request: dict[str, Any]) -> CallResult:
        if self._init_error is None and "responder" not in self._functions:
            return CallResult(
                True,
                {"status": 202, "headers": {}, "body": {"id": request.get("id")}},
                None,
                "",
                0.0,
            )
        frames = [request_frame("respond", request)]
        # Drain the generator (not next()): its cleanup decides whether the child can be reused.
        ((_, result),) = list(self._run("respond", frames, warm=True))
        return self._call_result(result)

    def room(self, request: dict[str, Any]) -> CallResult:
        """The room `request` folds into (the code's `room`): a str or None, on the warm
        child that answers the responder next."""
        if self._init_error is None and "room" not in self._functions:
            values = (request.get("query") or {}).get("room") or [None]
            return CallResult(True, values[0] or None, None, "", 0.0)
        frames = [request_frame("room", request)]
        ((_, result),) = list(self._run("room", frames, warm=True))
        return self._call_result(result)

    def query(self, state_json: str, params: dict[str, list[str]]) -> CallResult:
        if self._init_error is None and "query" not in self._functions:
            try:
                body = strict_json.loads(state_json)
            except (ValueError, RecursionError) as error:  # a state stored before it was checked
                return CallResult(False, None, _error("StateNotSerializable", str(error)), "", 0.0)
            return CallResult(True, {"status": 200, "headers": {}, "body": body}, None, "", 0.0)
        frames = [encode_frame({"op": "query", "state": state_json, "params": params})]
        ((_, result),) = list(self._run("query", frames, warm=True))
        return self._call_result(result)

    def close(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if self._key is not None and not self._tainted and child.alive and child.in_sync:
            warm_pool.put(self._key, child)
        else:
            child.kill()

    # ---- the child --------------------------------------------------------------------------------
    @staticmethod
    def _call_result(result: dict[str, Any]) -> CallResult:
        return CallResult(
            result["ok"], result.get("value"), result["error"], result["console"], result["ms"]
        )

    def _drop_child(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child = None

    def _acquire(self, *, warm: bool) -> Child | None:
        if self._child is not None:
            if self._child.alive and self._child.in_sync:
                return self._child
            self._drop_child()
        if warm and self._key is not None:
            child = warm_pool.take(self._key)
            if child is not None:
                self._child, self._tainted = child, False
                return child
        return self._spawn()

    def _spawn(self) -> Child | None:
        limits = self.limits
        child = spawn(memory_bytes=limits.memory_bytes, max_frame=self._max_frame, weak=self._weak)
        self._child, self._tainted = child, False
        init = {
            "code": self.code,
            "secrets": self.secrets,
            "cpu_seconds": limits.cpu_seconds,
            "output_bytes": limits.output_bytes,
            "state_bytes": limits.state_bytes,
            "log_state_bytes": self.log_state_bytes,
            "value_bytes": self._value_bytes,
            "memory_bytes": limits.memory_bytes,
            "flush_each": self._careful,
        }
        # The init frame is sent at once, but the child reads it only after it has isolated
        # itself and said hello (and never, if a required layer is missing).
        stream = child.exchange(
            [encode_frame(init)], 2, timeout=limits.wall_seconds, first_timeout=HELLO_TIMEOUT
        )
        hello: dict[str, Any] | None = None
        try:
            hello = next(stream)
            self._check_hello(child, hello)
            loaded = next(stream)
            for _ in stream:
                pass
        except (ChildTimeout, ChildGone, ChildProtocolError, StopIteration) as error:
            stream.close()
            self._drop_child()
            if hello is None:
                raise SandboxUnavailable(
                    f"the sandbox process did not start ({type(error).__name__})"
                ) from error
            self._init_error = self._failure_for(error)
            self._init_error["message"] += " (while loading hook.py)"
            return None
        if loaded.get("t") != "init" or not isinstance(loaded.get("ok"), bool):
            self._drop_child()
            self._init_error = _error(
                "SandboxError", "the sandbox answered with an invalid message"
            )
            return None
        self._pending_console = self._bound_console(loaded.get("console"))
        if not loaded["ok"] or loaded.get("fatal"):
            self._drop_child()
            self._init_error = self._clean_error(loaded.get("error"))
            return None
        return child

    def _check_hello(self, child: Child, hello: dict[str, Any]) -> None:
        layers = hello.get("layers") if hello.get("t") == "hello" else None
        if not isinstance(layers, dict):
            raise ChildProtocolError("no hello")
        child.hello = hello
        missing = [name for name in LAYERS if layers.get(name) is not True]
        if missing and not self._weak:
            self._drop_child()
            raise SandboxUnavailable(
                "user code cannot run: missing sandbox isolation layer(s): " + ", ".join(missing),
                missing=tuple(missing),
            )

    def _run(
        self,
        op: str,
        messages: list[bytes],
        *,
        prelude: Callable[[], list[bytes]] | None = None,
        warm: bool = False,
        resume: Callable[[int], int] | None = None,
        check: Callable[[dict[str, Any], int], None] | None = None,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Run `messages` (encoded frames) in order, restarting the child after a limit kills
        it; yields (index, checked result) for every message. `resume(index)`, called before
        each child starts on messages[index:] and once at the end (index == total), returns
        where to go on from: an earlier index makes those messages run again (their results
        are yielded again). `check(frame, index)` checks a result's op-specific fields."""
        index, total = 0, len(messages)
        wall = self.limits.wall_seconds
        while True:
            if resume is not None:
                index = resume(index)
            if index >= total:
                return
            child = self._child if self._init_error is not None else self._acquire(warm=warm)
            if self._init_error is not None or child is None:
                error = dict(
                    self._init_error or _error("SandboxError", "the sandbox is not available")
                )
                console, self._pending_console = self._pending_console, ""
                yield index, {"ok": False, "error": error, "console": console, "ms": 0.0}
                index += 1
                continue
            frames = itertools.chain(
                prelude() if prelude is not None else [],
                messages[index:],
            )
            started = time.monotonic()
            stream = child.exchange(frames, total - index, timeout=wall)
            try:
                try:
                    for frame in stream:
                        result = self._check_result(frame, op)
                        if check is not None:
                            check(frame, index)
                            result["state"] = frame.get("state")
                        child.calls += 1
                        if self._pending_console:
                            result["console"] = self._pending_console + result["console"]
                            self._pending_console = ""
                        fatal = result.pop("fatal")
                        if not result["ok"] and (
                            fatal or self._reducing or not _reusable_after(result["error"])
                        ):
                            self._tainted = True
                        yield index, result
                        index += 1
                        started = time.monotonic()
                        if fatal:
                            self._drop_child()  # it exits by itself after a CPU/memory limit
                            break
                except (ChildTimeout, ChildGone, ChildProtocolError) as error:
                    self._drop_child()
                    if (
                        not self._careful
                        and not isinstance(error, ChildProtocolError)
                        and total - index > 1
                    ):
                        self._careful = True
                        continue  # run messages[index] again, in a child that flushes each reply
                    ms = (time.monotonic() - started) * 1000
                    yield (
                        index,
                        {"ok": False, "error": self._failure_for(error), "console": "", "ms": ms},
                    )
                    index += 1
            finally:
                stream.close()
                if self._child is child and not child.in_sync:
                    self._drop_child()

    def _failure_for(self, error: Exception) -> dict[str, str]:
        if isinstance(error, ChildTimeout):
            return _error(
                "TimeLimitExceeded",
                f"wall time limit of {self.limits.wall_seconds:g} s per call exceeded",
            )
        if isinstance(error, ChildGone):
            mib = self.limits.memory_bytes / 2**20
            return _error(
                "SandboxCrash",
                f"the sandbox process died (over the memory limit of {mib:g} MiB, or it crashed)",
            )
        if isinstance(error, ValueRefused):
            return _error(error.kind, error.message)
        return _error("SandboxError", f"the sandbox answered with an invalid message ({error})")

    # ---- never trust the child: check every field of every result ----------------------------------
    def _check_result(self, frame: dict[str, Any], op: str) -> dict[str, Any]:
        ok = frame.get("ok")
        if frame.get("t") != "r" or not isinstance(ok, bool):
            raise ChildProtocolError("not a result")
        ms = frame.get("ms")
        result: dict[str, Any] = {
            "ok": ok,
            "console": self._bound_console(frame.get("console")),
            "ms": float(ms)
            if isinstance(ms, int | float) and math.isfinite(ms) and ms >= 0
            else 0.0,
            "fatal": frame.get("fatal") is True,
            "error": None,
        }
        if not ok:
            result["error"] = self._clean_error(frame.get("error"))
            return result
        if op == "reduce":
            return result  # its state: _check_state
        value = self._parse_json(frame.get("value"), self._value_bytes, op)
        if op in ("idem", "room"):
            if value is not None and not isinstance(value, str):
                raise ChildProtocolError(f"{op} value is not a string")
        elif not (
            isinstance(value, dict)
            and set(value) == {"status", "headers", "body"}
            and type(value["status"]) is int
            and 200 <= value["status"] <= 599  # no 1xx, even from a child that patched itself
            and isinstance(value["headers"], dict)
            and all(
                isinstance(k, str)
                and isinstance(v, str)
                and not any(c in k + v for c in "\r\n\x00")
                for k, v in value["headers"].items()
            )
        ):
            raise ChildProtocolError("malformed response")
        result["value"] = value
        return result

    def _check_state(self, frame: dict[str, Any], index: int, batch: ReduceBatch) -> None:
        """The state in a reduce result, as the protocol allows it (docs/sandbox.md): text when
        the parent asked for it (`full`, the batch's last request) or when it is at most
        log_state_bytes, else its size; a failed or fatal result may carry the unchanged state.
        Every text kept is parsed strictly; one the parent does not need is dropped unread."""
        state, size = frame.get("state"), frame.get("state_bytes")
        if frame["ok"] is not True:
            if state is not None and (batch.known_at == index or not isinstance(state, str)):
                frame.pop("state")  # the parent knows that state (or gets it again)
            elif state is not None:
                self._parse_json(state, self.limits.state_bytes, "reduce")
            return
        if isinstance(state, str):
            cap = self.limits.state_bytes if batch.full(index) else self.log_state_bytes
            if len(state) > cap:  # characters: a lower bound of its UTF-8 size
                raise ChildProtocolError("a state bigger than the parent asked for")
            self._parse_json(state, cap, "reduce")
            return
        if (
            state is not None
            or batch.full(index)
            or type(size) is not int
            or not self.log_state_bytes < size <= self.limits.state_bytes
        ):
            raise ChildProtocolError("a reduce result without its state or a valid state size")

    @staticmethod
    def _parse_json(text: Any, limit: int, op: str) -> Any:
        if not isinstance(text, str):
            raise ChildProtocolError("expected JSON text")
        try:
            return strict_json.loads_storable(text, max_bytes=limit)
        except (ValueError, RecursionError) as error:
            raise ValueRefused(op, str(error) or type(error).__name__) from None

    def _bound_console(self, text: Any) -> str:
        if not text or not isinstance(text, str):
            return ""  # the usual case: nothing printed
        text = _storable_text(text)
        limit = self.limits.output_bytes
        # The child truncates; re-check with room for its marker and a module-level prefix.
        if len(text) > 2 * limit + 200:
            text = text[: 2 * limit] + f"\n[output truncated: limit of {limit} bytes]\n"
        return text

    @staticmethod
    def _clean_error(error: Any) -> dict[str, str]:
        if not isinstance(error, dict):
            return _error("SandboxError", "the call failed without an error description")

        def field(name: str, limit: int) -> str:
            value = error.get(name)
            if not isinstance(value, str):
                return ""
            return _storable_text(value[:limit])

        return _error(
            field("type", MAX_TYPE_CHARS) or "Error",
            field("message", MAX_MESSAGE_CHARS + 10),
            field("traceback", MAX_TRACEBACK_CHARS + 10),
        )


@contextmanager
def session(
    *,
    code: str,
    secrets: dict[str, str],
    limits: Limits,
    hook_id: str = "",
    role: str = "serve",
    log_state_bytes: int | None = None,
) -> Iterator[Session]:
    """Run one hook's code; calls made through the yielded Session share one sandboxed child.

    Raises SandboxUnavailable when an isolation layer is missing (unless WR_SANDBOX_ALLOW_WEAK) or
    the sandbox cannot start. With a `hook_id`, calls reuse a warm child of the same hook, code,
    secrets, limits and `role` (see docs/sandbox.md): "serve" for respond()/query(), "reduce"
    for the live pipeline's idempotency_keys()/reduce() (each reduce() sends its state first).
    `log_state_bytes` (default WR_LOG_STATE_MAX_BYTES): the biggest state reduce() returns for
    each request; a bigger one is None there, except the last request's.
    """
    current = Session(
        code=code,
        secrets=secrets,
        limits=limits,
        hook_id=hook_id,
        role=role,
        log_state_bytes=log_state_bytes,
    )
    try:
        yield current
    finally:
        current.close()
