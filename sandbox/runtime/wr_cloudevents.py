"""CloudEvents 1.0 over HTTP: recognise events, read them, split batches.

WebReducer recognises CloudEvents in both HTTP content modes and exposes the
event to hook code as ``request.cloudevent``:

* **structured mode** - ``Content-Type: application/cloudevents+json``; the
  body is the whole event as JSON (``data`` or ``data_base64`` holds the
  payload);
* **binary mode** - the attributes travel in ``ce-*`` headers
  (``ce-specversion``, ``ce-id``, ``ce-source``, ``ce-type``, optional
  ``ce-subject``, ``ce-time``, ``ce-dataschema`` and extension attributes),
  the body is the payload and ``Content-Type`` is its ``datacontenttype``.

A **batch** (``Content-Type: application/cloudevents-batch+json``, a JSON
array of structured events) is split by the server into one stored request
per event, in order, each with ``Content-Type: application/cloudevents+json``
(see :func:`split_batch`).

``request.cloudevent`` is ``None`` for requests that are not CloudEvents, and
otherwise a plain dict::

    {
        "specversion": "1.0",
        "id": "A234-1234-1234",
        "source": "https://github.com/cloudevents/spec/pull",
        "type": "com.github.pull_request.opened",
        "subject": "123",                   # or None
        "time": "2018-04-05T17:31:00Z",     # the string as sent, or None
        "datacontenttype": "application/json",  # or None
        "dataschema": None,
        "data": {"...": "..."},             # see below
        "data_base64": None,                # see below
        "extensions": {"comexampleextension1": "value"},
    }

``data`` is, in structured mode, the event's ``data`` member exactly as sent
(any JSON value). A payload that arrives as bytes (the body in binary mode, or
``data_base64`` in structured mode) is parsed as JSON when its content type is
JSON (``application/json``, ``text/json`` or any ``...+json`` type), otherwise
given as text when it is valid UTF-8, otherwise ``data`` is ``None`` and the
bytes are in ``data_base64`` (standard base64). ``data_base64`` is ``None`` in
every other case. An empty payload gives ``data = None``.

The default idempotency key for CloudEvents is ``"<source> <id>"`` (see
:func:`default_idempotency_key`), because the CloudEvents spec makes ``source``
plus ``id`` unique per distinct event.

This module uses only the Python standard library.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

__all__ = [
    "BATCH_CONTENT_TYPE",
    "STRUCTURED_CONTENT_TYPE",
    "default_idempotency_key",
    "is_batch",
    "is_structured",
    "parse_cloudevent",
    "split_batch",
]

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
"""Content type of a structured-mode CloudEvent in JSON."""

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
"""Content type of a batch of structured-mode CloudEvents in JSON."""

SPECVERSION = "1.0"

_REQUIRED = ("specversion", "id", "source", "type")
_OPTIONAL = ("subject", "time", "datacontenttype", "dataschema")
_CONTEXT = frozenset(_REQUIRED + _OPTIONAL)
_RESERVED = frozenset({"data", "data_base64"})
_JSON_TYPE_RE = re.compile(r"^(application|text)/([a-z0-9!#$&^_.+-]+\+)?json$")
_RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_CE_PREFIX = "ce-"
# CloudEvents 1.0 §3.1.1: attribute names are lower-case ASCII letters and digits only.
_NAME_RE = re.compile(r"^[a-z0-9]+$")
# RFC 2046 / RFC 9110 §8.3.1: type "/" subtype *( ";" parameter ), tokens and quoted strings.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE_RE = re.compile(rf'^{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=({_TOKEN}|"([^"\\]|\\.)*"))*\s*$')


def _media_type(content_type: str | None) -> str:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_structured(content_type: str | None) -> bool:
    """True when ``content_type`` announces a structured-mode JSON CloudEvent."""
    return _media_type(content_type) == STRUCTURED_CONTENT_TYPE


def is_batch(content_type: str | None) -> bool:
    """True when ``content_type`` announces a JSON batch of CloudEvents."""
    return _media_type(content_type) == BATCH_CONTENT_TYPE


def _is_json_type(content_type: str | None) -> bool:
    return bool(_JSON_TYPE_RE.match(_media_type(content_type)))


def _lower_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """Copy ``headers`` with lower-case names (first value wins on clashes)."""
    result: dict[str, str] = {}
    if not headers:
        return result
    for name, value in headers.items():
        if isinstance(value, (list, tuple)):
            value = value[0] if value else ""
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        result.setdefault(str(name).strip().lower(), str(value).strip())
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(raw: bytes | str, what: str) -> Any:
    """Parse strict JSON (no NaN/Infinity) or raise a clear ``ValueError``."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        if text.startswith("\ufeff"):
            text = text[1:]
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not UTF-8 encoded JSON") from None
    except ValueError as error:
        raise ValueError(f"{what} is not valid JSON: {error}") from None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


