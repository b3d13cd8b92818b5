"""Folding requests into a state with a version's code: the one place that turns stored
requests into outcomes. Replays and dry runs call `fold()`; the live pipeline calls
`fold_start()` (and `fold_needs_sandbox()`), which starts a batch's reducer calls in the
background while the pipeline writes the previous batch."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from hooks.masking import mask, mask_error
from hooks.models import Request
from hooks.request_rows import StoredRequest
from sandbox import Limits, ReduceStep, Session, session
from sandbox.runtime import wr_cloudevents

# Keys longer than this are stored as their hash: the ledger's unique index stays small, and
# Request.idempotency_key (255 characters) holds every stored key.
MAX_LEDGER_KEY = 200
HASHED_PREFIX = "sha256:"


class Stored(Protocol):
    """What folding reads of a stored request: a Request row, or hooks.request_rows's lighter
    StoredRequest."""

    @property
    def id(self) -> int: ...
    @property
    def uuid(self) -> uuid.UUID: ...
    @property
    def room(self) -> str: ...
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
    idempotency_key: str | None = None  # the stored form: ledger_key() of the request's key
    duplicate_of: int | None = None  # Request.id of the original
    error: dict[str, Any] | None = None
    console: str = ""
    duration_ms: float = 0.0
    # The state after this request, or None when it was bigger than the sandbox sends back
    # per request (WR_LOG_STATE_MAX_BYTES): the log keeps no bigger state anyway.
    state_after: str | None = "null"


def request_payload(request: Stored) -> dict[str, Any]:
    """The JSON form of a stored request that the sandbox turns into the user's `request`."""
    return {
        "id": str(request.uuid),
        "room": request.room or None,  # the main room is stored as ""
        "seq": request.seq,
        "method": request.method,
        "path": request.path,
        "headers": request.headers,
        "query": request.query,
        "content_type": request.content_type,
        "body_b64": base64.b64encode(bytes(request.body)).decode(),
        "received_at": request.received_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def request_json(request: Stored) -> str:
    """`request_payload` as JSON text: built from the row's own JSON text when it has it."""
    if isinstance(request, StoredRequest):
        return request.payload_json()
    return json.dumps(request_payload(request), ensure_ascii=False, separators=(",", ":"))


def ledger_key(key: str) -> str:
    """The one form in which a key is looked up and stored (the ledger and the request log),
    always made from the request's full key: the key itself, or its SHA-256 when the key is
    longer than MAX_LEDGER_KEY, holds what PostgreSQL cannot store (U+0000 or a lone surrogate,
    which a CloudEvent id or a user's idempotency_key() can carry), or starts like a hashed key.
    Apply it exactly once (Outcome.idempotency_key holds its result): a hashed key is not a
    fixed point."""
    if (
        len(key) <= MAX_LEDGER_KEY
        and not key.startswith(HASHED_PREFIX)
        and "\x00" not in key
        and _encodes(key)
    ):
        return key
    return HASHED_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _encodes(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def default_key(request: Stored) -> str | None:
    """The key of a request when the code defines no idempotency_key: the Idempotency-Key
    header, else a CloudEvent's "<source> <id>", else none."""
    if isinstance(request, StoredRequest) and not request.may_carry_key():
        return None
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


def fold_needs_sandbox(functions: Sequence[str]) -> bool:
    return "reducer" in functions or "idempotency_key" in functions


def fold(
    *,
    code: str,
    functions: Sequence[str],
    secrets: dict[str, str],
    limits: Limits,
    state: str,
    requests: Sequence[Stored],
    seen: Callable[[list[str]], dict[str, int]],
    sandbox: Session | None = None,
) -> tuple[list[Outcome], str]:
    """Fold `requests` (in order, seq already given) into `state` (JSON text).

    `seen(keys)` answers which idempotency keys this state's history already applied, as
    key -> Request.id. Returns the outcomes of the first requests, in order (all of them unless
    a repeated idempotency key cut the batch, see `_mark_duplicates`), and the final state.
    `sandbox` is a session of this code, secrets and limits to fold in (its child is reused);
    without it, one is opened for this call.
    """
    with contextlib.ExitStack() as stack:
        if sandbox is None and fold_needs_sandbox(functions):
            sandbox = stack.enter_context(session(code=code, secrets=secrets, limits=limits))
        return fold_start(
            functions=functions,
            secrets=secrets,
            state=state,
            requests=requests,
            seen=seen,
            sandbox=sandbox,
        ).finish()


@dataclass
class Folding:
    """A fold whose reducer calls may still be running (in a background thread): `finish()`
    waits for them and gives fold()'s result."""

    outcomes: list[Outcome]
    state: str
    to_apply: list[int]
    secrets: dict[str, str]
    steps: Future[list[ReduceStep]] | list[ReduceStep]

    def finish(self) -> tuple[list[Outcome], str]:
        steps = self.steps.result() if isinstance(self.steps, Future) else self.steps
        secrets = self.secrets
        state: str | None = self.state
        step_at = dict(zip(self.to_apply, steps, strict=True))
        for i, outcome in enumerate(self.outcomes):
            step = step_at.get(i)
            if step is not None:
                outcome.console += mask(step.console, secrets)
                outcome.duration_ms += step.duration_ms
                # After the request (or, when it failed, before it): None when too big to send.
                state = step.state_json
                if not step.ok:
                    outcome.outcome = Request.Outcome.FAILED
                    outcome.error = mask_error(step.error, secrets)
            outcome.state_after = state
        final = steps[-1].state_json if steps else self.state
        if final is None:  # Session.reduce always ends with the state to commit
            raise RuntimeError("the sandbox did not return the state to commit")
        return self.outcomes, final

    def abandon(self) -> None:
        """Wait for the reducer calls and drop their results (the batch will be fetched and
        folded again)."""
        if isinstance(self.steps, Future):
            with contextlib.suppress(Exception):
                self.steps.result()


def fold_start(
    *,
    functions: Sequence[str],
    secrets: dict[str, str],
    state: str,
    requests: Sequence[Stored],
    seen: Callable[[list[str]], dict[str, int]],
    sandbox: Session | None,
    background: Executor | None = None,
) -> Folding:
    """Decide each request's key and duplicates, then start the reducer calls: in `background`
    when given (the caller writes the previous batch meanwhile), else right here. `sandbox` may
    be None only when the code defines neither reducer nor idempotency_key."""
    outcomes = [Outcome(outcome=Request.Outcome.APPLIED) for _ in requests]
    keys: list[str | None]
    if not fold_needs_sandbox(functions) or not requests:
        keys = [default_key(r) for r in requests]
        outcomes = outcomes[: _mark_duplicates(outcomes, keys, seen)]
        return Folding(outcomes, state, [], secrets, [])
    assert sandbox is not None
    payloads = [request_json(r) for r in requests]
    keys = _keys(functions, secrets, requests, payloads, outcomes, sandbox)
    outcomes = outcomes[: _mark_duplicates(outcomes, keys, seen)]

    to_apply = [i for i, o in enumerate(outcomes) if o.outcome == Request.Outcome.APPLIED]
    applied = [payloads[i] for i in to_apply]
    steps: Future[list[ReduceStep]] | list[ReduceStep] = []
    if applied:
        if background is not None:
            steps = background.submit(sandbox.reduce, state, applied)
        else:
            steps = sandbox.reduce(state, applied)
    return Folding(outcomes, state, to_apply, secrets, steps)


def fold_rooms(
    *,
    functions: Sequence[str],
    secrets: dict[str, str],
    rooms: Sequence[tuple[str, Sequence[Stored]]],
    seen: Callable[[list[str]], dict[str, int]],
    sandbox: Session | None,
) -> list[Folding]:
    """`fold_start` for several rooms' (state, requests) of one hook, with every room's
    reducer calls in one exchange with the child (Session.reduce_groups): a multi-room batch
    pays one round trip, not one per room. The Foldings are done (`finish()` does not wait).

    A key that an earlier room of these applies cuts a later room's part before it, as a key
    repeated in one room's batch does (`_mark_duplicates`): whether it is a duplicate depends
    on whether the first one's reducer succeeds, known only after the exchange. The rest of
    that room stays pending for the next batch."""
    taken: set[str] = set()
    foldings: list[Folding] = []
    groups: list[tuple[str, list[str]]] = []
    for state, requests in rooms:
        outcomes = [Outcome(outcome=Request.Outcome.APPLIED) for _ in requests]
        if not fold_needs_sandbox(functions) or not requests:
            keys: list[str | None] = [default_key(r) for r in requests]
            outcomes = outcomes[: _mark_duplicates(outcomes, keys, seen, taken)]
            foldings.append(Folding(outcomes, state, [], secrets, []))
            continue
        assert sandbox is not None
        payloads = [request_json(r) for r in requests]
        keys = _keys(functions, secrets, requests, payloads, outcomes, sandbox)
        outcomes = outcomes[: _mark_duplicates(outcomes, keys, seen, taken)]
        to_apply = [i for i, o in enumerate(outcomes) if o.outcome == Request.Outcome.APPLIED]
        foldings.append(Folding(outcomes, state, to_apply, secrets, []))
        if to_apply:
            groups.append((state, [payloads[i] for i in to_apply]))
    if sandbox is not None and groups:
        steps = iter(sandbox.reduce_groups(groups))
        for folding in foldings:
            if folding.to_apply:
                folding.steps = next(steps)
    return foldings


def _keys(
    functions: Sequence[str],
    secrets: dict[str, str],
    requests: Sequence[Stored],
    payloads: list[str],
    outcomes: list[Outcome],
    sandbox: Session,
) -> list[str | None]:
    """Each request's idempotency key: the code's `idempotency_key` (a failure fails the
    request), else the default."""
    if "idempotency_key" not in functions:
        return [default_key(r) for r in requests]
    keys: list[str | None] = []
    for outcome, result in zip(outcomes, sandbox.idempotency_keys(payloads), strict=True):
        outcome.console += mask(result.console, secrets)
        outcome.duration_ms += result.duration_ms
        if not result.ok:
            outcome.outcome = Request.Outcome.FAILED
            outcome.error = mask_error(result.error, secrets)
        keys.append(result.value if result.ok else None)
    return keys


def _mark_duplicates(
    outcomes: list[Outcome],
    keys: list[str | None],
    seen: Callable[[list[str]], dict[str, int]],
    taken: set[str] | None = None,
) -> int:
    """Mark requests whose key the history already applied; return how many requests the batch
    can fold now.

    A key repeated inside the batch cuts it before the repeat: whether the repeat is a
    duplicate depends on whether the first one's reducer succeeds (a failed request was never
    applied, so a retry with its key must be). The rest stays pending for the next batch.
    `taken`: the keys other rooms of the same exchange may apply (fold_rooms), which cut it
    too; this batch's keys are added to it.
    """
    stored_keys = [None if k is None else ledger_key(k) for k in keys]
    wanted = [k for k in stored_keys if k is not None]
    applied = seen(wanted) if wanted else {}
    in_batch: set[str] = set()
    for i, (outcome, stored) in enumerate(zip(outcomes, stored_keys, strict=True)):
        if stored is None or outcome.outcome != Request.Outcome.APPLIED:
            continue
        if stored in in_batch or (taken is not None and stored in taken):
            return _taken(taken, in_batch, i)
        outcome.idempotency_key = stored  # looked up, logged and recorded in this one form
        if stored in applied:
            outcome.outcome = Request.Outcome.DUPLICATE
            outcome.duplicate_of = applied[stored]
        else:
            in_batch.add(stored)
    return _taken(taken, in_batch, len(outcomes))


def _taken(taken: set[str] | None, in_batch: set[str], count: int) -> int:
    if taken is not None:
        taken |= in_batch
    return count
