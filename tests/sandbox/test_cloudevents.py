"""Tests for sandbox/runtime/wr_cloudevents.py (CloudEvents 1.0 over HTTP).

Requests are produced with the official CloudEvents Python SDK
(``cloudevents.core``), in both HTTP content modes, and read back with the SDK
to check that both sides agree.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "sandbox" / "runtime"


def _load(name: str, filename: str) -> ModuleType:
    """Import a sandbox runtime file under the top-level name the sandbox uses."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, RUNTIME_DIR / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ce = _load("wr_cloudevents", "wr_cloudevents.py")

ORDER = {"order": "A-1001", "total": 19.5, "items": [{"sku": "ABC-1", "qty": 2}], "note": "Zoë"}


def sdk_event(data: Any = None, **attributes: Any) -> CloudEvent:
    base: dict[str, Any] = {
        "type": "com.example.order.created",
        "source": "https://shop.example.com/orders",
        "id": "A234-1234-1234",
        "time": datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
        "subject": "orders/A-1001",
        "datacontenttype": "application/json",
        "comexampleextension1": "value",
    }
    base.update(attributes)
    return CloudEvent(attributes={k: v for k, v in base.items() if v is not None}, data=data)


def parse(message: ce_http.HTTPMessage) -> dict[str, Any] | None:
    return ce.parse_cloudevent(
        message.headers, message.headers.get("content-type", ""), message.body
    )


# ---------------------------------------------------------------------------
# Structured mode
# ---------------------------------------------------------------------------


def test_it_reads_a_structured_event_made_by_the_sdk() -> None:
    message = ce_http.to_structured_event(sdk_event(ORDER))
    assert message.headers["content-type"] == "application/cloudevents+json"
    assert parse(message) == {
        "specversion": "1.0",
        "id": "A234-1234-1234",
        "source": "https://shop.example.com/orders",
        "type": "com.example.order.created",
        "subject": "orders/A-1001",
        "time": "2024-05-01T12:00:00Z",
        "datacontenttype": "application/json",
        "dataschema": None,
        "data": ORDER,
        "data_base64": None,
        "extensions": {"comexampleextension1": "value"},
    }


def test_it_accepts_the_structured_content_type_with_parameters_and_any_case() -> None:
    message = ce_http.to_structured_event(sdk_event(ORDER))
    event = ce.parse_cloudevent({}, "Application/CloudEvents+JSON; charset=UTF-8", message.body)
    assert event is not None
    assert event["id"] == "A234-1234-1234"
    # Without an explicit content type, the Content-Type header is used.
    event = ce.parse_cloudevent({"Content-Type": "application/cloudevents+json"}, "", message.body)
    assert event is not None
    assert event["data"] == ORDER


def test_it_reads_structured_binary_data_from_data_base64() -> None:
    payload = b"\x89PNG\r\n\x1a\n\x00\xff"
    message = ce_http.to_structured_event(sdk_event(payload, datacontenttype="image/png"))
    assert b"data_base64" in message.body
    event = parse(message)
    assert event is not None
    assert event["data"] is None
    assert base64.b64decode(event["data_base64"]) == payload
    assert event["datacontenttype"] == "image/png"


def test_it_turns_structured_data_base64_into_text_or_json_when_it_can() -> None:
    body = {
        "specversion": "1.0",
        "id": "1",
        "source": "/sensors/7",
        "type": "reading",
        "datacontenttype": "text/plain",
        "data_base64": base64.b64encode("21.5 °C".encode()).decode(),
    }
    event = ce.parse_cloudevent({}, "application/cloudevents+json", json.dumps(body).encode())
    assert event is not None
    assert (event["data"], event["data_base64"]) == ("21.5 °C", None)
    body["datacontenttype"] = "application/vnd.example+json"
    body["data_base64"] = base64.b64encode(b'{"c": 21.5}').decode()
    event = ce.parse_cloudevent({}, "application/cloudevents+json", json.dumps(body).encode())
    assert event is not None
    assert event["data"] == {"c": 21.5}


def test_it_keeps_structured_text_data_and_missing_data() -> None:
    message = ce_http.to_structured_event(sdk_event("plain text", datacontenttype="text/plain"))
    event = parse(message)
    assert event is not None
    assert event["data"] == "plain text"
    message = ce_http.to_structured_event(sdk_event(None, datacontenttype=None))
    event = parse(message)
    assert event is not None
    assert (event["data"], event["datacontenttype"]) == (None, None)


def test_it_agrees_with_the_sdk_on_what_a_structured_event_contains() -> None:
    message = ce_http.to_structured_event(sdk_event(ORDER, dataschema="https://example.com/s"))
    theirs = ce_http.from_http_event(message)
    ours = parse(message)
    assert ours is not None
    assert ours["id"] == theirs.get_id()
    assert ours["source"] == theirs.get_source()
    assert ours["type"] == theirs.get_type()
    assert ours["subject"] == theirs.get_subject()
    assert ours["dataschema"] == theirs.get_dataschema()
    assert datetime.fromisoformat(ours["time"]) == theirs.get_time()
    assert ours["data"] == theirs.get_data()
    assert ours["extensions"]["comexampleextension1"] == theirs.get_extension(
        "comexampleextension1"
    )


