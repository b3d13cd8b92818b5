"""Stored requests as folding reads them: fetched as rows, sent to the sandbox as JSON text.

The live pipeline, replays and dry runs fold thousands of stored requests a second, so a request
is not a model instance here: it is a row of the columns folding needs, with its headers and
query kept as the JSON text the database returns. `payload_json()` splices that text into the
request the sandbox reads without parsing it again; only a request that may carry an
idempotency key or a CloudEvent has its headers parsed in this process (`may_carry_key`).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from django.db.models import Q, TextField
from django.db.models.functions import Cast

from hooks.models import Request
from sandbox.runtime import wr_cloudevents

# The C function json.dumps ends up calling for a str: a JSON string literal, ASCII only.
_quote = encode_basestring_ascii


@dataclass(slots=True)
class StoredRequest:
    """A stored request, with what folding makes of it (filled in by the caller)."""

    id: int
    uuid: uuid.UUID
    room: str  # "" is the main room (hooks.rooms)
    seq: int | None
    method: str
    path: str
    headers_json: str
    query_json: str
    content_type: str
    body: bytes
    received_text: str  # the database's text of received_at: "2026-11-27 23:23:16.178159[+00]"
    response_status: int | None
    outcome: str = Request.Outcome.PENDING
    idempotency_key: str | None = None
    duplicate_of_id: int | None = None
    error: dict[str, Any] | None = None
    console: str = ""  # what folding printed (the write-time console stays in the database)
    duration_ms: float | None = None
    state_after: str | None = None
    applied_at: datetime | None = None

    @property
    def received_at(self) -> datetime:
        return datetime.fromisoformat(self.received_iso())

    def received_iso(self) -> str:
        """received_at as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, microseconds always present)."""
        text = self.received_text
        if text.endswith("+00"):
            text = text[:-3]
        elif text.endswith("+00:00"):
            text = text[:-6]
        if "+" in text[10:] or "-" in text[10:]:  # another zone: let Python convert it
            moment = datetime.fromisoformat(text).astimezone(UTC)
            return moment.replace(tzinfo=None).isoformat("T", "microseconds") + "Z"
        clock, _, fraction = text[11:].partition(".")
        return f"{text[:10]}T{clock}.{fraction:0<6}Z"

    @property
    def headers(self) -> dict[str, str]:
        return json.loads(self.headers_json)  # type: ignore[no-any-return]

    @property
    def query(self) -> dict[str, list[str]]:
        return json.loads(self.query_json)  # type: ignore[no-any-return]

    def may_carry_key(self) -> bool:
        """False when the request certainly has no Idempotency-Key header and no CloudEvent (so
        it has no default idempotency key); True means "parse the headers and look". Header
        names appear verbatim in the JSON text, so a plain substring test cannot miss one."""
        lowered = self.headers_json.lower()
        return (
            "idempotency-key" in lowered
            or '"ce-' in lowered
            or wr_cloudevents.is_structured(self.content_type)
        )

    def payload_json(self) -> str:
        """The request as the sandbox's `request` is made from (JSON text): fold.request_payload's
        fields, built by string formatting from text the database already produced."""
        seq = "null" if self.seq is None else int(self.seq)
        room = _quote(self.room) if self.room else "null"
        return (
            f'{{"id":"{self.uuid}","room":{room},"seq":{seq},"method":{_quote(self.method)},'
            f'"path":{_quote(self.path)},"headers":{self.headers_json},'
            f'"query":{self.query_json},"content_type":{_quote(self.content_type)},'
            f'"body_b64":"{base64.b64encode(self.body).decode()}","received_at":"{self.received_iso()}"}}'
        )


FIELDS = (
    "id",
    "uuid",
    "room",
    "seq",
    "method",
    "path",
    "headers_text",
    "query_text",
    "content_type",
    "body",
    "received_text",
    "response_status",
)


def stored_fetch(where: Q, *, order_by: str, limit: int) -> list[StoredRequest]:
    """Requests matching `where`, in `order_by` order, at most `limit`. One query; headers and
    query come back as JSON text, received_at as text (PostgreSQL and SQLite both): Django's
    timestamptz loader costs more per row than everything else here."""
    rows: Iterable[tuple[Any, ...]] = (
        Request.objects.filter(where)
        .order_by(order_by)
        .annotate(
            headers_text=Cast("headers", TextField()),
            query_text=Cast("query", TextField()),
            received_text=Cast("received_at", TextField()),
        )
        .values_list(*FIELDS)[:limit]
    )
    return [
        StoredRequest(
            id_, uid, room, seq, method, path, headers, query, kind, bytes(body), at, status
        )
        for id_, uid, room, seq, method, path, headers, query, kind, body, at, status in rows
    ]
