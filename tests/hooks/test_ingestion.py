"""Real senders' requests through the write endpoint (issue 8): signatures made by the senders'
own libraries, CloudEvents in every content mode, forms, XML and non-UTF-8 bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import standardwebhooks
import stripe
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent
from django.test import Client

from hooks.models import Request
from hooks.services import secret_set
from tests.conftest import read_key, write_key

pytestmark = pytest.mark.usefixtures("eager_tasks")

# Records what the sandbox made of each request.
RECORD = """
def reducer(state, request, secrets):
    state = state or []
    state.append({"body": request.body, "cloudevent": request.cloudevent,
                  "raw": request.raw_body, "ctype": request.content_type})
    return state
"""


def write(client: Client, hook: Any, body: bytes | str, content_type: str, **headers: str) -> Any:
    return client.post(
        f"/write/{write_key(hook)}", body, content_type=content_type, headers=headers
    )


def state(client: Client, hook: Any) -> Any:
    return client.get(f"/read/{read_key(hook)}").json()


def sdk_event(data: Any, **attributes: Any) -> CloudEvent:
    base = {
        "type": "com.example.order.created",
        "source": "https://shop.example.com/orders",
        "id": "A234-1234-1234",
        "time": datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC),
        "subject": "orders/A-1001",
        "datacontenttype": "application/json",
    }
    base.update(attributes)
    return CloudEvent(attributes=base, data=data)


def test_it_exposes_a_structured_cloudevent(make_hook, client: Client) -> None:
    hook = make_hook(RECORD)
    message = ce_http.to_structured_event(sdk_event({"order": "A-1001"}))

    response = write(client, hook, message.body, message.headers["content-type"])

    assert response.status_code == 202
    event = state(client, hook)[0]["cloudevent"]
    assert event["id"] == "A234-1234-1234"
    assert event["source"] == "https://shop.example.com/orders"
    assert event["type"] == "com.example.order.created"
    assert event["subject"] == "orders/A-1001"
    assert event["data"] == {"order": "A-1001"}


def test_it_exposes_a_binary_cloudevent(make_hook, client: Client) -> None:
    hook = make_hook(RECORD)
    message = ce_http.to_binary_event(sdk_event({"order": "A-1002"}, id="B-1"))
    headers = {k: v for k, v in message.headers.items() if k.lower() != "content-type"}

    write(client, hook, message.body, message.headers["content-type"], **headers)

    recorded = state(client, hook)[0]
    assert recorded["cloudevent"]["id"] == "B-1"
    assert recorded["cloudevent"]["data"] == {"order": "A-1002"}
    assert recorded["body"] == {"order": "A-1002"}


def test_it_applies_a_redelivered_cloudevent_once(make_hook, client: Client) -> None:
    hook = make_hook(RECORD)
    message = ce_http.to_structured_event(sdk_event({"n": 1}))
    for _ in range(2):
        write(client, hook, message.body, message.headers["content-type"])

    assert len(state(client, hook)) == 1
    duplicate = Request.objects.get(outcome="duplicate")
    assert duplicate.idempotency_key == "https://shop.example.com/orders A234-1234-1234"


def test_it_splits_a_cloudevents_batch_into_requests_in_order(make_hook, client: Client) -> None:
    hook = make_hook(RECORD)
    events = [
        json.loads(ce_http.to_structured_event(sdk_event({"n": n}, id=f"E-{n}")).body)
        for n in range(3)
    ]

    response = write(client, hook, json.dumps(events), "application/cloudevents-batch+json")

    assert response.status_code == 202
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 202, 202]
    recorded = state(client, hook)
    assert [r["cloudevent"]["id"] for r in recorded] == ["E-0", "E-1", "E-2"]
    assert {r["ctype"] for r in recorded} == {"application/cloudevents+json"}
    rows = list(Request.objects.order_by("seq"))
    assert [str(r.uuid) for r in rows] == [r["id"] for r in results]


def test_it_refuses_a_malformed_batch(make_hook, client: Client) -> None:
    hook = make_hook(RECORD)
    response = write(
        client, hook, json.dumps({"not": "a list"}), "application/cloudevents-batch+json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cloudevents"
    assert Request.objects.count() == 0


GITHUB_ISSUE = {
    "action": "opened",
    "issue": {
        "number": 1347,
        "title": "Found a bug",
        "labels": [{"name": "bug"}],
        "user": {"login": "octocat"},
    },
    "repository": {"id": 1296269, "full_name": "octocat/Hello-World"},
    "sender": {"login": "octocat"},
}

GITHUB_HOOK = """
from webreducer import Response, verify_github, WebhookVerificationError

