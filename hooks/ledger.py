"""The idempotency ledger: which request applied each key in a version's history.

Shared by the live pipeline (hooks.pipeline) and the replay of a published version
(hooks.replay); docs/pipeline.md, "Idempotency".
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import DatabaseError, connection

from hooks.fold import Outcome, Stored
from hooks.models import LedgerEntry, Request, Version


class HookBusy(Exception):
    """Another worker holds this room's state; it will apply what is pending."""


def ledger_lookup(version: Version, keys: list[str], *, claim: bool = False) -> dict[str, int]:
    """key -> the request that applied it, of the keys the version's ledger holds.

    With `claim` (the live pipeline), each key is first locked until the transaction ends
    (a transaction-level advisory lock on the version and key, in sorted order): the ledger is
    the hook's, but its rooms fold in parallel, so two rooms' batches could both look a key
    up before either wrote it. The second now waits for the first to commit and then finds
    its entry: one key is applied once across all rooms. Two batches that each hold a key the
    other wants are a deadlock PostgreSQL breaks by failing one (HookBusy: it retries)."""
    if claim and keys and connection.vendor == "postgresql":
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s || ':' || k, 0)) "
                    "FROM unnest(%s::text[]) AS k ORDER BY k",
                    [str(version.pk), sorted(set(keys))],
                )
        except DatabaseError as error:
            if getattr(getattr(error, "__cause__", None), "sqlstate", None) == "40P01":
                raise HookBusy(f"{version.hook_id}: idempotency keys") from error
            raise
    rows = LedgerEntry.objects.filter(version=version, key__in=keys).values_list(
        "key", "request_id"
    )
    return dict(rows)


def ledger_record(
    version: Version, requests: Sequence[Stored], outcomes: Sequence[Outcome]
) -> None:
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(version=version, key=outcome.idempotency_key, request_id=request.id)
            for request, outcome in zip(requests, outcomes, strict=True)
            if outcome.outcome == Request.Outcome.APPLIED and outcome.idempotency_key is not None
        ]
    )
