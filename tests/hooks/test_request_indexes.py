"""The request table's indexes (migration 0009, issue 18). Folding rewrites each request row
once, and the new row version gets an entry in every index whose condition it meets: so the
hook has no index of its own (every other one starts with it) and duplicate_of's holds only
duplicates. Every query the request log, the UI, the pipeline and the reconciler run must
still be served by an index: each plan is asked for with sequential scans off, on a history
shaped like a real one, and must read the hook's rows through an index condition."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from hooks import pipeline
from hooks.models import Hook, Request
from hooks.room_batch import rooms_pending

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL plans"),
]


def indexes() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
            [Request._meta.db_table],
        )
        return dict(cursor.fetchall())


@pytest.fixture
def hook(make_hook: Any) -> Hook:
    """A hook with a history shaped like a real one (nearly every request applied, in two
    rooms) among other hooks' newer requests, analysed, so the planner chooses as it would in
    production."""
    hook = make_hook("")
    other = make_hook("", name="another hook")
    outcomes = ["applied"] * 95 + ["failed"] * 2 + ["duplicate", "rejected", "pending"]
    with connection.cursor() as cursor:
        for one, count in ((hook, 2000), (other, 20000)):
            cursor.execute(
                f"INSERT INTO {Request._meta.db_table} (uuid, hook_id, room, seq, method, path, "
                "headers, query, content_type, body, received_at, outcome, console) "
                "SELECT gen_random_uuid(), %s, CASE WHEN n %% 2 = 0 THEN '' ELSE 'r' END, "
                "CASE WHEN (%s::text[])[1 + n %% 100] IN ('pending', 'rejected') THEN NULL "
                "ELSE n END, 'POST', '', '{}', '{}', '', '', now(), (%s::text[])[1 + n %% 100], '' "
                "FROM generate_series(1, %s) AS n",
                [str(one.pk), outcomes, outcomes, count],
            )
        cursor.execute(f"ANALYZE {Request._meta.db_table}")
    return hook


def plan(queryset: QuerySet[Any]) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    try:
        return queryset.explain()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = on")


def test_it_indexes_applied_requests_only_where_a_query_needs_them() -> None:
    found = indexes()
    assert not [name for name, definition in found.items() if definition.endswith("(hook_id)")]
    assert "hooks_request_hook_id_4b4ee076" not in found
    assert "hooks_request_duplicate_of_id_f6e0ca09" not in found
    assert found["hooks_request_duplicate_of"].endswith("WHERE (duplicate_of_id IS NOT NULL)")
    # What a fold writes: an applied request's new row meets none of these conditions.
    partial = {name for name, definition in found.items() if " WHERE " in definition}
    assert partial == {
        "hooks_request_duplicate_of",
        "hooks_request_resent_from",
        "hooks_request_room_pending",
    }


def by_hook(text: str) -> bool:
    """Whether the plan reads the requests through an index condition on the hook."""
    conditions = [line for line in text.splitlines() if "Index Cond:" in line]
    return "Seq Scan" not in text and any("hook_id = " in line for line in conditions)


@pytest.mark.parametrize("outcome", ["pending", "duplicate", "failed", "rejected"])
def test_the_log_of_one_outcome_reads_an_index_of_the_hook(hook: Hook, outcome: str) -> None:
    rows = Request.objects.filter(hook=hook, outcome=outcome).order_by("-id")[:51]
    assert by_hook(plan(rows))
    before = Request.objects.filter(hook=hook, outcome=outcome, id__lt=10**6).order_by("-id")
    assert by_hook(plan(before[:51]))


def test_every_other_log_and_ui_query_has_its_index(hook: Hook) -> None:
    log = Request.objects.filter(hook=hook)
    assert by_hook(plan(log.filter(room="r").order_by("-id")[:51]))
    assert "hooks_request_uuid_key" in plan(log.filter(uuid="8a1f0d3e-1c7e-4e55-9f51-3f2b6a1e0c11"))
    counts = log.values_list("outcome").annotate(n=Count("id")).order_by()
    assert by_hook(plan(counts))
    # A deleted original's duplicates get SET NULL (on_delete): found through the partial index.
    assert "hooks_request_duplicate_of" in plan(Request.objects.filter(duplicate_of_id__in=[1, 2]))


def test_the_pipeline_and_reconciler_queries_read_the_pending_index(hook: Hook) -> None:
    pending = Request.objects.filter(hook=hook, room="", outcome="pending")
    assert "hooks_request_room_pending" in plan(pending.filter(id__gt=5).order_by("id")[:1000])
    assert "hooks_request_room_pending" in plan(
        Request.objects.filter(outcome="pending", received_at__lt=timezone.now()).order_by()
    )
    assert "hooks_request_room_pending" in plan(
        Request.objects.filter(outcome="pending", hook_id__lt=hook.pk).order_by()[:1]
    )
    assert rooms_pending(hook.pk, hook.live_version_id or 0, 10) == ["r"]
    assert len(pipeline.pending_fetch(hook.pk, "r", 1000)) == 20
    # The read-ahead chain's list of pending ids (pipeline._chain_start) and its fetch by id.
    listed = pending.order_by("id").values_list("id", flat=True)[:1000]
    assert "hooks_request_room_pending" in plan(listed)
    ids = sorted(Request.objects.filter(hook=hook, outcome="pending").values_list("id", flat=True))
    by_id = Request.objects.filter(id__in=ids).filter(
        Q(routed_by__isnull=True) | Q(routed_by=hook.live_version_id)
    )
    assert "hooks_request_pkey" in plan(by_id.order_by("id"))
    found = pipeline.pending_by_ids(ids, version_id=hook.live_version_id or 0)
    assert found is not None and [row.id for row in found] == ids
