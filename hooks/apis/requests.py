"""The request log: newest first, cursor pagination, filtered by outcome and path; one entry;
resend; the whole log as NDJSON (streamed)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Max, QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, renderers, serializers, status
from rest_framework.request import Request as DrfRequest
from rest_framework.response import Response

from hooks.apis.base import (
    CURSOR,
    HOOK_ID,
    HookApi,
    OrderedCursorPagination,
    paginated,
    responses,
    room_param,
)
from hooks.models import Hook, Request
from hooks.resend import ResendRefused, request_resend
from hooks.responses import retry_after
from hooks.selectors import log_entries, log_entry_get, log_rows
from hooks.serializers import OUTCOMES, RequestLogSerializer

TAGS = ["requests"]


class RequestLogPagination(OrderedCursorPagination):
    # Ordered by insertion id: writes arriving between two pages land before the first one,
    # so paging on never shows a row twice or skips one.
    model = Request
    ordering = "-id"
    page_size = 40


class NdjsonRenderer(renderers.BaseRenderer):
    """Lets `?format=ndjson` through DRF's content negotiation; the view streams the body."""

    media_type = "application/x-ndjson"
    format = "ndjson"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> Any:
        return json.dumps(data).encode()


# Rows fetched and serialised per step of an NDJSON export: the log is never in memory whole.
NDJSON_CHUNK = 200


def _ndjson_chunk(hook: Hook, rows: QuerySet[Request], after: int, upto: int) -> tuple[bytes, int]:
    """The entries with after < id <= upto (the next NDJSON_CHUNK of them) as NDJSON, and the
    id of the last; (b"", after) at the end."""
    page = list(rows.filter(id__gt=after, id__lte=upto).order_by("id")[:NDJSON_CHUNK])
    if not page:
        return b"", after
    data = RequestLogSerializer(log_entries(hook=hook, rows=page), many=True).data
    text = "".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in data)
    return text.encode(), page[-1].id


def ndjson_stream(
    hook: Hook, rows: QuerySet[Request], *, asynchronous: bool
) -> Iterator[bytes] | AsyncIterator[bytes]:
    """Every row of `rows` stored when the export began, oldest first, by id (storage order).

    Keyset steps over the id: a row is sent once even while writes go on, and an export never
    grows without end behind a flood of writes. Under ASGI the steps run in a thread one by one
    (Django would read a sync iterator whole before sending it)."""
    upto = rows.aggregate(top=Max("id"))["top"] or 0

    def sync() -> Iterator[bytes]:
        after = 0
        while True:
            chunk, after = _ndjson_chunk(hook, rows, after, upto)
            if not chunk:
                return
            yield chunk

    async def asyncgen() -> AsyncIterator[bytes]:
        after = 0
        while True:
            chunk, after = await sync_to_async(_ndjson_chunk)(hook, rows, after, upto)
            if not chunk:
                return
            yield chunk

    return asyncgen() if asynchronous else sync()


