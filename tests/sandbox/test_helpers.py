"""Tests for sandbox/runtime/webreducer_helpers.py (webhook signatures, JSON schema).

Signed payloads are produced with the senders' own libraries where one exists
(``stripe``, ``standardwebhooks``) and with the test vectors published in the
senders' documentation (GitHub, Slack, Standard Webhooks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import standardwebhooks
import stripe

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


helpers = _load("webreducer_helpers", "webreducer_helpers.py")
WebhookVerificationError = helpers.WebhookVerificationError


class Headers(Mapping[str, str]):
    """A case-insensitive header mapping, like ``request.headers`` in the sandbox."""

    def __init__(self, items: Mapping[str, str]) -> None:
        self._items = {key.lower(): (key, value) for key, value in items.items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


class Request:
    """The request object hook code receives (only what the helpers use)."""

    def __init__(self, headers: Mapping[str, str], body: bytes) -> None:
        self.headers = Headers(headers)
        self.raw_bytes = body
        self.raw_body = body.decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------
# GitHub
# ---------------------------------------------------------------------------

GITHUB_SECRET = "gh-webhook-secret-7f3a9c"

GITHUB_ISSUES_EVENT: dict[str, Any] = {
    "action": "opened",
    "issue": {
        "url": "https://api.github.com/repos/octo-org/hello-world/issues/1347",
        "repository_url": "https://api.github.com/repos/octo-org/hello-world",
        "html_url": "https://github.com/octo-org/hello-world/issues/1347",
        "id": 1296269001,
        "node_id": "I_kwDOABCD5M5NRa8J",
        "number": 1347,
        "title": "Found a bug — ünïcode in the title",
        "user": {
            "login": "octocat",
            "id": 1,
            "node_id": "MDQ6VXNlcjE=",
            "type": "User",
            "site_admin": False,
        },
        "labels": [{"id": 208045946, "name": "bug", "color": "f29513", "default": True}],
        "state": "open",
        "locked": False,
        "assignees": [],
        "comments": 0,
        "created_at": "2024-05-01T12:00:00Z",
        "updated_at": "2024-05-01T12:00:00Z",
        "closed_at": None,
        "author_association": "OWNER",
        "body": "I'm having a problem with this.\r\n\r\nSteps:\r\n1. …",
    },
    "repository": {
        "id": 1296269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": "hello-world",
        "full_name": "octo-org/hello-world",
        "private": False,
        "owner": {"login": "octo-org", "id": 6, "type": "Organization"},
        "html_url": "https://github.com/octo-org/hello-world",
        "default_branch": "main",
    },
    "sender": {"login": "octocat", "id": 1, "type": "User", "site_admin": False},
}


def github_delivery(body: bytes, secret: str = GITHUB_SECRET, **extra: str) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/a1b2c3d",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-GitHub-Hook-ID": "292430182",
        "X-Hub-Signature-256": f"sha256={signature}",
        **extra,
    }


def github_body() -> bytes:
    return json.dumps(GITHUB_ISSUES_EVENT, separators=(",", ":"), ensure_ascii=False).encode()


def test_it_accepts_a_github_issues_delivery() -> None:
    body = github_body()
    helpers.verify_github(Request(github_delivery(body), body), GITHUB_SECRET)


def test_it_matches_githubs_documented_test_vector() -> None:
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    helpers.verify_github(
        headers={
            "X-Hub-Signature-256": "sha256="
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        },
        body=b"Hello, World!",
        secret="It's a Secret to Everybody",
    )


def test_it_rejects_a_tampered_github_body() -> None:
    body = github_body()
    headers = github_delivery(body)
    tampered = body.replace(b'"opened"', b'"closed"')
    with pytest.raises(WebhookVerificationError, match="does not match the body"):
        helpers.verify_github(Request(headers, tampered), GITHUB_SECRET)


def test_it_rejects_a_github_delivery_signed_with_another_secret() -> None:
    body = github_body()
    headers = github_delivery(body, secret="some-other-secret")
    with pytest.raises(WebhookVerificationError, match="wrong secret"):
        helpers.verify_github(Request(headers, body), GITHUB_SECRET)


def test_it_reports_a_missing_github_signature_header() -> None:
    body = github_body()
    headers = github_delivery(body)
    del headers["X-Hub-Signature-256"]
    with pytest.raises(WebhookVerificationError, match="missing header X-Hub-Signature-256"):
        helpers.verify_github(Request(headers, body), GITHUB_SECRET)


def test_it_refuses_the_legacy_sha1_github_header_alone() -> None:
    body = github_body()
    headers = github_delivery(body)
    del headers["X-Hub-Signature-256"]
    sha1 = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha1).hexdigest()
    headers["X-Hub-Signature"] = f"sha1={sha1}"
    with pytest.raises(WebhookVerificationError, match="legacy SHA-1"):
        helpers.verify_github(Request(headers, body), GITHUB_SECRET)


@pytest.mark.parametrize("value", ["abc123", "sha1=abc", "sha256=", "md5=00"])
def test_it_reports_a_malformed_github_signature_header(value: str) -> None:
    with pytest.raises(WebhookVerificationError, match="malformed X-Hub-Signature-256"):
        helpers.verify_github(
            headers={"X-Hub-Signature-256": value}, body=b"{}", secret=GITHUB_SECRET
        )


def test_it_accepts_github_headers_in_any_case_and_upper_case_hex() -> None:
    body = github_body()
    signature = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    helpers.verify_github(
        headers={"x-hub-signature-256": f"sha256={signature.upper()}"},
        body=body,
        secret=GITHUB_SECRET,
    )


def test_it_verifies_non_utf8_body_bytes_exactly() -> None:
    body = b'{"name":"caf\xe9"}\xff\x00'  # latin-1 and stray bytes: not UTF-8
    headers = github_delivery(body)
    helpers.verify_github(Request(headers, body), GITHUB_SECRET)
    # A request that only carries raw_body (surrogate-escaped text) works too.
    request = Request(headers, body)
    del request.raw_bytes
    helpers.verify_github(request, GITHUB_SECRET)
    helpers.verify_github(
        headers=headers, body=body.decode("utf-8", "surrogateescape"), secret=GITHUB_SECRET
    )
    with pytest.raises(WebhookVerificationError):
        helpers.verify_github(Request(headers, body.replace(b"\xff", b"\xfe")), GITHUB_SECRET)


def test_it_accepts_a_dict_request_and_bytes_secret() -> None:
    body = github_body()
    request = {"headers": github_delivery(body), "raw_body": body.decode()}
    helpers.verify_github(request, GITHUB_SECRET.encode())


@pytest.mark.parametrize("secret", [None, "", "   "])
def test_it_refuses_to_verify_with_an_empty_secret(secret: str | None) -> None:
    body = b"{}"
    empty_key_signature = hmac.new(b"", body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": f"sha256={empty_key_signature}"}
    with pytest.raises(WebhookVerificationError, match="secret is missing or empty"):
        helpers.verify_github(headers=headers, body=body, secret=secret)


def test_it_explains_a_request_without_a_raw_body() -> None:
    class Parsed:
        headers = {"X-Hub-Signature-256": "sha256=00"}

    with pytest.raises(TypeError, match="raw_body"):
        helpers.verify_github(Parsed(), GITHUB_SECRET)
    with pytest.raises(TypeError, match=r"request\.raw_body, not request\.body"):
        helpers.verify_github(headers={}, body={"a": 1}, secret=GITHUB_SECRET)  # type: ignore[arg-type]


def test_it_never_puts_the_secret_or_expected_signature_in_the_message() -> None:
    body = github_body()
    headers = github_delivery(body, secret="another")
    expected = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(WebhookVerificationError) as caught:
        helpers.verify_github(Request(headers, body), GITHUB_SECRET)
    assert GITHUB_SECRET not in str(caught.value)
    assert expected not in str(caught.value)


# ---------------------------------------------------------------------------
# Stripe
# ---------------------------------------------------------------------------

STRIPE_SECRET = "whsec_test_5f8a2b9c0d1e4f6a7b8c9d0e1f2a3b4c"

STRIPE_EVENT = {
    "id": "evt_1PZx2bLkdIwHu7ix0aB1cD2e",
    "object": "event",
    "api_version": "2024-06-20",
    "created": 1719950000,
    "data": {
        "object": {
            "id": "pi_3PZx2aLkdIwHu7ix1Z9yX8wV",
            "object": "payment_intent",
            "amount": 2000,
            "currency": "eur",
            "status": "succeeded",
            "metadata": {"order": "A-1001", "note": "crème brûlée"},
        }
    },
    "livemode": False,
    "pending_webhooks": 1,
    "request": {"id": "req_8Bc7dE6fG5hI4j", "idempotency_key": None},
    "type": "payment_intent.succeeded",
}


def stripe_body() -> bytes:
    return json.dumps(STRIPE_EVENT, indent=2, ensure_ascii=False).encode()


def stripe_header(body: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(
        body.decode("utf-8"), secret, timestamp=timestamp
    )


def test_it_accepts_a_stripe_event_signed_by_the_stripe_library() -> None:
    body = stripe_body()
    header = stripe_header(body)
    # The Stripe library itself accepts this header for this body...
    event = stripe.Webhook.construct_event(body, header, STRIPE_SECRET)
    assert event.id == STRIPE_EVENT["id"]
    # ...and so do we.
    helpers.verify_stripe(Request({"Stripe-Signature": header}, body), STRIPE_SECRET)
    helpers.verify_stripe(headers={"stripe-signature": header}, body=body, secret=STRIPE_SECRET)


def test_it_rejects_a_tampered_stripe_body() -> None:
    body = stripe_body()
    header = stripe_header(body)
    tampered = body.replace(b"2000", b"1")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, header, STRIPE_SECRET)
    with pytest.raises(WebhookVerificationError, match="no Stripe-Signature v1 signature matches"):
        helpers.verify_stripe(Request({"Stripe-Signature": header}, tampered), STRIPE_SECRET)


def test_it_rejects_a_stripe_event_signed_with_another_secret() -> None:
    body = stripe_body()
    header = stripe_header(body, secret="whsec_other")
    with pytest.raises(WebhookVerificationError, match="wrong signing secret"):
        helpers.verify_stripe(Request({"Stripe-Signature": header}, body), STRIPE_SECRET)


def test_it_reports_a_missing_stripe_header() -> None:
    with pytest.raises(WebhookVerificationError, match="missing header Stripe-Signature"):
        helpers.verify_stripe(Request({}, stripe_body()), STRIPE_SECRET)


def test_it_rejects_a_stale_stripe_timestamp_and_says_the_tolerance() -> None:
    body = stripe_body()
    header = stripe_header(body, timestamp=int(time.time()) - 900)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, header, STRIPE_SECRET)
    with pytest.raises(WebhookVerificationError, match=r"in the past; the tolerance is 300 s"):
        helpers.verify_stripe(Request({"Stripe-Signature": header}, body), STRIPE_SECRET)
    # A wider tolerance, or none at all, lets it through.
    helpers.verify_stripe(
        Request({"Stripe-Signature": header}, body), STRIPE_SECRET, tolerance=1000
    )
    helpers.verify_stripe(
        Request({"Stripe-Signature": header}, body), STRIPE_SECRET, tolerance=None
    )


def test_it_rejects_a_stripe_timestamp_from_the_future() -> None:
    body = stripe_body()
    header = stripe_header(body, timestamp=int(time.time()) + 3600)
    with pytest.raises(WebhookVerificationError, match="in the future"):
        helpers.verify_stripe(Request({"Stripe-Signature": header}, body), STRIPE_SECRET)


def test_it_accepts_any_matching_stripe_v1_signature() -> None:
    body = stripe_body()
    timestamp = int(time.time())
    good = stripe_header(body, timestamp=timestamp).split("v1=")[1]
    old_secret = stripe_header(body, secret="whsec_rolled", timestamp=timestamp).split("v1=")[1]
    header = f"t={timestamp},v1={old_secret},v1={good},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
    stripe.WebhookSignature.verify_header(body, header, STRIPE_SECRET, 300)
    helpers.verify_stripe(Request({"Stripe-Signature": header}, body), STRIPE_SECRET)


def test_it_ignores_stripe_v0_signatures() -> None:
    body = stripe_body()
    timestamp = int(time.time())
    sig = stripe_header(body, timestamp=timestamp).split("v1=")[1]
    with pytest.raises(WebhookVerificationError, match="no 'v1=' signature"):
        helpers.verify_stripe(
            headers={"Stripe-Signature": f"t={timestamp},v0={sig}"},
            body=body,
            secret=STRIPE_SECRET,
        )


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("v1=abcdef", "no timestamp"),
        ("t=yesterday,v1=abcdef", "is not a Unix time"),
        ("garbage", "no timestamp"),
    ],
)
def test_it_reports_a_malformed_stripe_header(header: str, message: str) -> None:
    with pytest.raises(WebhookVerificationError, match=message):
        helpers.verify_stripe(
            headers={"Stripe-Signature": header}, body=b"{}", secret=STRIPE_SECRET
        )


def test_it_verifies_a_stripe_signature_over_non_utf8_bytes() -> None:
    body = b'{"note":"\xe9t\xe9"}'
    timestamp = str(int(time.time()))
    signature = hmac.new(
        STRIPE_SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    headers = {"Stripe-Signature": f"t={timestamp},v1={signature}"}
    helpers.verify_stripe(Request(headers, body), STRIPE_SECRET)


# ---------------------------------------------------------------------------
# Slack
# ---------------------------------------------------------------------------

# The worked example from https://api.slack.com/authentication/verifying-requests-from-slack
SLACK_DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_DOC_TIMESTAMP = "1531420618"
SLACK_DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
    b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
    b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
    b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
    b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def slack_headers(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }


def test_it_matches_slacks_documented_example() -> None:
    headers = {
        "X-Slack-Request-Timestamp": SLACK_DOC_TIMESTAMP,
        "X-Slack-Signature": SLACK_DOC_SIGNATURE,
    }
    request = Request(headers, SLACK_DOC_BODY)
    helpers.verify_slack(request, SLACK_DOC_SECRET, tolerance=None)
    # The example is from 2018, so with the default tolerance it is a replay.
    with pytest.raises(WebhookVerificationError, match="in the past"):
        helpers.verify_slack(request, SLACK_DOC_SECRET)


def test_it_accepts_a_fresh_slack_event() -> None:
    body = json.dumps(
        {
            "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
            "team_id": "T061EG9RZ",
            "api_app_id": "A0FFV41KK",
            "event": {"type": "app_mention", "user": "U061F7AUR", "text": "<@U0LAN0Z89> hi"},
            "type": "event_callback",
            "event_id": "Ev9UQ52YNA",
            "event_time": 1234567890,
        }
    ).encode()
    helpers.verify_slack(Request(slack_headers(body, "slack-secret"), body), "slack-secret")


def test_it_rejects_tampered_or_wrongly_signed_slack_requests() -> None:
    body = SLACK_DOC_BODY
    headers = slack_headers(body, "slack-secret")
    with pytest.raises(WebhookVerificationError, match="does not match"):
        helpers.verify_slack(Request(headers, body + b"&admin=1"), "slack-secret")
    with pytest.raises(WebhookVerificationError, match="wrong signing secret"):
        helpers.verify_slack(Request(headers, body), "not-the-secret")


def test_it_rejects_a_slack_signature_replayed_with_a_new_timestamp() -> None:
    body = SLACK_DOC_BODY
    headers = slack_headers(body, "slack-secret", timestamp=int(time.time()) - 1000)
    headers["X-Slack-Request-Timestamp"] = str(int(time.time()))
    with pytest.raises(WebhookVerificationError, match="does not match"):
        helpers.verify_slack(Request(headers, body), "slack-secret")


def test_it_reports_missing_and_malformed_slack_headers() -> None:
    body = b"payload=%7B%7D"
    headers = slack_headers(body, "s")
    for name in ("X-Slack-Signature", "X-Slack-Request-Timestamp"):
        partial = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(WebhookVerificationError, match=f"missing header {name}"):
            helpers.verify_slack(Request(partial, body), "s")
    bad = dict(headers, **{"X-Slack-Signature": "v1=" + "0" * 64})
    with pytest.raises(WebhookVerificationError, match="expected 'v0=<hex digest>'"):
        helpers.verify_slack(Request(bad, body), "s")
    bad = dict(headers, **{"X-Slack-Request-Timestamp": "1e9"})
    with pytest.raises(WebhookVerificationError, match="not a Unix time"):
        helpers.verify_slack(Request(bad, body), "s")


def test_it_rejects_a_stale_slack_timestamp() -> None:
    body = b"{}"
    headers = slack_headers(body, "s", timestamp=int(time.time()) - 301 - 5)
    with pytest.raises(WebhookVerificationError, match="tolerance is 300 s"):
        helpers.verify_slack(Request(headers, body), "s")
    helpers.verify_slack(Request(headers, body), "s", tolerance=600)


# ---------------------------------------------------------------------------
# Standard Webhooks
# ---------------------------------------------------------------------------

SW_KEY = bytes(range(32))
SW_SECRET = "whsec_" + base64.b64encode(SW_KEY).decode()


def sw_headers(
    body: str,
    secret: str = SW_SECRET,
    when: datetime | None = None,
    msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
) -> dict[str, str]:
    when = when or datetime.now(tz=UTC)
    signature = standardwebhooks.Webhook(secret).sign(msg_id, when, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


SW_BODY = (
    '{"type":"user.created","timestamp":"2024-05-01T12:00:00Z","data":{"id":"u_1","name":"Zoë"}}'
)


def test_it_accepts_a_standard_webhook_signed_by_the_reference_library() -> None:
    headers = sw_headers(SW_BODY)
    body = SW_BODY.encode()
    assert standardwebhooks.Webhook(SW_SECRET).verify(body, headers)["data"]["id"] == "u_1"
    helpers.verify_standard_webhooks(Request(headers, body), SW_SECRET)


def test_it_matches_the_standard_webhooks_reference_vector() -> None:
    # The example used by the Standard Webhooks / Svix reference libraries.
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    helpers.verify_standard_webhooks(
        headers=headers,
        body=b'{"test": 2432232314}',
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        tolerance=None,
    )


def test_it_accepts_the_standard_webhooks_secret_with_or_without_prefix_or_as_raw_bytes() -> None:
    headers = sw_headers(SW_BODY)
    request = Request(headers, SW_BODY.encode())
    helpers.verify_standard_webhooks(request, SW_SECRET)
    helpers.verify_standard_webhooks(request, SW_SECRET.removeprefix("whsec_"))
    helpers.verify_standard_webhooks(request, SW_KEY)
    # The prefix is not part of the key: using the literal string fails.
    with pytest.raises(WebhookVerificationError, match="no webhook-signature v1 signature matches"):
        helpers.verify_standard_webhooks(request, SW_SECRET.encode())


def test_it_accepts_an_unpadded_standard_webhooks_secret() -> None:
    key = b"0123456789abcdefghijklmnopq"  # 27 bytes: base64 needs padding
    secret = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    headers = sw_headers(SW_BODY, secret=secret)
    helpers.verify_standard_webhooks(Request(headers, SW_BODY.encode()), secret)


def test_it_reports_an_invalid_standard_webhooks_secret() -> None:
    headers = sw_headers(SW_BODY)
    with pytest.raises(WebhookVerificationError, match="not valid base64"):
        helpers.verify_standard_webhooks(Request(headers, SW_BODY.encode()), "whsec_not base64!")


def test_it_accepts_any_of_several_standard_webhooks_signatures() -> None:
    now = datetime.now(tz=UTC)
    headers = sw_headers(SW_BODY, when=now)
    old = standardwebhooks.Webhook("whsec_" + base64.b64encode(b"old key").decode()).sign(
        headers["webhook-id"], now, SW_BODY
    )
    headers["webhook-signature"] = (
        f"v1a,aGVsbG8= {old} v1,!!notbase64!! {headers['webhook-signature']}"
    )
    assert standardwebhooks.Webhook(SW_SECRET).verify(
        SW_BODY,
        {
            **headers,
            "webhook-signature": headers["webhook-signature"]
            .replace("v1a,aGVsbG8= ", "")
            .replace("v1,!!notbase64!! ", ""),
        },
    )
    helpers.verify_standard_webhooks(Request(headers, SW_BODY.encode()), SW_SECRET)


def test_it_rejects_a_tampered_standard_webhook() -> None:
    headers = sw_headers(SW_BODY)
    body = SW_BODY.replace("u_1", "u_2").encode()
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SW_SECRET).verify(body, headers)
    with pytest.raises(WebhookVerificationError, match="no webhook-signature v1 signature matches"):
        helpers.verify_standard_webhooks(Request(headers, body), SW_SECRET)
    # Changing the id is detected too: it is part of the signed content.
    with pytest.raises(WebhookVerificationError):
        helpers.verify_standard_webhooks(
            Request({**headers, "webhook-id": "msg_other"}, SW_BODY.encode()), SW_SECRET
        )


def test_it_rejects_a_standard_webhook_signed_with_another_secret() -> None:
    other = "whsec_" + base64.b64encode(b"another key, 32 bytes long......").decode()
    headers = sw_headers(SW_BODY, secret=other)
    with pytest.raises(WebhookVerificationError, match="wrong secret"):
        helpers.verify_standard_webhooks(Request(headers, SW_BODY.encode()), SW_SECRET)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_it_reports_each_missing_standard_webhooks_header(missing: str) -> None:
    headers = {k: v for k, v in sw_headers(SW_BODY).items() if k != missing}
    with pytest.raises(WebhookVerificationError, match=f"missing header {missing}"):
        helpers.verify_standard_webhooks(Request(headers, SW_BODY.encode()), SW_SECRET)


def test_it_rejects_stale_and_future_standard_webhooks_timestamps() -> None:
    now = time.time()
    for offset, words in ((-400, "in the past"), (400, "in the future")):
        when = datetime.fromtimestamp(now + offset, tz=UTC)
        headers = sw_headers(SW_BODY, when=when)
        with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
            standardwebhooks.Webhook(SW_SECRET).verify(SW_BODY, headers)
        with pytest.raises(WebhookVerificationError, match=words):
            helpers.verify_standard_webhooks(Request(headers, SW_BODY.encode()), SW_SECRET)
        helpers.verify_standard_webhooks(
            Request(headers, SW_BODY.encode()), SW_SECRET, tolerance=600
        )


def test_it_accepts_svix_prefixed_headers() -> None:
    headers = {k.replace("webhook-", "svix-"): v for k, v in sw_headers(SW_BODY).items()}
    helpers.verify_standard_webhooks(Request(headers, SW_BODY.encode()), SW_SECRET)


def test_it_verifies_a_standard_webhook_over_non_utf8_bytes() -> None:
    body = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    msg_id, ts = "msg_bin", str(int(time.time()))
    digest = hmac.new(SW_KEY, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    helpers.verify_standard_webhooks(Request(headers, body), SW_SECRET)
    with pytest.raises(WebhookVerificationError):
        helpers.verify_standard_webhooks(Request(headers, body + b"\x00"), SW_SECRET)


# ---------------------------------------------------------------------------
# JSON schema
# ---------------------------------------------------------------------------

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["customer", "items"],
    "properties": {
        "customer": {
            "type": "object",
            "required": ["email"],
            "properties": {"email": {"type": "string", "format": "email"}},
        },
        "items": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/item"}},
        "placed_at": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": False,
    "$defs": {
        "item": {
            "type": "object",
            "required": ["sku", "qty"],
            "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
                "qty": {"type": "integer", "minimum": 1},
            },
        }
    },
}


def test_it_returns_no_errors_for_a_valid_value() -> None:
    order = {
        "customer": {"email": "zoe@example.com"},
        "items": [{"sku": "ABC-1", "qty": 2}],
        "placed_at": "2024-05-01T12:00:00Z",
    }
    assert helpers.validate_json(order, ORDER_SCHEMA) == []
    helpers.check_json(order, ORDER_SCHEMA)


def test_it_lists_every_schema_error_with_its_path() -> None:
    order = {
        "customer": {"email": "not-an-email"},
        "items": [{"sku": "ABC-1", "qty": 1}, {"sku": "abc", "qty": 0}, "x"],
        "placed_at": "yesterday",
        "coupon": "FREE",
    }
    errors = helpers.validate_json(order, ORDER_SCHEMA)
    assert errors == [
        "$: Additional properties are not allowed ('coupon' was unexpected)",
        "$.customer.email: 'not-an-email' is not a 'email'",
        "$.items[1].qty: 0 is less than the minimum of 1",
        "$.items[1].sku: 'abc' does not match '^[A-Z]{3}-[0-9]+$'",
        "$.items[2]: 'x' is not of type 'object'",
        "$.placed_at: 'yesterday' is not a 'date-time'",
    ]


def test_it_raises_a_validation_error_listing_all_messages() -> None:
    with pytest.raises(helpers.ValidationError) as caught:
        helpers.check_json({"items": []}, ORDER_SCHEMA)
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.errors == [
        "$: 'customer' is a required property",
        "$.items: [] should be non-empty",
    ]
    assert str(error) == (
        "JSON does not match the schema:\n"
        "- $: 'customer' is a required property\n"
        "- $.items: [] should be non-empty"
    )


def test_it_orders_array_indexes_numerically_and_caps_the_error_count() -> None:
    errors = helpers.validate_json(list(range(12)), {"items": {"type": "string"}})
    assert errors[:3] == [
        "$[0]: 0 is not of type 'string'",
        "$[1]: 1 is not of type 'string'",
        "$[2]: 2 is not of type 'string'",
    ]
    assert errors[10] == "$[10]: 10 is not of type 'string'"
    capped = helpers.validate_json(list(range(12)), {"items": {"type": "string"}}, max_errors=5)
    assert len(capped) == 6
    assert capped[-1] == "… and 7 more errors"


def test_it_shortens_huge_error_messages() -> None:
    errors = helpers.validate_json({"blob": "x" * 100_000}, {"type": "array"})
    assert len(errors) == 1
    assert len(errors[0]) < 400
    assert errors[0].endswith("…")


def test_it_uses_the_draft_named_by_the_schema() -> None:
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "string"}]}
    assert helpers.validate_json([1], draft7) == ["$[0]: 1 is not of type 'string'"]


def test_it_reports_an_invalid_schema_as_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"invalid JSON schema: \$\.type") as caught:
        helpers.validate_json({}, {"type": "strnig"})
    assert not isinstance(caught.value, helpers.ValidationError)


@pytest.mark.parametrize(
    "ref",
    [
        "https://json-schema.org/draft/2020-12/schema-that-does-not-exist",
        "http://127.0.0.1:9/schema.json",
        "other.json",
    ],
)
def test_it_never_fetches_remote_refs(monkeypatch: pytest.MonkeyPatch, ref: str) -> None:
    import socket
    import urllib.request

    calls: list[object] = []

    def forbidden(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    with pytest.raises(ValueError, match="remote schemas are never fetched"):
        helpers.validate_json({"a": 1}, {"properties": {"a": {"$ref": ref}}})
    assert calls == []


def test_it_resolves_refs_inside_the_schema_including_ids() -> None:
    schema = {
        "$id": "https://example.com/order.json",
        "$defs": {"pos": {"$id": "pos.json", "type": "integer", "minimum": 1}},
        "properties": {"qty": {"$ref": "pos.json"}, "n": {"$ref": "#/$defs/pos"}},
    }
    assert helpers.validate_json({"qty": 0, "n": 2}, schema) == [
        "$.qty: 0 is less than the minimum of 1"
    ]
    with pytest.raises(ValueError, match="cannot be resolved"):
        helpers.validate_json({}, {"$ref": "#/$defs/missing"})


def test_it_lists_its_public_names() -> None:
    assert sorted(helpers.__all__) == sorted(
        [
            "WebhookVerificationError",
            "ValidationError",
            "verify_github",
            "verify_stripe",
            "verify_slack",
            "verify_standard_webhooks",
            "validate_json",
            "check_json",
        ]
    )
    for name in helpers.__all__:
        assert getattr(helpers, name).__doc__


# ---------------------------------------------------------------------------
# As imported in the sandbox
# ---------------------------------------------------------------------------

SANDBOX_PROBE = r"""
import sys
sys.path[:0] = [RUNTIME, SITE]
import webreducer_helpers as h
import wr_cloudevents as ce

