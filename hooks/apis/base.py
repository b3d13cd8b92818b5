"""What every management API view shares: authorisation, errors, pagination, schema helpers."""

from __future__ import annotations

from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.parsers import JSONParser
from rest_framework.views import APIView

from hooks.models import Hook
from hooks.selectors import hook_get_for_user
from hooks.serializers import ErrorSerializer
from sandbox import CodeError, SandboxUnavailable


class HookApi(APIView):
    """A management route of one hook. `self.hook()` is the only way views get at a hook:
    another user's hook, a missing one and a malformed id all answer 404."""

    # A JSON API: one body format to document, validate and test.
    parser_classes = [JSONParser]

    def hook(self, hook_id: object, *, for_update: bool = False) -> Hook:
        return hook_get_for_user(user=self.request.user, hook_id=hook_id, for_update=for_update)


class CodeRefused(exceptions.APIException):
    """User code that cannot be saved, published or dry-run: 400 with where the error is."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, error: CodeError) -> None:
        code = "code_too_large" if error.message.startswith("CodeTooLarge") else "syntax_error"
        super().__init__(detail=error.message, code=code)
        self.extra = {"line": error.line, "column": error.column}


class SandboxDown(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "sandbox_unavailable"

    def __init__(self, error: SandboxUnavailable) -> None:
        super().__init__(detail=str(error), code=self.default_code)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def not_found() -> exceptions.NotFound:
    return exceptions.NotFound()


def int_or_404(value: str) -> int:
    """Path segments are matched as strings so a malformed one gets the JSON 404 too."""
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise not_found()
    return int(value)


class OrderedCursorPagination(CursorPagination):
    """Cursor pagination whose cursor position is checked before it reaches a query: a forged
    cursor answers 404 like any other invalid one, never a 500."""

    model: type[models.Model]

    def decode_cursor(self, request: Any) -> Cursor | None:
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            # paginate_queryset() has made `ordering` a tuple by now.
            ordering = self.ordering if isinstance(self.ordering, str) else self.ordering[0]
            field = cast(models.Field, self.model._meta.get_field(ordering.lstrip("-")))
            try:
                field.to_python(cursor.position)
            except (DjangoValidationError, ValueError, TypeError):
                raise exceptions.NotFound(self.invalid_cursor_message) from None
        return cursor


def paginated(serializer: type[serializers.Serializer], name: str) -> Any:
    """The schema of a page of `serializer` items, as CursorPagination renders it."""
    return inline_serializer(
        name=name,
        fields={
            "next": serializers.URLField(allow_null=True, help_text="The next (older) page."),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer(many=True),
        },
    )


CURSOR = OpenApiParameter(
    "cursor", OpenApiTypes.STR, OpenApiParameter.QUERY, description="From `next` or `previous`."
)

HOOK_ID = OpenApiParameter("hook_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
KEY_ID = OpenApiParameter("key_id", OpenApiTypes.INT, OpenApiParameter.PATH)
NUMBER = OpenApiParameter(
    "number", OpenApiTypes.INT, OpenApiParameter.PATH, description="A version number."
)
NAME = OpenApiParameter(
    "name", OpenApiTypes.STR, OpenApiParameter.PATH, description="UPPER_SNAKE_CASE."
)

ERROR_TEXT = {
    400: "Invalid input: `invalid` with `fields`, `parse_error`, `syntax_error`, …",
    401: "No or invalid credentials.",
    403: "Session authentication without a valid CSRF token.",
    404: "Not found, or not yours.",
    409: "The request conflicts with the current state.",
    503: "The sandbox is unavailable.",
}


def responses(ok: dict[Any, Any], *errors: int) -> dict[Any, Any]:
    """The documented answers of a route: its successes and every error it can give."""
    answers: dict[Any, Any] = dict(ok)
    for code in sorted({401, 403, 404, *errors}):
        answers[code] = OpenApiResponse(ErrorSerializer, description=ERROR_TEXT[code])
    return answers


def room_param(value: str) -> str:
    """A room named in a management query (`?room=`; empty is the main room), in its stored
    form; an invalid name answers 400."""
    from hooks.rooms import name_error, stored_room

    if value == "":
        return stored_room(None)
    problem = name_error(value)
    if problem is not None:
        raise serializers.ValidationError({"room": [problem]})
    return stored_room(value)