def _decode_payload(payload: bytes, datacontenttype: str | None) -> tuple[Any, str | None]:
    """Turn payload bytes into ``(data, data_base64)``.

    JSON content types are parsed (falling back to text when the payload is
    not valid JSON), other payloads become text when they are UTF-8, and
    anything else is returned base64-encoded with ``data`` set to ``None``.
    """
    if not payload:
        return None, None
    if _is_json_type(datacontenttype):
        try:
            return _loads(payload, "data"), None
        except ValueError:
            pass
    try:
        return payload.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(payload).decode("ascii")


def _check_attributes(attributes: dict[str, Any], where: str) -> None:
    missing = [name for name in _REQUIRED if name not in attributes or attributes[name] is None]
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        plural = "s" if len(missing) > 1 else ""
        raise ValueError(f"invalid CloudEvent{where}: missing required attribute{plural} {names}")
    for name in _REQUIRED:
        value = attributes[name]
        if not isinstance(value, str) or not value:
            raise ValueError(
                f"invalid CloudEvent{where}: attribute '{name}' must be a non-empty string"
            )
    if attributes["specversion"] != SPECVERSION:
        raise ValueError(
            f"invalid CloudEvent{where}: unsupported specversion "
            f"{attributes['specversion']!r} (only '{SPECVERSION}' is supported)"
        )
    for name in _OPTIONAL:
        value = attributes.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(
                f"invalid CloudEvent{where}: attribute '{name}' must be a non-empty string"
            )
    media_type = attributes.get("datacontenttype")
    if media_type is not None and not _MEDIA_TYPE_RE.match(media_type):
        raise ValueError(
            f"invalid CloudEvent{where}: attribute 'datacontenttype' {media_type!r} is not "
            "a media type such as 'application/json'"
        )
    time_value = attributes.get("time")
    if time_value is not None and not _is_rfc3339(time_value):
        raise ValueError(
            f"invalid CloudEvent{where}: attribute 'time' {time_value!r} is not an "
            "RFC 3339 timestamp such as '2024-05-01T12:00:00Z'"
        )


def _check_names(names: Any, where: str) -> None:
    for name in names:
        if not _NAME_RE.match(name):
            raise ValueError(
                f"invalid CloudEvent{where}: attribute name {name!r} is not lower-case "
                "letters and digits (a-z, 0-9)"
            )


def _check_extension_value(name: str, value: Any, where: str) -> None:
    # CloudEvents types in JSON (json-format §2.2): strings, booleans and integers only.
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, int) and -(2**31) <= value < 2**31:
        return
    raise ValueError(
        f"invalid CloudEvent{where}: extension attribute '{name}' must be a string, a "
        f"boolean or a 32-bit integer, not {_json_kind(value)}"
    )


def _is_rfc3339(value: str) -> bool:
    if not _RFC3339_RE.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:
        return False
    return True


def _event(
    attributes: dict[str, Any],
    extensions: dict[str, Any],
    data: Any,
    data_b64: str | None,
) -> dict[str, Any]:
    return {
        "specversion": attributes["specversion"],
        "id": attributes["id"],
        "source": attributes["source"],
        "type": attributes["type"],
        "subject": attributes.get("subject"),
        "time": attributes.get("time"),
        "datacontenttype": attributes.get("datacontenttype"),
        "dataschema": attributes.get("dataschema"),
        "data": data,
        "data_base64": data_b64,
        "extensions": extensions,
    }


def _from_structured(document: Any, where: str = "") -> dict[str, Any]:
    if not isinstance(document, dict):
        raise ValueError(
            f"invalid CloudEvent{where}: a structured-mode event must be a JSON object, "
            f"not {_json_kind(document)}"
        )
    _check_names((name for name in document if name not in _RESERVED), where)
    _check_attributes(document, where)
    if "data" in document and "data_base64" in document:
        raise ValueError(
            f"invalid CloudEvent{where}: 'data' and 'data_base64' must not both be present"
        )
    attributes = {name: document.get(name) for name in _CONTEXT}
    extensions = {
        name: value
        for name, value in document.items()
        if name not in _CONTEXT and name not in _RESERVED
    }
    for name, value in extensions.items():
        _check_extension_value(name, value, where)
    data: Any = document.get("data")
    data_b64: str | None = None
    if "data_base64" in document and document["data_base64"] is not None:
        encoded = document["data_base64"]
        if not isinstance(encoded, str):
            raise ValueError(f"invalid CloudEvent{where}: 'data_base64' must be a string")
        try:
            payload = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"invalid CloudEvent{where}: 'data_base64' is not valid base64"
            ) from None
        data, data_b64 = _decode_payload(payload, attributes.get("datacontenttype"))
    return _event(attributes, extensions, data, data_b64)


