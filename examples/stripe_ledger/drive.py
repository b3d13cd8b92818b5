"""Send Stripe subscription events signed like Stripe signs them (including a retry and a
forged one), then print the MRR.

    python examples/stripe_ledger/drive.py WRITE_URL READ_URL whsec_...
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from client import send, usage, wait_for_seq


def subscription_event(
    event_id: str,
    kind: str,
    sub_id: str,
    amount: int,
    interval: str = "month",
    status: str = "active",
) -> dict[str, object]:
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "data": {
            "object": {
                "id": sub_id,
                "object": "subscription",
                "customer": f"cus_{sub_id}",
                "status": status,
                "items": {
                    "data": [
                        {
                            "price": {
                                "unit_amount": amount,
                                "currency": "usd",
                                "recurring": {"interval": interval, "interval_count": 1},
                            },
                            "quantity": 1,
                        }
                    ]
                },
            }
        },
    }


def deliver(write_url: str, secret: str, event: dict[str, object]) -> int:
    payload = json.dumps(event)
    timestamp = int(time.time())
    signature = hmac.new(
        secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256
    ).hexdigest()
    status, _ = send(write_url, payload, {"Stripe-Signature": f"t={timestamp},v1={signature}"})
    return status


def main() -> None:
    usage(__doc__ or "")
    write_url, read_url, secret = sys.argv[1:4]
    events = [
        subscription_event("evt_1", "customer.subscription.created", "sub_a", 2000),
        subscription_event("evt_2", "customer.subscription.created", "sub_b", 12000, "year"),
        subscription_event("evt_3", "customer.subscription.updated", "sub_a", 3000),
        subscription_event("evt_3", "customer.subscription.updated", "sub_a", 3000),  # Stripe retry
        subscription_event("evt_4", "customer.subscription.created", "sub_c", 500),
        subscription_event(
            "evt_5", "customer.subscription.deleted", "sub_c", 500, status="canceled"
        ),
    ]
    statuses = [deliver(write_url, secret, event) for event in events]
    statuses.append(
        deliver(
            write_url,
            "whsec_forged",
            subscription_event("evt_6", "customer.subscription.created", "sub_x", 99999),
        )
    )
    print("statuses", statuses)
    print(json.dumps(wait_for_seq(read_url, 6), indent=2))


if __name__ == "__main__":
    main()
