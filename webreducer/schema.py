"""OpenAPI schema generation (drf-spectacular) for the management API at /api/schema/."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    """Names components of nested serializers after their view.

    Views declare `InputSerializer` and `OutputSerializer` inside themselves (docs/architecture.md, "Conventions"); named
    by class name alone they would all be "Input" and "Output" and overwrite each other in
    the schema. `HookPublishApi.InputSerializer` becomes the component `HookPublishInput`.
    """

    def get_serializer_name(self, serializer: Any, direction: Any) -> str:
        parts = type(serializer).__qualname__.split(".")
        if len(parts) > 1 and "<locals>" not in parts:
            return parts[-2].removesuffix("Api") + parts[-1]
        return str(super().get_serializer_name(serializer, direction))


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer <token>` with a personal API token (accounts.authentication)."""

    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token: `POST /api/tokens/` or `manage.py createtoken`.",
        }


def management_api_only(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Preprocessing hook: the schema describes /api/ only. The public write and read URLs
    take any method and body and answer with the user's code: docs/pipeline.md covers them."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/")]


ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {}},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}
ERROR_DESCRIPTIONS = {
    "400": "Invalid input.",
    "401": "No or invalid credentials.",
    "403": "Not allowed (e.g. a session without its CSRF token).",
    "404": "Not found, or not yours.",
}


def document_errors(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: every operation documents the errors it can answer, in the one
    error shape (webreducer/errors.py), unless its view documented them itself.

    400 where there is input to refuse, 401/403 where credentials are needed, 404 where the
    path names an object (another user's answers 404 too).
    """
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = []
            if "requestBody" in operation or any(
                p.get("in") == "query" for p in operation.get("parameters", [])
            ):
                codes.append("400")
            if any(requirement for requirement in operation.get("security", [{}])):
                codes += ["401", "403"]
            if "{" in path:
                codes.append("404")
            for code in codes:
                operation["responses"].setdefault(
                    code, {"content": content, "description": ERROR_DESCRIPTIONS[code]}
                )
    return result
