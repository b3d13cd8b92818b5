"""Publishing: publish, versions, diff, rollback, dry run (docs/api.md, "Publishing")."""

from __future__ import annotations

import difflib

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request as DrfRequest
from rest_framework.response import Response

from hooks.apis.base import (
    CURSOR,
    HOOK_ID,
    NUMBER,
    CodeRefused,
    HookApi,
    OrderedCursorPagination,
    SandboxDown,
    int_or_404,
    not_found,
    paginated,
    responses,
)
from hooks.apis.tests import TestsFailed
from hooks.models import Hook, Version
from hooks.replay import hook_dry_run, hook_publish, hook_rollback, replay_progress
from hooks.serializers import (
    DryRunSerializer,
    ProgressSerializer,
    StringField,
    VersionDetailSerializer,
    VersionSerializer,
)
from hooks.testcases import tests_check_for_publish
from sandbox import CodeError, SandboxUnavailable

TAGS = ["versions"]


class StartedSerializer(serializers.Serializer):
    """A version whose replay has started: it goes live when it has caught up."""

    version = VersionSerializer()
    progress = ProgressSerializer()


def _started(version: Version) -> Response:
    # With tasks run in process the replay may be over already: show what is true now.
    version = Version.objects.select_related("hook", "author").get(pk=version.pk)
    data = StartedSerializer({"version": version, "progress": replay_progress(version)}).data
    return Response(data, status=status.HTTP_202_ACCEPTED)


def _versions(hook: Hook) -> QuerySet[Version]:
    return Version.objects.filter(hook=hook).select_related("hook", "author")