# ---------------------------------------------------------------------------
# Binary mode
# ---------------------------------------------------------------------------


def test_it_reads_a_binary_event_made_by_the_sdk() -> None:
    message = ce_http.to_binary_event(sdk_event(ORDER))
    assert "ce-id" in message.headers
    assert parse(message) == {
        "specversion": "1.0",
        "id": "A234-1234-1234",
        "source": "https://shop.example.com/orders",
        "type": "com.example.order.created",
        "subject": "orders/A-1001",
        "time": "2024-05-01T12:00:00Z",
        "datacontenttype": "application/json",
        "dataschema": None,
        "data": ORDER,
        "data_base64": None,
        "extensions": {"comexampleextension1": "value"},
    }


def test_it_percent_decodes_binary_header_values() -> None:
    message = ce_http.to_binary_event(
        sdk_event(ORDER, subject="Zoë's order #1 100%", comexampletag="a b")
    )
    assert "%" in message.headers["ce-subject"]
    event = parse(message)
    assert event is not None
    assert event["subject"] == "Zoë's order #1 100%"
    assert event["extensions"]["comexampletag"] == "a b"
    assert ce_http.from_http_event(message).get_subject() == event["subject"]


def test_it_matches_binary_headers_in_any_case() -> None:
    headers = {
        "CE-SpecVersion": "1.0",
        "Ce-Id": "42",
        "ce-SOURCE": "/devices/thermostat-7",
        "Ce-Type": "com.example.reading",
        "Content-Type": "application/json; charset=utf-8",
        "CE-TraceParent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    event = ce.parse_cloudevent(headers, "application/json; charset=utf-8", b'{"t": 21.5}')
    assert event is not None
    assert event["id"] == "42"
    assert event["source"] == "/devices/thermostat-7"
    assert event["data"] == {"t": 21.5}
    assert event["datacontenttype"] == "application/json; charset=utf-8"
    assert event["extensions"] == {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    }


def test_it_gives_binary_text_as_text_and_bytes_as_base64() -> None:
    event = parse(ce_http.to_binary_event(sdk_event("hello, world", datacontenttype="text/plain")))
    assert event is not None
    assert (event["data"], event["data_base64"]) == ("hello, world", None)

    payload = b"\x00\x01\xfe\xff"
    event = parse(
        ce_http.to_binary_event(sdk_event(payload, datacontenttype="application/octet-stream"))
    )
    assert event is not None
    assert event["data"] is None
    assert base64.b64decode(event["data_base64"]) == payload


def test_it_falls_back_to_text_when_a_json_binary_body_is_not_json() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}
    event = ce.parse_cloudevent(headers, "application/json", b"{not json")
    assert event is not None
    assert event["data"] == "{not json"


def test_it_reads_a_binary_event_without_a_body_or_content_type() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "ping"}
    event = ce.parse_cloudevent(headers, "", b"")
    assert event is not None
    assert (event["data"], event["data_base64"], event["datacontenttype"]) == (None, None, None)


def test_it_prefers_structured_mode_when_the_content_type_says_so() -> None:
    message = ce_http.to_structured_event(sdk_event(ORDER))
    headers = {**message.headers, "ce-id": "ignored", "ce-specversion": "1.0"}
    event = ce.parse_cloudevent(headers, message.headers["content-type"], message.body)
    assert event is not None
    assert event["id"] == "A234-1234-1234"


# ---------------------------------------------------------------------------
# Not a CloudEvent / invalid CloudEvents
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "content_type", "body"),
    [
        ({"Content-Type": "application/json"}, "application/json", b'{"id": "1"}'),
        ({}, "", b""),
        ({"ce-foo": "bar"}, "text/plain", b"hi"),
        ({}, "application/cloudevents-batch+json", b"[]"),
    ],
)
def test_it_returns_none_for_requests_that_are_not_cloudevents(
    headers: dict[str, str], content_type: str, body: bytes
) -> None:
    assert ce.parse_cloudevent(headers, content_type, body) is None


