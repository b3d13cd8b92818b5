"""The rooms of a hook (SPEC §1 "Rooms"): list them, delete one."""

from __future__ import annotations

from django.db.models import QuerySet
from django.db.models.functions import Length
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request as DrfRequest
from rest_framework.response import Response

from hooks.apis.base import CURSOR, HOOK_ID, HookApi, OrderedCursorPagination, paginated, responses
from hooks.models import Hook, State
from hooks.rooms import MAX_NAME, name_error, room_delete
from hooks.serializers import RoomSerializer

TAGS = ["rooms"]


class RoomsByName(OrderedCursorPagination):
    model = State
    ordering = "room"
    page_size = 100


class RoomsByActivity(OrderedCursorPagination):
    # A room that becomes active while someone pages moves to the front: it may be missed
    # by that listing (the next one shows it), never shown twice in one page.
    model = State
    ordering = "-updated_at"
    page_size = 100


def live_rooms(hook: Hook) -> QuerySet[State]:
    return State.objects.filter(version_id=hook.live_id).annotate(size=Length("value"))


class RoomListApi(HookApi):
    """GET /api/hooks/<hook_id>/rooms/"""

    class FilterSerializer(serializers.Serializer):
        prefix = serializers.CharField(required=False, allow_blank=True, max_length=MAX_NAME)
        order = serializers.ChoiceField(choices=["name", "recent"], required=False)

    @extend_schema(
        tags=TAGS,
        summary="The hook's rooms: name, seq, state size, last activity (100 a page)",
        operation_id="hooks_rooms_list",
        parameters=[
            HOOK_ID,
            CURSOR,
            OpenApiParameter("prefix", str, description="Only rooms whose name starts so."),
            OpenApiParameter(
                "order",
                str,
                enum=["name", "recent"],
                description="By name (the default), or most recently active first.",
            ),
        ],
        responses=responses({200: paginated(RoomSerializer, "PaginatedRoomList")}, 400),
    )
    def get(self, request: DrfRequest, hook_id: str) -> Response:
        hook = self.hook(hook_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        rows = live_rooms(hook)
        if prefix := filters.validated_data.get("prefix"):
            rows = rows.filter(room__startswith=prefix)
        recent = filters.validated_data.get("order") == "recent"
        paginator = RoomsByActivity() if recent else RoomsByName()
        page = paginator.paginate_queryset(rows, request, view=self) or []
        return paginator.get_paginated_response(RoomSerializer(page, many=True).data)


class RoomDetailApi(HookApi):
    """DELETE /api/hooks/<hook_id>/rooms/<name>/"""

    @extend_schema(
        tags=TAGS,
        summary="Delete one room's state and history",
        parameters=[
            HOOK_ID,
            OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH),
        ],
        responses=responses({204: None}),
    )
    def delete(self, request: DrfRequest, hook_id: str, name: str) -> Response:
        hook = self.hook(hook_id)
        if name_error(name) is not None or not room_delete(hook=hook, room=name):
            raise exceptions.NotFound()
        return Response(status=status.HTTP_204_NO_CONTENT)