class RequestLogApi(HookApi):
    """GET /api/hooks/<hook_id>/requests/[?format=ndjson]"""

    renderer_classes = [renderers.JSONRenderer, NdjsonRenderer]

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        # Only the export itself is NDJSON: a page or an error (a bad filter, 404) stays JSON.
        if isinstance(response, Response) and isinstance(
            getattr(request, "accepted_renderer", None), NdjsonRenderer
        ):
            request.accepted_renderer = renderers.JSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=OUTCOMES, required=False)
        path = serializers.CharField(
            required=False, allow_blank=True, max_length=2000, trim_whitespace=False
        )
        since = serializers.IntegerField(required=False, min_value=0)
        room = serializers.CharField(required=False, allow_blank=True, max_length=200)

    @extend_schema(
        tags=TAGS,
        summary="The request log, newest first (40 a page); `?format=ndjson` streams all of it",
        operation_id="hooks_requests_list",
        parameters=[
            HOOK_ID,
            CURSOR,
            OpenApiParameter("status", str, enum=OUTCOMES, description="Only this outcome."),
            OpenApiParameter(
                "path", str, description="Only requests whose path starts with this (no `/`)."
            ),
            OpenApiParameter(
                "room", str, description="Only this room's requests (empty: the main room)."
            ),
            OpenApiParameter(
                "format",
                str,
                enum=["ndjson"],
                description="`ndjson`: every matching entry, oldest first, one JSON object a "
                "line (application/x-ndjson), streamed.",
            ),
            OpenApiParameter(
                "since",
                OpenApiTypes.INT,
                description="With format=ndjson: only numbered entries with seq > since.",
            ),
        ],
        responses=responses(
            {
                (200, "application/json"): paginated(
                    RequestLogSerializer, "PaginatedRequestLogList"
                ),
                (200, "application/x-ndjson"): OpenApiResponse(
                    OpenApiTypes.STR,
                    description="With format=ndjson: one RequestLog entry (JSON) a line.",
                ),
            },
            400,
        ),
    )
    def get(self, request: DrfRequest, hook_id: str) -> Any:
        hook = self.hook(hook_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        rows = log_rows(hook=hook)
        if outcome := wanted.get("status"):
            rows = rows.filter(outcome=outcome)
        if path := wanted.get("path"):
            rows = rows.filter(path__startswith=path.lstrip("/"))
        if "room" in wanted:
            rows = rows.filter(room=room_param(wanted["room"]))
        if request.query_params.get("format") == "ndjson":
            if "since" in wanted:
                rows = rows.filter(seq__gt=wanted["since"])
            asynchronous = isinstance(request._request, ASGIRequest)
            response = StreamingHttpResponse(
                ndjson_stream(hook, rows, asynchronous=asynchronous),
                content_type="application/x-ndjson",
            )
            response["Content-Disposition"] = f'inline; filename="requests-{hook.pk}.ndjson"'
            response["Cache-Control"] = "no-store"
            return response
        if "since" in wanted:
            raise serializers.ValidationError({"since": ["Only with format=ndjson."]})
        paginator = RequestLogPagination()
        page = paginator.paginate_queryset(rows, request, view=self) or []
        data = RequestLogSerializer(log_entries(hook=hook, rows=page), many=True).data
        return paginator.get_paginated_response(data)


REQUEST_ID = OpenApiParameter(
    "request_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The entry's `id`."
)


def log_entry(hook: Hook, request_id: object) -> Request:
    """One decorated log entry of `hook`, else 404 (a malformed id too)."""
    entry = log_entry_get(hook=hook, request_id=request_id)
    if entry is None:
        raise exceptions.NotFound()
    return entry


class RequestDetailApi(HookApi):
    """GET /api/hooks/<hook_id>/requests/<request_id>/"""

    @extend_schema(
        tags=TAGS,
        summary="One entry of the request log, with the responder's answer",
        parameters=[HOOK_ID, REQUEST_ID],
        responses=responses({200: RequestLogSerializer}),
    )
    def get(self, request: DrfRequest, hook_id: str, request_id: str) -> Response:
        entry = log_entry(self.hook(hook_id), request_id)
        return Response(RequestLogSerializer(entry).data)


class ResendFailed(exceptions.APIException):
    def __init__(self, refused: ResendRefused) -> None:
        super().__init__(detail=refused.message, code=refused.code)
        self.status_code = refused.status


class RequestResendApi(HookApi):
    """POST /api/hooks/<hook_id>/requests/<request_id>/resend/"""

    @extend_schema(
        tags=TAGS,
        summary="Send a logged request again, as a new request marked resent_from",
        description="The copy goes through the write path: the live responder answers it, the "
        "write key's rate limit applies (429 with Retry-After), and it is folded like any "
        "write. The original is left as it was.",
        parameters=[HOOK_ID, REQUEST_ID],
        request=None,
        responses={
            **responses({201: RequestLogSerializer}, 409),
            413: OpenApiResponse(description="The body is over the hook's body limit."),
            429: OpenApiResponse(description="The write key's rate limit; see Retry-After."),
        },
    )
    def post(self, request: DrfRequest, hook_id: str, request_id: str) -> Response:
        hook = self.hook(hook_id)
        original = log_entry(hook, request_id)
        try:
            copy, _ = request_resend(hook=hook, original=original)
        except ResendRefused as refused:
            response = self.handle_exception(ResendFailed(refused))
            if refused.retry_after is not None:
                retry_after(response, refused.retry_after)
            return response
        entry = log_entry(hook, copy.uuid)
        return Response(RequestLogSerializer(entry).data, status=status.HTTP_201_CREATED)
