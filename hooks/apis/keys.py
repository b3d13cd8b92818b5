"""Keys: create read/write keys, pause, resume, revoke."""

from __future__ import annotations

import contextlib

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request as DrfRequest
from rest_framework.response import Response

from hooks.apis.base import HOOK_ID, KEY_ID, Conflict, HookApi, not_found, responses
from hooks.models import Hook, Key
from hooks.selectors import key_get_for_hook
from hooks.serializers import KeySerializer, StringField
from hooks.services import KeyRevoked, key_create, key_revoke, key_set_paused

TAGS = ["keys"]


def _key(hook: Hook, key_id: str) -> Key:
    key = key_get_for_hook(hook=hook, key_id=key_id)
    if key is None:
        raise not_found()
    return key


class KeyListCreateApi(HookApi):
    """GET, POST /api/hooks/<hook_id>/keys/"""

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=Key.Kind.choices)
        label = StringField(max_length=100, required=False, allow_blank=True, default="")  # type: ignore[assignment]

    @extend_schema(
        tags=TAGS,
        summary="The hook's keys, revoked ones included",
        parameters=[HOOK_ID],
        responses=responses({200: KeySerializer(many=True)}),
    )
    def get(self, request: DrfRequest, hook_id: str) -> Response:
        keys = self.hook(hook_id).keys.order_by("created_at", "id")
        return Response(KeySerializer(keys, many=True).data)

    @extend_schema(
        tags=TAGS,
        summary="Create a read or write key",
        parameters=[HOOK_ID],
        request=InputSerializer,
        responses=responses({201: KeySerializer}, 400),
    )
    def post(self, request: DrfRequest, hook_id: str) -> Response:
        hook = self.hook(hook_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = key_create(hook=hook, **serializer.validated_data)
        return Response(KeySerializer(key).data, status=status.HTTP_201_CREATED)


class KeyDetailApi(HookApi):
    """PATCH, DELETE /api/hooks/<hook_id>/keys/<key_id>/"""

    class InputSerializer(serializers.Serializer):
        paused = serializers.BooleanField(help_text="Pause (true) or resume (false) the key.")

    @extend_schema(
        tags=TAGS,
        summary="Pause or resume a key (a paused key answers 404 and stores nothing)",
        parameters=[HOOK_ID, KEY_ID],
        request=InputSerializer,
        responses=responses({200: KeySerializer}, 400, 409),
    )
    def patch(self, request: DrfRequest, hook_id: str, key_id: str) -> Response:
        hook = self.hook(hook_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = _key(hook, key_id)
        try:
            key_set_paused(key=key, paused=serializer.validated_data["paused"])
        except KeyRevoked as error:
            raise Conflict(str(error), code="key_revoked") from None
        return Response(KeySerializer(key).data)

    @extend_schema(
        tags=TAGS,
        summary="Revoke a key, for good (it stays listed with revoked_at)",
        parameters=[HOOK_ID, KEY_ID],
        responses=responses({204: None}),
    )
    def delete(self, request: DrfRequest, hook_id: str, key_id: str) -> Response:
        key = _key(self.hook(hook_id), key_id)
        with contextlib.suppress(KeyRevoked):  # revoking twice is still "revoked"
            key_revoke(key=key)
        return Response(status=status.HTTP_204_NO_CONTENT)
