"""Secrets: set, list names with a fingerprint, delete. A value is never shown again."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request as DrfRequest
from rest_framework.response import Response

from hooks.apis.base import HOOK_ID, NAME, HookApi, not_found, responses
from hooks.models import Secret
from hooks.serializers import SecretSerializer, StringField
from hooks.services import SecretError, secret_delete, secret_set

TAGS = ["secrets"]


class SecretRefused(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_secret"


class SecretListApi(HookApi):
    """GET /api/hooks/<hook_id>/secrets/"""

    @extend_schema(
        tags=TAGS,
        summary="The hook's secrets: names and fingerprints, never values",
        parameters=[HOOK_ID],
        responses=responses({200: SecretSerializer(many=True)}),
    )
    def get(self, request: DrfRequest, hook_id: str) -> Response:
        secrets = Secret.objects.filter(hook=self.hook(hook_id)).order_by("name")
        return Response(SecretSerializer(secrets, many=True).data)


class SecretDetailApi(HookApi):
    """PUT, DELETE /api/hooks/<hook_id>/secrets/<name>/"""

    class InputSerializer(serializers.Serializer):
        # Not trimmed: a secret is used exactly as given. The size limit is the service's.
        value = StringField(allow_blank=True, trim_whitespace=False)

    @extend_schema(
        tags=TAGS,
        summary="Set a secret (created or replaced; encrypted at rest)",
        parameters=[HOOK_ID, NAME],
        request=InputSerializer,
        responses=responses({200: SecretSerializer}, 400),
    )
    def put(self, request: DrfRequest, hook_id: str, name: str) -> Response:
        hook = self.hook(hook_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            secret = secret_set(hook=hook, name=name, value=serializer.validated_data["value"])
        except SecretError as error:
            raise SecretRefused(str(error)) from None
        return Response(SecretSerializer(secret).data)

    @extend_schema(
        tags=TAGS,
        summary="Delete a secret",
        parameters=[HOOK_ID, NAME],
        responses=responses({204: None}),
    )
    def delete(self, request: DrfRequest, hook_id: str, name: str) -> Response:
        if not secret_delete(hook=self.hook(hook_id), name=name):
            raise not_found()
        return Response(status=status.HTTP_204_NO_CONTENT)
