"""A hook's test cases: read, replace, run (against the draft or given code). Rules and
limits: hooks.testcases, docs/functions.md "Test cases"."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request as DrfRequest
from rest_framework.response import Response

from hooks.apis.base import HOOK_ID, CodeRefused, HookApi, SandboxDown, responses
from hooks.testcases import TestsInvalid, tests_get, tests_run, tests_save, tests_validate
from sandbox import CodeError, SandboxUnavailable

TAGS = ["tests"]


class TestsRefused(exceptions.ValidationError):
    """400 `invalid` with `fields` naming each offending field (cases[0].requests[2].body)."""


class TestsTooLarge(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "too_large"


class TestsFailed(exceptions.APIException):
    """Publish refused: required test cases failed on the draft."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "tests_failed"

    def __init__(self, report: dict[str, Any]) -> None:
        failed, total = report["failed"], report["failed"] + report["passed"]
        super().__init__(
            detail=f"{failed} of {total} required test case(s) failed on the draft; nothing "
            "was published.",
            code=self.default_code,
        )
        self.extra = {"results": report["results"]}


def document_size_check(request: DrfRequest) -> None:
    # Checked on the body as sent, before it is parsed into Python objects.
    size = len(request._request.body)
    if size > settings.WR_MAX_TESTS_BYTES:
        raise TestsTooLarge(f"The test document is over {settings.WR_MAX_TESTS_BYTES} bytes.")


def validated(document: Any, *, cases_only: bool = False) -> dict[str, Any]:
    try:
        return tests_validate(document, cases_only=cases_only)
    except TestsInvalid as error:
        raise TestsRefused(error.fields) from None


def case_field() -> serializers.JSONField:
    return serializers.JSONField(help_text="{name, requests: [Step…], expect?: {state}}")


TESTS_DOC = inline_serializer(
    name="HookTests",
    fields={
        "cases": serializers.ListField(child=case_field()),
        "required": serializers.BooleanField(help_text="Publish runs the cases first."),
    },
)
RUN_INPUT = inline_serializer(
    name="HookTestsRunInput",
    fields={
        "code": serializers.CharField(required=False, help_text="Default: the draft."),
        "cases": serializers.ListField(
            child=case_field(), required=False, help_text="Default: the stored cases."
        ),
    },
)
RUN_RESULT = inline_serializer(
    name="HookTestsRun",
    fields={
        "passed": serializers.IntegerField(),
        "failed": serializers.IntegerField(),
        "results": serializers.ListField(
            child=serializers.JSONField(),
            help_text="{name, passed, error: null | {type, message, traceback}, failures: "
            "[{step, what: state|status|body|error, expected, actual, diff?}]}",
        ),
    },
)


class HookTestsApi(HookApi):
    """GET, PUT /api/hooks/<hook_id>/tests/"""

    @extend_schema(tags=TAGS, parameters=[HOOK_ID], responses=responses({200: TESTS_DOC}))
    def get(self, request: DrfRequest, hook_id: str) -> Response:
        return Response(tests_get(hook=self.hook(hook_id)))

    @extend_schema(
        tags=TAGS,
        summary="Replace the hook's test cases (and whether publish requires them)",
        parameters=[HOOK_ID],
        request=TESTS_DOC,
        responses=responses({200: TESTS_DOC}, 400),
    )
    def put(self, request: DrfRequest, hook_id: str) -> Response:
        hook = self.hook(hook_id)
        document_size_check(request)
        document = validated(request.data)
        return Response(tests_save(hook=hook, document=document))


class HookTestsRunApi(HookApi):
    """POST /api/hooks/<hook_id>/tests/run/"""

    @extend_schema(
        tags=TAGS,
        summary="Run test cases in the sandbox (fresh state per case; nothing is stored)",
        parameters=[HOOK_ID],
        request=RUN_INPUT,
        responses=responses({200: RUN_RESULT}, 400, 503),
    )
    def post(self, request: DrfRequest, hook_id: str) -> Response:
        hook = self.hook(hook_id)
        document_size_check(request)
        data = request.data if isinstance(request.data, dict) else None
        if data is None:
            raise TestsRefused({"": ['Send {"code"?: "…", "cases"?: [...]}.']})
        unknown = sorted(set(data) - {"code", "cases"})
        if unknown:
            raise TestsRefused({name: ["Unknown field."] for name in unknown})
        code = data.get("code", hook.draft_code)
        if not isinstance(code, str):
            raise TestsRefused({"code": ["A string of Python code."]})
        if "cases" in data:
            cases = validated(data["cases"], cases_only=True)["cases"]
        else:
            cases = tests_get(hook=hook)["cases"]
        try:
            outcome = tests_run(hook=hook, code=code, cases=cases)
        except CodeError as error:
            raise CodeRefused(error) from None
        except SandboxUnavailable as error:
            raise SandboxDown(error) from None
        return Response(outcome)
