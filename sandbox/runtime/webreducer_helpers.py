"""Webhook signature checks and JSON-schema validation for WebReducer hooks.

Everything here is available from the ``webreducer`` module inside your hook's
code::

    from webreducer import Response, verify_github, WebhookVerificationError

    def responder(request, secrets):
        try:
            verify_github(request, secrets["GITHUB_SECRET"])
        except WebhookVerificationError as error:
            return Response({"error": str(error)}, status=401)
        return {"ok": True}

Signature checks
----------------
``verify_github``, ``verify_stripe``, ``verify_slack`` and
``verify_standard_webhooks`` each return ``None`` when the request is authentic
and raise :class:`WebhookVerificationError` otherwise; the error message says
what is wrong (a missing header, a malformed header, a signature that does not
match, or a timestamp outside the allowed window).

Each accepts either

* the ``request`` your function receives (the check reads ``request.headers``
  and the exact body bytes), or
* explicit ``headers=`` (any mapping; names are matched case-insensitively)
  and ``body=`` (``bytes`` or ``str``) keyword arguments.

Signatures are always computed over the exact bytes that were received, never
over re-serialised JSON, and compared in constant time.

JSON schema
-----------
``validate_json(instance, schema)`` returns a list of readable error messages
(empty when the value is valid); ``check_json(instance, schema)`` raises
:class:`ValidationError` listing them all. Schemas use JSON Schema draft
2020-12 unless they declare another ``$schema``. ``$ref`` works inside the
schema (``#/$defs/...``) but remote references are never fetched.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import referencing
import referencing.exceptions

__all__ = [
    "ValidationError",
    "WebhookVerificationError",
    "check_json",
    "validate_json",
    "verify_github",
    "verify_slack",
    "verify_standard_webhooks",
    "verify_stripe",
]

DEFAULT_TOLERANCE = 300
"""Default allowed difference, in seconds, between a signed timestamp and now."""

_MISSING = object()
_TIMESTAMP_RE = re.compile(r"^[0-9]{1,15}$")


class WebhookVerificationError(Exception):
    """Raised when a webhook request cannot be proven authentic.

    The message says what is wrong, for example::

        missing header X-Hub-Signature-256 (is a secret configured on the
        GitHub webhook?)
        X-Hub-Signature-256 does not match the body: wrong secret, or the body
        was modified
        Stripe-Signature timestamp 1700000000 is 912 s in the past; the
        tolerance is 300 s

    It never contains the secret or the expected signature. A common pattern
    is to answer ``401`` with the message, which also rejects the request (it
    is logged but never reduced)::

        except WebhookVerificationError as error:
            return Response({"error": str(error)}, status=401)
    """


class ValidationError(ValueError):
    """Raised by :func:`check_json` when a value does not match a schema.

    ``str(error)`` lists every problem, one per line; ``error.errors`` is the
    same list of ``"path: message"`` strings that :func:`validate_json`
    returns.
    """

    def __init__(self, errors: list[str]) -> None:
        self.errors: list[str] = list(errors)
        lines = "\n".join(f"- {message}" for message in self.errors)
        super().__init__(f"JSON does not match the schema:\n{lines}")


# ---------------------------------------------------------------------------
# Reading headers and the body
# ---------------------------------------------------------------------------


def _lookup(obj: Any, name: str) -> Any:
    """Return attribute or mapping item ``name`` of ``obj``, or ``_MISSING``."""
    try:
        value = getattr(obj, name, _MISSING)
    except (AttributeError, KeyError):
        value = _MISSING
    if value is _MISSING and isinstance(obj, Mapping):
        value = obj.get(name, _MISSING)
    return value


def _source(
    request: Any,
    headers: Mapping[str, Any] | None,
    body: bytes | str | None,
    helper: str,
) -> tuple[Mapping[str, Any], bytes]:
    """Work out the headers and exact body bytes to verify."""
    if headers is None:
        if request is None:
            raise TypeError(
                f"{helper}() needs the request, or headers= and body= keyword arguments"
            )
        headers = _lookup(request, "headers")
        if headers is _MISSING or headers is None:
            raise TypeError(f"{helper}(): the request has no headers")
    if not isinstance(headers, Mapping) and not hasattr(headers, "items"):
        raise TypeError(f"{helper}(): headers must be a mapping of header names to values")

    if body is None and request is not None:
        raw = _lookup(request, "raw_bytes")
        if raw is _MISSING or raw is None:
            raw = _lookup(request, "raw_body")
        if raw is _MISSING:
            raise TypeError(
                f"{helper}(): the request has no raw_body; pass the request itself, "
                "or body= with the exact bytes received"
            )
        body = raw
    if body is None:
        body = b""
    if isinstance(body, str):
        body_bytes = body.encode("utf-8", "surrogateescape")
    elif isinstance(body, (bytes, bytearray, memoryview)):
        body_bytes = bytes(body)
    else:
        raise TypeError(
            f"{helper}(): the body must be the raw bytes or text received, "
            f"not {type(body).__name__} (use request.raw_body, not request.body)"
        )
    return headers, body_bytes


def _header(headers: Any, name: str) -> str | None:
    """Case-insensitive header lookup returning a single string or ``None``."""
    value = None
    getter = getattr(headers, "get", None)
    if getter is not None:
        value = getter(name)
        if value is None:
            value = getter(name.lower())
    if value is None:
        wanted = name.lower()
        for key, item in headers.items():
            if isinstance(key, str) and key.lower() == wanted:
                value = item
                break
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise WebhookVerificationError(f"header {name} was sent {len(value)} times")
        value = value[0]
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value).strip()


def _require_header(headers: Any, name: str, hint: str = "") -> str:
    value = _header(headers, name)
    if not value:
        suffix = f" ({hint})" if hint else ""
        state = "empty" if value == "" else "missing"
        raise WebhookVerificationError(f"{state} header {name}{suffix}")
    return value


def _secret_bytes(secret: Any, helper: str) -> bytes:
    if isinstance(secret, str):
        key = secret.encode("utf-8")
    elif isinstance(secret, (bytes, bytearray)):
        key = bytes(secret)
    elif secret is None:
        key = b""
    else:
        raise TypeError(f"{helper}(): the secret must be a str or bytes")
    if not key.strip():
        raise WebhookVerificationError(
            "the webhook secret is missing or empty: check that the hook's secret is set"
        )
    return key


def _ascii(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _check_timestamp(header: str, value: str, tolerance: float | None) -> None:
    """Check that a Unix timestamp (seconds) is within ``tolerance`` of now."""
    if not tolerance:
        return
    if tolerance < 0:
        raise ValueError("tolerance must be a positive number of seconds, or None")
    delta = int(value) - time.time()
    if delta < -tolerance:
        raise WebhookVerificationError(
            f"{header} timestamp {value} is {int(-delta)} s in the past; "
            f"the tolerance is {tolerance:g} s (an old or replayed request, "
            "or a wrong clock)"
        )
    if delta > tolerance:
        raise WebhookVerificationError(
            f"{header} timestamp {value} is {int(delta)} s in the future; "
            f"the tolerance is {tolerance:g} s (a wrong clock)"
        )


def _hex_matches(expected: str, candidates: Iterable[str]) -> bool:
    """Constant-time comparison of a hex digest against candidate signatures."""
    wanted = _ascii(expected)
    matched = False
    for candidate in candidates:
        # Evaluate every candidate so timing does not depend on which matched.
        matched |= hmac.compare_digest(wanted, _ascii(candidate.strip().lower()))
    return matched


# ---------------------------------------------------------------------------
# GitHub
# ---------------------------------------------------------------------------


def verify_github(
    request: Any = None,
    secret: str | bytes | None = None,
    *,
    headers: Mapping[str, Any] | None = None,
    body: bytes | str | None = None,
) -> None:
    """Check a GitHub webhook's ``X-Hub-Signature-256`` header.

    GitHub sends ``X-Hub-Signature-256: sha256=<hex>``, the HMAC-SHA256 of the
    raw body keyed with the webhook's secret. The legacy SHA-1
    ``X-Hub-Signature`` header is not accepted. GitHub signatures carry no
    timestamp, so a captured delivery could be replayed: use the
    ``X-GitHub-Delivery`` header as the idempotency key to ignore repeats.

    Args:
        request: the request your function received.
        secret: the secret configured on the GitHub webhook.
        headers, body: instead of ``request``, the headers and exact body.

    Raises:
        WebhookVerificationError: the header is missing or malformed, or the
            signature does not match (wrong secret or modified body).

    Example::

        def responder(request, secrets):
            verify_github(request, secrets["GITHUB_SECRET"])
            return {"event": request.headers.get("X-GitHub-Event")}

        def idempotency_key(request, secrets):
            return request.headers.get("X-GitHub-Delivery")
    """
    hdrs, payload = _source(request, headers, body, "verify_github")
    key = _secret_bytes(secret, "verify_github")
    value = _header(hdrs, "X-Hub-Signature-256")
    if not value:
        hint = "is a secret configured on the GitHub webhook?"
        if _header(hdrs, "X-Hub-Signature"):
            hint = "only the legacy SHA-1 X-Hub-Signature was sent; it is not accepted"
        raise WebhookVerificationError(
            f"{'empty' if value == '' else 'missing'} header X-Hub-Signature-256 ({hint})"
        )
    scheme, sep, signature = value.partition("=")
    if not sep or scheme.strip().lower() != "sha256" or not signature.strip():
        raise WebhookVerificationError(
            "malformed X-Hub-Signature-256 header: expected 'sha256=<hex digest>'"
        )
    expected = hmac.new(key, payload, hashlib.sha256).hexdigest()
    if not _hex_matches(expected, [signature]):
        raise WebhookVerificationError(
            "X-Hub-Signature-256 does not match the body: wrong secret, or the body was modified"
        )


# ---------------------------------------------------------------------------
# Stripe
# ---------------------------------------------------------------------------


def verify_stripe(
    request: Any = None,
    secret: str | bytes | None = None,
    tolerance: float | None = DEFAULT_TOLERANCE,
    *,
    headers: Mapping[str, Any] | None = None,
    body: bytes | str | None = None,
) -> None:
    """Check a Stripe webhook's ``Stripe-Signature`` header.

    Stripe sends ``Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>...]``.
    Each ``v1`` is the HMAC-SHA256 of ``"<t>.<raw body>"`` keyed with the
    endpoint's signing secret (the whole ``whsec_...`` string, used as is).
    The request is accepted when any ``v1`` signature matches (Stripe sends
    several while you roll a secret); ``v0`` test signatures are ignored.

    Args:
        request: the request your function received.
        secret: the endpoint's signing secret, ``whsec_...``.
        tolerance: how many seconds ``t`` may differ from now, in either
            direction (default 300). ``None`` or ``0`` turns the check off,
            which lets old requests be replayed.
        headers, body: instead of ``request``, the headers and exact body.

    Raises:
        WebhookVerificationError: the header is missing or malformed, no
            ``v1`` signature matches, or the timestamp is outside the
            tolerance.

    Example::

        def responder(request, secrets):
            verify_stripe(request, secrets["STRIPE_SECRET"])
            return {"received": request.body["type"]}

        def idempotency_key(request, secrets):
            return request.body["id"]      # Stripe's event id, "evt_..."
    """
    hdrs, payload = _source(request, headers, body, "verify_stripe")
    key = _secret_bytes(secret, "verify_stripe")
    value = _require_header(hdrs, "Stripe-Signature")
    timestamp: str | None = None
    signatures: list[str] = []
    for item in value.split(","):
        name, sep, content = item.strip().partition("=")
        if not sep:
            continue
        name = name.strip()
        if name == "t" and timestamp is None:
            timestamp = content.strip()
        elif name == "v1":
            signatures.append(content)
    if timestamp is None:
        raise WebhookVerificationError("malformed Stripe-Signature header: no timestamp 't=' found")
    if not _TIMESTAMP_RE.match(timestamp):
        raise WebhookVerificationError(
            f"malformed Stripe-Signature header: timestamp {timestamp!r} is not a Unix time"
        )
    if not signatures:
        raise WebhookVerificationError(
            "malformed Stripe-Signature header: no 'v1=' signature found "
            "(v0 test signatures are not accepted)"
        )
    signed = _ascii(timestamp) + b"." + payload
    expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
    if not _hex_matches(expected, signatures):
        raise WebhookVerificationError(
            "no Stripe-Signature v1 signature matches the body: wrong signing secret "
            "(use the endpoint's whsec_... secret), or the body was modified"
        )
    _check_timestamp("Stripe-Signature", timestamp, tolerance)


# ---------------------------------------------------------------------------
# Slack
# ---------------------------------------------------------------------------


def verify_slack(
    request: Any = None,
    secret: str | bytes | None = None,
    tolerance: float | None = DEFAULT_TOLERANCE,
    *,
    headers: Mapping[str, Any] | None = None,
    body: bytes | str | None = None,
) -> None:
    """Check a Slack request's ``X-Slack-Signature`` header.

    Slack sends ``X-Slack-Request-Timestamp: <unix time>`` and
    ``X-Slack-Signature: v0=<hex>``, the HMAC-SHA256 of
    ``"v0:<timestamp>:<raw body>"`` keyed with the app's *signing secret*
    (not the deprecated verification token).

    Args:
        request: the request your function received.
        secret: the Slack app's signing secret.
        tolerance: how many seconds the timestamp may differ from now, in
            either direction (default 300). ``None`` or ``0`` turns it off.
        headers, body: instead of ``request``, the headers and exact body.

    Raises:
        WebhookVerificationError: a header is missing or malformed, the
            signature does not match, or the timestamp is outside the
            tolerance.

    Example::

        def responder(request, secrets):
            verify_slack(request, secrets["SLACK_SIGNING_SECRET"])
            if request.body.get("type") == "url_verification":
                return {"challenge": request.body["challenge"]}
            return Response(None, status=200)
    """
    hdrs, payload = _source(request, headers, body, "verify_slack")
    key = _secret_bytes(secret, "verify_slack")
    timestamp = _require_header(hdrs, "X-Slack-Request-Timestamp")
    value = _require_header(hdrs, "X-Slack-Signature")
    if not _TIMESTAMP_RE.match(timestamp):
        raise WebhookVerificationError(
            f"malformed X-Slack-Request-Timestamp header: {timestamp!r} is not a Unix time"
        )
    version, sep, signature = value.partition("=")
    if not sep or version.strip() != "v0" or not signature.strip():
        raise WebhookVerificationError(
            "malformed X-Slack-Signature header: expected 'v0=<hex digest>'"
        )
    signed = b"v0:" + _ascii(timestamp) + b":" + payload
    expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
    if not _hex_matches(expected, [signature]):
        raise WebhookVerificationError(
            "X-Slack-Signature does not match the body: wrong signing secret, "
            "or the body was modified"
        )
    _check_timestamp("X-Slack-Request-Timestamp", timestamp, tolerance)


# ---------------------------------------------------------------------------
# Standard Webhooks
# ---------------------------------------------------------------------------

_SW_PREFIX = "whsec_"


def _standard_webhooks_key(secret: Any) -> bytes:
    if isinstance(secret, (bytes, bytearray)):
        key = bytes(secret)
    elif isinstance(secret, str):
        text = secret.strip()
        if text.startswith(_SW_PREFIX):
            text = text[len(_SW_PREFIX) :]
        text = text.rstrip("=")
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookVerificationError(
                "the Standard Webhooks secret is not valid base64: it should look "
                "like 'whsec_<base64>' (pass bytes to use a raw key)"
            ) from None
    elif secret is None:
        key = b""
    else:
        raise TypeError("verify_standard_webhooks(): the secret must be a str or bytes")
    if not key:
        raise WebhookVerificationError(
            "the webhook secret is missing or empty: check that the hook's secret is set"
        )
    return key


def verify_standard_webhooks(
    request: Any = None,
    secret: str | bytes | None = None,
    tolerance: float | None = DEFAULT_TOLERANCE,
    *,
    headers: Mapping[str, Any] | None = None,
    body: bytes | str | None = None,
) -> None:
    """Check a `Standard Webhooks <https://www.standardwebhooks.com/>`_ signature.

    The sender sends ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
    ``webhook-signature``: a space-separated list of ``v1,<base64>``
    signatures, each the HMAC-SHA256 of ``"<id>.<timestamp>.<raw body>"``.
    Any matching ``v1`` signature is enough; other versions (such as the
    asymmetric ``v1a``) are ignored. The ``svix-id``, ``svix-timestamp`` and
    ``svix-signature`` headers sent by Svix are accepted too.

    Args:
        request: the request your function received.
        secret: the signing secret, ``"whsec_<base64>"``; the part after
            ``whsec_`` is base64-decoded to get the key (a string without the
            prefix is base64-decoded too, as the reference libraries do).
            Pass ``bytes`` to use a raw key as is.
        tolerance: how many seconds the timestamp may differ from now, in
            either direction (default 300). ``None`` or ``0`` turns it off.
        headers, body: instead of ``request``, the headers and exact body.

    Raises:
        WebhookVerificationError: a header is missing or malformed, the secret
            is not valid base64, no signature matches, or the timestamp is
            outside the tolerance.

    Example::

        def responder(request, secrets):
            verify_standard_webhooks(request, secrets["WEBHOOK_SECRET"])
            return Response(None, status=204)

        def idempotency_key(request, secrets):
            return request.headers.get("webhook-id")
    """
    hdrs, payload = _source(request, headers, body, "verify_standard_webhooks")
    key = _standard_webhooks_key(secret)
    prefix = "webhook"
    if _header(hdrs, "webhook-signature") is None and _header(hdrs, "svix-signature") is not None:
        prefix = "svix"
    msg_id = _require_header(hdrs, f"{prefix}-id")
    timestamp = _require_header(hdrs, f"{prefix}-timestamp")
    value = _require_header(hdrs, f"{prefix}-signature")
    if not _TIMESTAMP_RE.match(timestamp):
        raise WebhookVerificationError(
            f"malformed {prefix}-timestamp header: {timestamp!r} is not a Unix time in seconds"
        )
    signatures: list[bytes] = []
    for item in value.split():
        version, sep, encoded = item.partition(",")
        if not sep or version != "v1":
            continue
        try:
            signatures.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not signatures:
        raise WebhookVerificationError(
            f"malformed {prefix}-signature header: no 'v1,<base64>' signature found"
        )
    signed = _ascii(msg_id) + b"." + _ascii(timestamp) + b"." + payload
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError(
            f"no {prefix}-signature v1 signature matches the body: wrong secret, "
            "or the id, timestamp or body was modified"
        )
    _check_timestamp(f"{prefix}-timestamp", timestamp, tolerance)


# ---------------------------------------------------------------------------
# JSON schema
# ---------------------------------------------------------------------------

_MAX_MESSAGE = 300
_RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class _RemoteRefRefused(Exception):
    """Raised instead of fetching a remote ``$ref``."""


def _refuse_retrieval(uri: str) -> referencing.Resource[Any]:
    raise _RemoteRefRefused(uri)


_REGISTRY: referencing.Registry[Any] = referencing.Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]


def _exception_chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[Any] = [error]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend((getattr(item, "_wrapped", None), item.__cause__, item.__context__))
    return seen


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339_RE.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:
        return False
    return True


def _format_checker(validator_cls: Any) -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(list(validator_cls.FORMAT_CHECKER.checkers))
    if "date-time" not in checker.checkers:
        checker.checks("date-time", raises=ValueError)(_is_date_time)
    return checker


def _shorten(text: str) -> str:
    if len(text) <= _MAX_MESSAGE:
        return text
    return text[: _MAX_MESSAGE - 1] + "…"


def _path_key(error: jsonschema.exceptions.ValidationError) -> tuple[Any, ...]:
    return tuple(
        (0, part, "") if isinstance(part, int) else (1, 0, str(part))
        for part in error.absolute_path
    )


def validate_json(
    instance: Any, schema: Mapping[str, Any] | bool, *, max_errors: int = 50
) -> list[str]:
    """Validate ``instance`` against a JSON ``schema`` and list what is wrong.

    Returns an empty list when ``instance`` is valid; otherwise one message per
    problem, ``"<path>: <message>"``, where the path points into the instance
    in JSONPath style (``$`` is the whole value, ``$.items[0].price`` a
    nested one). Messages are sorted by path::

        validate_json({"items": [{"price": "1"}]}, schema)
        # ["$: 'customer' is a required property",
        #  "$.items[0].price: '1' is not of type 'number'"]

    The schema's ``$schema`` picks the draft (default 2020-12). Common
    ``format`` values are checked (``date``, ``date-time``, ``email``,
    ``ipv4``, ``ipv6``, ``uuid``, ``regex``, ``idn-hostname``,
    ``idn-email``); others are accepted as annotations. ``$ref`` may point
    inside the schema (``"#/$defs/item"``) but never to a URL: remote schemas
    are not fetched, copy them under ``$defs`` instead.

    At most ``max_errors`` messages are returned (a last line says how many
    more there were); long messages are shortened.

    Raises:
        ValueError: the schema itself is invalid, or a ``$ref`` cannot be
            resolved (this is a mistake in the code, not in the data).
    """
    validator_cls = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    try:
        validator_cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as error:
        raise ValueError(
            f"invalid JSON schema: {error.json_path}: {_shorten(error.message)}"
        ) from None
    validator = validator_cls(
        schema, registry=_REGISTRY, format_checker=_format_checker(validator_cls)
    )
    try:
        errors = list(validator.iter_errors(instance))
    except referencing.exceptions.Unresolvable as error:
        ref = getattr(error, "ref", "")
        if any(isinstance(item, _RemoteRefRefused) for item in _exception_chain(error)):
            raise ValueError(
                f"schema $ref {ref!r} cannot be resolved: remote schemas are never "
                'fetched; put the referenced schema under "$defs" and refer to it '
                'as "#/$defs/<name>"'
            ) from None
        raise ValueError(f"schema $ref cannot be resolved: {_shorten(str(error))}") from None
    errors.sort(key=lambda error: (_path_key(error), error.message))
    messages = [f"{error.json_path}: {_shorten(error.message)}" for error in errors[:max_errors]]
    if len(errors) > max_errors:
        messages.append(f"… and {len(errors) - max_errors} more errors")
    return messages


def check_json(instance: Any, schema: Mapping[str, Any] | bool) -> None:
    """Raise :class:`ValidationError` unless ``instance`` matches ``schema``.

    The error lists every problem found by :func:`validate_json`::

        def responder(request, secrets):
            try:
                check_json(request.body, ORDER_SCHEMA)
            except ValidationError as error:
                return Response({"errors": error.errors}, status=422)
            return {"ok": True}

    Raises:
        ValidationError: the value does not match (a ``ValueError``).
        ValueError: the schema itself is invalid.
    """
    errors = validate_json(instance, schema)
    if errors:
        raise ValidationError(errors)


def _warm_up() -> None:
    """Exercise the JSON-schema code once so that everything it needs is loaded
    before the sandbox forbids file access."""
    with contextlib.suppress(Exception):
        validate_json(
            {"a": ["x", 1], "t": "2024-01-01T00:00:00Z"},
            {
                "type": "object",
                "properties": {
                    "a": {"type": "array", "items": {"$ref": "#/$defs/s"}},
                    "t": {"type": "string", "format": "date-time"},
                },
                "required": ["b"],
                "$defs": {"s": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            },
        )
    with contextlib.suppress(Exception):
        validate_json({}, {"$ref": "https://example.invalid/schema.json"})
    for draft in (
        jsonschema.Draft4Validator,
        jsonschema.Draft6Validator,
        jsonschema.Draft7Validator,
        jsonschema.Draft201909Validator,
    ):
        with contextlib.suppress(Exception):
            validate_json(1, {"$schema": draft.META_SCHEMA["$schema"], "type": "string"})


_warm_up()
