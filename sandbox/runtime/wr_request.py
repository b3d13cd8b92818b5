"""The `request` user code receives, built inside the sandboxed child from the JSON the parent
sends: case-insensitive headers, multi-valued query, the body parsed by its content type, and
the CloudEvent it carries. Imported by wr_child (so preloaded by the fork server); user code
cannot import it.
"""

from __future__ import annotations

import base64
import importlib
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any


class Headers(dict):  # type: ignore[type-arg]
    """Header name -> value with case-insensitive lookups; serialises as the original dict."""

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        super().__init__()
        data = data or {}
        index = {name.lower(): name for name in data if isinstance(name, str)}
        if len(index) == len(data):  # the usual case: no two names differ only in case
            dict.update(self, data)
            self.__dict__["_index"] = index
            return
        for name, value in data.items():
            self[name] = value

    def _lower(self) -> dict[str, str]:
        index: dict[str, str] = self.__dict__.setdefault("_index", {})
        return index

    def _key(self, name: Any) -> Any:
        if isinstance(name, str):
            return self._lower().get(name.lower(), name)
        return name

    def __setitem__(self, name: str, value: Any) -> None:
        if isinstance(name, str):
            old = self._lower().get(name.lower())
            if old is not None and old != name:
                dict.__delitem__(self, old)
            self._lower()[name.lower()] = name
        dict.__setitem__(self, name, value)

    def __delitem__(self, name: str) -> None:
        key = self._key(name)
        dict.__delitem__(self, key)
        if isinstance(key, str):
            self._lower().pop(key.lower(), None)

    def __getitem__(self, name: str) -> Any:
        return dict.__getitem__(self, self._key(name))

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, self._key(name))

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, self._key(name), default)


class MultiDict(dict):  # type: ignore[type-arg]
    """name -> list of values (JSON form); `[name]` and `.get(name)` give the first value."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        for name, values in (data or {}).items():
            dict.__setitem__(
                self, name, list(values) if isinstance(values, list | tuple) else [values]
            )

    def __getitem__(self, name: str) -> Any:
        values = dict.__getitem__(self, name)
        return values[0] if values else None

    def get(self, name: str, default: Any = None) -> Any:
        values = dict.get(self, name)
        return values[0] if values else default

    def getlist(self, name: str, default: list[Any] | None = None) -> list[Any]:
        values = dict.get(self, name)
        if values is None:
            return [] if default is None else default
        return list(values)


class Request(dict):  # type: ignore[type-arg]
    """The user's `request`: a dict (so json.dumps(request) works) with attribute access."""

    raw_bytes: bytes

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"'request' has no attribute '{name}'") from None


def parse_body(content_type: str, raw: bytes) -> Any:
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return json.loads(raw) if raw.strip() else None
        except (ValueError, RecursionError):
            return None
    if media == "application/x-www-form-urlencoded":
        parsed = urllib.parse.parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return {name: values[0] if len(values) == 1 else values for name, values in parsed.items()}
    if media.startswith("text/"):
        charset = "utf-8"
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip('"')
        try:
            return raw.decode(charset, "replace")
        except LookupError:
            return raw.decode("utf-8", "replace")
    return None


def make_request(data: Mapping[str, Any]) -> Request:
    raw = base64.b64decode(data.get("body_b64") or "")
    request = Request(data)
    request.pop("body_b64", None)
    request["headers"] = Headers(data.get("headers") or {})
    request["query"] = MultiDict(data.get("query") or {})
    content_type = data.get("content_type") or request["headers"].get("content-type") or ""
    request["content_type"] = content_type
    request["body"] = parse_body(content_type, raw)
    request["raw_body"] = raw.decode("utf-8", "surrogateescape")
    if "cloudevent" not in request:
        request["cloudevent"] = _cloudevent(request["headers"], content_type, raw)
    request.raw_bytes = raw
    return request


# Any of these makes a request a binary-mode CloudEvent (or an invalid one: see wr_cloudevents).
_CE_BINARY_HEADERS = frozenset({"ce-specversion", "ce-id", "ce-source", "ce-type"})


def _cloudevent(headers: Headers, content_type: str, raw: bytes) -> Any:
    """The CloudEvent the request carries (docs/helpers.md, CloudEvents), unless the server already gave it."""
    if _cloudevents is None:
        return None
    binary = not _CE_BINARY_HEADERS.isdisjoint(headers._lower())
    if not binary and not _cloudevents.is_structured(content_type):
        return None  # neither binary nor structured mode: the common request, decided cheaply
    try:
        return _cloudevents.parse_cloudevent(headers, content_type, raw)
    except (ValueError, TypeError, RecursionError):
        return None  # claims to be a CloudEvent but is not a valid one: the body is still there


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


_cloudevents = _optional_module("wr_cloudevents")
