"""OpenAPI schema generation (drf-spectacular) for the management API at /api/schema/."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    """Names components of nested serializers after their view.

    Views declare `InputSerializer` and `OutputSerializer` inside themselves (STYLE 4); named
    by class name alone they would all be "Input" and "Output" and overwrite each other in
    the schema. `HookPublishApi.InputSerializer` becomes the component `HookPublishInput`.
    """

    def get_serializer_name(self, serializer: Any, direction: str) -> str:
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