events = []
loaded = set(sys.modules)

def hook(event, args):
    if event == "open" or event.startswith(("socket.", "urllib.", "subprocess", "os.system")):
        events.append(event)

sys.addaudithook(hook)

schema = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "when": {"type": "string", "format": "date-time"},
        "mail": {"format": "email"}, "ip": {"format": "ipv4"}, "id": {"format": "uuid"},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "uniqueItems": True},
        "n": {"oneOf": [{"type": "integer"}, {"type": "string"}], "multipleOf": 3},
    },
    "required": ["missing"], "additionalProperties": False,
    "$defs": {"tag": {"enum": ["a", "b"]}},
}
errors = h.validate_json({"when": "x", "mail": "y", "ip": "z", "id": "q", "tags": ["c", "c"], "n": 2.5, "extra": 1}, schema)
assert len(errors) >= 7, errors
for draft in ("http://json-schema.org/draft-04/schema#", "http://json-schema.org/draft-07/schema#"):
    assert h.validate_json(1, {"$schema": draft, "type": "string"})
try:
    h.validate_json({}, {"$ref": "https://example.com/x.json"})
except ValueError:
    pass
else:
    raise AssertionError("remote ref resolved")
try:
    h.verify_github(headers={"X-Hub-Signature-256": "sha256=00"}, body=b"{}", secret="s")
except h.WebhookVerificationError:
    pass
ce.parse_cloudevent({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t",
                     "ce-time": "2024-01-01T00:00:00Z"}, "application/json", b'{"a": 1}')
ce.split_batch(b'[{"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}]')

new = sorted(set(sys.modules) - loaded)
assert not events, events
assert not new, new
print("ok")
"""


def test_it_imports_isolated_and_needs_no_files_or_network_after_import() -> None:
    site = sysconfig.get_paths()["purelib"]
    code = SANDBOX_PROBE.replace("RUNTIME", repr(str(RUNTIME_DIR))).replace("SITE", repr(site))
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
