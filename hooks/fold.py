"""Folding requests into a state with a version's code: the one place that turns stored
requests into outcomes. The live pipeline, replays and dry runs all call `fold()`."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from hooks.masking import mask, mask_error
from hooks.models import Request
from sandbox import Limits, session
from sandbox.runtime import wr_cloudevents

# Keys longer than this are stored as their hash: the ledger's unique index stays small.
MAX_LEDGER_KEY = 200


class Stored(Protocol):
    """What folding reads of a stored request: a Request row, or the pipeline's lighter
    PendingRequest."""

    @property
    def id(self) -> int: ...
    @property
    def uuid(self) -> uuid.UUID: ...
    @property
    def seq(self) -> int | None: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def headers(self) -> Any: ...
    @property
    def query(self) -> Any: ...
    @property
    def content_type(self) -> str: ...
    @property
    def body(self) -> bytes | memoryview: ...
    @property
    def received_at(self) -> datetime: ...


@dataclass
class Outcome:
    outcome: str  # Request.Outcome: applied, duplicate or failed
    idempotency_key: str | None = None
    duplicate_of: int | None = None  # Request.id of the original
    error: dict[str, Any] | None = None
    console: str = ""
    duration_ms: float = 0.0
    state_after: str = "null"


def request_payload(request: Stored) -> dict[str, Any]:
    """The JSON form of a stored request that the sandbox turns into the user's `request`."""
    return {
        "id": str(request.uuid),
        "seq": request.seq,
        "method": request.method,
        "path": request.path,
        "headers": request.headers,
        "query": request.query,
        "content_type": request.content_type,
        "body_b64": base64.b64encode(bytes(request.body)).decode(),
        "received_at": request.received_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def ledger_key(key: str) -> str:
    if len(key) <= MAX_LEDGER_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def default_key(request: Stored) -> str | None:
    """The key of a request when the code defines no idempotency_key: the Idempotency-Key
    header, else a CloudEvent's "<source> <id>", else none."""
    lowered = {name.lower(): value for name, value in request.headers.items()}
    if lowered.get("idempotency-key"):
        return lowered["idempotency-key"]
    if "ce-id" in lowered or wr_cloudevents.is_structured(request.content_type):
        try:
            event = wr_cloudevents.parse_cloudevent(
                lowered, request.content_type, bytes(request.body)
            )
        except ValueError:
            return None
        if event is not None:
            return wr_cloudevents.default_idempotency_key(event)
    return None


def fold(
    *,
    code: str,
    functions: Sequence[str],
    secrets: dict[str, str],
    limits: Limits,
    state: str,
    requests: Sequence[Stored],
    seen: Callable[[list[str]], dict[str, int]],
) -> tuple[list[Outcome], str]:
    """Fold `requests` (in order, seq already given) into `state` (JSON text).

    `seen(keys)` answers which idempotency keys this state's history already applied, as
    key -> Request.id. Returns the outcomes of the first requests, in order (all of them unless
    a repeated idempotency key cut the batch, see `_mark_duplicates`), and the final state.
    """
    if not requests:
        return [], state
    outcomes = [Outcome(outcome=Request.Outcome.APPLIED) for _ in requests]
    keys: list[str | None]
    needs_sandbox = "reducer" in functions or "idempotency_key" in functions
    if not needs_sandbox:
        keys = [default_key(r) for r in requests]
        outcomes = outcomes[: _mark_duplicates(outcomes, keys, seen)]
        for outcome in outcomes:
            outcome.state_after = state
        return outcomes, state

    payloads = [request_payload(r) for r in requests]
    with session(code=code, secrets=secrets, limits=limits) as sandbox:
        if "idempotency_key" in functions:
            keys = []
            for outcome, result in zip(outcomes, sandbox.idempotency_keys(payloads), strict=True):
                outcome.console += mask(result.console, secrets)
                outcome.duration_ms += result.duration_ms
                if not result.ok:
                    outcome.outcome = Request.Outcome.FAILED
                    outcome.error = mask_error(result.error, secrets)
                keys.append(result.value if result.ok else None)
        else:
            keys = [default_key(r) for r in requests]
        outcomes = outcomes[: _mark_duplicates(outcomes, keys, seen)]

        to_apply = [i for i, o in enumerate(outcomes) if o.outcome == Request.Outcome.APPLIED]
        steps = sandbox.reduce(state, [payloads[i] for i in to_apply]) if to_apply else []

    step_at = dict(zip(to_apply, steps, strict=True))
    for i, outcome in enumerate(outcomes):
        step = step_at.get(i)
        if step is not None:
            outcome.console += mask(step.console, secrets)
            outcome.duration_ms += step.duration_ms
            if step.ok:
                state = step.state_json
            else:
                outcome.outcome = Request.Outcome.FAILED
                outcome.error = mask_error(step.error, secrets)
        outcome.state_after = state
    return outcomes, state


def _mark_duplicates(
    outcomes: list[Outcome],
    keys: list[str | None],
    seen: Callable[[list[str]], dict[str, int]],
) -> int:
    """Mark requests whose key the history already applied; return how many requests the batch
    can fold now.

    A key repeated inside the batch cuts it before the repeat: whether the repeat is a
    duplicate depends on whether the first one's reducer succeeds (a failed request was never
    applied, so a retry with its key must be). The rest stays pending for the next batch.
    """
    wanted = [ledger_key(k) for k in keys if k is not None]
    applied = seen(wanted) if wanted else {}
    in_batch: set[str] = set()
    for i, (outcome, key) in enumerate(zip(outcomes, keys, strict=True)):
        if key is None or outcome.outcome != Request.Outcome.APPLIED:
            continue
        stored = ledger_key(key)
        if stored in in_batch:
            return i
        outcome.idempotency_key = key[:255]
        if stored in applied:
            outcome.outcome = Request.Outcome.DUPLICATE
            outcome.duplicate_of = applied[stored]
        else:
            in_batch.add(stored)
    return len(outcomes)
