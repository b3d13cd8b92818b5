"""The headers a starter's sample request needs, computed on the server from the hook's own
secret: a correctly signed GitHub or Stripe test request, without the secret ever reaching the
browser (only the signature of the body being sent does)."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable

from hooks.models import Hook
from hooks.services import hook_secrets


def _github(secret: str, body: str) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={signature}",
    }


def _stripe(secret: str, body: str) -> dict[str, str]:
    # Stripe's signature includes the time: verify_stripe refuses one older than 5 minutes, so
    # the page asks for a fresh one each time it sends.
    stamp = str(int(time.time()))
    signed = f"{stamp}.{body}".encode()
    signature = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={stamp},v1={signature}"}


# Starter slug -> (the secret it verifies with, the headers for a body).
SIGNERS: dict[str, tuple[str, Callable[[str, str], dict[str, str]]]] = {
    "github_board": ("GITHUB_SECRET", _github),
    "stripe_ledger": ("STRIPE_SECRET", _stripe),
}


def signer_secret(slug: str | None) -> str | None:
    """The secret name the starter `slug` signs with, or None when it needs no signature."""
    return SIGNERS[slug][0] if slug in SIGNERS else None


def sample_headers(*, hook: Hook, slug: str | None, body: str) -> dict[str, str] | None:
    """The signed headers of `body` for starter `slug`, with the hook's secret; None when the
    starter signs nothing or the secret is not set yet."""
    if slug not in SIGNERS:
        return None
    name, sign = SIGNERS[slug]
    secret = hook_secrets(hook.pk).get(name)
    if not secret:
        return None
    return sign(secret, body)


def headers_text(headers: dict[str, str] | None) -> str:
    return "".join(f"{name}: {value}\n" for name, value in (headers or {}).items())
