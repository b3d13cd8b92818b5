"""The reduce pipeline: apply a hook's pending requests with its live version, exactly once and
in order.

One batch is one transaction. It locks the live state row, numbers the oldest pending requests
after the state's seq, folds them in one sandbox child, and writes their outcomes, the ledger
and the new state before committing. The row lock is what makes concurrent workers safe: a
second worker cannot lock the row (NOWAIT) and retries later; a worker killed mid-batch loses its
connection, PostgreSQL rolls the batch back, and the requests are still pending for the next
one. The sandbox runs inside the transaction on purpose: the lock must cover the fold, and the
sandbox's wall-time limits bound how long it is held.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from hooks import events
from hooks.fold import Outcome, Stored, fold, ledger_key
from hooks.models import Hook, LedgerEntry, Request, State, Version
from hooks.services import hook_limits, hook_secrets

logger = logging.getLogger(__name__)


class HookBusy(Exception):
    """Another worker holds this hook's state; it will apply what is pending."""


# The first batch of a slice is small: a hostile or slow reducer then holds the hook's lock
# (and a worker) for a few calls, not for WR_BATCH_SIZE of them. Later batches are sized from
# the measured cost to take about BATCH_TARGET_SECONDS.
FIRST_BATCH = 16
BATCH_TARGET_SECONDS = 1.0


def hook_reduce(*, hook_id: uuid.UUID | str) -> int:
    """Apply everything pending for the hook; return how many requests were numbered."""
    total = 0
    while True:
        count, more = hook_reduce_slice(hook_id=hook_id)
        total += count
        if not more:
            return total


def hook_reduce_slice(
    *, hook_id: uuid.UUID | str, seconds: float | None = None
) -> tuple[int, bool]:
    """Apply pending requests for up to `seconds`; return (how many, whether any may be left)."""
    deadline = time.monotonic() + (seconds or settings.WR_REDUCE_SLICE_SECONDS)
    size = min(FIRST_BATCH, settings.WR_BATCH_SIZE)
    total = 0
    while True:
        started = time.monotonic()
        count = _reduce_batch(hook_id, size)
        if count == 0:
            return total, False
        total += count
        now = time.monotonic()
        if now >= deadline:
            return total, True
        per_request = max((now - started) / count, 1e-6)
        size = max(1, min(settings.WR_BATCH_SIZE, int(BATCH_TARGET_SECONDS / per_request)))


def _reduce_batch(hook_id: uuid.UUID | str, batch_size: int) -> int:
    with transaction.atomic():
        hook = Hook.objects.filter(pk=hook_id).select_related("live_version").first()
        if hook is None or hook.live_version is None:
            return 0
        version = hook.live_version
        try:
            state = State.objects.select_for_update(nowait=True).get(version=version)
        except DatabaseError as error:
            raise HookBusy(str(hook_id)) from error
        # The switch to a new version takes this same lock: re-read the pointer under it.
        if (
            Hook.objects.filter(pk=hook_id).values_list("live_version", flat=True).get()
            != version.pk
        ):
            raise HookBusy(str(hook_id))

        pending = pending_fetch(hook_id, batch_size)
        if not pending:
            return 0
        for offset, request in enumerate(pending, start=1):
            request.seq = state.seq + offset

        outcomes, new_state = fold(
            code=version.code,
            functions=version.functions,
            secrets=hook_secrets(hook_id) if version.functions else {},
            limits=hook_limits(hook),
            state=state.value,
            requests=pending,
            seen=lambda keys: ledger_lookup(version, keys),
        )
        done = pending[: len(outcomes)]
        outcomes_save(done, outcomes)
        ledger_record(version, done, outcomes)
        state.value = new_state
        state.seq = done[-1].seq or state.seq
        state.save(update_fields=["value", "seq", "updated_at"])
        seq = state.seq
        transaction.on_commit(lambda: events.state_changed(hook_id=str(hook_id), seq=seq))
        transaction.on_commit(lambda: events.requests_logged(hook_id=str(hook_id), requests=done))
        return len(done)


@dataclass(slots=True)
class PendingRequest:
    """A pending request as the pipeline needs it. Fetched as a row rather than a model
    instance: building 1,000 Request instances was a fifth of a batch's time."""

    id: int
    uuid: uuid.UUID
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, list[str]]
    content_type: str
    body: bytes | memoryview
    received_at: datetime
    console: str
    response_status: int | None
    seq: int | None = None
    outcome: str = Request.Outcome.PENDING
    idempotency_key: str | None = None
    duplicate_of_id: int | None = None
    error: dict[str, Any] | None = None
    duration_ms: float | None = None
    state_after: str | None = None
    applied_at: datetime | None = None


PENDING_FIELDS = [
    "id",
    "uuid",
    "method",
    "path",
    "headers",
    "query",
    "content_type",
    "body",
    "received_at",
    "console",
    "response_status",
]