class HookPublishApi(HookApi):
    """POST /api/hooks/<hook_id>/publish/"""

    class InputSerializer(serializers.Serializer):
        strict = serializers.BooleanField(
            default=False,
            help_text="Refuse to go live if any request fails during the replay.",
        )

    @extend_schema(
        tags=TAGS,
        summary="Publish the draft: a new version replays the history, then goes live",
        parameters=[HOOK_ID],
        request=InputSerializer,
        description="When the hook's test cases are `required`, they run on the draft first: "
        "any failure answers 400 `tests_failed` with the run's `results` and publishes nothing.",
        responses=responses({202: StartedSerializer}, 400, 503),
    )
    def post(self, request: DrfRequest, hook_id: str) -> Response:
        hook = self.hook(hook_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            # Required test cases run on the draft first; a failure publishes nothing.
            failed = tests_check_for_publish(hook=hook, code=hook.draft_code)
        except CodeError as error:
            raise CodeRefused(error) from None
        except SandboxUnavailable as error:
            raise SandboxDown(error) from None
        if failed is not None:
            raise TestsFailed(failed)
        try:
            version = hook_publish(
                hook=hook,
                author=request.user,  # type: ignore[arg-type]
                strict=serializer.validated_data["strict"],
            )
        except CodeError as error:
            raise CodeRefused(error) from None
        return _started(version)


class VersionPagination(OrderedCursorPagination):
    model = Version
    ordering = "-number"
    page_size = 50


class VersionListApi(HookApi):
    """GET /api/hooks/<hook_id>/versions/"""

    @extend_schema(
        tags=TAGS,
        summary="The hook's versions, newest first",
        operation_id="hooks_versions_list",
        parameters=[HOOK_ID, CURSOR],
        responses=responses({200: paginated(VersionSerializer, "PaginatedVersionList")}),
    )
    def get(self, request: DrfRequest, hook_id: str) -> Response:
        hook = self.hook(hook_id)
        paginator = VersionPagination()
        page: list[Version] = paginator.paginate_queryset(_versions(hook), request, view=self) or []
        return paginator.get_paginated_response(VersionSerializer(page, many=True).data)


class VersionDetailApi(HookApi):
    """GET /api/hooks/<hook_id>/versions/<number>/"""

    @extend_schema(
        tags=TAGS,
        parameters=[HOOK_ID, NUMBER],
        responses=responses({200: VersionDetailSerializer}),
    )
    def get(self, request: DrfRequest, hook_id: str, number: str) -> Response:
        hook = self.hook(hook_id)
        version = _versions(hook).filter(number=int_or_404(number)).first()
        if version is None:
            raise not_found()
        return Response(VersionDetailSerializer(version).data)


class VersionDiffApi(HookApi):
    """GET /api/hooks/<hook_id>/versions/diff/?from=N&to=M"""

    SIDE = r"^(draft|[0-9]{1,9})$"

    class OutputSerializer(serializers.Serializer):
        from_ = serializers.CharField(help_text="A version number, or `draft`.")
        to = serializers.CharField()
        diff = serializers.CharField(
            allow_blank=True, help_text="A unified diff; empty when equal."
        )

        def get_fields(self) -> dict[str, serializers.Field]:
            fields = super().get_fields()
            return {"from": fields.pop("from_"), **fields}  # `from` is a Python keyword

    @extend_schema(
        tags=TAGS,
        summary="A unified diff of two versions' code (or of one and the draft)",
        parameters=[
            HOOK_ID,
            OpenApiParameter(
                "from",
                OpenApiTypes.STR,
                pattern=SIDE,
                description="A version number or `draft`; default: the live version.",
            ),
            OpenApiParameter(
                "to",
                OpenApiTypes.STR,
                pattern=SIDE,
                description="A version number or `draft`; default: `draft`.",
            ),
        ],
        responses=responses({200: OutputSerializer}, 400),
    )
    def get(self, request: DrfRequest, hook_id: str) -> Response:
        hook = self.hook(hook_id)
        live = hook.live_version
        default_from = str(live.number) if live else "draft"
        before = self._side(hook, "from", request.query_params.get("from", default_from))
        after = self._side(hook, "to", request.query_params.get("to", "draft"))
        lines = difflib.unified_diff(
            before[1].splitlines(keepends=True),
            after[1].splitlines(keepends=True),
            fromfile=before[0],
            tofile=after[0],
        )
        # A last line without a newline would run into the next header.
        diff = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        data = {"from": before[2], "to": after[2], "diff": diff}
        return Response(self.OutputSerializer(data).data)

    def _side(self, hook: Hook, param: str, side: str) -> tuple[str, str, str]:
        """(file label, code, the side's name) of `draft` or a version number."""
        if side == "draft":
            return "draft", hook.draft_code, side
        if not side.isascii() or not side.isdigit() or len(side) > 9:
            raise serializers.ValidationError({param: ["A version number or `draft`."]})
        code = (
            Version.objects.filter(hook=hook, number=int(side))
            .values_list("code", flat=True)
            .first()
        )
        if code is None:
            raise not_found()
        return f"v{side}", code, side


class VersionRollbackApi(HookApi):
    """POST /api/hooks/<hook_id>/versions/<number>/rollback/"""

    @extend_schema(
        tags=TAGS,
        summary="Publish an earlier version's code again, through the same replay",
        parameters=[HOOK_ID, NUMBER],
        request=None,
        responses=responses({202: StartedSerializer}),
    )
    def post(self, request: DrfRequest, hook_id: str, number: str) -> Response:
        hook = self.hook(hook_id)
        try:
            version = hook_rollback(hook=hook, number=int_or_404(number), author=request.user)  # type: ignore[arg-type]
        except Version.DoesNotExist:
            raise not_found() from None
        return _started(version)


class HookDryRunApi(HookApi):
    """POST /api/hooks/<hook_id>/dry-run/"""

    class InputSerializer(serializers.Serializer):
        code = StringField(
            required=False,
            allow_blank=True,
            trim_whitespace=False,
            help_text="The code to run; default: the draft.",
        )
        last = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=1_000_000,
            help_text="Fold only the last N requests, from a null state; default: all (up to "
            "the operator's limit).",
        )

    @extend_schema(
        tags=TAGS,
        summary="Run code over the stored history without changing anything",
        parameters=[HOOK_ID],
        request=InputSerializer,
        responses=responses({200: DryRunSerializer}, 400, 503),
    )
    def post(self, request: DrfRequest, hook_id: str) -> Response:
        hook = self.hook(hook_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        code = serializer.validated_data.get("code", hook.draft_code)
        try:
            result = hook_dry_run(hook=hook, code=code, last=serializer.validated_data.get("last"))
        except CodeError as error:
            raise CodeRefused(error) from None
        except SandboxUnavailable as error:
            raise SandboxDown(error) from None
        return Response(DryRunSerializer(result).data)
