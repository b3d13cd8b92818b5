"""Stripe subscription ledger.

Point a Stripe webhook endpoint at the write URL and set the hook secret STRIPE_SECRET to its
signing secret (whsec_…). Signatures and timestamps are verified; each event id is applied
once (Stripe retries); the read URL answers the monthly recurring revenue.
"""

from webreducer import Response, WebhookVerificationError, verify_stripe

INTERVAL_MONTHS = {"month": 1, "year": 12, "week": 12 / 52, "day": 12 / 365}


def responder(request, secrets):
    try:
        verify_stripe(request, secrets.get("STRIPE_SECRET", ""))
    except WebhookVerificationError as error:
        return Response({"error": str(error)}, status=400)
    return {"received": True}


def idempotency_key(request, secrets):
    return request.body["id"]


def monthly_cents(subscription):
    total = 0
    for item in subscription["items"]["data"]:
        price = item["price"]
        months = INTERVAL_MONTHS[price["recurring"]["interval"]] * price["recurring"].get(
            "interval_count", 1
        )
        total += price["unit_amount"] * item.get("quantity", 1) / months
    return round(total)


def reducer(state, request, secrets):
    state = state or {"subscriptions": {}, "events": []}
    event = request.body
    kind = event["type"]
    subscription = event["data"]["object"]
    if kind in ("customer.subscription.created", "customer.subscription.updated"):
        if subscription["status"] in ("active", "trialing", "past_due"):
            state["subscriptions"][subscription["id"]] = {
                "customer": subscription["customer"],
                "mrr_cents": monthly_cents(subscription),
                "status": subscription["status"],
            }
        else:
            state["subscriptions"].pop(subscription["id"], None)
    elif kind == "customer.subscription.deleted":
        state["subscriptions"].pop(subscription["id"], None)
    state["events"] = (state["events"] + [event["id"]])[-50:]
    return state


def query(state, params, secrets):
    subscriptions = (state or {}).get("subscriptions", {})
    mrr = sum(s["mrr_cents"] for s in subscriptions.values())
    return {"mrr_cents": mrr, "mrr": f"{mrr / 100:.2f}", "subscriptions": len(subscriptions)}