@pytest.mark.parametrize("missing", ["ce-id", "ce-source", "ce-type", "ce-specversion"])
def test_it_names_a_missing_binary_attribute(missing: str) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}
    del headers[missing]
    attribute = missing.removeprefix("ce-")
    with pytest.raises(ValueError, match=f"missing required attribute '{attribute}'"):
        ce.parse_cloudevent(headers, "application/json", b"{}")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"specversion": "1.0", "source": "/s", "type": "t"}, "missing required attribute 'id'"),
        ({"specversion": "1.0", "id": "1"}, "missing required attributes 'source', 'type'"),
        (
            {"specversion": "0.3", "id": "1", "source": "/s", "type": "t"},
            "unsupported specversion '0.3'",
        ),
        ({"specversion": "1.0", "id": "", "source": "/s", "type": "t"}, "'id' must be a non-empty"),
        ({"specversion": "1.0", "id": 7, "source": "/s", "type": "t"}, "'id' must be a non-empty"),
        (
            {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "time": "yesterday"},
            "not an RFC 3339 timestamp",
        ),
        (
            {
                "specversion": "1.0",
                "id": "1",
                "source": "/s",
                "type": "t",
                "data": 1,
                "data_base64": "AA==",
            },
            "must not both be present",
        ),
        (
            {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data_base64": "**"},
            "not valid base64",
        ),
        ([{"specversion": "1.0"}], "must be a JSON object, not an array"),
    ],
)
def test_it_explains_an_invalid_structured_event(body: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ce.parse_cloudevent({}, "application/cloudevents+json", json.dumps(body).encode())


def test_it_explains_an_unreadable_structured_body() -> None:
    with pytest.raises(ValueError, match="is not valid JSON"):
        ce.parse_cloudevent({}, "application/cloudevents+json", b"{oops")
    with pytest.raises(ValueError, match="is not UTF-8"):
        ce.parse_cloudevent({}, "application/cloudevents+json", b'{"id": "\xff"}')
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        ce.parse_cloudevent(
            {},
            "application/cloudevents+json",
            b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":NaN}',
        )


def test_it_refuses_cloudevents_formats_other_than_json() -> None:
    with pytest.raises(ValueError, match="only 'application/cloudevents\\+json'"):
        ce.parse_cloudevent({}, "application/cloudevents+avro", b"\x00")


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------


def sdk_batch(events: list[CloudEvent]) -> bytes:
    bodies = [ce_http.to_structured_event(event).body for event in events]
    return b"[" + b", ".join(bodies) + b"]"


def test_it_splits_a_batch_into_structured_events_in_order() -> None:
    events = [
        sdk_event({"n": 1}, id="e-1"),
        sdk_event("text", id="e-2", datacontenttype="text/plain"),
        sdk_event(b"\x00\xff", id="e-3", datacontenttype="application/octet-stream"),
    ]
    assert ce.is_batch("application/cloudevents-batch+json; charset=utf-8")
    parts = ce.split_batch(sdk_batch(events))
    assert len(parts) == 3
    for original, part in zip(events, parts, strict=True):
        expected = json.loads(ce_http.to_structured_event(original).body)
        assert json.loads(part) == expected
        assert list(json.loads(part)) == list(expected)  # attribute order kept
        # Each part is a structured-mode event that both the SDK and we can read.
        message = ce_http.HTTPMessage(
            headers={"content-type": ce.STRUCTURED_CONTENT_TYPE}, body=part
        )
        assert ce_http.from_structured_event(message).get_id() == original.get_id()
        event = parse(message)
        assert event is not None
        assert event["id"] == original.get_id()
    last = parse(
        ce_http.HTTPMessage(headers={"content-type": ce.STRUCTURED_CONTENT_TYPE}, body=parts[2])
    )
    assert last is not None
    assert base64.b64decode(last["data_base64"]) == b"\x00\xff"


def test_it_keeps_unicode_when_splitting_a_batch() -> None:
    parts = ce.split_batch(sdk_batch([sdk_event({"note": "Zoë 🎉"})]))
    assert "Zoë 🎉".encode() in parts[0]


def test_it_splits_an_empty_batch_into_nothing() -> None:
    assert ce.split_batch(b"[]") == []
    assert ce.split_batch(" [ ] ") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"specversion": "1.0"}', "must be a JSON array of events, not an object"),
        (b'"events"', "must be a JSON array of events, not a string"),
        (b"[1, 2]", "at position 0 of the batch: expected a JSON object, not a number"),
        (b"not json", "batch body is not valid JSON"),
        (b"", "batch body is not valid JSON"),
        (
            b'[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2"}]',
            "at position 1 of the batch: missing required attributes 'source', 'type'",
        ),
        (b"[null]", "at position 0 of the batch: expected a JSON object, not null"),
    ],
)
def test_it_explains_an_invalid_batch(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ce.split_batch(body)


# ---------------------------------------------------------------------------
# Idempotency key
# ---------------------------------------------------------------------------


def test_it_builds_the_default_idempotency_key_from_source_and_id() -> None:
    event = parse(ce_http.to_binary_event(sdk_event(ORDER)))
    assert event is not None
    assert ce.default_idempotency_key(event) == "https://shop.example.com/orders A234-1234-1234"
    # The same id from another source is a different event.
    assert ce.default_idempotency_key({"source": "/other", "id": "A234-1234-1234"}) != (
        ce.default_idempotency_key(event)
    )


def test_it_gives_a_redelivered_event_the_same_key_in_either_mode() -> None:
    original = sdk_event(ORDER)
    binary = parse(ce_http.to_binary_event(original))
    structured = parse(ce_http.to_structured_event(original))
    assert binary is not None and structured is not None
    assert ce.default_idempotency_key(binary) == ce.default_idempotency_key(structured)