def responder(request, secrets):
    try:
        verify_github(request, secrets["GITHUB_SECRET"])
    except WebhookVerificationError as error:
        return Response({"error": str(error)}, status=401)
    return {"ok": True}

def idempotency_key(request, secrets):
    return request.headers.get("X-GitHub-Delivery")

def reducer(state, request, secrets):
    state = state or {}
    event = request.headers["x-github-event"]
    state[event] = state.get(event, 0) + 1
    return state
"""


def github_headers(body: bytes, secret: str, delivery: str) -> dict[str, str]:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
    }


def test_it_verifies_github_signatures_and_dedups_by_delivery(make_hook, client: Client) -> None:
    hook = make_hook(GITHUB_HOOK)
    secret_set(hook=hook, name="GITHUB_SECRET", value="s3cret")
    body = json.dumps(GITHUB_ISSUE, indent=2).encode()
    delivery = str(uuid.uuid4())

    assert (
        write(
            client, hook, body, "application/json", **github_headers(body, "s3cret", delivery)
        ).status_code
        == 200
    )
    assert (
        write(
            client, hook, body, "application/json", **github_headers(body, "s3cret", delivery)
        ).status_code
        == 200
    )
    tampered = body.replace(b"Found a bug", b"Found a feature")
    forged = write(
        client, hook, tampered, "application/json", **github_headers(body, "s3cret", "other")
    )

    assert forged.status_code == 401
    assert state(client, hook) == {"issues": 1}
    assert Request.objects.filter(outcome="duplicate").count() == 1
    assert Request.objects.filter(outcome="rejected").count() == 1


STRIPE_HOOK = """
from webreducer import Response, verify_stripe, WebhookVerificationError

def responder(request, secrets):
    try:
        verify_stripe(request, secrets["STRIPE_SECRET"])
    except WebhookVerificationError as error:
        return Response({"error": str(error)}, status=400)
    return {"received": True}

def idempotency_key(request, secrets):
    return request.body["id"]

def reducer(state, request, secrets):
    return (state or []) + [request.body["type"]]
