"""Output serializers shared by the management API's views (hooks.apis).

Field names here are part of the API's stability promise (docs/api.md): add fields, never
rename or remove them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hooks.models import Key, Request, Version
from webreducer.origins import public_root

OUTCOMES = [choice for choice, _ in Request.Outcome.choices]
# hooks.replay.replay_progress's names for a version's status during and after its replay.
REPLAY_STATUSES = ["running", "done", "failed", "archived"]


class StringField(serializers.CharField):
    """A CharField that takes JSON strings only: DRF's would turn 5 or true into "5", "True"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


def key_url(key: Key) -> str:
    # The public origin: a hook's answers never run as the app's (webreducer/origins.py).
    return f"{public_root()}/{key.kind}/{key.token}"


def code_sha256(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable: not_found, invalid, …")
    message = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]  # a field, not Serializer.fields
        required=False, help_text="For code `invalid`: the messages of each invalid field."
    )
    line = serializers.IntegerField(
        required=False, allow_null=True, help_text="For code `syntax_error`."
    )
    column = serializers.IntegerField(
        required=False, allow_null=True, help_text="For code `syntax_error`."
    )


class ErrorSerializer(serializers.Serializer):
    """The one shape of every error of the management API."""

    error = ErrorDetailSerializer()


class KeySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Key.Kind.choices)
    label = serializers.CharField()  # type: ignore[assignment]  # a field, not Field.label
    token = serializers.CharField()
    url = serializers.SerializerMethodField(help_text="The full write or read URL.")
    paused = serializers.BooleanField(source="is_paused")
    revoked_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_url(self, key: Key) -> str:
        return key_url(key)


class ProgressSerializer(serializers.Serializer):
    """How far a version's replay of the history has come (hooks.replay.replay_progress)."""

    version = serializers.IntegerField()
    status = serializers.ChoiceField(choices=REPLAY_STATUSES)
    applied = serializers.IntegerField(help_text="Requests the new version has folded.")
    total = serializers.IntegerField(help_text="The live head: requests to fold before the switch.")
    failures = serializers.IntegerField(
        help_text="Requests whose reducer raised during the replay."
    )
    error = serializers.CharField(allow_blank=True)


class CountsSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    applied = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    failed = serializers.IntegerField()
    rejected = serializers.IntegerField()


class HookSerializer(serializers.Serializer):
    """A hook as listed. The view annotates `seq` (the live state's) on the instance."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    live_version = serializers.IntegerField(
        source="live_version.number", allow_null=True, help_text="The published version's number."
    )
    seq = serializers.IntegerField(help_text="The seq of the last applied request.")
    keys = KeySerializer(many=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class HookDetailSerializer(HookSerializer):
    """A hook with its draft, its latest replay and its request counts (set by the view)."""

    draft_code = serializers.CharField(allow_blank=True)
    draft_changed = serializers.BooleanField(
        help_text="Whether the draft differs from the live code."
    )
    replay = ProgressSerializer(
        allow_null=True,
        help_text="The newest version's replay while it runs, or when it failed; else null.",
    )
    counts = CountsSerializer(help_text="Stored requests by outcome.")


class VersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Version.Status.choices)
    created_at = serializers.DateTimeField()
    published_at = serializers.DateTimeField(allow_null=True)
    author = serializers.SerializerMethodField(help_text="The author's email, if they have one.")
    sha256 = serializers.SerializerMethodField(
        help_text="The first 12 hex digits of the code's SHA-256."
    )
    functions = serializers.ListField(child=serializers.CharField())
    strict = serializers.BooleanField()
    rolled_back_from = serializers.IntegerField(allow_null=True)
    failures = serializers.IntegerField(source="replay_failures")
    error = serializers.CharField(source="replay_error", allow_blank=True)
    progress = serializers.SerializerMethodField()

    def get_author(self, version: Version) -> str | None:
        return (version.author.email or None) if version.author else None

    def get_sha256(self, version: Version) -> str:
        return code_sha256(version.code)[:12]

    @extend_schema_field(ProgressSerializer(allow_null=True))
    def get_progress(self, version: Version) -> dict[str, Any] | None:
        from hooks.replay import replay_progress

        if version.status != Version.Status.BUILDING:
            return None
        return dict(ProgressSerializer(replay_progress(version)).data)


class VersionDetailSerializer(VersionSerializer):
    code = serializers.CharField(allow_blank=True)


class StateSerializer(serializers.Serializer):
    room = serializers.CharField(required=False, help_text="The room asked for (`?room=`).")
    seq = serializers.IntegerField()
    state = serializers.JSONField(
        allow_null=True, help_text="Any JSON value; null before the first request."
    )
    version = serializers.IntegerField(allow_null=True, help_text="The live version's number.")


class RoomSerializer(serializers.Serializer):
    room = serializers.CharField(
        source="room_name", allow_null=True, help_text="The room's name; null: the main room."
    )
    seq = serializers.IntegerField(help_text="The seq of the last request folded into it.")
    size = serializers.IntegerField(help_text="Its state's size, serialised, in bytes.")
    last_activity = serializers.DateTimeField(source="updated_at")


class SecretSerializer(serializers.Serializer):
    """A secret's name and a keyed fingerprint of its value; the value is never shown."""

    name = serializers.CharField()
    fingerprint = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DiffOpSerializer(serializers.Serializer):
    op = serializers.ChoiceField(choices=["add", "remove", "replace"])
    path = serializers.CharField(allow_blank=True, help_text="A JSON Pointer into the state.")
    value = serializers.JSONField(required=False, help_text="The new value (any JSON).")
    old = serializers.JSONField(required=False, help_text="The previous value (any JSON).")


class ResponseSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    headers = serializers.DictField(child=serializers.CharField(allow_blank=True))
    body = serializers.JSONField(
        allow_null=True, help_text="A JSON value, or a string for text bodies."
    )
    truncated = serializers.BooleanField(help_text="Whether the body or headers were cut.")


class RequestLogSerializer(serializers.Serializer):
    """One entry of the request log. The view sets `body_text`, `body_encoding`,
    `state_after_value` and `state_diff` on each row."""

    room = serializers.CharField(
        source="room_name", allow_null=True, help_text="The request's room; null: the main room."
    )
    seq = serializers.IntegerField(
        allow_null=True,
        help_text="The seq within its room: null until applied, never for rejected.",
    )
    id = serializers.UUIDField(source="uuid")
    received_at = serializers.DateTimeField()
    method = serializers.CharField()
    path = serializers.CharField(allow_blank=True)
    headers = serializers.DictField(child=serializers.CharField(allow_blank=True))
    query = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField(allow_blank=True))
    )
    content_type = serializers.CharField(allow_blank=True)
    body = serializers.CharField(source="body_text", allow_blank=True)
    body_encoding = serializers.ChoiceField(
        choices=["utf-8", "base64"], help_text="base64 when the body is not valid UTF-8."
    )
    outcome = serializers.ChoiceField(choices=OUTCOMES)
    response_status = serializers.IntegerField(allow_null=True)
    error = serializers.JSONField(
        allow_null=True, help_text="The reducer's or responder's error: type, message, traceback."
    )
    console = serializers.CharField(allow_blank=True)
    duration_ms = serializers.FloatField(allow_null=True)
    idempotency_key = serializers.CharField(allow_null=True)
    duplicate_of = serializers.UUIDField(
        source="duplicate_of_uuid", allow_null=True, help_text="The id of the original request."
    )
    state_after = serializers.JSONField(
        source="state_after_value",
        allow_null=True,
        help_text="The state after this request; null when not applied yet or too big to keep.",
    )
    state_diff = DiffOpSerializer(
        many=True, allow_null=True, help_text="From the state before; null when unknown."
    )
    response = ResponseSerializer(
        allow_null=True,
        help_text="The answer the producer got (the responder's, or the default 202); secrets "
        "masked, the body cut at WR_LOG_RESPONSE_MAX_BYTES.",
    )
    resent_from = serializers.UUIDField(
        source="resent_from_uuid",
        allow_null=True,
        help_text="For a resent copy: the id of the request it was copied from.",
    )


class DryRunReportSerializer(serializers.Serializer):
    room = serializers.CharField(allow_null=True, help_text="Its room under the code; null: main.")
    seq = serializers.IntegerField()
    id = serializers.UUIDField()
    outcome = serializers.ChoiceField(choices=OUTCOMES)
    error = serializers.JSONField(allow_null=True)
    console = serializers.CharField(allow_blank=True)


class DryRunRoomSerializer(serializers.Serializer):
    room = serializers.CharField()
    seq = serializers.IntegerField(help_text="Its seq after the dry run.")
    diff = DiffOpSerializer(many=True, help_text="From the room's live state.")


class DryRunRoomsSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Rooms the code makes of the history.")
    live_count = serializers.IntegerField(help_text="Rooms the live version has.")
    shown = DryRunRoomSerializer(
        many=True, help_text="The first named rooms the history touched (at most 20)."
    )
    truncated = serializers.BooleanField(help_text="Whether more named rooms were touched.")


class DryRunSerializer(serializers.Serializer):
    requests = serializers.IntegerField(help_text="How many requests were folded.")
    history = serializers.IntegerField(help_text="How many accepted requests are stored.")
    truncated = serializers.BooleanField(help_text="Whether only the most recent ones were folded.")
    state = serializers.JSONField(allow_null=True, help_text="The main room's resulting state.")
    rooms = DryRunRoomsSerializer()
    live_state = serializers.JSONField(allow_null=True)
    live_seq = serializers.IntegerField()
    diff = DiffOpSerializer(many=True, help_text="From the live state to the resulting state.")
    failures = serializers.IntegerField()
    report = DryRunReportSerializer(
        many=True, source="requests_report", help_text="Requests that failed or printed something."
    )
