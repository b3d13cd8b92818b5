"""The request log: newest first, cursor pagination, filtered by outcome."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from django.db.models import F
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request as DrfRequest
from rest_framework.response import Response

from hooks.apis.base import CURSOR, HOOK_ID, HookApi, OrderedCursorPagination, paginated, responses
from hooks.diff import json_diff
from hooks.models import Hook, Request
from hooks.serializers import OUTCOMES, RequestLogSerializer

TAGS = ["requests"]
MISSING = object()


class RequestLogPagination(OrderedCursorPagination):
    # Ordered by insertion id: writes arriving between two pages land before the first one,
    # so paging on never shows a row twice or skips one.
    model = Request
    ordering = "-id"
    page_size = 40


def _json(text: str | None) -> Any:
    return MISSING if text is None else json.loads(text)


def log_entries(hook: Hook, rows: Sequence[Request]) -> list[Request]:
    """Decorate a page of rows for RequestLogSerializer: the body as text or base64, the state
    after each one and its diff to the state before it.

    The state before seq N is the state after seq N - 1: the rows on the page give most of
    them, one more query fetches the rest (a filtered page has gaps).
    """
    on_page: dict[int | None, str | None] = {
        row.seq: row.state_after for row in rows if row.seq is not None
    }
    wanted = {row.seq - 1 for row in rows if row.seq is not None and row.seq > 1} - on_page.keys()
    before: dict[int | None, str | None] = {0: "null", **on_page}
    if wanted:
        rows_before = Request.objects.filter(hook=hook, seq__in=wanted).order_by()
        before.update(rows_before.values_list("seq", "state_after"))
    for row in rows:
        body = bytes(row.body)
        try:
            row.body_text, row.body_encoding = body.decode("utf-8"), "utf-8"  # type: ignore[attr-defined]
        except UnicodeDecodeError:
            row.body_text, row.body_encoding = base64.b64encode(body).decode(), "base64"  # type: ignore[attr-defined]
        after = _json(row.state_after) if row.outcome != Request.Outcome.PENDING else MISSING
        previous = _json(before.get(row.seq - 1)) if row.seq is not None else MISSING
        row.state_after_value = None if after is MISSING else after  # type: ignore[attr-defined]
        row.state_diff = (  # type: ignore[attr-defined]
            None if after is MISSING or previous is MISSING else json_diff(previous, after)
        )
    return list(rows)


class RequestLogApi(HookApi):
    """GET /api/hooks/<hook_id>/requests/"""

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=OUTCOMES, required=False)

    @extend_schema(
        tags=TAGS,
        summary="The request log, newest first (40 a page)",
        operation_id="hooks_requests_list",
        parameters=[
            HOOK_ID,
            CURSOR,
            OpenApiParameter("status", str, enum=OUTCOMES, description="Only this outcome."),
        ],
        responses=responses({200: paginated(RequestLogSerializer, "PaginatedRequestLogList")}, 400),
    )
    def get(self, request: DrfRequest, hook_id: str) -> Response:
        hook = self.hook(hook_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        rows = Request.objects.filter(hook=hook).annotate(duplicate_of_uuid=F("duplicate_of__uuid"))
        if outcome := filters.validated_data.get("status"):
            rows = rows.filter(outcome=outcome)
        paginator = RequestLogPagination()
        page = paginator.paginate_queryset(rows, request, view=self) or []
        data = RequestLogSerializer(log_entries(hook, page), many=True).data
        return paginator.get_paginated_response(data)