"""


def test_it_verifies_stripe_signatures_made_by_the_stripe_library(
    make_hook, client: Client
) -> None:
    hook = make_hook(STRIPE_HOOK)
    secret_set(hook=hook, name="STRIPE_SECRET", value="whsec_test")
    body = json.dumps({"id": "evt_1", "type": "invoice.paid", "data": {"object": {}}})

    signed = stripe.WebhookSignature.generate_signature_header(body, "whsec_test")
    stale = stripe.WebhookSignature.generate_signature_header(
        body, "whsec_test", timestamp=int(time.time()) - 3600
    )
    wrong = stripe.WebhookSignature.generate_signature_header(body, "whsec_other")

    assert (
        write(client, hook, body, "application/json", **{"Stripe-Signature": signed}).status_code
        == 200
    )
    assert (
        write(client, hook, body, "application/json", **{"Stripe-Signature": stale}).status_code
        == 400
    )
    assert (
        write(client, hook, body, "application/json", **{"Stripe-Signature": wrong}).status_code
        == 400
    )
    assert state(client, hook) == ["invoice.paid"]


def test_it_verifies_standard_webhooks_made_by_the_reference_library(
    make_hook, client: Client
) -> None:
    hook = make_hook(
        "from webreducer import Response, verify_standard_webhooks\n"
        "def responder(request, secrets):\n"
        "    try:\n"
        "        verify_standard_webhooks(request, secrets['WEBHOOK_SECRET'])\n"
        "    except Exception as error:\n"
        "        return Response({'error': str(error)}, status=401)\n"
        "    return {'ok': True}\n"
    )
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    secret_set(hook=hook, name="WEBHOOK_SECRET", value=secret)
    body = json.dumps({"type": "user.created", "data": {"id": "u_1"}})
    msg_id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    now = datetime.now(tz=UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": standardwebhooks.Webhook(secret).sign(msg_id, now, body),
    }

    assert write(client, hook, body, "application/json", **headers).status_code == 200
    assert write(client, hook, body + " ", "application/json", **headers).status_code == 401


def test_it_answers_the_slack_url_verification_challenge(make_hook, client: Client) -> None:
    hook = make_hook(
        "from webreducer import Response, verify_slack\n"
        "def responder(request, secrets):\n"
        "    verify_slack(request, secrets['SLACK_SECRET'])\n"
        "    if request.body.get('type') == 'url_verification':\n"
        "        return Response(request.body['challenge'], headers={'Content-Type': 'text/plain'})\n"
        "    return {'ok': True}\n"
    )
    secret_set(hook=hook, name="SLACK_SECRET", value="8f742231b10e8888abcd99yyyzzz85a5")
    body = json.dumps(
        {
            "token": "x",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    )
    timestamp = str(int(time.time()))
    signature = (
        "v0="
        + hmac.new(
            b"8f742231b10e8888abcd99yyyzzz85a5", f"v0:{timestamp}:{body}".encode(), hashlib.sha256
        ).hexdigest()
    )

    response = write(
        client,
        hook,
        body,
        "application/json",
        **{"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature},
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain"
    assert response.content == b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    forged = write(
        client,
        hook,
        body,
        "application/json",
        **{"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=00"},
    )
    assert forged.status_code == 500  # the responder let the verification error raise: rejected


def test_it_keeps_form_xml_and_non_utf8_bodies_exact(make_hook, client: Client) -> None:
    hook = make_hook(RECORD)
    write(client, hook, "name=Zo%C3%AB&tag=a&tag=b", "application/x-www-form-urlencoded")
    xml = '<?xml version="1.0"?><order id="7"><item>café</item></order>'
    write(client, hook, xml, "application/xml")

    form, xml_row = state(client, hook)
    assert form["body"] == {"name": "Zoë", "tag": ["a", "b"]}
    assert xml_row["body"] is None
    assert xml_row["raw"] == xml
    assert xml_row["ctype"] == "application/xml"


def test_it_round_trips_non_utf8_bytes(make_hook, client: Client) -> None:
    hook = make_hook(
        "def reducer(state, request, secrets):\n"
        "    exact = request.raw_body.encode('utf-8', 'surrogateescape') == request.raw_bytes\n"
        "    return {'exact': exact, 'bytes': list(request.raw_bytes), 'body': request.body}\n"
    )
    latin1 = "caf\xe9".encode("latin-1")

    write(client, hook, latin1, "text/plain")

    assert bytes(Request.objects.get().body) == latin1
    assert state(client, hook)["exact"] is True
    assert state(client, hook)["bytes"] == list(latin1)


def test_it_verifies_a_signature_over_non_utf8_bytes(make_hook, client: Client) -> None:
    hook = make_hook(GITHUB_HOOK)
    secret_set(hook=hook, name="GITHUB_SECRET", value="k")
    body = b"\xff\xfe binary \x00 payload"
    headers = github_headers(body, "k", "d-1")

    assert write(client, hook, body, "application/octet-stream", **headers).status_code == 200
