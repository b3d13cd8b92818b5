"""Hooks: list, create, read, rename, delete; the draft; the state; archive."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request as DrfRequest
from rest_framework.response import Response

from hooks.apis.base import (
    CURSOR,
    HOOK_ID,
    CodeRefused,
    HookApi,
    OrderedCursorPagination,
    paginated,
    responses,
    room_param,
)
from hooks.models import MAIN_ROOM, Hook, Key, State, Version
from hooks.replay import replay_progress
from hooks.selectors import hook_list_for_user, live_state_get, request_counts
from hooks.serializers import HookDetailSerializer, HookSerializer, StateSerializer, StringField
from hooks.services import draft_save, hook_archive, hook_create, hook_delete, hook_update
from sandbox import CodeError

TAGS = ["hooks"]


def _with_seq(hooks: QuerySet[Hook]) -> QuerySet[Hook]:
    live_seq = State.objects.filter(version_id=OuterRef("live_version_id"), room=MAIN_ROOM).values(
        "seq"
    )[:1]
    return (
        hooks.select_related("live_version")
        .prefetch_related(Prefetch("keys", queryset=Key.objects.order_by("created_at", "id")))
        .annotate(seq=Subquery(live_seq))
    )


def hook_detail(hook: Hook) -> Hook:
    """`hook` reloaded with what HookDetailSerializer shows: seq, keys, replay, counts."""
    hook = _with_seq(Hook.objects.filter(pk=hook.pk)).get()
    hook.seq = hook.seq or 0  # type: ignore[attr-defined]
    live_code = hook.live_version.code if hook.live_version else ""
    hook.draft_changed = hook.draft_code != live_code  # type: ignore[attr-defined]
    newest = Version.objects.filter(hook=hook).select_related("hook").order_by("-number").first()
    building = (Version.Status.BUILDING, Version.Status.FAILED)
    hook.replay = replay_progress(newest) if newest and newest.status in building else None  # type: ignore[attr-defined]
    hook.counts = request_counts(hook=hook)  # type: ignore[attr-defined]
    return hook


class HookPagination(OrderedCursorPagination):
    model = Hook
    ordering = "-created_at"
    page_size = 50


class HookListCreateApi(HookApi):
    """GET, POST /api/hooks/"""

    class InputSerializer(serializers.Serializer):
        name = StringField(max_length=100, required=False, allow_blank=True, default="")
        code = StringField(required=False, allow_blank=True, trim_whitespace=False, default="")

    @extend_schema(
        tags=TAGS,
        summary="Your hooks, newest first",
        operation_id="hooks_list",
        parameters=[CURSOR],
        responses=responses({200: paginated(HookSerializer, "PaginatedHookList")}),
    )
    def get(self, request: DrfRequest) -> Response:
        hooks = _with_seq(hook_list_for_user(user=request.user))
        paginator = HookPagination()
        page = paginator.paginate_queryset(hooks, request, view=self) or []
        for hook in page:
            hook.seq = hook.seq or 0  # type: ignore[attr-defined]
        return paginator.get_paginated_response(HookSerializer(page, many=True).data)

    @extend_schema(
        tags=TAGS,
        summary="Create a hook (its code is published as version 1; one read and one write key)",
        request=InputSerializer,
        responses=responses({201: HookDetailSerializer}, 400),
    )
    def post(self, request: DrfRequest) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            hook = hook_create(owner=request.user, **serializer.validated_data)  # type: ignore[arg-type]
        except CodeError as error:
            raise CodeRefused(error) from None
        data = HookDetailSerializer(hook_detail(hook)).data
        return Response(data, status=status.HTTP_201_CREATED)


class HookDetailApi(HookApi):
    """GET, PATCH, DELETE /api/hooks/<hook_id>/"""

    class InputSerializer(serializers.Serializer):
        name = StringField(max_length=100, required=False)
        description = StringField(max_length=2000, required=False, allow_blank=True)

    @extend_schema(
        tags=TAGS, parameters=[HOOK_ID], responses=responses({200: HookDetailSerializer})
    )
    def get(self, request: DrfRequest, hook_id: str) -> Response:
        return Response(HookDetailSerializer(hook_detail(self.hook(hook_id))).data)

    @extend_schema(
        tags=TAGS,
        summary="Rename or describe a hook",
        parameters=[HOOK_ID],
        request=InputSerializer,
        responses=responses({200: HookDetailSerializer}, 400),
    )
    def patch(self, request: DrfRequest, hook_id: str) -> Response:
        hook = self.hook(hook_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        hook_update(hook=hook, **serializer.validated_data)
        return Response(HookDetailSerializer(hook_detail(hook)).data)

    @extend_schema(
        tags=TAGS,
        summary="Delete a hook and everything it owns",
        parameters=[HOOK_ID],
        responses=responses({204: None}),
    )
    def delete(self, request: DrfRequest, hook_id: str) -> Response:
        hook_delete(hook=self.hook(hook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class HookDraftApi(HookApi):
    """GET, PUT /api/hooks/<hook_id>/draft/"""

    class InputSerializer(serializers.Serializer):
        code = StringField(allow_blank=True, trim_whitespace=False)

    class OutputSerializer(serializers.Serializer):
        code = serializers.CharField(allow_blank=True)
        changed = serializers.BooleanField(
            help_text="Whether the draft differs from the live code."
        )
        live_version = serializers.IntegerField(allow_null=True)

    def _render(self, hook: Hook) -> Response:
        live = hook.live_version
        data = {
            "code": hook.draft_code,
            "changed": hook.draft_code != (live.code if live else ""),
            "live_version": live.number if live else None,
        }
        return Response(self.OutputSerializer(data).data)

    @extend_schema(tags=TAGS, parameters=[HOOK_ID], responses=responses({200: OutputSerializer}))
    def get(self, request: DrfRequest, hook_id: str) -> Response:
        return self._render(self.hook(hook_id))

    @extend_schema(
        tags=TAGS,
        summary="Save the draft (checked; it never affects live traffic)",
        parameters=[HOOK_ID],
        request=InputSerializer,
        responses=responses({200: OutputSerializer}, 400),
    )
    def put(self, request: DrfRequest, hook_id: str) -> Response:
        hook = self.hook(hook_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            draft_save(hook=hook, code=serializer.validated_data["code"])
        except CodeError as error:
            raise CodeRefused(error) from None
        return self._render(hook)


class HookStateApi(HookApi):
    """GET /api/hooks/<hook_id>/state/"""

    @extend_schema(
        tags=TAGS,
        summary="The live state (of a room) and the seq of the last request folded into it",
        parameters=[
            HOOK_ID,
            OpenApiParameter("room", str, description="A room (default: the main room)."),
        ],
        responses=responses({200: StateSerializer}),
    )
    def get(self, request: DrfRequest, hook_id: str) -> Response:
        room = room_param(request.query_params.get("room", ""))
        state = live_state_get(hook=self.hook(hook_id), room=room)
        data: dict[str, Any] = {"seq": 0, "state": None, "version": None}
        if room:
            data["room"] = room  # the main room's answer is what it was before rooms
        if state is not None:
            data.update(seq=state.seq, state=json.loads(state.value), version=state.version.number)
        return Response(StateSerializer(data).data)


class HookArchiveApi(HookApi):
    """POST /api/hooks/<hook_id>/archive/"""

    @extend_schema(
        tags=TAGS,
        summary="Reset the history and the state (the read URL serves null at seq 0)",
        parameters=[HOOK_ID],
        request=None,
        responses=responses({200: HookDetailSerializer}),
    )
    def post(self, request: DrfRequest, hook_id: str) -> Response:
        hook = self.hook(hook_id)
        hook_archive(hook=hook)
        return Response(HookDetailSerializer(hook_detail(hook)).data)