def pending_fetch(hook_id: uuid.UUID | str, limit: int) -> list[PendingRequest]:
    """The oldest pending requests of the hook, in the order they were stored."""
    rows = (
        Request.objects.filter(hook_id=hook_id, outcome=Request.Outcome.PENDING)
        .order_by("id")
        .values_list(*PENDING_FIELDS)[:limit]
    )
    return [PendingRequest(*row) for row in rows]


def ledger_lookup(version: Version, keys: list[str]) -> dict[str, int]:
    rows = LedgerEntry.objects.filter(version=version, key__in=keys).values_list(
        "key", "request_id"
    )
    return dict(rows)


def ledger_record(
    version: Version, requests: Sequence[Stored], outcomes: Sequence[Outcome]
) -> None:
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(
                version=version, key=ledger_key(outcome.idempotency_key), request_id=request.id
            )
            for request, outcome in zip(requests, outcomes, strict=True)
            if outcome.outcome == Request.Outcome.APPLIED and outcome.idempotency_key is not None
        ]
    )


def outcomes_save(requests: Sequence[PendingRequest], outcomes: Sequence[Outcome]) -> None:
    """Write the outcome of each request (same order) in one statement."""
    now = timezone.now()
    log_cap = settings.WR_LOG_STATE_MAX_BYTES
    for request, outcome in zip(requests, outcomes, strict=True):
        request.outcome = outcome.outcome
        request.idempotency_key = outcome.idempotency_key
        request.duplicate_of_id = outcome.duplicate_of
        request.error = outcome.error
        # The responder's output was stored at write time; the worker's follows it.
        request.console += outcome.console
        request.duration_ms = outcome.duration_ms
        request.state_after = outcome.state_after if len(outcome.state_after) <= log_cap else None
        request.applied_at = now
    if connection.vendor == "postgresql":
        _update_postgresql(requests, console_changed=any(o.console for o in outcomes))
    else:
        rows = [Request(id=r.id, **{f: getattr(r, f) for f in UPDATE_ATTRS}) for r in requests]
        Request.objects.bulk_update(rows, UPDATE_FIELDS)


UPDATE_FIELDS = [
    "seq",
    "outcome",
    "idempotency_key",
    "duplicate_of",
    "error",
    "console",
    "duration_ms",
    "state_after",
    "applied_at",
]
UPDATE_ATTRS = [f if f != "duplicate_of" else "duplicate_of_id" for f in UPDATE_FIELDS]


def _error_json(request: PendingRequest) -> str | None:
    return None if request.error is None else json.dumps(request.error)


# (column, array type, value) for UPDATE … FROM unnest(): bulk_update() would build a CASE per
# column and row; arrays make one short statement whose cost grows linearly with the batch.
ALWAYS_SET: list[tuple[str, str, Callable[[PendingRequest], Any]]] = [
    ("seq", "bigint", lambda r: r.seq),
    ("outcome", "text", lambda r: r.outcome),
    ("duration_ms", "float8", lambda r: r.duration_ms),
    ("state_after", "text", lambda r: r.state_after),
]
# Columns a pending row holds as NULL (or, for console, as stored at write time): sent only when
# a row of the batch changes them, which spares dumping arrays of a thousand NULLs.
SOMETIMES_SET: list[tuple[str, str, Callable[[PendingRequest], Any]]] = [
    ("idempotency_key", "text", lambda r: r.idempotency_key),
    ("duplicate_of_id", "bigint", lambda r: r.duplicate_of_id),
    ("error", "text", _error_json),
]


def _update_postgresql(requests: Sequence[PendingRequest], *, console_changed: bool) -> None:
    columns = list(ALWAYS_SET)
    for column, kind, value in SOMETIMES_SET:
        if any(value(r) is not None for r in requests):
            columns.append((column, kind, value))
    if console_changed:
        columns.append(("console", "text", lambda r: r.console))
    sets = ", ".join(
        f"{c} = v.{c}::jsonb" if c == "error" else f"{c} = v.{c}" for c, _, _ in columns
    )
    arrays = ", ".join(["%s::bigint[]"] + [f"%s::{kind}[]" for _, kind, _ in columns])
    names = ", ".join(["id"] + [c for c, _, _ in columns])
    table = Request._meta.db_table
    with connection.cursor() as cursor:
        # Only model metadata is interpolated; every value is a parameter.
        cursor.execute(
            f"UPDATE {table} AS r SET {sets}, applied_at = %s "  # noqa: S608
            f"FROM unnest({arrays}) AS v({names}) WHERE r.id = v.id",
            [
                requests[0].applied_at,
                [r.id for r in requests],
                *([value(r) for r in requests] for _, _, value in columns),
            ],
        )