def _from_binary(headers: dict[str, str], content_type: str | None, body: bytes) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    extensions: dict[str, Any] = {}
    for name, value in headers.items():
        if not name.startswith(_CE_PREFIX):
            continue
        attribute = name[len(_CE_PREFIX) :]
        _check_names([attribute], " (binary mode, ce-* headers)")
        decoded = unquote(value, encoding="utf-8", errors="replace")
        if attribute in _CONTEXT:
            attributes[attribute] = decoded
        else:
            extensions[attribute] = decoded
    content_type = content_type or headers.get("content-type") or attributes.get("datacontenttype")
    attributes["datacontenttype"] = content_type or None
    _check_attributes(attributes, " (binary mode, ce-* headers)")
    data, data_b64 = _decode_payload(body, content_type)
    return _event(attributes, extensions, data, data_b64)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


def parse_cloudevent(
    headers: Mapping[str, Any] | None,
    content_type: str | None,
    body: bytes | str | None,
) -> dict[str, Any] | None:
    """Read the CloudEvent carried by an HTTP request, if there is one.

    Args:
        headers: the request headers; any mapping, names in any letter case.
        content_type: the request's ``Content-Type`` (parameters such as
            ``; charset=utf-8`` are allowed). When empty, the
            ``Content-Type`` header is used.
        body: the exact request body.

    Returns:
        ``None`` when the request is not a CloudEvent (including a
        ``application/cloudevents-batch+json`` batch, which the server splits
        into single events before they reach your code); otherwise the event
        as a plain dict with the keys ``specversion``, ``id``, ``source``,
        ``type``, ``subject``, ``time``, ``datacontenttype``, ``dataschema``,
        ``data``, ``data_base64`` and ``extensions`` (a dict of the extension
        attributes; in binary mode their values are strings).

    Raises:
        ValueError: the request claims to be a CloudEvent but is not a valid
            one: a required attribute (``specversion``, ``id``, ``source``,
            ``type``) is missing or empty, ``specversion`` is not ``"1.0"``,
            ``time`` is not RFC 3339, an attribute name is not lower-case
            letters and digits, ``datacontenttype`` is not a media type, an
            extension value is not a string, boolean or integer, both ``data``
            and ``data_base64`` are present, the structured body is not a JSON
            object, or the event format is not JSON. The server refuses such a
            write with 400 (``hooks.writes``), so stored requests never raise.

    A request is in binary mode when it has a ``ce-specversion`` header, or
    any of ``ce-id``, ``ce-source``, ``ce-type`` (then a missing
    ``ce-specversion`` is reported as an error). Other ``ce-*`` headers alone
    do not make a CloudEvent. Header values are percent-decoded as the HTTP
    binding requires.
    """
    lowered = _lower_headers(headers)
    if not content_type:
        content_type = lowered.get("content-type")
    if body is None:
        body = b""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogateescape")
    media_type = _media_type(content_type)

    if media_type == BATCH_CONTENT_TYPE:
        return None
    if media_type.startswith("application/cloudevents"):
        if media_type != STRUCTURED_CONTENT_TYPE:
            raise ValueError(
                f"unsupported CloudEvents format {media_type!r}: only "
                f"{STRUCTURED_CONTENT_TYPE!r} (JSON) is supported"
            )
        return _from_structured(_loads(bytes(body), "the structured-mode CloudEvent body"))
    if any(f"{_CE_PREFIX}{name}" in lowered for name in _REQUIRED):
        return _from_binary(lowered, content_type, bytes(body))
    return None


def split_batch(body: bytes | str) -> list[bytes]:
    """Split an ``application/cloudevents-batch+json`` body into single events.

    Returns each event of the JSON array, in order, re-serialised as its own
    structured-mode body (compact UTF-8 JSON, attribute order kept), ready to
    be stored as a request with ``Content-Type: application/cloudevents+json``.
    An empty array gives an empty list.

    Raises:
        ValueError: the body is not a JSON array of objects, or an event in it
            is not a valid CloudEvent; the message gives the event's position
            (counting from 0).
    """
    document = _loads(body, "the CloudEvents batch body")
    if not isinstance(document, list):
        raise ValueError(
            f"a CloudEvents batch must be a JSON array of events, not {_json_kind(document)}"
        )
    events: list[bytes] = []
    for index, item in enumerate(document):
        where = f" at position {index} of the batch"
        if not isinstance(item, dict):
            raise ValueError(
                f"invalid CloudEvent{where}: expected a JSON object, not {_json_kind(item)}"
            )
        _from_structured(item, where)
        events.append(_dumps(item))
    return events


def default_idempotency_key(event: Mapping[str, Any]) -> str:
    """The default idempotency key of a CloudEvent: ``"<source> <id>"``.

    That is the event's ``source``, one space, and its ``id``, exactly as
    sent; for example ``"https://example.com/orders A234-1234"``. The
    CloudEvents spec requires producers to make ``source`` + ``id`` unique for
    each distinct event, so a redelivered event gets the same key and is
    recorded as a duplicate.
    """
    return f"{event['source']} {event['id']}"
